"""Object storage on S3 (or any S3-compatible server: `AWS_ENDPOINT_URL` is honoured by boto3).

Same interface as the local folder: keys relative to a `s3://bucket/prefix` root; PUTs are atomic
per object, so readers never see a partial file. Clients come from a method (not a module
global) with timeouts and adaptive retries on every call.
"""

import contextlib
import io
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import boto3
import botocore.exceptions
from botocore.config import Config
from pydantic import Field

from .storage import ObjectInfo, ObjectStore, StorageResource, VersionChanged, partial_file

BOTO_CONFIG = Config(
    retries={"max_attempts": 8, "mode": "adaptive"}, connect_timeout=5, read_timeout=60,
)


def split_s3_url(url: str) -> tuple[str, str]:
    """`s3://bucket/some/prefix` -> (`bucket`, `some/prefix`); raises ValueError otherwise."""
    if not url.startswith("s3://"):
        raise ValueError(f"{url!r} is not an s3:// URL")
    bucket, _, prefix = url[len("s3://"):].partition("/")
    if not bucket:
        raise ValueError(f"{url!r} has no bucket")
    return bucket, prefix.strip("/")


def _code(e: botocore.exceptions.ClientError) -> str:
    return str(e.response.get("Error", {}).get("Code", ""))


def _missing(e: botocore.exceptions.ClientError) -> bool:
    return _code(e) in ("404", "NoSuchKey", "NotFound")


def _info(key: str, size: int, last_modified, etag: str | None,
          version_id: str | None = None) -> ObjectInfo:
    # Listings give LastModified in ms, HEAD and GET in whole seconds (S3 keeps seconds): use
    # seconds everywhere so one object has one signature whichever call saw it.
    return ObjectInfo(key=key, size=size, mtime_ns=int(last_modified.timestamp()) * 10**9,
                      etag=(etag or "").strip('"') or None,
                      version_id=None if version_id in (None, "null") else version_id)


class RangedReader(io.RawIOBase):
    """A seekable read-only view of one S3 object, fetching byte ranges on demand."""

    def __init__(self, client, bucket: str, key: str):
        self.client, self.bucket, self.key = client, bucket, key
        self.size = client.head_object(Bucket=bucket, Key=key)["ContentLength"]
        self.pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self.pos, io.SEEK_END: self.size}[whence]
        self.pos = max(0, base + offset)
        return self.pos

    def readinto(self, buffer) -> int:
        n = min(len(buffer), self.size - self.pos)
        if n <= 0:
            return 0
        body = self.client.get_object(Bucket=self.bucket, Key=self.key,
                                      Range=f"bytes={self.pos}-{self.pos + n - 1}")["Body"].read()
        buffer[:len(body)] = body
        self.pos += len(body)
        return len(body)


class S3ObjectStore(ObjectStore):
    """An ObjectStore over one bucket prefix."""

    def __init__(self, client, url: str, *, read_only: bool = False, page_size: int = 1000,
                 scratch_dir: str | None = None):
        self.client = client
        self.bucket, self.prefix = split_s3_url(url)
        self.read_only = read_only
        self.page_size = page_size
        self.scratch_dir = scratch_dir

    def _key(self, key: str) -> str:
        key = key.strip("/")
        return f"{self.prefix}/{key}" if self.prefix and key else (self.prefix or key)

    def _rel(self, full: str) -> str:
        return full[len(self.prefix) + 1:] if self.prefix else full

    def uri(self, key: str = "") -> str:
        return f"s3://{self.bucket}/{self._key(key)}"

    def list(self, prefix: str = "", start_after: str | None = None) -> Iterator[ObjectInfo]:
        full = self._key(prefix)
        if full and not full.endswith("/"):
            full += "/"
        paginator = self.client.get_paginator("list_objects_v2")
        extra = {"StartAfter": self._key(start_after)} if start_after else {}
        pages = paginator.paginate(Bucket=self.bucket, Prefix=full, **extra,
                                   PaginationConfig={"PageSize": self.page_size})
        for page in pages:
            for obj in page.get("Contents", []):
                if obj["Key"].endswith("/"):
                    continue  # folder placeholder objects
                yield _info(self._rel(obj["Key"]), obj["Size"], obj["LastModified"],
                            obj.get("ETag"))

    def stat(self, key: str) -> ObjectInfo | None:
        try:
            head = self.client.head_object(Bucket=self.bucket, Key=self._key(key))
        except botocore.exceptions.ClientError as e:
            if _missing(e):
                return None
            raise
        return _info(key, head["ContentLength"], head["LastModified"], head.get("ETag"),
                     head.get("VersionId"))

    def fetch(self, key: str, dest: Path, *, signature: str | None = None,
              hasher=None) -> ObjectInfo:
        # The signature is checked on HEAD, then the GET is pinned to that version: by
        # VersionId in a versioned bucket, else by If-Match on its ETag (412 if replaced). The
        # GET's own headers describe what was copied and are checked again (same bytes
        # uploaded anew keep the ETag but not LastModified).
        head = self.stat(key)
        if head is None:
            raise FileNotFoundError(f"{self.uri(key)} does not exist")
        if signature is not None and head.signature != signature:
            raise VersionChanged(f"{self.uri(key)} changed since it was seen")
        pin = {"VersionId": head.version_id} if head.version_id else {"IfMatch": head.etag or "*"}
        with partial_file(dest) as tmp:
            try:
                got = self.client.get_object(Bucket=self.bucket, Key=self._key(key), **pin)
            except botocore.exceptions.ClientError as e:
                if _code(e) in ("PreconditionFailed", "412", "NoSuchVersion"):
                    raise VersionChanged(f"{self.uri(key)} changed since it was seen") from None
                if _missing(e):
                    raise FileNotFoundError(f"{self.uri(key)} does not exist") from None
                raise
            info = _info(key, got["ContentLength"], got["LastModified"], got.get("ETag"),
                         got.get("VersionId"))
            if signature is not None and info.signature != signature:
                got["Body"].close()
                raise VersionChanged(f"{self.uri(key)} changed while it was copied")
            with open(tmp, "wb") as out:
                for chunk in got["Body"].iter_chunks(1 << 20):
                    if hasher is not None:
                        hasher.update(chunk)
                    out.write(chunk)
                copied = out.tell()
            if copied != info.size:
                raise OSError(f"{self.uri(key)}: got {copied} of {info.size} bytes")
        return info

    @contextlib.contextmanager
    def local_copy(self, key: str) -> Iterator[Path]:
        fd, tmp = tempfile.mkstemp(prefix="s3-", suffix="-" + Path(key).name,
                                   dir=self.scratch_dir)
        os.close(fd)
        try:
            try:
                self.client.download_file(self.bucket, self._key(key), tmp)
            except botocore.exceptions.ClientError as e:
                if _missing(e):
                    raise FileNotFoundError(f"{self.uri(key)} does not exist") from None
                raise
            yield Path(tmp)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)

    def open_read(self, key: str) -> io.RawIOBase:
        try:
            return RangedReader(self.client, self.bucket, self._key(key))
        except botocore.exceptions.ClientError as e:
            if _missing(e):
                raise FileNotFoundError(f"{self.uri(key)} does not exist") from None
            raise

    def put_file(self, local: Path, key: str, *, move: bool = False) -> None:
        self._check_writable()
        self.client.upload_file(str(local), self.bucket, self._key(key))

    def put_bytes(self, data: bytes, key: str) -> None:
        self._check_writable()
        self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data)

    def put_bytes_if_absent(self, data: bytes, key: str) -> bool:
        self._check_writable()
        try:
            self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data,
                                   IfNoneMatch="*")
        except botocore.exceptions.ClientError as e:
            if e.response.get("Error", {}).get("Code") in ("PreconditionFailed", "412",
                                                           "ConditionalRequestConflict"):
                return False
            raise
        return True

    def get_bytes(self, key: str) -> bytes | None:
        try:
            return self.client.get_object(Bucket=self.bucket, Key=self._key(key))["Body"].read()
        except botocore.exceptions.ClientError as e:
            if _missing(e):
                return None
            raise

    def delete(self, key: str) -> None:
        self._check_writable()
        self.client.delete_object(Bucket=self.bucket, Key=self._key(key))

    def content_hash(self, key: str) -> str:
        """The object's ETag: the MD5 of its bytes for single-part uploads."""
        info = self.stat(key)
        if info is None:
            raise FileNotFoundError(f"{self.uri(key)} does not exist")
        return f"etag:{info.etag}"


class S3Storage(StorageResource):
    """Raw and lake zones on S3."""

    raw_url: str = Field(description="s3://bucket/prefix holding <dataset>/<file> uploads")
    lake_url: str = Field(description="s3://bucket/prefix for cleaned/, rejected/, manifests")
    region_name: str | None = Field(default=None, description="AWS region; default from env")
    scratch_dir: str | None = Field(
        default=None, description="Where downloads for processing go; default system temp")

    def client(self):
        return boto3.session.Session().client("s3", region_name=self.region_name,
                                              config=BOTO_CONFIG)

    def raw(self) -> ObjectStore:
        return S3ObjectStore(self.client(), self.raw_url, read_only=True,
                             scratch_dir=self.scratch_dir)

    def lake(self) -> ObjectStore:
        return S3ObjectStore(self.client(), self.lake_url, scratch_dir=self.scratch_dir)
