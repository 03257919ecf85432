"""Sweeping scratch: what killed steps left behind (used by the scratch resource and by heavy
steps, which run without the platform's resources)."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

# Kept across runs on purpose: the tensor step's working copy of each dataset (on EFS).
PERSISTENT = ("tensors-cache",)


def sweep_stale(root: Path, max_age_hours: float = 24.0) -> list[str]:
    """Remove what a killed step left under `root`: every entry (but the persistent ones) in
    which nothing changed for `max_age_hours`. Returns the names removed."""
    cutoff, removed = time.time() - max_age_hours * 3600, []
    for entry in sorted(root.iterdir()) if root.is_dir() else []:
        if entry.name in PERSISTENT:
            continue
        try:
            newest = max([entry.lstat().st_mtime] + ([c.lstat().st_mtime for c in entry.iterdir()]
                                                     if entry.is_dir() else []))
        except OSError:
            continue  # removed meanwhile by its own step
        if newest < cutoff:
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)
            removed.append(entry.name)
    return removed
