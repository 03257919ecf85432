"""Object storage: the raw zone (read-only to the platform) and the lake zone.

`StorageResource` hands out two `ObjectStore`s, `raw()` and `lake()`, each rooted at a URL. Keys
are `/`-separated and relative to that root. The local implementation is a folder; an S3 one
implements the same interface. The raw store refuses every write: the platform never modifies
or deletes an upload.
"""

from __future__ import annotations

import abc
import contextlib
import hashlib
import io
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
from pydantic import Field

from ..settings import local_path, setting
from .objects import ObjectInfo, Pinned, ReadOnlyError, VersionChanged

__all__ = ["LocalObjectStore", "LocalStorage", "ObjectInfo", "ObjectStore", "Pinned",
           "ReadOnlyError", "StorageResource", "VersionChanged", "partial_file"]


class ObjectStore(abc.ABC):
    """A flat key space under one root URL."""

    read_only: bool = False
    # Whether `ObjectInfo.changed_ns` moves forward on every change of an object (local ctime);
    # when not (S3 LastModified is a multipart upload's start), readers look back a while.
    ordering_time_exact: bool = False

    @abc.abstractmethod
    def uri(self, key: str = "") -> str:
        """Return the URL of `key` (or of the root), usable by DuckDB or a catalog."""

    @abc.abstractmethod
    def list(self, prefix: str = "", start_after: str | None = None) -> Iterator[ObjectInfo]:
        """Yield every object under `prefix` (after the key `start_after`, if given), in key
        order."""

    @abc.abstractmethod
    def stat(self, key: str) -> ObjectInfo | None:
        """Return the object's info, or None if it does not exist."""

    @abc.abstractmethod
    def local_copy(self, key: str) -> contextlib.AbstractContextManager[Path]:
        """Context manager yielding a local, read-only path with the object's content."""

    @abc.abstractmethod
    def open_read(self, key: str) -> io.RawIOBase:
        """A seekable binary reader; remote stores fetch only the byte ranges that are read
        (reading a Parquet footer never downloads the file)."""

    @abc.abstractmethod
    def fetch(self, key: str, dest: Path, *, signature: str | None = None,
              hasher=None) -> ObjectInfo:
        """Copy the object's bytes to the local file `dest`; return the info of exactly the
        version copied. Raises FileNotFoundError if the object does not exist, and
        VersionChanged if `signature` is given and the object (before or during the copy) has
        another one; `dest` is then left absent, never partial. `hasher` (a hashlib object),
        when given, is fed exactly the bytes copied, in the same pass."""

    @contextlib.contextmanager
    def pinned(self, key: str, dest: Path, *, signature: str | None = None) -> Iterator[Pinned]:
        """Context manager yielding a local file with one version of the object: a copy at
        `dest` (fetched as `fetch` does), or the object itself where the store can vouch for it
        (call `verify()` after the last read). Raises like `fetch`."""
        yield Pinned(dest, self.fetch(key, dest, signature=signature))

    @abc.abstractmethod
    def put_file(self, local: Path, key: str, *, move: bool = False) -> None:
        """Store a local file at `key` atomically: readers see the old or the new object.

        With `move`, the local file is no longer needed: a store on the same file system may
        take it over instead of copying it."""

    keeps_moved_files = False  # put_file(move=True) takes the local file over (must be durable)

    def prepare_move(self, locals_: list[Path]) -> None:
        """Make local files that `put_file(move=True)` will take over durable ahead of it (they
        are complete and will not change); a no-op where put_file copies them anyway. It waits
        on the disk, not the CPU: a caller with other work runs it in a thread meanwhile."""

    @abc.abstractmethod
    def put_bytes(self, data: bytes, key: str) -> None:
        """Store bytes at `key` atomically."""

    @abc.abstractmethod
    def put_bytes_if_absent(self, data: bytes, key: str) -> bool:
        """Store bytes at `key` only if nothing is there (atomically); return whether stored."""

    @abc.abstractmethod
    def get_bytes(self, key: str) -> bytes | None:
        """Return the object's bytes, or None if it does not exist."""

    @abc.abstractmethod
    def delete(self, key: str) -> None:
        """Delete `key` if it exists."""

    @abc.abstractmethod
    def content_hash(self, key: str) -> str:
        """Return a digest of the object's content (equal content, equal digest)."""

    def _check_writable(self) -> None:
        if self.read_only:
            raise ReadOnlyError(f"{self.uri()} is read-only: raw data is never modified")


_PATTERN = re.compile(r"[*?\[\]{}\\]")


def _copy(src, out) -> None:
    """Copy in the kernel (no pass through user space), or by chunks where it cannot."""
    try:
        left = os.fstat(src.fileno()).st_size
        while left > 0:
            n = os.copy_file_range(src.fileno(), out.fileno(), left)
            if n == 0:
                break
            left -= n
    except OSError:  # a file system without it: start over, by chunks
        src.seek(0)
        out.seek(0)
        out.truncate()
        shutil.copyfileobj(src, out, 1 << 20)


def _clean_key(key: str) -> str:
    parts = [p for p in key.replace("\\", "/").split("/") if p not in ("", ".")]
    if any(p == ".." for p in parts):
        raise ValueError(f"invalid key {key!r}")
    return "/".join(parts)


def _local_info(key: str, st: os.stat_result) -> ObjectInfo:
    return ObjectInfo(key=key, size=st.st_size, mtime_ns=st.st_mtime_ns,
                      ctime_ns=st.st_ctime_ns, inode=st.st_ino)


@contextlib.contextmanager
def partial_file(dest: Path) -> Iterator[Path]:
    """A temp file next to `dest`, renamed onto it on success and removed otherwise."""
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, dest)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


class LocalObjectStore(ObjectStore):
    """An ObjectStore over a local folder; writes go through a temp file and os.replace."""

    ordering_time_exact = True
    keeps_moved_files = True

    def __init__(self, root: Path, *, read_only: bool = False):
        self.root = root
        self.read_only = read_only

    def _path(self, key: str) -> Path:
        return self.root / _clean_key(key) if key else self.root

    def uri(self, key: str = "") -> str:
        return str(self._path(key))

    def list(self, prefix: str = "", start_after: str | None = None) -> Iterator[ObjectInfo]:
        base = self._path(prefix)
        if not base.exists():
            return
        stack = [base]
        found: list[ObjectInfo] = []
        while stack:
            d = stack.pop()
            try:
                entries = list(os.scandir(d))
            except (FileNotFoundError, NotADirectoryError):
                continue
            for e in entries:
                if e.is_dir(follow_symlinks=False):
                    stack.append(Path(e.path))
                elif e.is_file(follow_symlinks=False):
                    try:
                        st = e.stat(follow_symlinks=False)
                    except FileNotFoundError:
                        continue  # deleted between scandir and stat
                    found.append(_local_info(Path(e.path).relative_to(self.root).as_posix(), st))
        yield from sorted((o for o in found if start_after is None or o.key > start_after),
                          key=lambda o: o.key)

    def stat(self, key: str) -> ObjectInfo | None:
        p = self._path(key)
        try:
            st = p.stat()
        except FileNotFoundError:
            return None
        return _local_info(_clean_key(key), st)

    @contextlib.contextmanager
    def local_copy(self, key: str) -> Iterator[Path]:
        p = self._path(key)
        if not p.is_file():
            raise FileNotFoundError(f"{self.uri(key)} does not exist")
        yield p

    def open_read(self, key: str) -> io.RawIOBase:
        return open(self._path(key), "rb", buffering=0)

    @contextlib.contextmanager
    def pinned(self, key: str, dest: Path, *, signature: str | None = None) -> Iterator[Pinned]:
        # Read in place, no copy: the kernel sets a file's ctime on every write, rename and
        # timestamp change, so the same inode with the same size, mtime and ctime after the
        # last read means the bytes read were this version's. A path a SQL engine would take
        # for a glob pattern is copied to `dest` (a plain name) instead.
        key = _clean_key(key)
        path = self._path(key)
        if _PATTERN.search(str(path)):
            with super().pinned(key, dest, signature=signature) as copy:
                yield copy
            return
        info = self.stat(key)
        if info is None:
            raise FileNotFoundError(f"{self.uri(key)} does not exist")
        if signature is not None and info.signature != signature:
            raise VersionChanged(f"{self.uri(key)} changed since it was seen")

        def check() -> None:
            if self.stat(key) != info:
                raise VersionChanged(f"{self.uri(key)} changed while it was read")

        yield Pinned(path, info, check)

    def fetch(self, key: str, dest: Path, *, signature: str | None = None,
              hasher=None) -> ObjectInfo:
        # The open file (fstat) is the version copied; the path (stat) must still name it after
        # the copy, or the object was written to, renamed over or replaced meanwhile.
        key = _clean_key(key)
        with partial_file(dest) as tmp, open(self._path(key), "rb") as src:
            before = _local_info(key, os.fstat(src.fileno()))
            if signature is not None and before.signature != signature:
                raise VersionChanged(f"{self.uri(key)} changed since it was seen")
            with open(tmp, "wb") as out:
                if hasher is None:
                    _copy(src, out)
                else:
                    while chunk := src.read(1 << 22):
                        hasher.update(chunk)
                        out.write(chunk)
            after, now = _local_info(key, os.fstat(src.fileno())), self.stat(key)
            if after != before or now != before:
                raise VersionChanged(f"{self.uri(key)} changed while it was copied")
        return before

    def _atomic_write(self, key: str, write) -> None:
        self._check_writable()
        dest = self._path(key)
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=dest.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                write(f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, dest)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise

    def put_file(self, local: Path, key: str, *, move: bool = False) -> None:
        if move:
            self._check_writable()
            dest = self._path(key)
            dest.parent.mkdir(parents=True, exist_ok=True)
            try:
                with open(local, "rb") as f:
                    os.fsync(f.fileno())
                os.replace(local, dest)  # same file system: the staged file is taken over
                return
            except OSError:
                pass  # another file system: copy below

        def write(f):
            with open(local, "rb") as src:
                while chunk := src.read(1 << 20):
                    f.write(chunk)

        self._atomic_write(key, write)

    def prepare_move(self, locals_: list[Path]) -> None:
        for local in locals_:  # put_file's fsync of a file flushed here returns at once
            with contextlib.suppress(OSError), open(local, "rb") as f:
                os.fsync(f.fileno())

    def put_bytes(self, data: bytes, key: str) -> None:
        self._atomic_write(key, lambda f: f.write(data))

    def put_bytes_if_absent(self, data: bytes, key: str) -> bool:
        self._check_writable()
        dest = self._path(key)
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=dest.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            try:
                os.link(tmp, dest)  # fails if dest exists: first writer wins
            except FileExistsError:
                return False
            return True
        finally:
            os.unlink(tmp)

    def get_bytes(self, key: str) -> bytes | None:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError:
            return None

    def delete(self, key: str) -> None:
        self._check_writable()
        p = self._path(key)
        with contextlib.suppress(FileNotFoundError):
            p.unlink()
        # Drop now-empty parent folders (hive partitions), never the root.
        parent = p.parent
        while parent != self.root and self.root in parent.parents:
            try:
                parent.rmdir()
            except OSError:
                break
            parent = parent.parent

    def content_hash(self, key: str) -> str:
        with open(self._path(key), "rb") as f:
            return "sha256:" + hashlib.file_digest(f, "sha256").hexdigest()


class StorageResource(dg.ConfigurableResource, abc.ABC):
    """Raw and lake object stores."""

    @abc.abstractmethod
    def raw(self) -> ObjectStore:
        """The raw zone: uploads under `<dataset>/...`; read-only to the platform."""

    @abc.abstractmethod
    def lake(self) -> ObjectStore:
        """The lake zone: cleaned/, rejected/ and the platform's manifests."""


class LocalStorage(StorageResource):
    """Raw and lake zones in local folders (the embedded default)."""

    raw_url: str | None = Field(
        default=None, description="Raw folder; default $PLATFORM_RAW_URL or <data dir>/raw"
    )
    lake_url: str | None = Field(
        default=None, description="Lake folder; default $PLATFORM_LAKE_URL or <data dir>/lake"
    )

    def raw(self) -> ObjectStore:
        root = local_path(setting(self.raw_url, "PLATFORM_RAW_URL", "raw"))
        return LocalObjectStore(root, read_only=True)

    def lake(self) -> ObjectStore:
        root = local_path(setting(self.lake_url, "PLATFORM_LAKE_URL", "lake"))
        root.mkdir(parents=True, exist_ok=True)
        return LocalObjectStore(root)
