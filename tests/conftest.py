"""Shared fixtures: every test gets its own data folder; nothing here runs at import."""

import contextlib
import os
import shutil
import urllib.request
from pathlib import Path

import boto3
import pytest
from moto.server import ThreadedMotoServer

from .helpers import free_port

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "samples" / "raw"

S3_REGION = "eu-west-1"
_PLATFORM_VARS = ("PLATFORM_RAW_URL", "PLATFORM_LAKE_URL", "PLATFORM_DUCKDB_PATH",
                  "PLATFORM_SCRATCH_DIR", "PLATFORM_ENV", "PLATFORM_CONTRACTS_DIR")


@pytest.fixture
def data_dir(tmp_path, monkeypatch) -> Path:
    """A fresh PLATFORM_DATA_DIR with an empty raw folder; other PLATFORM_* variables unset."""
    for var in _PLATFORM_VARS:
        monkeypatch.delenv(var, raising=False)
    for var in [v for v in os.environ if v.startswith("PLATFORM_SENSOR_")]:
        monkeypatch.delenv(var, raising=False)
    d = tmp_path / "data"
    (d / "raw").mkdir(parents=True)
    monkeypatch.setenv("PLATFORM_DATA_DIR", str(d))
    return d


@pytest.fixture
def samples(data_dir) -> Path:
    """The data folder with the shipped sample uploads copied into raw/."""
    shutil.copytree(SAMPLES, data_dir / "raw", dirs_exist_ok=True)
    return data_dir


def write_raw(data_dir: Path, key: str, content: str | bytes, mtime: float | None = None) -> Path:
    """Write raw/<key> (as an upload would) and optionally set its modification time."""
    p = data_dir / "raw" / key
    p.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, str):
        content = content.encode()
    p.write_bytes(content)
    if mtime is not None:
        os.utime(p, (mtime, mtime))
    return p


@contextlib.contextmanager
def moto_server(monkeypatch, region: str = S3_REGION):
    """moto's server on 127.0.0.1 from an empty account, AWS_* variables pointing at it.

    Yields the endpoint URL; the server is stopped on exit.
    """
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        endpoint = f"http://127.0.0.1:{port}"
        # moto keeps its backends per process: start every test from an empty account.
        urllib.request.urlopen(urllib.request.Request(f"{endpoint}/moto-api/reset", method="POST"),
                               timeout=10)
        for var, value in {"AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "testing",
                           "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": region,
                           "AWS_REGION": region}.items():
            monkeypatch.setenv(var, value)
        yield endpoint
    finally:
        server.stop()


@pytest.fixture
def s3(monkeypatch):
    """moto's S3 server on 127.0.0.1 with an empty `raw-bucket`; stopped afterwards."""
    with moto_server(monkeypatch):
        client = boto3.client("s3", region_name=S3_REGION)
        client.create_bucket(Bucket="raw-bucket",
                             CreateBucketConfiguration={"LocationConstraint": S3_REGION})
        yield client
