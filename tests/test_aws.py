"""The aws resource set against a real S3/Glue/Athena API server on 127.0.0.1 (moto's server).

S3 and the Glue Data Catalog behave for real here. Athena does not execute SQL in moto: its
results are canned through moto's API, so Athena answers are a mock; what the test asserts about
Athena is the SQL the platform sends and how it reads results.
"""

import json
import time
import urllib.request

import boto3
import dagster as dg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from data_platform.assets.checks import _footer
from data_platform.definitions import build_definitions
from data_platform.resources import GlueCatalog, S3Storage
from data_platform.resources.storage import ReadOnlyError
from moto.server import ThreadedMotoServer

from .conftest import SAMPLES
from .helpers import check_results, free_port, run_ingest, tick

REGION = "eu-west-1"


@pytest.fixture
def aws(monkeypatch, tmp_path):
    """A fresh moto server with raw and lake buckets, a Glue database and an Athena workgroup."""
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    # moto keeps its backends per process: start every test from an empty account.
    urllib.request.urlopen(urllib.request.Request(f"{endpoint}/moto-api/reset", method="POST"),
                           timeout=10)
    for var, value in {
        "AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": REGION,
        "AWS_REGION": REGION, "PLATFORM_ENV": "aws",
        "PLATFORM_RAW_URL": "s3://raw-bucket/raw", "PLATFORM_LAKE_URL": "s3://lake-bucket/lake",
        "PLATFORM_GLUE_DATABASE": "platform", "PLATFORM_ATHENA_WORKGROUP": "platform",
        "PLATFORM_ATHENA_OUTPUT_URL": "s3://lake-bucket/athena-results/",
        "PLATFORM_SCRATCH_DIR": str(tmp_path / "scratch"),
        "PLATFORM_SENSOR_SETTLE_SECONDS": "0",
    }.items():
        monkeypatch.setenv(var, value)
    (tmp_path / "scratch").mkdir()
    s3 = boto3.client("s3", region_name=REGION)
    for bucket in ("raw-bucket", "lake-bucket"):
        s3.create_bucket(Bucket=bucket,
                         CreateBucketConfiguration={"LocationConstraint": REGION})
    boto3.client("glue", region_name=REGION).create_database(DatabaseInput={"Name": "platform"})
    boto3.client("athena", region_name=REGION).create_work_group(Name="platform")
    yield endpoint, s3
    server.stop()


def queue_athena_results(endpoint: str, results: list[list[str]]) -> None:
    """Queue canned Athena answers (one per query, in order), each a single row of bigints."""
    body = {"region": REGION, "results": [
        {"rows": [{"Data": [{"VarCharValue": f"c{i}"} for i in range(len(r))]},
                  {"Data": [{"VarCharValue": v} for v in r]}],
         "column_info": [{"Name": f"c{i}", "Type": "bigint", "CatalogName": "hive",
                          "SchemaName": "", "TableName": "", "Label": f"c{i}",
                          "Nullable": "UNKNOWN", "CaseSensitive": False, "Precision": 19,
                          "Scale": 0} for i in range(len(r))]}
        for r in results]}
    req = urllib.request.Request(f"{endpoint}/moto-api/static/athena/query-results",
                                 data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    assert urllib.request.urlopen(req, timeout=10).status == 201


def test_s3_object_store_lists_all_pages_and_protects_raw(aws):
    _, s3 = aws
    for i in range(7):
        s3.put_object(Bucket="raw-bucket", Key=f"raw/orders/{i}.csv", Body=b"same")
    s3.put_object(Bucket="raw-bucket", Key="raw/orders/dir/", Body=b"")
    storage = S3Storage(raw_url="s3://raw-bucket/raw", lake_url="s3://lake-bucket/lake")
    raw = storage.raw()
    raw.page_size = 2  # four pages for seven objects
    keys = [o.key for o in raw.list("orders")]
    assert keys == [f"orders/{i}.csv" for i in range(7)]
    assert raw.content_hash("orders/0.csv") == raw.content_hash("orders/6.csv")
    with raw.local_copy("orders/3.csv") as p:
        assert p.read_bytes() == b"same"
    assert not p.exists()
    with pytest.raises(ReadOnlyError):
        raw.put_bytes(b"x", "orders/0.csv")
    with pytest.raises(FileNotFoundError):
        with raw.local_copy("orders/missing.csv"):
            pass
    lake = storage.lake()
    lake.put_bytes(b"abc", "_manifests/x.json")
    assert lake.get_bytes("_manifests/x.json") == b"abc" and lake.get_bytes("nope") is None
    lake.delete("_manifests/x.json")
    assert lake.stat("_manifests/x.json") is None


def test_ingest_on_s3_registers_glue_tables(aws):
    endpoint, s3 = aws
    for path in sorted((SAMPLES / "orders").iterdir()):
        s3.upload_file(str(path), "raw-bucket", f"raw/orders/{path.name}")
    s3.put_object(Bucket="raw-bucket", Key="raw/unknown/x.csv", Body=b"a,b\n")
    defs = build_definitions("aws")
    instance = dg.DagsterInstance.ephemeral()

    _, skip, cursor = tick(defs, instance, None)
    assert "unknown dataset 'unknown'" in skip
    requests, _, cursor = tick(defs, instance, cursor)
    assert [r.tags["platform/files"] for r in requests] == ["2"]
    keys = instance.get_dynamic_partitions("raw_orders")
    assert keys == ["2026-11-20.csv", "2026-11-21.csv"]

    # Athena answers, in the order the run asks: the table's row count, then the checks'.
    queue_athena_results(endpoint, [["240"], ["0"], ["0", "0"], [], ["240"]])
    result = run_ingest(defs, instance, "orders", keys, add_partitions=False)
    assert result.success
    checks = check_results(result)
    assert checks[("cleaned/orders", "rows_reconcile")].passed
    assert checks[("cleaned/orders", "schema_matches_contract")].passed
    assert checks[("table/orders", "row_count_matches_parquet")].passed

    lake_keys = sorted(o["Key"] for o in s3.list_objects_v2(
        Bucket="lake-bucket", Prefix="lake/")["Contents"])
    cleaned = [k for k in lake_keys if k.startswith("lake/cleaned/orders/")]
    assert len(cleaned) == 4 and all(k.endswith(".parquet") for k in cleaned)
    assert {k.split("/")[3] for k in cleaned} == {
        "order_date=2026-11-19", "order_date=2026-11-20", "order_date=2026-11-21"}
    assert len([k for k in lake_keys if k.startswith("lake/rejected/orders/")]) == 2
    raw_after = s3.list_objects_v2(Bucket="raw-bucket", Prefix="raw/orders/")["KeyCount"]
    assert raw_after == 2

    glue = boto3.client("glue", region_name=REGION)
    table = glue.get_table(DatabaseName="platform", Name="orders")["Table"]
    sd = table["StorageDescriptor"]
    assert sd["Location"] == "s3://lake-bucket/lake/cleaned/orders/"
    assert [(c["Name"], c["Type"]) for c in sd["Columns"]] == [
        ("order_id", "bigint"), ("customer", "string"), ("amount", "decimal(12,2)"),
        ("currency", "string"), ("ordered_at", "timestamp"), ("is_gift", "boolean")]
    assert table["PartitionKeys"] == [{"Name": "order_date", "Type": "date"}]
    parts = glue.get_partitions(DatabaseName="platform", TableName="orders")["Partitions"]
    assert sorted(p["Values"][0] for p in parts) == ["2026-11-19", "2026-11-20", "2026-11-21"]
    assert glue.get_table(DatabaseName="platform", Name="orders_rejected")["Table"][
        "StorageDescriptor"]["Location"] == "s3://lake-bucket/lake/rejected/orders/"

    athena = boto3.client("athena", region_name=REGION)
    sent = [athena.get_query_execution(QueryExecutionId=q)["QueryExecution"]
            for q in athena.list_query_executions(WorkGroup="platform")["QueryExecutionIds"]]
    assert {'SELECT count(*) FROM "orders"'} <= {q["Query"] for q in sent}
    assert all(q["QueryExecutionContext"]["Database"] == "platform" for q in sent)

    # A second run of the same files is idempotent: no new objects, same partitions.
    queue_athena_results(endpoint, [["240"], ["0"], ["0", "0"], [], ["240"]])
    assert run_ingest(defs, instance, "orders", keys, add_partitions=False).success
    again = sorted(o["Key"] for o in s3.list_objects_v2(
        Bucket="lake-bucket", Prefix="lake/cleaned/")["Contents"])
    assert again == cleaned


def test_athena_query_polls_and_types_results(aws):
    endpoint, _ = aws
    queue_athena_results(endpoint, [["7", "3"]])
    catalog = GlueCatalog(database="platform", workgroup="platform",
                          output_url="s3://lake-bucket/athena-results/")
    t0 = time.monotonic()
    assert catalog.query("SELECT 7, 3") == [(7, 3)]
    assert time.monotonic() - t0 < 30


def test_put_if_absent_lets_only_the_first_writer_win(aws):
    lake = S3Storage(raw_url="s3://raw-bucket/raw", lake_url="s3://lake-bucket/lake").lake()
    assert lake.put_bytes_if_absent(b"first", "_contracts/x.json")
    assert not lake.put_bytes_if_absent(b"second", "_contracts/x.json")
    assert lake.get_bytes("_contracts/x.json") == b"first"


def test_parquet_footer_is_read_with_ranged_gets_only(aws, tmp_path):
    """Checks read row counts and schemas from footers: a few KB, never the whole object."""
    _, s3 = aws
    local = tmp_path / "t.parquet"
    pq.write_table(pa.table({"x": list(range(200_000))}), local, row_group_size=50_000)
    s3.upload_file(str(local), "lake-bucket", "lake/cleaned/t/t.parquet")
    lake = S3Storage(raw_url="s3://raw-bucket/raw", lake_url="s3://lake-bucket/lake").lake()
    reads = []
    store_open = lake.open_read

    def counting_open(key):
        reader = store_open(key)
        original = reader.readinto

        def readinto(buf):
            n = original(buf)
            reads.append(n)
            return n

        reader.readinto = readinto
        return reader

    lake.open_read = counting_open
    meta = _footer(lake, "cleaned/t/t.parquet")
    assert meta.num_rows == 200_000 and meta.num_row_groups == 4
    assert sum(reads) < local.stat().st_size / 10
