"""Write-behind flushing of staged files (cleaning/flush.py) and the stores that ask for it."""

import os
import time

from data_platform.cleaning.flush import FlushBehind
from data_platform.resources.storage import LocalObjectStore


def test_flush_behind_flushes_growing_files_and_skips_vanished_ones(tmp_path, monkeypatch):
    synced = []
    real = os.fdatasync
    monkeypatch.setattr(os, "fdatasync", lambda fd: (synced.append(os.readlink(
        f"/proc/self/fd/{fd}")), real(fd)))
    part = tmp_path / "pass1" / "_ok=true" / "part_0.parquet"
    part.parent.mkdir(parents=True)
    (tmp_path / "spill.tmp").write_bytes(b"x")  # not a staged file: never flushed
    with FlushBehind(tmp_path, every=0.01) as fb:
        with open(part, "wb") as f:
            for _ in range(5):
                f.write(b"y" * 4096)
                f.flush()
                time.sleep(0.02)
        gone = tmp_path / "gone.parquet"
        gone.write_bytes(b"z")
        gone.unlink()  # renamed or removed by the engine meanwhile: skipped, no error
    assert fb.flushes >= 2 and set(synced) == {str(part)}
    n = fb.flushes
    time.sleep(0.05)
    assert fb.flushes == n  # the thread stopped with the block


def test_disabled_flush_behind_starts_no_thread(tmp_path):
    (tmp_path / "a.parquet").write_bytes(b"a")
    with FlushBehind(tmp_path, every=0.001, enabled=False) as fb:
        time.sleep(0.02)
    assert fb.flushes == 0


def test_only_a_store_that_keeps_moved_files_asks_for_them_flushed(tmp_path):
    """The local lake takes staged files over (their durability is its business); a store
    that uploads them (S3) must not pay for flushing scratch files."""
    from data_platform.resources.s3 import S3ObjectStore

    assert LocalObjectStore(tmp_path).keeps_moved_files
    assert S3ObjectStore.keeps_moved_files is False
