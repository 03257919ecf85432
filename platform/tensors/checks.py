"""Checks of a written tensor dataset, as pure functions over its files.

Each returns `(passed, detail)`: detail is a small JSON-able dict for asset check metadata
(counts, plus the first few offending items, never an unbounded list). They recompute from the
files rather than trusting what the writer recorded, so a tampered or truncated shard fails.
"""

from __future__ import annotations

import math
import os
from collections import Counter
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np

from .index import TensorIndex, load_index, sha256_file

SHOWN = 20  # offending items listed in a detail; the counts are always complete


def _index(index: TensorIndex | str | os.PathLike) -> tuple[TensorIndex, Path | None]:
    if isinstance(index, TensorIndex):
        return index, None
    path = Path(index)
    return load_index(path), (path if path.is_dir() else path.parent)


def manifest_in_index(manifest: Iterable[Mapping], index: TensorIndex | str | os.PathLike,
                      *, valid_column: str = "valid") -> tuple[bool, dict]:
    """Every valid manifest row (key, member) is in the index exactly once, and the index holds
    nothing else. Rows whose `valid_column` is false are expected to be absent (a row without
    the column counts as valid). Returns (passed, detail)."""
    idx, _ = _index(index)
    expected = Counter()
    for row in manifest:
        if row.get(valid_column, True):
            expected[(row["key"], row.get("member"))] += 1
    found = Counter(zip(idx.column("key"), idx.column("member")))
    missing = [k for k in expected if k not in found]
    duplicated = [k for k, n in found.items() if n > 1]
    unexpected = [k for k in found if k not in expected]
    manifest_dups = [k for k, n in expected.items() if n > 1]
    passed = not (missing or duplicated or unexpected or manifest_dups)
    return passed, {
        "expected": sum(expected.values()), "indexed": sum(found.values()),
        "missing": len(missing), "duplicated": len(duplicated), "unexpected": len(unexpected),
        "duplicated_in_manifest": len(manifest_dups),
        "examples": {"missing": missing[:SHOWN], "duplicated": duplicated[:SHOWN],
                     "unexpected": unexpected[:SHOWN]},
    }


def shards_match(index: TensorIndex | str | os.PathLike, folder: str | os.PathLike | None = None
                 ) -> tuple[bool, dict]:
    """Every shard file exists with the index's shape, dtype and sha256, and every sample
    points inside its shard. `folder` defaults to the index's own. Returns (passed, detail)."""
    idx, own = _index(index)
    root = Path(folder) if folder is not None else own
    if root is None:
        raise ValueError("a loaded index needs the folder of its shards")
    shape = tuple(idx.header["shape"])
    problems: list[dict] = []
    counts = {}
    for s in idx.shards:
        path = root / s["file"]
        counts[s["file"]] = s["count"]
        if not path.is_file():
            problems.append({"file": s["file"], "problem": "missing"})
            continue
        try:
            arr = np.load(path, mmap_mode="r")
        except (ValueError, OSError) as e:
            problems.append({"file": s["file"], "problem": f"unreadable: {e}"})
            continue
        want = (s["count"], *shape)
        if arr.dtype != np.dtype(s["dtype"]) or tuple(arr.shape) != want \
                or list(want) != s["shape"]:
            problems.append({"file": s["file"], "problem":
                             f"shape {arr.shape} {arr.dtype}, index says {s['shape']} {s['dtype']}"})
        del arr
        if sha256_file(path) != s["sha256"]:
            problems.append({"file": s["file"], "problem": "sha256 differs"})
    outside = [(f, o) for f, o in zip(idx.column("shard"), idx.column("offset"))
               if f not in counts or not 0 <= o < counts[f]]
    passed = not problems and not outside
    return passed, {"shards": len(idx.shards), "bad_shards": len(problems),
                    "problems": problems[:SHOWN], "rows_pointing_outside": len(outside)}


def stats_finite(index: TensorIndex | str | os.PathLike) -> tuple[bool, dict]:
    """The train split's per-channel mean and std exist, are finite and in range (mean 0..255,
    std 0..127.5). Returns (passed, detail)."""
    idx, _ = _index(index)
    stats = idx.header.get("stats") or {}
    mean, std = stats.get("mean"), stats.get("std")

    def ok(values, hi):
        return (isinstance(values, list) and len(values) == 3
                and all(isinstance(v, (int, float)) and math.isfinite(v) and 0 <= v <= hi
                        for v in values))

    passed = ok(mean, 255.0) and ok(std, 127.5)
    return passed, {"mean": mean, "std": std, "train_samples": stats.get("samples", 0)}


def no_cross_split(index: TensorIndex | str | os.PathLike) -> tuple[bool, dict]:
    """No content_hash appears in two splits (recomputed from the sample table).
    Returns (passed, detail)."""
    idx, _ = _index(index)
    splits: dict[str, set] = {}
    for h, s in zip(idx.column("content_hash"), idx.column("split")):
        splits.setdefault(h, set()).add(s)
    shared = {h: sorted(s) for h, s in splits.items() if len(s) > 1}
    return not shared, {"shared_contents": len(shared),
                        "examples": [{"content_hash": h, "splits": s}
                                     for h, s in list(shared.items())[:SHOWN]]}
