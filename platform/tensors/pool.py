"""Decode jobs for the tensor writer, in this process or in a pool, always in input order.

A job turns an image source (bytes, a file path, or a callable returning bytes) into the
decoded array plus its exact per-channel pixel sums, so the parent never touches pixels except
to copy them into a shard. With `workers > 1` jobs run in a process pool (decoding holds the
GIL); at most a small window of jobs is in flight, so memory stays bounded whatever the
dataset size, and results are yielded in submission order, so shards are byte-identical
whatever the number of workers.
"""

from __future__ import annotations

import multiprocessing
import os
import pickle
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

from ..images.decode import DecodeError, DecodeSettings

Source = bytes | os.PathLike | str | Callable[[], bytes]
DecodeFn = Callable[[bytes, DecodeSettings], np.ndarray]

_worker_state: dict = {}


def read_source(source: Source) -> bytes:
    """The image bytes a source stands for; raises TypeError for an unknown kind of source."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        return bytes(source)
    if isinstance(source, (str, os.PathLike)):
        return Path(source).read_bytes()
    if callable(source):
        return source()
    raise TypeError(f"an image source must be bytes, a path or a callable, not {type(source)}")


def pixel_sums(arr: np.ndarray) -> tuple[int, ...]:
    """(sum_r, sum_g, sum_b, sumsq_r, sumsq_g, sumsq_b) of an HxWx3 uint8 array, exactly.

    Built from Pillow's per-band histogram (C, one pass: about 5x faster here than numpy's
    bincount per channel), so the sums are exact integers with no float rounding.
    """
    hist = np.asarray(Image.fromarray(arr).histogram(), dtype=np.int64).reshape(3, 256)
    values = np.arange(256, dtype=np.int64)
    return tuple(int(v) for v in np.concatenate([hist @ values, hist @ (values * values)]))


def run_job(source: Source, settings: DecodeSettings, decode: DecodeFn):
    """Decode one source: (array, sums), or (None, error message) when it is not an image.

    Errors other than DecodeError (a source that cannot be read, a decode function returning
    the wrong shape) propagate.
    """
    try:
        arr = decode(read_source(source), settings)
    except DecodeError as e:
        return None, str(e)
    if arr.dtype != np.uint8 or arr.shape != settings.shape:
        raise ValueError(f"decode returned {arr.shape} {arr.dtype}, not {settings.shape} uint8")
    return arr, pixel_sums(arr)


def _init_worker(settings: DecodeSettings, decode: DecodeFn) -> None:
    _worker_state["settings"], _worker_state["decode"] = settings, decode


def _pool_job(source: Source):
    return run_job(source, _worker_state["settings"], _worker_state["decode"])


def _portable(source: Source) -> Source:
    """A source a worker can receive: callables that cannot be pickled are read here instead."""
    if callable(source) and not isinstance(source, (str, os.PathLike)):
        try:
            pickle.dumps(source)
        except Exception:  # lambdas, closures, bound methods of unpicklable objects
            return read_source(source)
    return source


def _os_threads() -> int:
    """Threads of this process as the kernel sees them: Python's and native ones (Arrow's pools
    and jemalloc's background thread once Parquet was read, OpenBLAS's), which `threading`
    does not count."""
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        return 2  # no /proc: assume threads, never fork


def _context():
    """fork when this process has no other thread at all, native ones included: cheap and
    safe. Otherwise forkserver with the decoder preloaded: a forked child of a threaded process
    inherits locks held mid-operation and thread objects without their threads (a Pipes step
    that had read Parquet, so Arrow's threads ran, and forked its decode workers aborted with
    SIGABRT, "terminate called without an active exception", now and then). Not spawn, because
    each spawned worker imports numpy and Pillow from scratch (about a second for two workers
    here, as long as a small job)."""
    methods = multiprocessing.get_all_start_methods()
    if _os_threads() == 1 and "fork" in methods:
        return multiprocessing.get_context("fork")
    if "forkserver" in methods:
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload([__name__])
        return ctx
    return multiprocessing.get_context("spawn")


class _Done:
    """A result already known in the parent (a copy from an old shard), queued in order."""

    def __init__(self, value):
        self.value = value

    def result(self):
        return self.value


def ordered_jobs(items: Iterable, settings: DecodeSettings, decode: DecodeFn,
                 workers: int = 1) -> Iterator[tuple[object, object]]:
    """Yield (tag, result) in input order for `items` of (tag, source_or_None, ready_value).

    An item with a source is decoded (result: run_job's pair); one without yields its
    `ready_value` untouched. Raises what a job raised, at that job's turn.
    """
    if workers <= 1:
        for tag, source, ready in items:
            yield tag, (run_job(source, settings, decode) if source is not None else ready)
        return
    ctx = _context()
    window = workers * 4
    pending: deque[tuple[object, Future | _Done]] = deque()
    with ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_worker,
                             initargs=(settings, decode)) as pool:
        try:
            for tag, source, ready in items:
                job = pool.submit(_pool_job, _portable(source)) if source is not None else _Done(ready)
                pending.append((tag, job))
                while len(pending) > window or (pending and isinstance(pending[0][1], _Done)):
                    t, j = pending.popleft()
                    yield t, j.result()
            while pending:
                t, j = pending.popleft()
                yield t, j.result()
        finally:
            for _, j in pending:
                if isinstance(j, Future):
                    j.cancel()
