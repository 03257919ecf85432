"""Compute logs of local runs: Dagster's files, mirrored to the terminal by a thread.

Dagster's `LocalComputeLogManager` points the run process's stdout and stderr at files (what the
UI shows) and mirrors each file to the terminal with a `tail -F` process, watched by a second
Python process that kills the tail if the run dies: four processes per run. Ending them is on
the run's path: measured in ingest job timelines, 10-50 ms after the last step (the run is over
only when they are), and ~30 ms of CPU to start them while the run cleans its file. `tail -F`
also polls the file once a second, and Dagster stops it without waiting for it, so the last
lines of a run can miss the terminal (dagster-io/dagster#23336).

`MirroredComputeLogManager` keeps the files, their paths and everything the UI reads (it is
Dagster's manager, with `capture_logs` replaced): the process's file descriptors point at the
same files; a thread copies what is appended to them to the terminal every POLL seconds and, when
the capture ends, copies the rest before the run goes on. No process is started, so none can be
orphaned. A process killed outright leaves its files complete (its output went there directly);
only the terminal may miss its last POLL seconds, as with the tail.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from collections.abc import Generator, Sequence

from dagster._core.execution.compute_logs import _fileno, redirect_to_file
from dagster._core.storage.compute_log_manager import CapturedLogContext, ComputeIOType
from dagster._core.storage.local_compute_log_manager import (
    IO_TYPE_EXTENSION,
    LocalComputeLogManager,
)
from dagster._utils import ensure_file, touch_file

POLL = 0.2  # seconds between copies to the terminal
CHUNK = 1 << 16
DRAIN_TIMEOUT = 5.0  # a terminal that takes no more output does not hold the run longer


class _Mirror:
    """A thread copying what is appended to `path` (from its start) to file descriptor `fd`."""

    def __init__(self, path: str, fd: int):
        self.path, self.fd = path, fd
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, name="compute-log-mirror", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            with open(self.path, "rb") as f:
                while True:
                    ending = self.done.wait(POLL)
                    while chunk := f.read(CHUNK):
                        view = memoryview(chunk)
                        while view:
                            view = view[os.write(self.fd, view):]
                    if ending:
                        return
        except OSError:  # the terminal went away (closed pipe): the file keeps everything
            return

    def stop(self) -> None:
        """Copy the rest and stop; closes `fd` unless the terminal blocks the last copy."""
        self.done.set()
        self.thread.join(DRAIN_TIMEOUT)
        if not self.thread.is_alive():
            os.close(self.fd)


@contextlib.contextmanager
def mirrored_to_file(stream, path: str) -> Generator[None, None, None]:
    """Point `stream` (and its file descriptor) at `path`, copying it to where it pointed."""
    ensure_file(path)
    fd = _fileno(stream)
    if fd is None:  # not a real file (a test runner's capture): Dagster does not redirect it
        with redirect_to_file(stream, path):
            yield
        return
    mirror = _Mirror(path, os.dup(fd))
    try:
        with redirect_to_file(stream, path):
            yield
    finally:
        mirror.stop()


class MirroredComputeLogManager(LocalComputeLogManager):
    """Dagster's local compute log manager without the tail processes (see the module)."""

    @classmethod
    def from_config_value(cls, inst_data, config_value) -> "MirroredComputeLogManager":
        return cls(inst_data=inst_data, **config_value)

    @contextlib.contextmanager
    def capture_logs(self, log_key: Sequence[str]) -> Generator[CapturedLogContext, None, None]:
        out = self.get_captured_local_path(log_key, IO_TYPE_EXTENSION[ComputeIOType.STDOUT])
        err = self.get_captured_local_path(log_key, IO_TYPE_EXTENSION[ComputeIOType.STDERR])
        with mirrored_to_file(sys.stdout, out), mirrored_to_file(sys.stderr, err):
            yield CapturedLogContext(log_key)
        # as Dagster's: the artifact that tells the UI the capture is complete
        touch_file(self.complete_artifact_path(log_key))
