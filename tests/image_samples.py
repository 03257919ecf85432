"""Real image and archive files for the image tests, generated with Pillow, zipfile and tarfile."""

from __future__ import annotations

import io
import random
import tarfile
import zipfile
from pathlib import Path

from PIL import Image

# (format, mode) pairs that survive a save and reopen unchanged.
FORMAT_MODES = [
    ("JPEG", "L"), ("JPEG", "RGB"), ("JPEG", "CMYK"),
    ("PNG", "L"), ("PNG", "LA"), ("PNG", "P"), ("PNG", "RGB"), ("PNG", "RGBA"), ("PNG", "I;16"),
    ("WEBP", "RGB"), ("WEBP", "RGBA"),
    ("TIFF", "L"), ("TIFF", "RGB"), ("TIFF", "RGBA"), ("TIFF", "CMYK"), ("TIFF", "P"),
    ("TIFF", "I;16"),
    ("GIF", "P"),
    ("BMP", "L"), ("BMP", "P"), ("BMP", "RGB"),
]
EXT = {"JPEG": "jpg", "PNG": "png", "WEBP": "webp", "TIFF": "tif", "GIF": "gif", "BMP": "bmp"}


def picture(mode: str = "RGB", size: tuple[int, int] = (64, 48), seed: int = 0) -> Image.Image:
    """An image in `mode` with real structure (gradients, noise, varying alpha)."""
    r = Image.linear_gradient("L").resize(size)
    # Seeded noise, not Image.effect_noise: the same seed must give the same bytes.
    g = Image.frombytes("L", size, random.Random(seed).randbytes(size[0] * size[1]))
    b = r.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    rgb = Image.merge("RGB", (r, g, b))
    return {
        "RGB": lambda: rgb,
        "RGBA": lambda: Image.merge("RGBA", (r, g, b, b)),
        "L": lambda: g,
        "LA": lambda: Image.merge("LA", (g, r)),
        "P": lambda: rgb.quantize(16),
        "CMYK": lambda: rgb.convert("CMYK"),
        "I;16": lambda: g.convert("I").point(lambda v: v * 257).convert("I;16"),
    }[mode]()


def encode(img: Image.Image, fmt: str, **kwargs) -> bytes:
    """The image saved in `fmt`, as bytes."""
    buf = io.BytesIO()
    img.save(buf, fmt, **kwargs)
    return buf.getvalue()


def jpeg(seed: int = 0, size: tuple[int, int] = (64, 48), **kwargs) -> bytes:
    return encode(picture("RGB", size, seed), "JPEG", **kwargs)


def png(seed: int = 0, size: tuple[int, int] = (64, 48)) -> bytes:
    return encode(picture("RGB", size, seed), "PNG")


def tar_add(tf: tarfile.TarFile, name: str, data: bytes = b"", *,
            type: bytes = tarfile.REGTYPE, linkname: str = "") -> None:
    """Add a member of any type to an open tar."""
    info = tarfile.TarInfo(name)
    info.size = len(data) if type == tarfile.REGTYPE else 0
    info.type = type
    info.linkname = linkname
    tf.addfile(info, io.BytesIO(data) if type == tarfile.REGTYPE else None)


def write_tar(path: Path, members: list[tuple], *, gz: bool) -> Path:
    """Write a tar (gzip-compressed when `gz`) of (name, data[, type, linkname]) members."""
    with tarfile.open(path, "w:gz" if gz else "w") as tf:
        for name, data, *rest in members:
            tar_add(tf, name, data, type=rest[0] if rest else tarfile.REGTYPE,
                    linkname=rest[1] if len(rest) > 1 else "")
    return path


def write_zip(path: Path, members: list[tuple[str | zipfile.ZipInfo, bytes]]) -> Path:
    """Write a deflated zip of (name or ZipInfo, data) members."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members:
            if isinstance(name, zipfile.ZipInfo):
                name.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(name, data)
    return path


def zip_symlink(name: str, target: str) -> tuple[zipfile.ZipInfo, bytes]:
    """A zip member that unzip would create as a symlink (Unix mode S_IFLNK)."""
    info = zipfile.ZipInfo(name)
    info.create_system = 3
    info.external_attr = 0o120777 << 16
    return info, target.encode()


def tree(root: Path) -> set[str]:
    """Every path under root, relative, to compare before and after."""
    return {p.relative_to(root).as_posix() for p in root.rglob("*")}
