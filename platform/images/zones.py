"""Raw and lake access for the tensor step, without the platform's resources (which load Dagster,
DuckDB and pyiceberg: a heavy step's process imports only what it uses).

A zone is a root URI: a local folder or `s3://bucket/prefix`. The step needs little: a local file
with an object's bytes (the object itself locally, a download on S3), uploads, listing and
deletes for publishing. What it reads is checked against the manifest's content hashes, so no
version pinning is needed here.
"""

from __future__ import annotations

from pathlib import Path

S3_RETRIES = {"max_attempts": 8, "mode": "adaptive"}


class Zone:
    """Objects under one root URI (a folder or s3://bucket/prefix)."""

    def __init__(self, uri: str):
        self.uri = uri.rstrip("/")
        self.s3 = self.uri.startswith("s3://")
        if self.s3:
            import boto3
            from botocore.config import Config

            self.bucket, _, self.prefix = self.uri[len("s3://"):].partition("/")
            self.client = boto3.session.Session().client(
                "s3", config=Config(retries=S3_RETRIES, connect_timeout=5, read_timeout=60))

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def path(self, key: str) -> Path:
        """The local path of `key` (local zones only)."""
        if self.s3:
            raise ValueError(f"{self.uri} is not a local folder")
        return Path(self.uri) / key

    def local_file(self, key: str, dest: Path) -> Path:
        """A local file with the object's bytes: the object itself locally, else `dest`.
        Raises FileNotFoundError when there is no such object."""
        if not self.s3:
            path = self.path(key)
            if not path.is_file():
                raise FileNotFoundError(f"{path} does not exist")
            return path
        import botocore.exceptions

        dest.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.client.download_file(self.bucket, self._key(key), str(dest))
        except botocore.exceptions.ClientError as e:
            if e.response.get("Error", {}).get("Code") in ("404", "NoSuchKey"):
                raise FileNotFoundError(f"{self.uri}/{key} does not exist") from None
            raise
        return dest

    def names(self, prefix: str) -> set[str]:
        """The names of the objects directly under `prefix` (a folder)."""
        if not self.s3:
            folder = self.path(prefix)
            return {p.name for p in folder.iterdir() if p.is_file()} if folder.is_dir() else set()
        out: set[str] = set()
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=self._key(prefix).rstrip("/") + "/")
        for page in pages:
            out |= {o["Key"].rsplit("/", 1)[-1] for o in page.get("Contents", [])}
        return out

    def upload(self, local: Path, key: str) -> None:
        self.client.upload_file(str(local), self.bucket, self._key(key))

    def delete(self, key: str) -> None:
        if self.s3:
            self.client.delete_object(Bucket=self.bucket, Key=self._key(key))
        else:
            self.path(key).unlink(missing_ok=True)
