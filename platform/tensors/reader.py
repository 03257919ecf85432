"""Read a tensor dataset (folder or `s3://bucket/prefix`) for training, without torch.

`open_dataset` returns a `TensorDataset`: exact `len()`, O(1) `ds[i] -> (HxWx3 uint8, label)`
from memory-mapped shards, `batches(n)`, a split filter, and epoch iteration that is
deterministic and shardable:

- The global order of an epoch is a permutation drawn from (seed, epoch) only, so it is the same
  whatever the number of ranks or DataLoader workers.
- Rank r of W takes positions r, r+W, r+2W, ... of the global order (its "stream"); no padding,
  so ranks differ by at most one sample; `drop_remainder=True` drops the last `len % W` of the
  global order instead (equal counts per rank, as DDP's collective ops want).
- Worker w of K takes blocks of `block` consecutive stream positions, block j going to worker
  j % K. With `block` = the DataLoader's batch size, the loader (which takes batches from
  workers in turn) delivers the stream exactly in order, so "samples consumed" is a resume
  point. Every position goes to exactly one (rank, worker): no duplicate, no loss.
- `state_dict()` / `load_state_dict()` carry (seed, epoch, position in the rank's stream); a
  resumed iteration yields exactly the remaining samples.

With PyTorch: a `TensorDataset` is a map-style dataset as it is (`__len__`, `__getitem__`);
for streaming, wrap `iter_epoch(block=batch_size)` in an `IterableDataset.__iter__`. The dataset
pickles without its open files and clients (DataLoader workers reopen them lazily), and asks
`torch.utils.data.get_worker_info()` for its worker id only when the caller already imported
torch. S3 shards are fetched on first use into a cache folder, named by their sha256 and
verified before use. The writer removes shards an index no longer names once the new index is
in place: a reader still holding an older index should reopen the dataset after a rebuild.
"""

from __future__ import annotations

import hashlib
import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from .index import INDEX_NAME, InvalidIndex, parse_header, parse_samples, sha256_file


def _default_cache() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "data_platform" / "tensors"


class _LocalStore:
    """A dataset folder on a local (or mounted) file system."""

    def __init__(self, folder: Path, verify: bool = False):
        self.folder, self.verify = folder, verify

    def read(self, name: str) -> bytes:
        return (self.folder / name).read_bytes()

    def path(self, name: str, sha256: str) -> Path:
        p = self.folder / name
        if self.verify and sha256_file(p) != sha256:
            raise InvalidIndex(f"{name} does not match the index's sha256")
        return p


class _S3Store:
    """A dataset under s3://bucket/prefix; files land in a content-addressed cache folder."""

    def __init__(self, url: str, cache_dir: Path):
        bucket, _, prefix = url[len("s3://"):].partition("/")
        if not bucket:
            raise ValueError(f"{url!r} has no bucket")
        self.bucket, self.prefix, self.cache_dir = bucket, prefix.strip("/"), cache_dir
        self._client = None

    def __getstate__(self):
        return {**self.__dict__, "_client": None}

    @property
    def client(self):
        if self._client is None:
            import boto3
            from botocore.config import Config

            self._client = boto3.client("s3", config=Config(
                retries={"max_attempts": 8, "mode": "adaptive"}, connect_timeout=5,
                read_timeout=60))
        return self._client

    def _key(self, name: str) -> str:
        return f"{self.prefix}/{name}" if self.prefix else name

    def read(self, name: str) -> bytes:
        return self.client.get_object(Bucket=self.bucket, Key=self._key(name))["Body"].read()

    def path(self, name: str, sha256: str) -> Path:
        """The cached copy of `name`, downloaded and verified first if absent.

        Raises InvalidIndex when the downloaded bytes do not match `sha256`.
        """
        final = self.cache_dir / f"{sha256}{Path(name).suffix}"
        if final.exists():  # only ever renamed into place after verification
            return final
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.cache_dir, prefix=".dl-", suffix=".tmp")
        try:
            h = hashlib.sha256()
            body = self.client.get_object(Bucket=self.bucket, Key=self._key(name))["Body"]
            with os.fdopen(fd, "wb") as f:
                for chunk in iter(lambda: body.read(8 << 20), b""):
                    h.update(chunk)
                    f.write(chunk)
            if h.hexdigest() != sha256:
                raise InvalidIndex(f"s3://{self.bucket}/{self._key(name)} does not match its sha256")
            os.replace(tmp, final)  # concurrent workers write the same bytes: last one wins
        finally:
            Path(tmp).unlink(missing_ok=True)
        return final


def _torch_worker() -> tuple[int, int]:
    """(worker id, workers) inside a DataLoader worker; (0, 1) otherwise. Never imports torch."""
    torch = sys.modules.get("torch")
    info = torch.utils.data.get_worker_info() if torch is not None else None
    return (info.id, info.num_workers) if info is not None else (0, 1)


class TensorDataset:
    """Samples of one tensor index (optionally one split). See the module docstring."""

    def __init__(self, store, header: dict, samples, split: str | list[str] | None = None):
        self.store, self.header = store, header
        self.shape = tuple(header["shape"])
        self.fingerprint = header["fingerprint"]
        shards = header["shards"]
        self._shard_files = [s["file"] for s in shards]
        self._shard_sha = [s["sha256"] for s in shards]
        position = {name: i for i, name in enumerate(self._shard_files)}
        splits = np.asarray(samples.column("split").to_pylist(), dtype=object)
        if split is None:
            keep = np.arange(len(splits))
        else:
            wanted = [split] if isinstance(split, str) else list(split)
            keep = np.flatnonzero(np.isin(splits, wanted))
        self.split = split
        try:
            shard_of = np.asarray([position[f] for f in samples.column("shard").to_pylist()],
                                  dtype=np.int32)
        except KeyError as e:
            raise InvalidIndex(f"a sample points at shard {e} that the index does not list") from e
        self._shard = shard_of[keep]
        self._offset = np.asarray(samples.column("offset").to_pylist(), dtype=np.int64)[keep]
        labels = samples.column("label").to_pylist()
        self._labels = [labels[i] for i in keep]
        self._rows = samples.take(keep) if split is not None else samples
        self._maps: dict[int, np.ndarray] = {}
        self.rank, self.world_size, self.drop_remainder = 0, 1, False
        self.seed, self.epoch, self.position, self.shuffle, self.block = 0, 0, 0, True, 1

    def __getstate__(self):
        return {**self.__dict__, "_maps": {}}

    def __len__(self) -> int:
        return len(self._offset)

    def _array(self, j: int) -> np.ndarray:
        arr = self._maps.get(j)
        if arr is None:
            path = self.store.path(self._shard_files[j], self._shard_sha[j])
            arr = np.load(path, mmap_mode="r")
            if arr.dtype != np.uint8 or tuple(arr.shape[1:]) != self.shape:
                raise InvalidIndex(f"{self._shard_files[j]} has shape {arr.shape}, {arr.dtype}")
            self._maps[j] = arr
        return arr

    def __getitem__(self, i: int) -> tuple[np.ndarray, object]:
        """(a writable HxWx3 uint8 copy of sample i, its label); raises IndexError."""
        n = len(self)
        if not -n <= i < n:
            raise IndexError(f"sample {i} of {n}")
        i %= n
        return np.array(self._array(self._shard[i])[self._offset[i]]), self._labels[i]

    def info(self, i: int) -> dict:
        """The index row of sample i: key, member, content_hash, label, split, shard, offset."""
        row = self._rows.slice(i, 1).to_pylist()[0]
        return {k: row[k] for k in ("key", "member", "content_hash", "label", "split",
                                    "shard", "offset")}

    # -- order, distribution, resumption ------------------------------------------------------
    def distribute(self, rank: int, world_size: int, *, drop_remainder: bool = False) -> None:
        """Make this process rank `rank` of `world_size` for iteration."""
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} not in 0..{world_size - 1}")
        self.rank, self.world_size, self.drop_remainder = rank, world_size, drop_remainder

    def set_epoch(self, epoch: int, seed: int | None = None) -> None:
        """Start epoch `epoch` (optionally with a new seed) from its beginning."""
        self.epoch, self.position = epoch, 0
        if seed is not None:
            self.seed = seed

    def order(self, epoch: int, seed: int, shuffle: bool = True) -> np.ndarray:
        """The global order of an epoch: a permutation of range(len(self)) from (seed, epoch)."""
        n = len(self)
        if not shuffle:
            return np.arange(n)
        rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, epoch])))
        return rng.permutation(n)

    def positions(self, epoch: int, seed: int, *, rank: int = 0, world_size: int = 1,
                  worker: int = 0, num_workers: int = 1, block: int = 1, start: int = 0,
                  shuffle: bool = True, drop_remainder: bool = False) -> np.ndarray:
        """The sample indices one (rank, worker) visits in an epoch, in order, skipping the
        first `start` samples of the rank's stream."""
        order = self.order(epoch, seed, shuffle)
        if drop_remainder:
            order = order[:len(order) - len(order) % world_size]
        stream = order[rank::world_size][start:]
        if num_workers == 1:
            return stream
        blocks = np.arange(len(stream)) // block
        return stream[blocks % num_workers == worker]

    def iter_epoch(self, epoch: int | None = None, seed: int | None = None, *,
                   rank: int | None = None, world_size: int | None = None,
                   worker: int | None = None, num_workers: int | None = None,
                   block: int | None = None) -> Iterator[tuple[np.ndarray, object]]:
        """Yield (image, label) for this rank and worker; arguments default to the dataset's
        state (epoch, seed, position, distribute()) and to the DataLoader worker, if any. When
        the epoch is the dataset's own and there is one consumer, progress is tracked in
        `position` for state_dict(); call set_epoch() to start the next epoch."""
        if worker is None or num_workers is None:
            worker, num_workers = _torch_worker()
        resume = epoch is None  # the dataset's own epoch: continue from `position`
        epoch = self.epoch if epoch is None else epoch
        seed = self.seed if seed is None else seed
        idx = self.positions(
            epoch, seed, rank=self.rank if rank is None else rank,
            world_size=self.world_size if world_size is None else world_size,
            worker=worker, num_workers=num_workers, block=block or self.block,
            start=self.position if resume else 0, shuffle=self.shuffle,
            drop_remainder=self.drop_remainder)
        track = num_workers == 1 and resume
        for i in idx:
            item = self[int(i)]
            if track:
                self.position += 1
            yield item

    def __iter__(self) -> Iterator[tuple[np.ndarray, object]]:
        return self.iter_epoch()

    def state_dict(self, position: int | None = None) -> dict:
        """Where iteration stands. With DataLoader workers the copies iterate elsewhere: pass
        the number of samples this rank has consumed as `position`."""
        return {"seed": self.seed, "epoch": self.epoch,
                "position": self.position if position is None else position,
                "rank": self.rank, "world_size": self.world_size, "shuffle": self.shuffle,
                "length": len(self), "fingerprint": self.fingerprint}

    def load_state_dict(self, state: dict) -> None:
        """Resume from state_dict(); raises ValueError if it came from other data."""
        if state["length"] != len(self) or state["fingerprint"] != self.fingerprint:
            raise ValueError("state is from another dataset (length or fingerprint differ)")
        self.seed, self.epoch, self.position = state["seed"], state["epoch"], state["position"]
        self.shuffle = state.get("shuffle", True)
        self.distribute(state["rank"], state["world_size"], drop_remainder=self.drop_remainder)

    def batches(self, n: int, *, epoch: int | None = None, seed: int | None = None,
                shuffle: bool = False, drop_last: bool = False, rank: int = 0,
                world_size: int = 1) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Yield (N,H,W,3) uint8 arrays and their labels (an array), n at a time."""
        idx = self.positions(self.epoch if epoch is None else epoch,
                             self.seed if seed is None else seed, rank=rank,
                             world_size=world_size, shuffle=shuffle)
        for lo in range(0, len(idx), n):
            chunk = idx[lo:lo + n]
            if drop_last and len(chunk) < n:
                return
            out = np.empty((len(chunk), *self.shape), dtype=np.uint8)
            for j, i in enumerate(chunk):
                out[j] = self._array(self._shard[i])[self._offset[i]]
            yield out, np.asarray([self._labels[i] for i in chunk])


def open_dataset(url: str | os.PathLike, *, split: str | list[str] | None = None,
                 cache_dir: str | os.PathLike | None = None,
                 verify: bool = False) -> TensorDataset:
    """Open the dataset at a folder or `s3://bucket/prefix` (its index.json is read now, its
    shards on first use). `verify=True` also checks local shards' sha256 on first use (S3
    downloads are always checked).

    Raises InvalidIndex when there is no valid index, FileNotFoundError for a missing folder.
    """
    text = str(url)
    if text.startswith("s3://"):
        store = _S3Store(text, Path(cache_dir) if cache_dir else _default_cache())
    else:
        folder = Path(text)
        if folder.name == INDEX_NAME:
            folder = folder.parent
        if not folder.is_dir():
            raise FileNotFoundError(f"no dataset folder at {folder}")
        store = _LocalStore(folder, verify=verify)
    try:
        header = parse_header(store.read(INDEX_NAME))
    except FileNotFoundError as e:
        raise InvalidIndex(f"no {INDEX_NAME} in {text}") from e
    except Exception as e:  # boto's NoSuchKey has no common base class worth importing
        if type(e).__name__ in ("NoSuchKey", "ClientError"):
            raise InvalidIndex(f"no {INDEX_NAME} in {text}: {e}") from e
        raise
    want = header["samples"]
    samples = parse_samples(store.path(want["file"], want["sha256"]).read_bytes(), header)
    return TensorDataset(store, header, samples, split=split)
