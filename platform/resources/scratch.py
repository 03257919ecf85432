"""Scratch space for heavy steps: a local temp folder here, the EFS mount on AWS."""

from __future__ import annotations

import abc
import contextlib
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
from pydantic import Field

from ..settings import local_path, setting


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


class ScratchResource(dg.ConfigurableResource, abc.ABC):
    """Hands out private working folders that are removed afterwards."""

    @abc.abstractmethod
    def tempdir(self, prefix: str = "work-") -> contextlib.AbstractContextManager[Path]:
        """Context manager yielding a fresh folder, deleted on exit."""

    @abc.abstractmethod
    def root(self) -> Path:
        """The scratch folder (a local path or the EFS mount)."""

    def sweep(self, max_age_hours: float = 24.0) -> list[str]:
        """Remove stale leftovers of killed steps (see `sweep_stale`); returns their names."""
        return sweep_stale(self.root(), max_age_hours)


class LocalScratch(ScratchResource):
    """Scratch under a local folder ($PLATFORM_SCRATCH_DIR or <data dir>/scratch)."""

    scratch_dir: str | None = Field(default=None, description="Folder for working files")

    def root(self) -> Path:
        root = local_path(setting(self.scratch_dir, "PLATFORM_SCRATCH_DIR", "scratch"))
        root.mkdir(parents=True, exist_ok=True)
        return root

    @contextlib.contextmanager
    def tempdir(self, prefix: str = "work-") -> Iterator[Path]:
        path = Path(tempfile.mkdtemp(prefix=prefix, dir=self.root()))
        try:
            yield path
        finally:
            shutil.rmtree(path, ignore_errors=True)
