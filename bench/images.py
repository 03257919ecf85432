"""Benchmark: JPEG -> 256x256 uint8 tensors, the writer's own path against a naive baseline.

Generates photo-like JPEGs (smooth gradients, overlapping shapes, blur, sensor-like noise;
quality 90; every third one with an EXIF orientation other than 1) at camera size (4000x3000)
and small size (640x480), then times, in this one run:

- naive: Pillow open -> convert("RGB") -> resize((256, 256)), one process (no shard write);
- ours: `write_tensors(...)` end to end (decode with `draft`, orientation, crop, resize, pixel
  sums, shard write with fsync, index), with workers=1 (in process) and workers=2 (process
  pool, its start-up included).

Per-core ratios compare ours with workers=1 against naive. Scaling compares workers=2 with
workers=1 on a camera workload long enough (the camera files several times over, each a
distinct sample) that pool start-up is amortised as it is in a real run; best of three
alternating rounds by default. Each round also times the host's ceiling: the bare decode of
the same images in one process and in two forked ones (no pool, no writer), because on a
shared host what two cores give varies from minute to minute (1.5x to 2.1x measured here). Also reports how far
ours is from a slow reference (full decode, exif_transpose, ImageOps.fit with lanczos).

Last line, exactly: `speedup=<camera ratio per core> small=<small ratio> scaling=<2/1 cores>`.
Usage: python bench/images.py [--quick] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import io
import os
import resource
import shutil
import sys
import tempfile
import time
from multiprocessing import Pool
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageOps

from data_platform.images.decode import DecodeSettings, decode
from data_platform.tensors.pool import run_job
from data_platform.tensors.writer import Sample, write_tensors

SETTINGS = DecodeSettings(size=(256, 256))


def photo_jpeg(args: tuple[int, int, int]) -> bytes:
    """A photo-like JPEG of (width, height, seed): not flat colour, so the decoder works."""
    w, h, seed = args
    rng = np.random.default_rng(seed)
    grid = rng.integers(0, 256, (5, 7, 3), dtype=np.uint8)
    img = Image.fromarray(grid).resize((w, h), Image.Resampling.BICUBIC)
    draw = ImageDraw.Draw(img)
    for _ in range(40):
        x, y = int(rng.integers(0, w)), int(rng.integers(0, h))
        r = int(rng.integers(w // 80, w // 6))
        colour = tuple(int(v) for v in rng.integers(0, 256, 3))
        if rng.random() < 0.5:
            draw.ellipse([x - r, y - r, x + r, y + r], fill=colour)
        else:
            draw.rectangle([x - r, y - r // 2, x + r, y + r // 2], fill=colour)
    img = img.filter(ImageFilter.BoxBlur(max(1, w // 1000)))
    noise = rng.integers(-10, 11, (h, w, 3), dtype=np.int16)
    arr = np.clip(np.asarray(img, dtype=np.int16) + noise, 0, 255).astype(np.uint8)
    out = io.BytesIO()
    exif = Image.Exif()
    if seed % 3 == 0:
        exif[0x0112] = (6, 8, 3)[seed // 3 % 3]
    Image.fromarray(arr).save(out, "JPEG", quality=90, exif=exif.tobytes())
    return out.getvalue()


def generate(folder: Path, kind: str, size: tuple[int, int], n: int, seed0: int) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    with Pool(os.cpu_count() or 2) as pool:
        blobs = pool.map(photo_jpeg, [(*size, seed0 + i) for i in range(n)])
    paths = []
    for i, blob in enumerate(blobs):
        p = folder / f"{kind}-{i:04d}.jpg"
        p.write_bytes(blob)
        paths.append(p)
    return paths


class Clock:
    """Wall and CPU seconds of this process (CPU: what one core spent, whatever else runs)."""

    def __enter__(self):
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        self.children = self._children()
        return self

    def __exit__(self, *exc):
        self.wall = time.perf_counter() - self.wall
        self.cpu = time.process_time() - self.cpu
        self.children = self._children() - self.children

    @staticmethod
    def _children() -> float:
        """CPU of finished child processes (pool workers, when forked from this process)."""
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        return usage.ru_utime + usage.ru_stime


def naive(paths: list[Path]) -> Clock:
    with Clock() as clock:
        for p in paths:
            with Image.open(p) as img:
                np.asarray(img.convert("RGB").resize((256, 256)))
    return clock


def ours(paths: list[Path], out: Path, workers: int) -> tuple[Clock, dict]:
    samples = [Sample(key=p.name, member=str(i), content_hash=f"{i}:{p.name}", label=0,
                      split="train", source=p) for i, p in enumerate(paths)]
    shutil.rmtree(out, ignore_errors=True)
    with Clock() as clock:
        summary = write_tensors(samples, out, SETTINGS, workers=workers)
    assert summary["decoded"] == len(paths) and not summary["failed"], summary
    return clock, summary


def bare(data: list[bytes], workers: int) -> Clock:
    """The host's ceiling: the same decode (`run_job`) over images already in memory, in
    `workers` processes forked at the start, each taking every workers-th image; no pool, no
    shards. What two cores give at this moment, whatever the code around the decode does."""
    with Clock() as clock:
        if workers == 1:
            for b in data:
                run_job(b, SETTINGS, decode)
        else:
            pids = []
            for k in range(workers):
                pid = os.fork()
                if pid == 0:  # pragma: no cover - the child
                    try:
                        for b in data[k::workers]:
                            run_job(b, SETTINGS, decode)
                    finally:
                        os._exit(0)
                pids.append(pid)
            for pid in pids:
                os.waitpid(pid, 0)
    return clock


def quality(paths: list[Path], out: Path) -> float:
    """Mean absolute difference (0..255) between ours and the slow reference, over `paths`."""
    ours(paths, out, 1)
    from data_platform.tensors.reader import open_dataset

    ds = open_dataset(out)
    diffs = []
    for i, p in enumerate(paths):
        with Image.open(p) as img:
            ref = ImageOps.fit(ImageOps.exif_transpose(img).convert("RGB"), SETTINGS.size,
                               Image.Resampling.LANCZOS)
        diffs.append(np.abs(ds[i][0].astype(int) - np.asarray(ref, dtype=int)).mean())
    return float(np.mean(diffs))


def row(name: str, n: int, clock: Clock) -> None:
    cpu = f"{clock.cpu:>7.2f} s cpu {n / clock.cpu:>7.1f} img/cpu-s" if clock.cpu > 0.05 else ""
    print(f"{name:<36} {n:>5} images {clock.wall:>7.2f} s wall {n / clock.wall:>7.1f} img/s "
          f"{cpu}", flush=True)


def load() -> str:
    return "load average %.2f %.2f %.2f" % os.getloadavg()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="a smaller run (under 30 s)")
    ap.add_argument("--workdir", type=Path, help="where images and shards go (default: temp)")
    args = ap.parse_args(argv)
    n_cam, n_small, repeat, rounds = (3, 50, 5, 1) if args.quick else (16, 400, 12, 3)
    work = args.workdir or Path(tempfile.mkdtemp(prefix="bench-images-"))
    try:
        t = time.perf_counter()
        cams = generate(work / "src", "camera", (4000, 3000), n_cam, 0)
        smalls = generate(work / "src", "small", (640, 480), n_small, 10_000)
        print(f"generated {n_cam} camera (4000x3000) and {n_small} small (640x480) JPEGs, q90, "
              f"in {time.perf_counter() - t:.1f} s; {os.cpu_count()} cores", flush=True)

        print(f"before timing: {load()} (other work on this machine skews wall times; "
              "per-core ratios use this process's CPU time)", flush=True)
        results = {}
        for kind, paths in (("camera", cams), ("small", smalls)):
            # Warm both sides: page cache, Pillow's plugins, and one-time imports (pyarrow
            # imports pandas on its first array) that are no per-image cost.
            naive(paths[:2])
            ours(paths[:2], work / "warm", 1)
            results[kind, "naive"] = naive(paths)
            row(f"{kind}: naive Pillow, 1 process", len(paths), results[kind, "naive"])
            results[kind, "ours"], _ = ours(paths, work / "out", 1)
            row(f"{kind}: write_tensors workers=1", len(paths), results[kind, "ours"])

        # Alternating, best of `rounds` each: bursts of other load hit both sides alike.
        long = cams * repeat
        long_bytes = [p.read_bytes() for p in long]
        ones, twos, ceilings = [], [], []
        for _ in range(rounds):
            ones.append(ours(long, work / "out", 1)[0])
            row("camera x%d: write_tensors workers=1" % repeat, len(long), ones[-1])
            twos.append(ours(long, work / "out", 2)[0])
            row("camera x%d: write_tensors workers=2" % repeat, len(long), twos[-1])
            b1, b2 = bare(long_bytes, 1), bare(long_bytes, 2)
            row("camera x%d: bare decode, 1 process" % repeat, len(long), b1)
            row("camera x%d: bare decode, 2 forked" % repeat, len(long), b2)
            ceilings.append(b1.wall / b2.wall)
        one, two = min(ones, key=lambda c: c.wall), min(twos, key=lambda c: c.wall)
        small_two, _ = ours(smalls, work / "out", 2)
        row("small: write_tensors workers=2", len(smalls), small_two)
        print(f"after timing: {load()}")

        diff = quality(cams[:3] + smalls[:3], work / "quality")
        print(f"mean |ours - reference| = {diff:.2f} / 255 (reference: full decode, "
              "exif_transpose, ImageOps.fit lanczos)")
        for kind in ("camera", "small"):
            a, b = results[kind, "naive"], results[kind, "ours"]
            print(f"{kind}: ours/naive per core (cpu) {a.cpu / b.cpu:.2f}, wall {a.wall / b.wall:.2f}")
        print(f"small scaling 2/1 = {results['small', 'ours'].wall / small_two.wall:.2f} "
              "(pool start-up not amortised at this size)")
        speedup = results["camera", "naive"].cpu / results["camera", "ours"].cpu
        small = results["small", "naive"].cpu / results["small", "ours"].cpu
        total_two = two.cpu + two.children
        if two.children > 0:
            print(f"camera x{repeat}: CPU of workers=1 {one.cpu:.2f} s, of workers=2 {total_two:.2f} s "
                  f"(pool overhead {100 * (total_two / one.cpu - 1):+.0f}%); wall scaling is "
                  f"bounded by the cores other processes leave free")
        print(f"host ceiling 2/1 (bare forked decode, per round): "
              f"{', '.join(f'{c:.2f}' for c in ceilings)}; ours per round: "
              f"{', '.join(f'{a.wall / b.wall:.2f}' for a, b in zip(ones, twos))} (the "
              "target, 1.8, is judged on the best rounds below; a ceiling under it means "
              "the host, not the code, held the run back)")
        print(f"speedup={speedup:.2f} small={small:.2f} scaling={one.wall / two.wall:.2f}")
    finally:
        if args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
