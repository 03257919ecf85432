"""Object stores: signatures and version-pinned fetch, on a local folder and on moto's S3 server."""

import hashlib
import os
import time

import pytest
from data_platform.resources import S3Storage
from data_platform.resources.storage import LocalObjectStore, VersionChanged


@pytest.fixture
def local(tmp_path):
    root = tmp_path / "raw"
    root.mkdir()
    return root, LocalObjectStore(root, read_only=True)


def test_local_signature_changes_on_every_kind_of_replacement(local, tmp_path):
    root, store = local
    p = root / "a.csv"
    p.write_bytes(b"one")
    first = store.stat("a.csv")
    assert store.stat("a.csv").signature == first.signature  # stable while unchanged
    assert [o.signature for o in store.list()] == [first.signature]
    assert first.changed_ns >= first.mtime_ns

    time.sleep(0.02)  # past the file system's timestamp granularity
    p.write_bytes(b"one")  # identical bytes written again
    rewritten = store.stat("a.csv")
    assert rewritten.signature != first.signature

    old = time.time() - 86400
    os.utime(p, (old, old))  # as `cp -p` leaves it: an old mtime, but a fresh ctime
    utimed = store.stat("a.csv")
    assert utimed.signature != rewritten.signature
    assert utimed.mtime_ns < rewritten.mtime_ns and utimed.changed_ns >= rewritten.changed_ns

    other = tmp_path / "b.csv"
    other.write_bytes(b"one")
    os.utime(other, (old, old))
    os.rename(other, p)  # `mv` of an old file over the key
    moved = store.stat("a.csv")
    assert moved.signature != utimed.signature and moved.changed_ns >= utimed.changed_ns


def test_local_fetch_copies_the_version_asked_for(local, tmp_path):
    root, store = local
    (root / "d").mkdir()
    (root / "d" / "a b.csv").write_bytes(b"x" * 5000)
    seen = store.stat("d/a b.csv")
    dest = tmp_path / "copy.csv"
    info = store.fetch("d/a b.csv", dest, signature=seen.signature)
    assert dest.read_bytes() == b"x" * 5000 and info == seen
    assert store.fetch("d/a b.csv", tmp_path / "any.csv").signature == seen.signature
    with pytest.raises(FileNotFoundError):
        store.fetch("d/missing.csv", tmp_path / "m.csv")
    assert not (tmp_path / "m.csv").exists()


def test_fetch_hashes_exactly_the_bytes_copied_and_put_file_can_take_a_file_over(local,
                                                                                tmp_path):
    root, store = local
    data = os.urandom(3 * (1 << 22) + 17)  # several copy chunks and a remainder
    (root / "a.csv").write_bytes(data)
    hasher = hashlib.sha256()
    store.fetch("a.csv", tmp_path / "copy.csv", hasher=hasher)
    assert hasher.hexdigest() == hashlib.sha256(data).hexdigest()
    assert (tmp_path / "copy.csv").read_bytes() == data

    lake = LocalObjectStore(tmp_path / "lake")
    staged = tmp_path / "staged.parquet"
    staged.write_bytes(b"PAR1")
    lake.put_file(staged, "t/data/x.parquet", move=True)
    assert not staged.exists() and (tmp_path / "lake/t/data/x.parquet").read_bytes() == b"PAR1"
    kept = tmp_path / "kept.parquet"
    kept.write_bytes(b"PAR2")
    lake.put_file(kept, "t/data/y.parquet")
    assert kept.exists()


def test_local_fetch_of_a_stale_signature_raises_and_leaves_nothing(local, tmp_path):
    root, store = local
    p = root / "a.csv"
    p.write_bytes(b"one")
    stale = store.stat("a.csv").signature
    time.sleep(0.02)
    p.write_bytes(b"two")
    dest = tmp_path / "out" / "a.csv"
    dest.parent.mkdir()
    with pytest.raises(VersionChanged):
        store.fetch("a.csv", dest, signature=stale)
    assert list(dest.parent.iterdir()) == []


def test_local_fetch_notices_a_change_during_the_copy(local, tmp_path, monkeypatch):
    root, store = local
    p = root / "a.csv"
    p.write_bytes(b"one" * 1000)
    sig = store.stat("a.csv").signature
    import data_platform.resources.storage as storage

    copy = storage._copy

    def copy_then_replace(src, out):
        copy(src, out)
        (root / "new.csv").write_bytes(b"two")
        os.replace(root / "new.csv", p)

    monkeypatch.setattr(storage, "_copy", copy_then_replace)
    dest = tmp_path / "a.csv"
    with pytest.raises(VersionChanged):
        store.fetch("a.csv", dest, signature=sig)
    assert list(tmp_path.glob("*a.csv*")) == []


def test_local_pinned_reads_in_place_and_notices_any_change(local, tmp_path):
    """A local raw file is read where it is (no copy) and verified unchanged afterwards:
    rewritten in place (even with its old mtime put back), replaced, or touched."""
    root, store = local
    p = root / "a.csv"
    p.write_bytes(b"one" * 1000)
    sig = store.stat("a.csv").signature
    with store.pinned("a.csv", tmp_path / "copy.csv", signature=sig) as pin:
        assert pin.path == p and not (tmp_path / "copy.csv").exists()
        pin.verify()
    changes = [
        lambda: (p.write_bytes(b"two" * 1000), os.utime(p, ns=(old.st_atime_ns,
                                                              old.st_mtime_ns))),
        lambda: ((root / "n.csv").write_bytes(b"one" * 1000), os.replace(root / "n.csv", p)),
        lambda: os.utime(p),
    ]
    for change in changes:
        old = p.stat()
        with store.pinned("a.csv", tmp_path / "copy.csv") as pin:
            time.sleep(0.01)
            change()
            with pytest.raises(VersionChanged):
                pin.verify()
    with pytest.raises(VersionChanged):  # not the version the sensor saw
        with store.pinned("a.csv", tmp_path / "copy.csv", signature=sig):
            pass
    with pytest.raises(FileNotFoundError):
        with store.pinned("gone.csv", tmp_path / "copy.csv"):
            pass


def test_local_pinned_copies_a_name_a_sql_engine_would_take_for_a_pattern(local, tmp_path):
    root, store = local
    (root / "r[1]*.csv").write_bytes(b"x,y\n")
    with store.pinned("r[1]*.csv", tmp_path / "source.csv") as pin:
        assert pin.path == tmp_path / "source.csv" and pin.path.read_bytes() == b"x,y\n"


def _raw(client):
    return S3Storage(raw_url="s3://raw-bucket/raw", lake_url="s3://raw-bucket/lake").raw()


def test_s3_signature_is_the_same_from_list_and_stat(s3):
    s3.put_object(Bucket="raw-bucket", Key="raw/orders/a.csv", Body=b"one")
    raw = _raw(s3)
    [listed] = raw.list("orders")
    assert listed.signature == raw.stat("orders/a.csv").signature
    assert not raw.ordering_time_exact and listed.changed_ns == listed.mtime_ns


def test_s3_fetch_pins_the_version_and_refuses_a_stale_one(s3, tmp_path):
    s3.put_object(Bucket="raw-bucket", Key="raw/orders/a.csv", Body=b"one")
    raw = _raw(s3)
    seen = raw.stat("orders/a.csv")
    info = raw.fetch("orders/a.csv", tmp_path / "a.csv", signature=seen.signature)
    assert (tmp_path / "a.csv").read_bytes() == b"one" and info.signature == seen.signature

    s3.put_object(Bucket="raw-bucket", Key="raw/orders/a.csv", Body=b"two!")
    assert raw.stat("orders/a.csv").signature != seen.signature
    with pytest.raises(VersionChanged):
        raw.fetch("orders/a.csv", tmp_path / "b.csv", signature=seen.signature)
    assert not (tmp_path / "b.csv").exists()
    with pytest.raises(FileNotFoundError):
        raw.fetch("orders/missing.csv", tmp_path / "c.csv")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.csv"]


def test_s3_fetch_refuses_an_object_replaced_between_head_and_get(s3, tmp_path, monkeypatch):
    """The GET is pinned by If-Match (unversioned bucket): a replacement in between is a 412."""
    s3.put_object(Bucket="raw-bucket", Key="raw/orders/a.csv", Body=b"one")
    raw = _raw(s3)
    sig = raw.stat("orders/a.csv").signature
    stat = raw.stat

    def stat_then_replace(key):
        info = stat(key)
        s3.put_object(Bucket="raw-bucket", Key="raw/orders/a.csv", Body=b"other")
        return info

    monkeypatch.setattr(raw, "stat", stat_then_replace)
    with pytest.raises(VersionChanged):
        raw.fetch("orders/a.csv", tmp_path / "a.csv", signature=sig)
    assert list(tmp_path.iterdir()) == []


def test_s3_fetch_in_a_versioned_bucket_gets_the_version_seen(s3, tmp_path, monkeypatch):
    s3.put_bucket_versioning(Bucket="raw-bucket", VersioningConfiguration={"Status": "Enabled"})
    s3.put_object(Bucket="raw-bucket", Key="raw/orders/a.csv", Body=b"one")
    raw = _raw(s3)
    seen = raw.stat("orders/a.csv")
    assert seen.version_id
    stat = raw.stat

    def stat_then_replace(key):
        info = stat(key)
        s3.put_object(Bucket="raw-bucket", Key="raw/orders/a.csv", Body=b"other")
        return info

    monkeypatch.setattr(raw, "stat", stat_then_replace)
    info = raw.fetch("orders/a.csv", tmp_path / "a.csv", signature=seen.signature)
    assert (tmp_path / "a.csv").read_bytes() == b"one" and info.version_id == seen.version_id
