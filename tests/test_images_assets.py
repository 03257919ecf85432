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


@pytest.mark.parametrize("launcher", ["in_process", "subprocess"])
def test_images_to_tensors_through_the_compute_step(data_dir, defs, instance, tmp_path,
                                                    monkeypatch, launcher):
    """Ingest, then the tensors job as the sensor launches it after the ingest run; the
    tensors open with the reader; a second upload decodes only the new image."""
    from data_platform.tensors import open_dataset

    monkeypatch.setenv("PLATFORM_COMPUTE", launcher)
    write_raw(data_dir, "photos/cats/a.jpg", jpeg(1))
    write_raw(data_dir, "photos/dogs/fake.jpg", b"not an image")
    z = write_zip(tmp_path / "b.zip", [("birds/c.jpg", jpeg(3)), ("birds/d.png", png(4))])
    write_raw(data_dir, "photos/b.zip", z.read_bytes())
    ingest = run_ingest(defs, instance, "photos", ["b.zip", "cats/a.jpg", "dogs/fake.jpg"])
    assert ingest.success
    sensor = defs.get_sensor_def("tensors_sensor")
    ctx = dg.build_run_status_sensor_context(
        sensor_name="tensors_sensor", dagster_instance=instance,
        dagster_run=instance.get_run_by_id(ingest.run_id),
        dagster_event=ingest.get_run_success_event())
    request = sensor(ctx)
    assert request.job_name == "tensors_photos_job"
    job = defs.resolve_job_def("tensors_photos_job")
    r = job.execute_in_process(instance=instance, raise_on_error=False)
    assert r.success
    mat = r.asset_materializations_for_node("tensors__photos")[0].metadata
    assert mat["samples"].value == 3 and mat["decoded"].value == 3
    checks = {("/".join(e.asset_key.path), e.check_name): e.passed
              for e in (ev.event_specific_data for ev in r.all_events
                        if ev.event_type_value == "ASSET_CHECK_EVALUATION")}
    assert checks == {("tensors/photos", n): True for n in (
        "index_covers_manifest", "shards_match_index", "stats_finite",
        "no_content_in_two_splits")}
    ds = open_dataset(data_dir / "lake" / "tensors" / "photos")
    assert len(ds) == 3
    img, label = ds[0]
    assert img.shape == (32, 32, 3) and img.dtype.name == "uint8"
    assert sorted(ds[i][1] for i in range(3)) == ["birds", "birds", "cats"]
    # One more image: only it is decoded.
    write_raw(data_dir, "photos/cats/e.png", png(7))
    assert run_ingest(defs, instance, "photos", ["cats/e.png"]).success
    r = job.execute_in_process(instance=instance, raise_on_error=False)
    mat = r.asset_materializations_for_node("tensors__photos")[0].metadata
    assert (mat["samples"].value, mat["decoded"].value) == (4, 1)
    assert len(open_dataset(data_dir / "lake" / "tensors" / "photos")) == 4


def test_the_tensor_step_reads_raw_and_publishes_to_s3(s3, tmp_path):
    """The step's S3 side against moto's server: sources downloaded and checked against their
    content hash, shards written in the scratch working copy, then new files uploaded, the
    index last, and files the index no longer names removed."""
    import hashlib

    import pyarrow as pa
    import pyarrow.parquet as pq
    from data_platform.images import tensor_step

    good, other = jpeg(1), png(2)
    s3.put_object(Bucket="raw-bucket", Key="raw/photos/a.jpg", Body=good)
    z = write_zip(tmp_path / "z.zip", [("m/in.png", png(3)), ("m/changed.png", png(4))])
    s3.put_object(Bucket="raw-bucket", Key="raw/photos/z.zip", Body=z.read_bytes())
    s3.put_object(Bucket="raw-bucket", Key="raw/photos/b.png", Body=b"replaced since")
    s3.put_object(Bucket="raw-bucket", Key="lake/tensors/photos/shard-old-0.npy", Body=b"x")
    rows = [{"key": "a.jpg", "member": None, "content_hash": hashlib.sha256(good).hexdigest(),
             "label": "a", "split": "train"},
            {"key": "b.png", "member": None, "content_hash": hashlib.sha256(other).hexdigest(),
             "label": "b", "split": "train"},
            {"key": "z.zip", "member": "m/in.png", "label": "m", "split": "val",
             "content_hash": hashlib.sha256(png(3)).hexdigest()},
            {"key": "z.zip", "member": "m/changed.png", "label": "m", "split": "val",
             "content_hash": hashlib.sha256(png(5)).hexdigest()},
            {"key": "z.zip", "member": "m/gone.png", "label": "m", "split": "val",
             "content_hash": hashlib.sha256(png(6)).hexdigest()}]
    buf = pa.BufferOutputStream()
    pq.write_table(pa.Table.from_pylist(rows), buf)
    s3.put_object(Bucket="raw-bucket", Key="lake/_tensors/photos/sel.parquet",
                  Body=buf.getvalue().to_pybytes())

    class Pipes:
        class log:
            info = staticmethod(lambda msg: None)

        def __init__(self):
            self.checks, self.materialized = {}, None

        def report_asset_check(self, check_name, passed, **kw):
            self.checks[check_name] = passed

        def report_asset_materialization(self, asset_key, metadata):
            self.materialized = metadata

    pipes = Pipes()
    tensor_step.build({"dataset": "photos", "asset_key": "tensors/photos",
                       "raw_uri": "s3://raw-bucket/raw", "lake_uri": "s3://raw-bucket/lake",
                       "scratch": str(tmp_path / "scratch"), "selection":
                       "_tensors/photos/sel.parquet", "size": [16, 16], "fit": "crop",
                       "resample": "bilinear", "shard_mb": 1}, pipes)
    assert pipes.materialized["samples"] == 2
    assert {(r["key"], r["member"], r["reason"]) for r in
            pipes.materialized["left_out"]["raw_value"]} == {
        ("b.png", None, "changed since its manifest"),
        ("z.zip", "m/changed.png", "changed since its manifest"),
        ("z.zip", "m/gone.png", "not in the archive any more")}
    assert all(pipes.checks.values()) and len(pipes.checks) == 4
    names = {o["Key"].rsplit("/", 1)[-1] for o in s3.list_objects_v2(
        Bucket="raw-bucket", Prefix="lake/tensors/photos/")["Contents"]}
    assert "index.json" in names and "shard-old-0.npy" not in names
    assert any(n.startswith("shard-") for n in names) and any(n.startswith("samples-")
                                                              for n in names)
    assert not list((tmp_path / "scratch").glob("tensor-step-*"))  # work dir cleaned up
