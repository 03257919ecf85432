"""What the object stores hand out: an object's info and signature, a pinned local copy, and
the errors they raise."""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable
from pathlib import Path


@dataclasses.dataclass(frozen=True)
class ObjectInfo:
    """One stored object: key relative to the store's root, size, modification time (ns), and
    what tells its versions apart (inode and change time locally; ETag and VersionId on S3)."""

    key: str
    size: int
    mtime_ns: int
    etag: str | None = None
    ctime_ns: int | None = None
    inode: int | None = None
    version_id: str | None = None

    @property
    def changed_ns(self) -> int:
        """When the object last changed, for ordering: the kernel sets ctime on every write,
        rename and timestamp change (nobody can set it back), so a copy with an old mtime
        still sorts as recent. Without a ctime (S3) it is the modification time."""
        return max(self.mtime_ns, self.ctime_ns or 0)

    @property
    def signature(self) -> str:
        """A short string, equal for an unchanged object and different once it is rewritten,
        renamed over or copied over. Costs no read of the content."""
        parts = (self.size, self.mtime_ns, self.ctime_ns, self.inode, self.etag)
        return hashlib.blake2b(repr(parts).encode(), digest_size=10).hexdigest()


class VersionChanged(Exception):
    """The object is no longer the version that was asked for."""


@dataclasses.dataclass
class Pinned:
    """A local file holding exactly one version of an object (`info`) while its context lasts."""

    path: Path
    info: ObjectInfo
    check: Callable[[], None] | None = None

    def verify(self) -> None:
        """Raise VersionChanged if the bytes at `path` may not have been `info`'s all along
        (a file read in place that was written to or replaced meanwhile)."""
        if self.check is not None:
            self.check()


class ReadOnlyError(PermissionError):
    """A write was attempted on the raw zone."""
