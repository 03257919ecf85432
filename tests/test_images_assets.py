"""Image datasets through the platform: the manifest staged, audited and committed to an
Iceberg table like any dataset's; invalid images as rows with reasons, damaged archives as
failed partitions. Real files, a real instance, real local resources."""

import io
import zipfile

import dagster as dg
import pytest
from data_platform import staging as st
from data_platform.contracts import parse_contract
from data_platform.definitions import build_definitions
from data_platform.resources import DuckDBCatalog, LocalStorage

from .conftest import write_raw
from .helpers import check_results, run_ingest
from .image_samples import jpeg, png, write_zip

CONTRACT = {"name": "photos", "kind": "images", "description": "test photos",
            "images": {"size": [32, 32]}, "checks": {"rejected_share_warn": 0.3,
                                                     "rejected_share_error": 0.6}}


@pytest.fixture
def defs():
    return build_definitions(contracts={"photos": parse_contract(CONTRACT)})


@pytest.fixture
def instance():
    return dg.DagsterInstance.ephemeral()


def q(sql):
    return DuckDBCatalog().query(sql)


def test_images_and_an_archive_land_in_the_manifest_table(data_dir, defs, instance, tmp_path):
    write_raw(data_dir, "photos/cats/a.jpg", jpeg(1))
    write_raw(data_dir, "photos/dogs/b.png", png(2))
    write_raw(data_dir, "photos/dogs/fake.jpg", b"just some text, not a picture\n")
    write_raw(data_dir, "photos/notes.txt", b"hello")
    z = write_zip(tmp_path / "batch.zip", [("birds/c.jpg", jpeg(3)), ("birds/d.png", png(4)),
                                           ("../evil.jpg", jpeg(5))])
    write_raw(data_dir, "photos/batch.zip", z.read_bytes())
    keys = ["batch.zip", "cats/a.jpg", "dogs/b.png", "dogs/fake.jpg", "notes.txt"]
    r = run_ingest(defs, instance, "photos", keys)
    assert r.success
    got = q("SELECT key, member, label, valid, format, width FROM photos ORDER BY key, member")
    assert [(k, m, lab, v) for k, m, lab, v, _, _ in got] == [
        ("batch.zip", "../evil.jpg", None, False),
        ("batch.zip", "birds/c.jpg", "birds", True),
        ("batch.zip", "birds/d.png", "birds", True),
        ("cats/a.jpg", None, "cats", True),
        ("dogs/b.png", None, "dogs", True),
        ("dogs/fake.jpg", None, "dogs", False),
        ("notes.txt", None, None, False),
    ]
    assert {(f, w) for _, _, _, v, f, w in got if v} == {("JPEG", 64), ("PNG", 64)}
    reasons = dict(q("SELECT key || coalesce('!' || member, ''), reason FROM photos "
                     "WHERE NOT valid"))
    assert "text" in reasons["dogs/fake.jpg"] and "unsafe" in reasons["batch.zip!../evil.jpg"]
    checks = check_results(r)
    assert checks[("cleaned/photos", "rows_reconcile")].passed
    # 3 of 7 images invalid (43%): above the warn threshold, below the error one.
    share = checks[("cleaned/photos", "rejected_share")]
    assert not share.passed and share.severity == dg.AssetCheckSeverity.WARN
    assert q("SELECT count(DISTINCT split) > 0, count(*) FILTER (split IS NULL) FROM photos "
             "WHERE valid") == [(True, 0)]


def test_a_truncated_archive_fails_its_partition_and_commits_nothing(data_dir, defs, instance,
                                                                     tmp_path):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for i in range(5):
            zf.writestr(f"x/{i}.png", png(i))
    write_raw(data_dir, "photos/cut.zip", buf.getvalue()[: len(buf.getvalue()) // 2])
    write_raw(data_dir, "photos/ok.png", png(9))
    r = run_ingest(defs, instance, "photos", ["cut.zip", "ok.png"])
    assert not r.success
    rec = st.latest_record(LocalStorage().lake(), "photos", "cut.zip")
    assert rec.status == st.UNREADABLE and "ArchiveError" in rec.reason
    assert q("SELECT key FROM photos") == [("ok.png",)]
