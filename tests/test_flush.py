"""Write-behind flushing of staged files (cleaning/flush.py) and the stores that ask for it."""

import os
import time

import pytest

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


def test_count_and_hash_run_in_one_read_at_background_priority(tmp_path, monkeypatch):
    """The record count and the content hash share one read of the file, in a thread that
    yields the CPU to DuckDB's COPY (Linux sets niceness per thread); the results are the same
    as at normal priority. A caller that counted the records already gets the hash alone."""
    import hashlib
    import threading

    import data_platform.cleaning as cleaning
    from data_platform.contracts import parse_contract

    seen = {}
    real_scan, real_feed = cleaning.scan_source, cleaning.feed_hasher

    def spy(fn, name):
        def wrapped(*a, **k):
            seen[name] = (os.getpriority(os.PRIO_PROCESS, threading.get_native_id()),
                          k.get("hasher", a[1] if name == "hash" else None))
            return fn(*a, **k)
        return wrapped

    monkeypatch.setattr(cleaning, "scan_source", spy(real_scan, "count"))
    monkeypatch.setattr(cleaning, "feed_hasher", spy(real_feed, "hash"))
    src = tmp_path / "a.csv"
    src.write_bytes(b"id,name\n1,a\n2,b\n")
    digest = hashlib.sha256(src.read_bytes()).hexdigest()
    contract = parse_contract({"name": "t", "format": {"type": "csv"}, "columns": [
        {"name": "id", "type": "int"}, {"name": "name", "type": "string"}]}, where="test")
    h = hashlib.sha256()
    res = cleaning.clean_file(src, contract, tmp_path / "out", source_key="t/a.csv", hasher=h)
    base = os.getpriority(os.PRIO_PROCESS, 0)
    assert seen == {"count": (base + cleaning.SCAN_NICE, h)}  # one read: no separate hash
    assert res.source_records == 2 and h.hexdigest() == digest

    seen.clear()
    h = hashlib.sha256()
    res = cleaning.clean_file(src, contract, tmp_path / "out2", source_key="t/a.csv", hasher=h,
                              source_records=2)
    assert seen == {"hash": (base + cleaning.SCAN_NICE, h)}
    assert res.source_records == 2 and h.hexdigest() == digest
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == base  # caller's own


def test_a_read_failing_midway_fails_the_clean_and_records_no_partial_hash(tmp_path, monkeypatch):
    """The shared read breaks after its first chunk (a disk error): the hash covers part of the
    file, so clean_file raises the read's error instead of returning with it."""
    import hashlib

    import data_platform.cleaning as cleaning
    import data_platform.records as records
    from data_platform.contracts import parse_contract

    real_chunks = records._chunks

    def broken(path):
        for i, chunk in enumerate(real_chunks(path)):
            if i == 1:
                raise OSError("EIO: the disk went away")
            yield chunk

    monkeypatch.setattr(records, "CHUNK", 64)
    monkeypatch.setattr(records, "_chunks", broken)
    src = tmp_path / "a.csv"
    src.write_bytes(b"id,name\n" + b"".join(b"%d,n%d\n" % (i, i) for i in range(100)))
    contract = parse_contract({"name": "t", "format": {"type": "csv"}, "columns": [
        {"name": "id", "type": "int"}, {"name": "name", "type": "string"}]}, where="test")
    with pytest.raises(OSError, match="the disk went away"):
        cleaning.clean_file(src, contract, tmp_path / "out", source_key="t/a.csv",
                            hasher=hashlib.sha256())
    # Without a hash to protect, the same failure leaves the count unknown (the audit fails).
    res = cleaning.clean_file(src, contract, tmp_path / "out2", source_key="t/a.csv")
    assert res.source_records is None and res.rows_written == 100
