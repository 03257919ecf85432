"""Draft an image dataset's contract from a sample: a folder of images, one image, or an archive.

The draft says what was found (how many images, which formats, how many invalid and why) in
comments, and proposes settings: labels from folders when the images sit in sub-folders, a
tensor size no larger than the typical image (224 when they are at least that large), crop.
"""

from __future__ import annotations

import statistics
from collections import Counter
from pathlib import Path

from .archives import ArchiveError, archive_kind
from .manifest import manifest_rows
from .settings import ARCHIVE_EXTENSIONS, IMAGE_EXTENSIONS

MAX_FILES = 2000  # a draft looks at a sample, not a whole corpus


def is_image_sample(path: Path) -> bool:
    """Whether `path` is something an image contract is drafted from."""
    return path.is_dir() or path.name.lower().endswith(IMAGE_EXTENSIONS + ARCHIVE_EXTENSIONS)


def draft_image_contract(path: Path, dataset: str) -> tuple[dict, list[str]]:
    """Return (contract dict, comment lines describing the sample). Raises ValueError when the
    sample holds no valid image."""
    files = sorted(p for p in path.rglob("*") if p.is_file())[:MAX_FILES] if path.is_dir() \
        else [path]
    rows = []
    for f in files:
        key = f.relative_to(path).as_posix() if path.is_dir() else f.name
        try:
            rows += list(manifest_rows(f, key=key))
        except ArchiveError as e:
            rows.append({"valid": False, "reason": f"damaged archive: {e}", "key": key,
                         "label": None, "format": None})
    valid = [r for r in rows if r["valid"]]
    if not valid:
        raise ValueError(f"no valid image in {path} ({len(rows)} file(s) or member(s) looked at)")
    labels = Counter(r["label"] for r in valid if r["label"])
    short = statistics.median(min(r["width"], r["height"]) for r in valid)
    side = 224 if short >= 224 else max(32, int(short) // 32 * 32)
    images = {"size": [side, side], "fit": "crop", "labels": "folder" if labels else "none"}
    contract = {"name": dataset, "kind": "images",
                "description": f"Images drafted from {path.name}.", "images": images,
                "checks": {"rejected_share_warn": 0.01, "rejected_share_error": 0.10}}
    notes = [f"{len(rows)} image(s) seen ({sum(1 for f in files if archive_kind(f.name))} "
             f"archive(s)), {len(valid)} valid",
             "formats: " + ", ".join(f"{k} {n}" for k, n in
                                     Counter(r["format"] for r in valid).most_common()),
             f"median shorter side {int(short)} px: tensors of {side}x{side}"]
    if labels:
        notes.append("labels from folders: " + ", ".join(
            f"{k} ({n})" for k, n in labels.most_common(10))
            + (" ..." if len(labels) > 10 else ""))
    reasons = Counter((r["reason"] or "").split(":")[0] for r in rows if not r["valid"])
    if reasons:
        notes.append("invalid: " + ", ".join(f"{k} ({n})" for k, n in reasons.most_common(5)))
    return contract, notes
