"""The `images:` section of an image dataset's contract, and the columns of its manifest.

    kind: images
    images:
      size: [256, 256]        # width, height of every tensor
      fit: crop               # crop (center) | pad
      resample: bilinear      # the resize filter (antialiased)
      split: {train: 0.8, val: 0.1, test: 0.1}   # by content hash, unless a split folder says
      labels: folder          # folder (raw/<ds>/<label>/...) | none | a CSV key (path,label)
      max_pixels: 64000000    # larger images are invalid (checked before decoding)
      shard_mb: 128           # target tensor shard size

Every key is optional. This module has no dependency on the rest of the platform so the
contract parser can use it.
"""

from __future__ import annotations

import dataclasses
from typing import Any

# The manifest's columns as contract (name, type, nullable): one row per image seen.
MANIFEST_COLUMNS = (
    ("key", "string", False),
    ("member", "string", True),
    ("format", "string", True),
    ("mode", "string", True),
    ("width", "int", True),
    ("height", "int", True),
    ("bytes", "int", False),
    ("content_hash", "string", True),  # None for a member that was not read (unsafe, bomb)
    ("exif_orientation", "int", True),
    ("label", "string", True),
    ("split", "string", True),
    ("valid", "bool", False),
    ("reason", "string", True),
)
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".tif", ".tiff", ".gif", ".bmp")
ARCHIVE_EXTENSIONS = (".zip", ".tar", ".tar.gz", ".tgz")
FITS = ("crop", "pad")
RESAMPLES = ("nearest", "box", "bilinear", "hamming", "bicubic", "lanczos")


@dataclasses.dataclass(frozen=True)
class ImageSettings:
    """How an image dataset's uploads are described and turned into tensors."""

    size: tuple[int, int] = (256, 256)
    fit: str = "crop"
    resample: str = "bilinear"
    split: tuple[tuple[str, float], ...] = (("train", 0.8), ("val", 0.1), ("test", 0.1))
    labels: str = "folder"
    max_pixels: int = 64_000_000
    shard_mb: int = 128

    @property
    def labels_csv(self) -> str | None:
        """The key (under raw/<dataset>/) of the labels CSV, when labels come from one."""
        return None if self.labels in ("folder", "none") else self.labels

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["size"], d["split"] = list(self.size), dict(self.split)
        return d


def parse_image_settings(data: Any) -> ImageSettings:
    """Validate the `images:` mapping (None for all defaults); raises ValueError saying what is
    wrong."""
    if data is None:
        return ImageSettings()
    if not isinstance(data, dict):
        raise ValueError("images must be a mapping")
    known = {f.name for f in dataclasses.fields(ImageSettings)}
    if set(data) - known:
        raise ValueError(f"unknown images keys {sorted(set(data) - known)}")
    kw: dict[str, Any] = {}
    if "size" in data:
        size = data["size"]
        if isinstance(size, int):
            size = [size, size]
        if not (isinstance(size, list) and len(size) == 2
                and all(type(v) is int and 8 <= v <= 4096 for v in size)):
            raise ValueError("images.size must be [width, height], each 8..4096")
        kw["size"] = tuple(size)
    for name, allowed in (("fit", FITS), ("resample", RESAMPLES)):
        if name in data:
            if data[name] not in allowed:
                raise ValueError(f"images.{name} must be one of {allowed}")
            kw[name] = data[name]
    if "split" in data:
        split = data["split"]
        if not (isinstance(split, dict) and split
                and all(isinstance(k, str) and isinstance(v, (int, float)) and v >= 0
                        for k, v in split.items())):
            raise ValueError("images.split must map split names to fractions >= 0")
        if abs(sum(split.values()) - 1.0) > 1e-6:
            raise ValueError(f"images.split fractions must sum to 1, not {sum(split.values())}")
        kw["split"] = tuple((k, float(v)) for k, v in split.items())
    if "labels" in data:
        labels = data["labels"]
        if not isinstance(labels, str) or not labels or (
                labels not in ("folder", "none") and not labels.lower().endswith(".csv")):
            raise ValueError("images.labels must be folder, none or the key of a .csv file")
        kw["labels"] = labels
    for name, low in (("max_pixels", 1), ("shard_mb", 1)):
        if name in data:
            if type(data[name]) is not int or data[name] < low:
                raise ValueError(f"images.{name} must be a positive integer")
            kw[name] = data[name]
    return ImageSettings(**kw)
