"""Write image samples into uint8 NHWC `.npy` shards with an index, incrementally.

Order of writes (what a crash at any moment leaves behind):
1. new shards, each under a temporary name, fsync'd, renamed, the folder fsync'd;
2. the sample table under a new unique name (same way);
3. `index.json`, atomically: this is the commit. Before it, the previous index and every file
   it names are untouched, so readers and a rerun see the previous dataset;
4. only then, files no index names any more (old shards, old sample tables, leftovers of
   crashed runs) are removed. One writer per folder at a time.

Incrementality: a sample whose content_hash is in the previous index under the same settings
fingerprint is never decoded again. A previous shard whose every sample is still wanted is kept
as it is (same file, same sha256: nothing to re-upload); samples of shards that lost members, or
of shards smaller than half the target size (so tails do not pile up run after run), are copied
from the old shard's memory map into new shards. Changed settings rebuild everything. Within a
run, a content_hash is stored once; every row carrying it points at the same slot.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
import time
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from ..images.decode import DecodeSettings
from ..images.decode import decode as default_decode
from .index import (FORMAT, INDEX_NAME, SAMPLES_PREFIX, SHARD_PREFIX, SUM_COLUMNS, TRAIN,
                    TensorIndex, atomic_write_bytes, fsync_dir, load_index, moments,
                    samples_to_parquet, sha256_file)
from .pool import DecodeFn, Source, ordered_jobs

MiB = 1 << 20


@dataclass(frozen=True)
class Sample:
    """One image to write. `source` is bytes, a file path, or a callable returning bytes (a
    picklable one is called in the decode worker, anything else in the writer's process)."""

    key: str
    member: str | None
    content_hash: str
    label: object
    split: str
    source: Source


def _as_sample(record: Sample | Mapping) -> Sample:
    if isinstance(record, Sample):
        return record
    return Sample(key=record["key"], member=record.get("member"),
                  content_hash=record["content_hash"], label=record.get("label"),
                  split=record.get("split") or TRAIN, source=record["source"])


class _HashingFile:
    """Writes through to a file while hashing (np.lib.format writes in chunks)."""

    def __init__(self, f):
        self.f, self.sha, self.size = f, hashlib.sha256(), 0

    def write(self, data) -> int:
        self.sha.update(data)
        self.size += len(data)
        return self.f.write(data)


class _ShardWriter:
    """Fills fixed-capacity buffers and writes each full one as a shard; remembers its files."""

    def __init__(self, out_dir: Path, run: str, shape: tuple[int, int, int], shard_bytes: int):
        self.out_dir, self.run, self.shape = out_dir, run, shape
        self.capacity = max(1, shard_bytes // int(np.prod(shape)))
        self.buffer = np.empty((self.capacity, *shape), dtype=np.uint8)
        self.count, self.seq = 0, 0
        self.shards: list[dict] = []
        self.created: list[Path] = []

    def append(self, arr: np.ndarray) -> tuple[str, int]:
        """Store one sample; returns (shard file, offset) where it will live."""
        if self.count == self.capacity:
            self.flush()
        self.buffer[self.count] = arr
        self.count += 1
        return self._name(self.seq), self.count - 1

    def _name(self, seq: int) -> str:
        return f"{SHARD_PREFIX}{self.run}-{seq:05d}.npy"

    def flush(self) -> None:
        if not self.count:
            return
        name = self._name(self.seq)
        final, tmp = self.out_dir / name, self.out_dir / f".{name}.tmp"
        self.created += [tmp, final]
        data = self.buffer[:self.count]
        with open(tmp, "wb") as f:
            hf = _HashingFile(f)
            np.lib.format.write_array(hf, data, allow_pickle=False)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, final)
        fsync_dir(self.out_dir)
        self.shards.append({"file": name, "count": self.count, "shape": list(data.shape),
                            "dtype": "uint8", "sha256": hf.sha.hexdigest(), "bytes": hf.size})
        self.count, self.seq = 0, self.seq + 1


def _previous(previous_index, fingerprint: str) -> tuple[TensorIndex | None, Path | None]:
    """The previous index and its folder, or (None, None) when absent or of other settings."""
    if previous_index is None:
        return None, None
    if isinstance(previous_index, TensorIndex):
        raise TypeError("previous_index must be a path (its shards are found next to it)")
    path = Path(previous_index)
    folder = path if path.is_dir() else path.parent
    index = load_index(path)
    return (index, folder) if index.fingerprint == fingerprint else (None, None)


def _place_kept(name: str, src_dir: Path, out_dir: Path, sha: str) -> None:
    """Make a kept shard from another folder present in out_dir (hard link, else copy)."""
    dst = out_dir / name
    if dst.exists() and sha256_file(dst) == sha:
        return
    tmp = out_dir / f".{name}.tmp"
    tmp.unlink(missing_ok=True)
    try:
        os.link(src_dir / name, tmp)
    except OSError:
        shutil.copyfile(src_dir / name, tmp)
    os.replace(tmp, dst)


def _cross_split(rows: list[dict]) -> list[dict]:
    seen: dict[str, dict] = {}
    for r in rows:
        entry = seen.setdefault(r["content_hash"], {"splits": set(), "keys": []})
        entry["splits"].add(r["split"])
        entry["keys"].append([r["key"], r["member"]])
    return [{"content_hash": h, "splits": sorted(e["splits"]), "keys": e["keys"]}
            for h, e in seen.items() if len(e["splits"]) > 1]


def _sample_table(rows: list[dict], fingerprint: str) -> pa.Table:
    cols = {name: [r[name] for r in rows] for name in
            ("key", "member", "content_hash", "split", "shard", "offset")}
    try:
        labels = pa.array([r["label"] for r in rows])
    except (pa.ArrowInvalid, pa.ArrowTypeError) as e:
        raise ValueError(f"labels must all be of one type: {e}") from e
    table = pa.table({
        "key": pa.array(cols["key"], pa.string()),
        "member": pa.array(cols["member"], pa.string()),
        "content_hash": pa.array(cols["content_hash"], pa.string()),
        "label": labels,
        "split": pa.array(cols["split"], pa.string()).dictionary_encode(),
        "shard": pa.array(cols["shard"], pa.string()).dictionary_encode(),
        "offset": pa.array(cols["offset"], pa.int64()),
        "fingerprint": pa.array([fingerprint] * len(rows), pa.string()).dictionary_encode(),
        **{c: pa.array([r["sums"][i] for r in rows], pa.int64()) for i, c in enumerate(SUM_COLUMNS)},
    })
    return table


def _unreferenced(out_dir: Path, keep: set[str]) -> list[Path]:
    found = []
    for p in out_dir.iterdir():
        name = p.name.lstrip(".")
        ours = name.startswith((SHARD_PREFIX, SAMPLES_PREFIX)) or (
            p.name.startswith(f".{INDEX_NAME}.") and p.name.endswith(".tmp"))
        if ours and p.is_file() and (p.name not in keep or p.name.startswith(".")):
            found.append(p)
    return found


def write_tensors(samples: Iterable[Sample | Mapping], out_dir: str | os.PathLike,
                  settings: DecodeSettings, *, shard_bytes: int = 128 * MiB,
                  previous_index: str | os.PathLike | None = None,
                  decode: DecodeFn = default_decode, workers: int = 1) -> dict:
    """Decode `samples` into shards and an index in `out_dir` (see the module docstring).

    `previous_index` is a dataset folder or its index.json (often `out_dir` itself). `samples`
    is read into a list first (the kept shards depend on the whole set), so give large
    datasets as paths or callables rather than bytes. `workers > 1` decodes in a process pool;
    the output is byte-identical whatever the number of workers. Returns a summary: samples
    (rows), shards, decoded, reused, copied (distinct contents: decoded + reused; copied is the
    part of reused moved out of old shards), failed (samples whose bytes are not an
    image, listed with the reason and left out of the index), bytes, bytes_written, mean, std
    (per channel, 0..255 scale, over the train split), cross_split_duplicates, fingerprint,
    index, removed. Raises whatever reading a source raises; the previous index then still
    stands and this run's files are removed.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    records = [_as_sample(r) for r in samples]
    fingerprint = settings.fingerprint()
    old, old_dir = _previous(previous_index, fingerprint)
    run = time.strftime("%Y%m%dT%H%M%S") + "-" + secrets.token_hex(3)
    writer = _ShardWriter(out_dir, run, settings.shape, shard_bytes)

    old_slots: dict[str, tuple[str, int, tuple]] = {}
    if old is not None:
        t = old.samples
        sums = zip(*(t.column(c).to_pylist() for c in SUM_COLUMNS))
        for h, shard, off, s in zip(old.column("content_hash"), old.column("shard"),
                                    old.column("offset"), sums):
            old_slots.setdefault(h, (shard, off, s))
    wanted = {r.content_hash for r in records}
    live: dict[str, set[int]] = {}
    for h, (f, off, _) in old_slots.items():
        if h in wanted:
            live.setdefault(f, set()).add(off)
    kept = [s for s in (old.shards if old is not None else [])
            if len(live.get(s["file"], ())) == s["count"] and s["bytes"] >= shard_bytes // 2]
    kept_files = {s["file"] for s in kept}

    rows: list[dict] = []
    placed: dict[str, tuple[str, int, tuple]] = {}
    counts = {"decoded": 0, "reused": 0, "copied": 0}
    failed: list[dict] = []
    maps: dict[str, np.ndarray] = {}

    def jobs():
        pending: set[str] = set()
        for r in records:
            h = r.content_hash
            if h in placed or h in pending:
                yield r, None, "dup"
            elif h in old_slots and old_slots[h][0] in kept_files:
                counts["reused"] += 1
                placed[h] = old_slots[h]
                yield r, None, "kept"
            elif h in old_slots:
                counts["reused"] += 1
                counts["copied"] += 1
                pending.add(h)
                yield r, None, "copy"
            else:
                counts["decoded"] += 1
                pending.add(h)
                yield r, r.source, None

    if all(h in old_slots for h in wanted):
        workers = 1  # nothing to decode: no pool to start
    created = writer.created  # every file this run made, removed again if it fails
    try:
        for r, result in ordered_jobs(jobs(), settings, decode, workers):
            h = r.content_hash
            if result == "copy":
                shard, off, sums = old_slots[h]
                if shard not in maps:
                    maps[shard] = np.load(old_dir / shard, mmap_mode="r")
                placed[h] = (*writer.append(maps[shard][off]), sums)
            elif isinstance(result, tuple):
                arr, sums = result
                if arr is None:
                    failed.append({"key": r.key, "member": r.member, "error": sums})
                    continue
                placed[h] = (*writer.append(arr), sums)
            if h not in placed:  # a duplicate of a sample that failed to decode
                failed.append({"key": r.key, "member": r.member, "error": "same content failed"})
                continue
            shard, off, sums = placed[h]
            rows.append({"key": r.key, "member": r.member, "content_hash": h, "label": r.label,
                         "split": r.split, "shard": shard, "offset": off, "sums": sums})
        writer.flush()
        maps.clear()
        if old_dir is not None and old_dir.resolve() != out_dir.resolve():
            for s in kept:
                _place_kept(s["file"], old_dir, out_dir, s["sha256"])
        table = _sample_table(rows, fingerprint)
        samples_name = f"{SAMPLES_PREFIX}{run}.parquet"
        samples_bytes = samples_to_parquet(table)
        created.append(out_dir / samples_name)
        atomic_write_bytes(out_dir / samples_name, samples_bytes)

        train = [r for r in rows if r["split"] == TRAIN]
        pixels = len(train) * settings.size[0] * settings.size[1]
        totals = [sum(r["sums"][i] for r in train) for i in range(6)]
        mean, std = moments(pixels, totals[:3], totals[3:])
        shards = kept + writer.shards
        duplicates = _cross_split(rows)
        header = {
            "format": FORMAT, "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "run": run, "fingerprint": fingerprint,
            "settings": {**asdict(settings), "size": list(settings.size),
                         "pad_value": list(settings.pad_value)},
            "shape": list(settings.shape), "dtype": "uint8",
            "samples": {"file": samples_name, "count": len(rows),
                        "sha256": hashlib.sha256(samples_bytes).hexdigest()},
            "shards": shards,
            "stats": {"split": TRAIN, "samples": len(train), "mean": mean, "std": std},
            "cross_split_duplicates": duplicates, "failed": failed,
        }
        atomic_write_bytes(out_dir / INDEX_NAME, json.dumps(header, indent=1).encode())
    except BaseException:
        for p in created:
            p.unlink(missing_ok=True)
        raise
    keep = {s["file"] for s in shards} | {samples_name}
    removed = _unreferenced(out_dir, keep)
    for p in removed:
        p.unlink(missing_ok=True)
    return {
        "samples": len(rows), "shards": len(shards), **counts, "failed": failed,
        "bytes": sum(s["bytes"] for s in shards),
        "bytes_written": sum(s["bytes"] for s in writer.shards),
        "mean": mean, "std": std, "cross_split_duplicates": duplicates,
        "fingerprint": fingerprint, "index": str(out_dir / INDEX_NAME),
        "removed": sorted(p.name for p in removed),
    }
