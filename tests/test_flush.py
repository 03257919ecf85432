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
    assert fb.flushes >= 2 and str(part) in synced
    # never the spill file ("gone" may have been flushed in its instant: "... (deleted)")
    assert all(p == str(part) or p.startswith(str(gone)) for p in synced)
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


def test_count_and_hash_threads_run_at_background_priority(tmp_path, monkeypatch):
    """The record count and the content hash yield the CPU to DuckDB's COPY (Linux sets
    niceness per thread); the result is the same as at normal priority."""
    import hashlib
    import threading

    import data_platform.cleaning as cleaning
    from data_platform.contracts import parse_contract

    seen = {}
    real_scan, real_feed = cleaning.scan_source, cleaning._feed

    def spy(fn, name):
        def wrapped(*a, **k):
            seen[name] = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
            return fn(*a, **k)
        return wrapped

    monkeypatch.setattr(cleaning, "scan_source", spy(real_scan, "count"))
    monkeypatch.setattr(cleaning, "_feed", spy(real_feed, "hash"))
    src = tmp_path / "a.csv"
    src.write_bytes(b"id,name\n1,a\n2,b\n")
    contract = parse_contract({"name": "t", "format": {"type": "csv"}, "columns": [
        {"name": "id", "type": "int"}, {"name": "name", "type": "string"}]}, where="test")
    h = hashlib.sha256()
    res = cleaning.clean_file(src, contract, tmp_path / "out", source_key="t/a.csv", hasher=h)
    base = os.getpriority(os.PRIO_PROCESS, 0)
    assert seen == {"count": base + cleaning.COUNT_NICE, "hash": base + cleaning.HASH_NICE}
    assert res.source_records == 2 and h.hexdigest() == hashlib.sha256(src.read_bytes()).hexdigest()
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == base  # caller's own
