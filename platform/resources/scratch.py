"""Scratch space for heavy steps: a local temp folder here, the EFS mount on AWS."""

from __future__ import annotations

import abc
import contextlib
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
from pydantic import Field

from ..settings import local_path, setting
from ..sweep import sweep_stale


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
