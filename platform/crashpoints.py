"""Named points where the process can be made to die as if killed, for crash-safety tests.

`PLATFORM_CRASH_AT` names one or more points (comma-separated) and `PLATFORM_CRASH_DIR` a folder
for markers: the first process to reach a named point writes `<dir>/<point>` and sends itself
SIGKILL (no cleanup, no `finally`, no event: exactly what the OOM killer or a closed laptop
does). A point fires once per marker folder, so the retried run gets through. Both variables
unset (always, outside tests) makes every point a no-op costing one dictionary lookup.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

POINTS = {
    "stage": "a file cleaned into scratch, not yet moved into the table's data folder",
    "before-commit": "every file staged and recorded, nothing committed",
    "commit": "the data table committed; rejected rows, ledger and records not yet",
}


def crash_point(name: str) -> None:
    """Die here by SIGKILL if the environment asks for it (once per marker folder)."""
    spec = os.environ.get("PLATFORM_CRASH_AT")
    if not spec or name not in spec.split(","):
        return
    folder = os.environ.get("PLATFORM_CRASH_DIR")
    if not folder:
        return
    try:
        fd = os.open(Path(folder) / name, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        return
    os.write(fd, str(os.getpid()).encode())
    os.close(fd)
    os.kill(os.getpid(), signal.SIGKILL)
