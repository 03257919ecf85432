"""Read zip and tar archives member by member, in memory, never extracting anything to disk.

Uploads of image datasets often arrive as archives. Extracting them is the classic way to get
hurt (path traversal, links pointing outside the target, tarfile's extraction filters have had
bypasses, zip bombs), so nothing here writes a file: `iter_members` yields one `Member` per entry
with its name and declared size, and either a bounded `read()` or the `reason` it is refused.

Guarantees, whatever the archive claims in its headers:
- unsafe names (absolute, `..`, backslashes, drive letters, NUL) and links, devices and FIFOs are
  reported, never read; directories are skipped;
- a read stops at the member cap + 1 byte and at the compression-ratio cap (checked while
  decompressing, not only from the header);
- the archive as a whole stops with `ArchiveError` once its members would expand past the total
  cap or number more than the member-count cap;
- a corrupt or truncated archive yields the members before the damage, then raises
  `ArchiveError`; no other exception type escapes for bad input.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gzip
import re
import stat
import struct
import tarfile
import zipfile
import zlib
from pathlib import Path
from typing import BinaryIO, Callable, Iterator

MiB = 1 << 20
GiB = 1 << 30

# Reads go in chunks so the caps are enforced while decompressing, not after.
_CHUNK = 1 * MiB
# gzip reads its compressed input ahead in buffers; the compressed bytes a tar.gz member used are
# only known to within a buffer, so this much is added to them before judging a ratio. The ratio
# then errs low: a bomb is stopped after max_ratio x 256 KiB at most (25 MiB at 100), and a
# legitimate member is never accused.
_GZIP_SLACK = 256 * 1024
# Writers pad a tar to whole records after its end block (10 KiB by default, more with a large
# blocking factor); anything longer is not padding.
_MAX_TRAILING = 16 * MiB
_DRIVE = re.compile(r"^[A-Za-z]:")


class ArchiveError(Exception):
    """The archive cannot be read (further): corrupt, truncated, or over a total cap."""


class MemberError(Exception):
    """One member turned out invalid while it was read; the archive itself can go on."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclasses.dataclass(frozen=True)
class Limits:
    """Caps applied to every archive (and to single uploaded files)."""

    max_member_bytes: int = 256 * MiB
    max_total_bytes: int = 8 * GiB
    max_ratio: float = 100.0
    max_members: int = 100_000
    # The ratio is judged only once a member expands past this: a few KiB of repetitive bytes
    # compress far beyond any sane ratio and harm nobody.
    ratio_floor_bytes: int = 1 * MiB


@dataclasses.dataclass(eq=False)
class Member:
    """One archive entry. `size` is the size its header declares (not trusted for reading)."""

    name: str
    size: int
    reason: str | None = None
    _reader: Callable[[], bytes] | None = dataclasses.field(default=None, repr=False)
    _data: bytes | None = dataclasses.field(default=None, repr=False)
    _live: bool = dataclasses.field(default=True, repr=False)

    @property
    def valid(self) -> bool:
        """Whether the member is (still) considered readable."""
        return self.reason is None

    def read(self) -> bytes:
        """Return the member's bytes (read once, then cached).

        Raises `MemberError` when the member is invalid or turns out invalid while reading (over
        the size or ratio cap, corrupt data; `reason` is then set), and `ArchiveError` when it
        is read after the iterator moved on (tar archives are read sequentially).
        """
        if self._data is not None:
            return self._data
        if self.reason is not None or self._reader is None:
            raise MemberError(self.reason or "member has no data")
        if not self._live:
            raise ArchiveError(f"{self.name}: read after the archive iterator moved on")
        try:
            self._data = self._reader()
        except MemberError as exc:
            self.reason = exc.reason
            raise
        return self._data


def archive_kind(name: str) -> str | None:
    """Return "zip", "tar" or "tar.gz" from a file name's suffix, or None for other names."""
    lower = name.lower()
    if lower.endswith(".zip"):
        return "zip"
    if lower.endswith((".tar.gz", ".tgz")):
        return "tar.gz"
    if lower.endswith(".tar"):
        return "tar"
    return None


def unsafe_name_reason(name: str) -> str | None:
    """Return why a member name would be unsafe to use as a path, or None when it is safe."""
    if not name:
        return "unsafe name: empty"
    if "\x00" in name:
        return "unsafe name: NUL byte"
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return "unsafe name: not valid UTF-8"
    if "\\" in name:
        return "unsafe name: backslash in path"
    if name.startswith("/"):
        return "unsafe name: absolute path"
    if _DRIVE.match(name):
        return "unsafe name: drive letter"
    if ".." in name.split("/"):
        return "unsafe name: '..' component (path traversal)"
    return None


def iter_members(path: str | Path, limits: Limits = Limits()) -> Iterator[Member]:
    """Yield the members of a zip, tar or tar.gz archive (told apart by content, not by name).

    Directories are skipped. A member's `read()` is valid until the iterator advances.
    Raises `ArchiveError` when the file is not a readable archive, when it is corrupt or
    truncated (after yielding the members before the damage), or when a total cap is exceeded.
    """
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            magic = fh.read(4)
    except OSError as exc:
        raise ArchiveError(f"{path.name}: cannot be opened: {exc}") from exc
    if not magic:
        raise ArchiveError(f"{path.name}: empty file")
    if magic[:2] == b"\x1f\x8b":
        yield from _iter_tar(path, limits, gz=True)
    elif magic in (b"PK\x03\x04", b"PK\x05\x06") or archive_kind(path.name) == "zip":
        yield from _iter_zip(path, limits)
    else:
        yield from _iter_tar(path, limits, gz=False)


class _Budget:
    """Counts members and the bytes the archive expands to, against the archive-wide caps."""

    def __init__(self, limits: Limits, name: str):
        self.limits, self.name = limits, name
        self.members = 0
        self.total = 0

    def add_member(self) -> None:
        self.members += 1
        if self.members > self.limits.max_members:
            raise ArchiveError(f"{self.name}: more than {self.limits.max_members} members; "
                               "the rest is not read")

    def add_bytes(self, n: int, member: str) -> None:
        self.total += n
        if self.total > self.limits.max_total_bytes:
            raise ArchiveError(f"{self.name}: expands past the total cap of "
                               f"{self.limits.max_total_bytes} bytes at {member}; "
                               "the rest is not read")


def _bounded_read(stream: BinaryIO, limits: Limits,
                  compressed_so_far: Callable[[], int]) -> bytes:
    """Read a stream to its end, stopping at the member cap + 1 byte and at the ratio cap."""
    chunks: list[bytes] = []
    n = 0
    cap = limits.max_member_bytes
    while True:
        chunk = stream.read(min(_CHUNK, cap + 1 - n))
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
        n += len(chunk)
        if n > cap:
            raise MemberError(f"member too large: over the cap of {cap} bytes")
        if n >= limits.ratio_floor_bytes:
            ratio = n / max(1, compressed_so_far())
            if ratio > limits.max_ratio:
                raise MemberError(f"compression ratio over {limits.max_ratio:g} "
                                  f"(zip bomb?): {n} bytes from {compressed_so_far()}")


def _too_large(size: int, limits: Limits) -> str:
    return f"member too large: {size} bytes declared, cap {limits.max_member_bytes}"


# ----------------------------------------------------------------------------------------- zip

def _zip_type_reason(info: zipfile.ZipInfo) -> str | None:
    mode = info.external_attr >> 16
    if info.create_system == 3 and mode:  # Unix attributes: the file type is meaningful
        if stat.S_ISLNK(mode):
            return "symlink member"
        if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
            return "device member"
        if stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode):
            return "FIFO or socket member"
    if info.flag_bits & 0x1:
        return "encrypted member"
    return None


def _iter_zip(path: Path, limits: Limits) -> Iterator[Member]:
    budget = _Budget(limits, path.name)
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError,
            NotImplementedError, struct.error) as exc:  # NotImplemented: "zip file version"
        raise ArchiveError(f"{path.name}: not a readable zip (corrupt or truncated): {exc}") \
            from exc
    with zf:
        seen: set[str] = set()
        for info in zf.infolist():
            budget.add_member()
            name = info.orig_filename
            if name.endswith("/") and not info.file_size:
                continue
            reason = (unsafe_name_reason(name) or _zip_type_reason(info)
                      or ("duplicate member name" if name in seen else None))
            seen.add(name)
            if reason is None and info.file_size > limits.max_member_bytes:
                reason = _too_large(info.file_size, limits)
            ratio = info.file_size / max(1, info.compress_size)
            if (reason is None and info.file_size >= limits.ratio_floor_bytes
                    and ratio > limits.max_ratio):
                reason = f"compression ratio {ratio:.0f} over {limits.max_ratio:g} (zip bomb?)"
            if reason is not None:
                yield Member(name, info.file_size, reason)
                continue
            # zipfile never returns more than the declared size, so the declared sizes of the
            # members we read bound what the archive expands to.
            budget.add_bytes(info.file_size, name)
            member = Member(name, info.file_size, None, _zip_reader(zf, info, limits))
            yield member
            member._live = False


def _zip_reader(zf: zipfile.ZipFile, info: zipfile.ZipInfo,
                limits: Limits) -> Callable[[], bytes]:
    def read() -> bytes:
        try:
            with zf.open(info) as stream:
                data = _bounded_read(stream, limits, lambda: info.compress_size)
        except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError,
                NotImplementedError, RuntimeError, struct.error) as exc:
            # RuntimeError: zipfile's "password required"; NotImplementedError: unknown method.
            raise MemberError(f"corrupt or unsupported member data: {exc}") from exc
        if len(data) != info.file_size:
            raise MemberError(f"member data is {len(data)} bytes, header says {info.file_size}")
        return data
    return read


# ----------------------------------------------------------------------------------------- tar

class _Recorder:
    """A read-through wrapper that remembers the last block read, so that the end of a tar can
    be told apart from truncation: tarfile silently ends iteration on a missing, partial or
    garbage header after the first member, and only a zero block is a real end of archive."""

    def __init__(self, inner: BinaryIO):
        self.inner = inner
        self.last = b""

    def read(self, n: int = -1) -> bytes:
        data = self.inner.read(n)
        self.last = data
        return data

    def seek(self, *args: int) -> int:
        return self.inner.seek(*args)

    def tell(self) -> int:
        return self.inner.tell()


_TAR_ERRORS = (tarfile.TarError, EOFError, zlib.error, OSError, ValueError, UnicodeDecodeError)


def _tar_type_reason(ti: tarfile.TarInfo) -> str | None:
    if ti.issym():
        return "symlink member"
    if ti.islnk():
        return "hardlink member"
    if ti.ischr() or ti.isblk():
        return "device member"
    if ti.isfifo():
        return "FIFO member"
    if not ti.isreg():
        return f"unsupported member type {ti.type!r}"
    return None


def _storable(name: str) -> str:
    """The name with undecodable bytes (kept by tarfile as surrogates) escaped, so that it can
    be stored and shown; such names are refused anyway."""
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def _iter_tar(path: Path, limits: Limits, *, gz: bool) -> Iterator[Member]:
    budget = _Budget(limits, path.name)
    with contextlib.ExitStack() as stack:
        raw = stack.enter_context(open(path, "rb", buffering=0))
        inner: BinaryIO = (stack.enter_context(gzip.GzipFile(fileobj=raw, mode="rb"))
                           if gz else raw)
        rec = _Recorder(inner)
        try:
            tf = stack.enter_context(tarfile.TarFile(fileobj=rec, mode="r"))  # type: ignore
        except _TAR_ERRORS as exc:
            raise ArchiveError(f"{path.name}: not a readable tar (corrupt or truncated): "
                               f"{exc}") from exc
        seen: set[str] = set()
        while True:
            try:
                ti = tf.next()
            except _TAR_ERRORS as exc:
                raise ArchiveError(f"{path.name}: corrupt or truncated after "
                                   f"{budget.members} members: {exc}") from exc
            # tarfile keeps every header it has seen; we never look back, so let them go.
            tf.members = []
            if ti is None:
                break
            budget.add_member()
            # Skipping a member in a compressed stream decompresses it anyway: count every one.
            budget.add_bytes(max(0, ti.size), ti.name)
            if ti.isdir():
                continue
            name = _storable(ti.name)
            reason = (unsafe_name_reason(ti.name) or _tar_type_reason(ti)
                      or ("duplicate member name" if ti.name in seen else None))
            seen.add(ti.name)
            if reason is None and ti.size > limits.max_member_bytes:
                reason = _too_large(ti.size, limits)
            if reason is not None:
                yield Member(name, ti.size, reason)
                continue
            member = Member(name, ti.size, None, _tar_reader(tf, ti, raw, gz, limits))
            yield member
            member._live = False
        if rec.last != tarfile.NUL * tarfile.BLOCKSIZE:
            raise ArchiveError(f"{path.name}: truncated or corrupt after {budget.members} "
                               "members (no end-of-archive block)")
        if gz:
            _drain(inner, path.name)


def _drain(stream: BinaryIO, name: str) -> None:
    """Read a gzip stream past the tar's end so its checksum and length trailer are verified."""
    n = 0
    try:
        while chunk := stream.read(_CHUNK):
            n += len(chunk)
            if n > _MAX_TRAILING:
                raise ArchiveError(f"{name}: over {_MAX_TRAILING} bytes after the end of the tar")
    except _TAR_ERRORS as exc:
        raise ArchiveError(f"{name}: compressed stream corrupt or truncated after the tar's "
                           f"end: {exc}") from exc


def _tar_reader(tf: tarfile.TarFile, ti: tarfile.TarInfo, raw: BinaryIO, gz: bool,
                limits: Limits) -> Callable[[], bytes]:
    def read() -> bytes:
        start = raw.tell()
        if gz:
            def compressed() -> int:
                return raw.tell() - start + _GZIP_SLACK
        else:
            def compressed() -> int:
                return ti.size or 1
        try:
            stream = tf.extractfile(ti)
            if stream is None:
                raise MemberError("member has no data stream")
            data = _bounded_read(stream, limits, compressed)
        except _TAR_ERRORS as exc:
            raise MemberError(f"corrupt or truncated member data: {exc}") from exc
        if len(data) != ti.size:
            raise MemberError(f"truncated member: {len(data)} of {ti.size} bytes")
        return data
    return read
