"""Bench: how fast image uploads are validated (run by hand: `python bench/images_probe.py`).

- probe: `probe_image` on JPEGs (1/8-scale DCT decode) against a full-size `load()`, and on PNGs,
  at 640x480 and 12 MP, in images per second on one core;
- manifest: `manifest_rows` over a tar.gz of 640x480 JPEGs, rows per second.
Generated images are photo-like (smooth gradients with noise) so the codecs do real work.
"""

from __future__ import annotations

import argparse
import io
import random
import tarfile
import tempfile
import time
from pathlib import Path

from PIL import Image

from data_platform.images.manifest import manifest_rows
from data_platform.images.probe import probe_image


def photo(size: tuple[int, int], seed: int) -> Image.Image:
    w, h = size
    grad = Image.linear_gradient("L").resize(size)
    noise = Image.frombytes("L", size, random.Random(seed).randbytes(w * h))
    return Image.merge("RGB", (grad, Image.blend(grad, noise, 0.3),
                               grad.transpose(Image.Transpose.FLIP_LEFT_RIGHT)))


def encode(img: Image.Image, fmt: str) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **({"quality": 90} if fmt == "JPEG" else {}))
    return buf.getvalue()


def rate(fn, items: list[bytes], min_seconds: float) -> float:
    n, start = 0, time.perf_counter()
    while True:
        for item in items:
            fn(item)
            n += 1
        elapsed = time.perf_counter() - start
        if elapsed >= min_seconds:
            return n / elapsed


def full_load(data: bytes) -> None:
    with Image.open(io.BytesIO(data)) as img:
        img.load()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=3.0, help="minimum time per measurement")
    parser.add_argument("--members", type=int, default=300, help="JPEGs in the tar.gz")
    args = parser.parse_args()
    limit = 200_000_000
    for size in ((640, 480), (4000, 3000)):
        jpegs = [encode(photo(size, s), "JPEG") for s in range(3)]
        pngs = [encode(photo(size, s), "PNG") for s in range(2)]
        label = f"{size[0]}x{size[1]}"

        def probe(d: bytes) -> None:
            probe_image(d, max_pixels=limit)
        kib = len(jpegs[0]) // 1024
        print(f"{label:>10} JPEG probe (draft) {rate(probe, jpegs, args.seconds):7.1f} img/s"
              f"  ({kib} KiB each)")
        print(f"{label:>10} JPEG full load()   {rate(full_load, jpegs, args.seconds):7.1f} img/s")
        kib = len(pngs[0]) // 1024
        print(f"{label:>10} PNG  probe         {rate(probe, pngs, args.seconds):7.1f} img/s"
              f"  ({kib} KiB each)")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "upload.tgz"
        with tarfile.open(path, "w:gz") as tf:
            for i in range(args.members):
                data = encode(photo((640, 480), i), "JPEG")
                info = tarfile.TarInfo(f"label{i % 5}/{i}.jpg")
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))
        start = time.perf_counter()
        rows = list(manifest_rows(path, key="batch/upload.tgz", max_pixels=limit))
        elapsed = time.perf_counter() - start
        assert len(rows) == args.members and all(r["valid"] for r in rows)
        print(f"manifest of a {path.stat().st_size // 1024 // 1024} MiB tar.gz: "
              f"{len(rows) / elapsed:.1f} rows/s ({len(rows)} rows, {elapsed:.2f} s)")


if __name__ == "__main__":
    main()
