"""Manifest rows for an image dataset: one row per image found in one raw upload.

A raw upload is a single image or an archive (zip, tar, tar.gz). Every image in it becomes a row,
invalid ones included, with the reason: nothing is dropped silently. Archive members that cannot
be read safely (links, devices, traversal names, bombs) get rows too. A row's label comes from an
explicit mapping or from the folder the image sits in; its split from a `train/`, `val/` or
`test/` folder in its path or else deterministically from its content hash, so the same image
always lands in the same split wherever and whenever it is uploaded.
"""

from __future__ import annotations

import csv
import posixpath
from pathlib import Path
from typing import Any, Iterator, Mapping

import pyarrow as pa

from .archives import Limits, MemberError, archive_kind, iter_members, unsafe_name_reason
from .probe import DEFAULT_MAX_PIXELS, probe_image

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".webp", ".tif", ".tiff", ".gif", ".bmp"})
DEFAULT_SPLIT = {"train": 0.8, "val": 0.1, "test": 0.1}
# Folder names that fix a split; "validation" is common enough to be understood as "val".
SPLIT_FOLDERS = {"train": "train", "val": "val", "validation": "val", "test": "test"}

# Every column is nullable although key, bytes and valid are always set: the lake's Iceberg
# tables take files whose columns are all optional.
MANIFEST_SCHEMA = pa.schema([
    pa.field("key", pa.string()),
    pa.field("member", pa.string()),
    pa.field("format", pa.string()),
    pa.field("mode", pa.string()),
    pa.field("width", pa.int32()),
    pa.field("height", pa.int32()),
    pa.field("bytes", pa.int64()),
    pa.field("content_hash", pa.string()),
    pa.field("exif_orientation", pa.int32()),
    pa.field("label", pa.string()),
    pa.field("split", pa.string()),
    pa.field("valid", pa.bool_()),
    pa.field("reason", pa.string()),
])


def manifest_rows(path: str | Path, *, key: str, dataset_prefix_label: bool = True,
                  labels: Mapping[str, str] | None = None,
                  split: Mapping[str, float] | None = None,
                  limits: Limits = Limits(),
                  max_pixels: int = DEFAULT_MAX_PIXELS) -> Iterator[dict[str, Any]]:
    """Yield the manifest rows (dicts with the columns of `MANIFEST_SCHEMA`) of one raw file.

    `path` is the local copy of the upload and `key` its key relative to the dataset prefix.
    Labels: `labels` maps a key (whole file or archive) or an archive member name to a label and
    wins; otherwise, with `dataset_prefix_label`, the nearest folder in the image's path that is
    not a split folder (for archive members their own path first, then the archive's key).
    `split` gives fractions per split name (default 80/10/10), summing to 1.

    Raises `ValueError` for bad split fractions and `ArchiveError` when an archive is corrupt,
    truncated or over a total cap, after yielding the rows of the members before the damage.
    """
    fractions = _check_fractions(DEFAULT_SPLIT if split is None else split)
    labels = labels or {}
    path = Path(path)
    if archive_kind(key) is not None:
        yield from _archive_rows(path, key, dataset_prefix_label, labels, fractions, limits,
                                 max_pixels)
        return
    size = path.stat().st_size
    label = labels.get(key) or (_folder_label([key]) if dataset_prefix_label else None)
    reason = _extension_reason(key)
    if reason is None and size > limits.max_member_bytes:
        reason = f"file too large: {size} bytes, cap {limits.max_member_bytes}"
    if reason is not None:
        yield _unread_row(key, None, size, reason, label, _path_split([key]))
        return
    yield _image_row(key, None, path.read_bytes(), label, [key], fractions, max_pixels)


def load_labels_csv(path: str | Path) -> dict[str, str]:
    """Return the mapping of a labels CSV with the header `path,label` (extra columns ignored).

    Raises `ValueError` when a column is missing, a path or label is empty, or a path is given
    two different labels.
    """
    out: dict[str, str] = {}
    with open(path, newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        missing = {"path", "label"} - set(reader.fieldnames or ())
        if missing:
            raise ValueError(f"labels CSV {Path(path).name}: missing column(s) {sorted(missing)}")
        for line, rec in enumerate(reader, start=2):
            p, label = (rec["path"] or "").strip(), (rec["label"] or "").strip()
            if not p or not label:
                raise ValueError(f"labels CSV {Path(path).name} line {line}: empty path or label")
            if out.get(p, label) != label:
                raise ValueError(f"labels CSV {Path(path).name} line {line}: {p!r} labelled "
                                 f"both {out[p]!r} and {label!r}")
            out[p] = label
    return out


def split_for_hash(content_hash: str, fractions: Mapping[str, float] = DEFAULT_SPLIT) -> str:
    """Return the split a content hash (hex) falls in: the same hash always gets the same split,
    and over many hashes the splits follow the fractions (taken in their given order)."""
    position = int(content_hash[:16], 16) / float(1 << 64)
    cumulative = 0.0
    names = list(fractions)
    for name in names:
        cumulative += fractions[name]
        if position < cumulative:
            return name
    return names[-1]  # rounding of the cumulative sum


def _check_fractions(fractions: Mapping[str, float]) -> dict[str, float]:
    if not fractions or any(f < 0 for f in fractions.values()):
        raise ValueError(f"split fractions must be non-negative and not empty: {fractions!r}")
    if abs(sum(fractions.values()) - 1.0) > 1e-6:
        raise ValueError(f"split fractions must sum to 1: {fractions!r}")
    return dict(fractions)


def _archive_rows(path: Path, key: str, dataset_prefix_label: bool, labels: Mapping[str, str],
                  fractions: dict[str, float], limits: Limits,
                  max_pixels: int) -> Iterator[dict[str, Any]]:
    for member in iter_members(path, limits):
        label = labels.get(member.name) or labels.get(key) or (
            _folder_label([member.name, key]) if dataset_prefix_label else None)
        reason = member.reason or _extension_reason(member.name)
        if reason is not None:
            # Unsafe names say nothing trustworthy about labels or splits.
            unsafe = unsafe_name_reason(member.name) is not None
            yield _unread_row(key, member.name, member.size, reason, None if unsafe else label,
                              None if unsafe else _path_split([member.name, key]))
            continue
        try:
            data = member.read()
        except MemberError as exc:
            yield _unread_row(key, member.name, member.size, exc.reason, label,
                              _path_split([member.name, key]))
            continue
        yield _image_row(key, member.name, data, label, [member.name, key], fractions,
                         max_pixels)


def _image_row(key: str, member: str | None, data: bytes, label: str | None,
               paths: list[str], fractions: dict[str, float],
               max_pixels: int) -> dict[str, Any]:
    facts = probe_image(data, max_pixels=max_pixels)
    return {
        "key": key, "member": member, "format": facts.format, "mode": facts.mode,
        "width": facts.width, "height": facts.height, "bytes": facts.bytes,
        "content_hash": facts.content_hash, "exif_orientation": facts.exif_orientation,
        "label": label,
        "split": _path_split(paths) or split_for_hash(facts.content_hash, fractions),
        "valid": facts.valid, "reason": facts.reason,
    }


def _unread_row(key: str, member: str | None, size: int, reason: str, label: str | None,
                split: str | None) -> dict[str, Any]:
    return {
        "key": key, "member": member, "format": None, "mode": None, "width": None,
        "height": None, "bytes": size, "content_hash": None, "exif_orientation": None,
        "label": label, "split": split, "valid": False, "reason": reason,
    }


def _extension_reason(name: str) -> str | None:
    ext = posixpath.splitext(name)[1].lower()
    if ext in IMAGE_EXTENSIONS:
        return None
    if archive_kind(name) is not None:
        return "nested archive: not expanded"
    return f"not an image file: extension {ext or '(none)'!r}"


def _folders(path: str) -> list[str]:
    return [p for p in path.split("/")[:-1] if p not in ("", ".")]


def _folder_label(paths: list[str]) -> str | None:
    """The nearest folder that is not a split folder, looking in each path in turn."""
    for p in paths:
        for folder in reversed(_folders(p)):
            if folder.lower() not in SPLIT_FOLDERS:
                return folder
    return None


def _path_split(paths: list[str]) -> str | None:
    """The split named by the nearest split folder in the paths, or None."""
    for p in paths:
        for folder in reversed(_folders(p)):
            if folder.lower() in SPLIT_FOLDERS:
                return SPLIT_FOLDERS[folder.lower()]
    return None
