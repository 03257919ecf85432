"""The on-disk layout of a tensor dataset, shared by the writer, the reader and the checks.

A dataset folder holds:

- shards `shard-<run>-<n>.npy`: uint8 arrays (count, height, width, 3), plain `.npy` so
  `np.load(..., mmap_mode="r")` maps them without a copy;
- a sample table `samples-<run>.parquet`: one row per sample (shard file, offset, key, member,
  content_hash, label, split, fingerprint, and the sample's per-channel pixel sums);
- `index.json`, the header: settings and fingerprint, each shard (file, count, shape, dtype,
  sha256, bytes), the sample table's file and sha256, mean/std of the train split and the
  content found in more than one split.

Why Parquet plus a JSON header rather than one big `index.json`: the sample table grows with the
dataset (a million rows is hundreds of MB of JSON, a few tens of MB of Parquet, read back
column by column in well under a second), while the header stays a few KB, is the single
file a reader fetches first, and is the single commit point: it is written last, to a
temporary name, fsync'd and renamed, and it pins the sample table and every shard by sha256.
A crash at any moment leaves the previous header, and therefore the previous dataset, intact.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

FORMAT = "data_platform.tensors/1"
INDEX_NAME = "index.json"
SHARD_PREFIX, SAMPLES_PREFIX = "shard-", "samples-"
SUM_COLUMNS = ("sum_r", "sum_g", "sum_b", "sumsq_r", "sumsq_g", "sumsq_b")
TRAIN = "train"


class InvalidIndex(ValueError):
    """An index that cannot be read: missing, of another format, or not matching its files."""


@dataclass
class TensorIndex:
    """A loaded index: the header dict and the sample table (pyarrow)."""

    header: dict
    samples: pa.Table

    @property
    def fingerprint(self) -> str:
        return self.header["fingerprint"]

    @property
    def shards(self) -> list[dict]:
        return self.header["shards"]

    def column(self, name: str) -> list:
        return self.samples.column(name).to_pylist()


def sha256_file(path: Path, chunk: int = 8 << 20) -> str:
    """The hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def fsync_dir(path: Path) -> None:
    """Make a rename inside `path` durable (no-op where directories cannot be opened)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write `data` to `path` through a temporary file in the same folder, fsync'd, renamed."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def samples_to_parquet(table: pa.Table) -> bytes:
    """The sample table as Parquet bytes (zstd; repeated strings dictionary-encoded)."""
    buf = io.BytesIO()
    pq.write_table(table, buf, compression="zstd")
    return buf.getvalue()


def parse_header(data: bytes) -> dict:
    """The header from the bytes of an `index.json`; raises InvalidIndex when it is not one."""
    try:
        header = json.loads(data)
    except ValueError as e:
        raise InvalidIndex(f"index is not JSON: {e}") from e
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise InvalidIndex(f"not a {FORMAT} index")
    return header


def parse_samples(data: bytes, header: dict) -> pa.Table:
    """The sample table from its Parquet bytes, verified against the header's sha256 and count.

    Raises InvalidIndex on a mismatch.
    """
    want = header["samples"]
    if hashlib.sha256(data).hexdigest() != want["sha256"]:
        raise InvalidIndex(f"{want['file']} does not match the index's sha256")
    table = pq.read_table(io.BytesIO(data))
    if table.num_rows != want["count"]:
        raise InvalidIndex(f"{want['file']} has {table.num_rows} rows, index says {want['count']}")
    return table


def load_index(location: str | os.PathLike) -> TensorIndex:
    """The index of a local dataset folder (or of its `index.json` path).

    Raises InvalidIndex when there is none or it does not match its sample table.
    """
    path = Path(location)
    if path.is_dir():
        path = path / INDEX_NAME
    try:
        header = parse_header(path.read_bytes())
        samples = parse_samples((path.parent / header["samples"]["file"]).read_bytes(), header)
    except FileNotFoundError as e:
        raise InvalidIndex(f"no tensor index at {path}: {e}") from e
    return TensorIndex(header=header, samples=samples)


def moments(count: int, sums: list[int], sumsqs: list[int]) -> tuple[list | None, list | None]:
    """Per-channel (mean, std) from exact integer pixel sums: computed in integers first, then
    rounded once to float64, so no cancellation error however many pixels there are."""
    if count == 0:  # no train samples: no statistics (None, which the checks report)
        return None, None
    mean = [s / count for s in sums]
    # population variance = (n*sum(x^2) - (sum x)^2) / n^2, exact in Python integers.
    std = [((count * q - s * s) / (count * count)) ** 0.5 for s, q in zip(sums, sumsqs)]
    return mean, std
