"""Write-behind flushing of the files an engine is writing, so durability costs no wall time.

A staged file is made durable (fsync) before its staging record says STAGED. Flushing 340 MB
of Parquet that the COPY has just written takes ~0.6 s here, and all of it after the COPY.
While the COPY runs, a thread flushes what is written so far every half second (fdatasync),
so the disk writes while the CPU parses and the final fsync finds almost nothing left.
"""

from __future__ import annotations

import contextlib
import os
import threading
from pathlib import Path

EVERY = 0.5  # seconds between two flushes of the files written so far


class FlushBehind:
    """Context manager: while open, flushes every `*.parquet` file under `root` to disk every
    `every` seconds, in a thread that only waits on the disk. Files may appear, grow, be
    renamed or vanish meanwhile (the engine owns them): those are skipped."""

    def __init__(self, root: Path, *, every: float = EVERY, enabled: bool = True):
        self.root, self.every, self.enabled = root, every, enabled
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.flushes = 0

    def __enter__(self) -> FlushBehind:
        if self.enabled:
            self._thread = threading.Thread(target=self._run, name="flush-behind", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            self.flush_once()

    def flush_once(self) -> None:
        try:
            paths = list(self.root.rglob("*.parquet"))
        except OSError:  # a folder the engine removed while it was listed: next time
            return
        for path in paths:
            with contextlib.suppress(OSError):  # renamed or removed by the engine meanwhile
                fd = os.open(path, os.O_RDONLY)
                try:
                    os.fdatasync(fd)
                    self.flushes += 1
                finally:
                    os.close(fd)
