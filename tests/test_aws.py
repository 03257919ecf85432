"""The aws resource set against a real S3/Glue/Athena API server on 127.0.0.1 (moto's server).

S3 and the Glue Data Catalog behave for real here: the ingest job creates native Iceberg tables
in Glue, stages Parquet in the lake bucket and commits it through pyiceberg's Glue catalog and
PyArrow S3 FileIO. Two things moto does not do as AWS does: its Glue ignores UpdateTable's
VersionId (the concurrency test adds a documented shim, tests/glue_shim.py), and its Athena
does not execute SQL (results are canned through moto's API: what is asserted about Athena is
the SQL sent and how results are read, never a number as if it were measured).
"""

import json
import threading
import urllib.request

import boto3
import dagster as dg
import pytest
import yaml
from botocore.stub import Stubber
from data_platform.assets.clean import effective_contract
from data_platform.cli import main
from data_platform.contracts import CONTRACTS_DIR, load_contract, parse_contract
from data_platform.operating.checks import committed_checks
from data_platform.definitions import build_definitions
from data_platform.resources import GlueCatalog, S3Storage
from data_platform.resources.athena import MB, TB
from data_platform.resources.storage import ReadOnlyError, VersionChanged

from . import glue_shim
from .conftest import SAMPLES, moto_server
from .helpers import check_results, run_ingest

REGION = "eu-west-1"
HEADER = "Order ID,Customer,Amount,Currency,Ordered At,Order Date,Gift?\n"


def rows(ids, day="2026-11-20", amount="2.50"):
    return "".join(f"{i},c{i},{amount},EUR,{day}T10:00:00+00:00,{day},false\n" for i in ids)


@pytest.fixture
def aws(monkeypatch, tmp_path):
    """A fresh moto server with raw and lake buckets, a Glue database and an Athena workgroup."""
    with moto_server(monkeypatch, REGION) as endpoint:
        for var, value in {
            "PLATFORM_ENV": "aws",
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


def catalog() -> GlueCatalog:
    return GlueCatalog(database="platform", workgroup="platform",
                       output_url="s3://lake-bucket/athena-results/")


def table(name="orders"):
    return catalog().iceberg().load_table(("platform", name))


def files(t) -> set[str]:
    return {task.file.file_path for task in t.scan().plan_files()}


def upload(s3, key, body):
    s3.put_object(Bucket="raw-bucket", Key=f"raw/{key}", Body=body.encode())


def ingest(keys, contracts=None, instance=None):
    defs = build_definitions("aws", contracts=contracts)
    return run_ingest(defs, instance or dg.DagsterInstance.ephemeral(), "orders", keys)


def test_aws_definitions_load_without_aws_or_settings(monkeypatch):
    """Loading the aws Definitions reads no setting and calls nothing: a dead endpoint is fine."""
    for var in ("PLATFORM_GLUE_DATABASE", "PLATFORM_RAW_URL", "PLATFORM_LAKE_URL"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # discard port: nothing answers
    defs = build_definitions("aws")
    assert isinstance(defs.resources["catalog"], GlueCatalog)
    assert defs.resolve_job_def("ingest_orders_job")


def test_old_external_table_of_the_same_name_is_refused_with_a_message(aws):
    _, s3 = aws
    boto3.client("glue", region_name=REGION).create_table(DatabaseName="platform", TableInput={
        "Name": "orders", "TableType": "EXTERNAL_TABLE",
        "Parameters": {"classification": "parquet", "EXTERNAL": "TRUE"}})
    upload(s3, "orders/a.csv", HEADER + rows(range(1, 4)))
    result = ingest(["a.csv"])
    assert not result.success
    text = " ".join(str(e.event_specific_data) for e in result.all_events
                    if e.event_type_value == "STEP_FAILURE")
    assert "not an Iceberg table" in text and "platform.orders" in text


def test_s3_object_store_lists_all_pages_fetches_versions_and_protects_raw(aws, tmp_path):
    _, s3 = aws
    for i in range(7):
        s3.put_object(Bucket="raw-bucket", Key=f"raw/orders/{i}.csv", Body=b"same")
    s3.put_object(Bucket="raw-bucket", Key="raw/orders/dir/", Body=b"")
    storage = S3Storage(raw_url="s3://raw-bucket/raw", lake_url="s3://lake-bucket/lake")
    raw = storage.raw()
    raw.page_size = 2  # four pages for seven objects
    listed = list(raw.list("orders"))
    assert [o.key for o in listed] == [f"orders/{i}.csv" for i in range(7)]
    assert raw.content_hash("orders/0.csv") == raw.content_hash("orders/6.csv")
    with pytest.raises(ReadOnlyError):
        raw.put_bytes(b"x", "orders/0.csv")

    seen = listed[0]
    info = raw.fetch("orders/0.csv", tmp_path / "a", signature=seen.signature)
    assert (tmp_path / "a").read_bytes() == b"same" and info.etag == seen.etag
    s3.put_object(Bucket="raw-bucket", Key="raw/orders/0.csv", Body=b"changed")
    with pytest.raises(VersionChanged):  # a conditional GET on the ETag the sensor saw
        raw.fetch("orders/0.csv", tmp_path / "b", signature=seen.signature)
    with pytest.raises(FileNotFoundError):
        raw.fetch("orders/missing.csv", tmp_path / "c")

    lake = storage.lake()
    assert lake.uri("warehouse/platform/t") == "s3://lake-bucket/lake/warehouse/platform/t"
    lake.put_bytes(b"abc", "_staging/x.json")
    assert lake.get_bytes("_staging/x.json") == b"abc" and lake.get_bytes("nope") is None
    assert not lake.put_bytes_if_absent(b"second", "_staging/x.json")
    lake.delete("_staging/x.json")
    assert lake.stat("_staging/x.json") is None


def test_catalog_properties_follow_the_environment(aws, monkeypatch):
    endpoint, _ = aws
    props = catalog().file_io_properties()
    assert props["s3.endpoint"] == endpoint and props["s3.region"] == REGION
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", "http://127.0.0.1:1")
    assert catalog().file_io_properties()["s3.endpoint"] == "http://127.0.0.1:1"
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3")
    monkeypatch.delenv("AWS_ENDPOINT_URL")
    assert "s3.endpoint" not in catalog().file_io_properties()  # real S3: the SDK's default
    assert catalog().namespace == "platform"


def refuse_athena(monkeypatch):
    """Make every Athena path of GlueCatalog fail loudly. Athena bills each query by the bytes
    it scans, so runs and checks count rows from Iceberg metadata and never query a table."""
    def refuse(self, *args, **kwargs):
        raise AssertionError("a run or a check called Athena")
    for name in ("query", "execute", "athena", "row_count"):
        monkeypatch.setattr(GlueCatalog, name, refuse)


def test_first_ingest_creates_iceberg_tables_in_glue_and_commits(aws, monkeypatch, capsys):
    """Also: neither the run (assets and their checks) nor the committed-snapshot checks
    touch Athena."""
    _, s3 = aws
    refuse_athena(monkeypatch)
    for path in sorted((SAMPLES / "orders").iterdir()):
        s3.upload_file(str(path), "raw-bucket", f"raw/orders/{path.name}")
    result = ingest(["2026-11-20.csv", "2026-11-21.csv"])
    assert result.success
    checks = check_results(result)
    assert checks[("cleaned/orders", "rows_reconcile")].passed
    assert checks[("table/orders", "commit_matches_plan")].passed

    glue = boto3.client("glue", region_name=REGION)
    for name in ("orders", "orders_rejected"):
        params = glue.get_table(DatabaseName="platform", Name=name)["Table"]["Parameters"]
        assert params["table_type"] == "ICEBERG"
        assert params["metadata_location"].startswith(
            f"s3://lake-bucket/lake/warehouse/platform/{name}/metadata/")

    staged = [json.loads(s3.get_object(Bucket="lake-bucket", Key=o["Key"])["Body"].read())
              for o in s3.list_objects_v2(Bucket="lake-bucket",
                                          Prefix="lake/_staging/orders/")["Contents"]]
    assert {r["status"] for r in staged} == {"committed"}
    data = table().scan().to_arrow()
    assert data.num_rows == sum(r["rows_written"] for r in staged) > 0
    assert data.num_rows == len(data.column("order_id").unique())
    assert files(table()) == {f for r in staged for f in r["data_files"]}
    assert all(f.startswith("s3://lake-bucket/lake/warehouse/platform/orders/data/")
               for f in files(table()))

    rejected = table("orders_rejected").scan().to_arrow()
    assert rejected.num_rows == sum(r["rows_rejected"] for r in staged) > 0
    assert set(rejected.column("_source_key").to_pylist()) <= {"2026-11-20.csv",
                                                                "2026-11-21.csv"}
    assert all(reason for reason in rejected.column("reason").to_pylist())

    lake = S3Storage(raw_url="s3://raw-bucket/raw", lake_url="s3://lake-bucket/lake").lake()
    contract = effective_contract(load_contract(CONTRACTS_DIR / "orders.yaml"), lake)
    results = {r.name: r for r in committed_checks(contract, table(), table("orders_rejected"),
                                                   lake)}
    assert results["rows_reconcile"].passed and results["primary_key_unique"].passed
    # The operating commands read the same zones with PLATFORM_ENV=aws (no DAGSTER_HOME).
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    assert main(["check", "orders", "--json"]) == 0
    checked = {r["check"]: r for r in json.loads(capsys.readouterr().out)}
    assert checked["rows_reconcile"]["passed"] and checked["rows_reconcile"]["detail"] == "files=2"
    assert main(["status", "--json"]) == 0
    (orders,) = [r for r in json.loads(capsys.readouterr().out) if r["dataset"] == "orders"]
    assert orders["committed"] == 2
    # Nothing reached Athena by another route (a client of its own) either.
    assert boto3.client("athena", region_name=REGION).list_query_executions(
        WorkGroup="platform")["QueryExecutionIds"] == []


def test_reingest_of_a_changed_file_replaces_its_rows_exactly(aws):
    _, s3 = aws
    upload(s3, "orders/a.csv", HEADER + rows(range(1, 11)))
    upload(s3, "orders/b.csv", HEADER + rows(range(100, 105)))
    instance = dg.DagsterInstance.ephemeral()
    assert ingest(["a.csv", "b.csv"], instance=instance).success
    before = table()
    old_a = {t.file.file_path
             for t in before.scan(row_filter="_source_key == 'a.csv'").plan_files()}
    assert old_a and old_a < files(before)

    upload(s3, "orders/a.csv", HEADER + rows(range(1, 7), amount="9.99"))  # 6 rows, new values
    assert ingest(["a.csv"], instance=instance).success
    after = table()
    data = after.scan().to_arrow().to_pylist()
    by_key = {}
    for r in data:
        by_key.setdefault(r["_source_key"], []).append(r)
    assert sorted(r["order_id"] for r in by_key["a.csv"]) == list(range(1, 7))
    assert {str(r["amount"]) for r in by_key["a.csv"]} == {"9.99"}
    assert sorted(r["order_id"] for r in by_key["b.csv"]) == list(range(100, 105))
    assert len(data) == 11
    assert not old_a & files(after)  # the old version's files left the current snapshot
    assert after.current_snapshot().snapshot_id != before.current_snapshot().snapshot_id


def test_contract_with_an_added_column_evolves_the_table(aws):
    _, s3 = aws
    spec = yaml.safe_load((CONTRACTS_DIR / "orders.yaml").read_text())
    base = parse_contract(spec)
    upload(s3, "orders/a.csv", HEADER + rows(range(1, 4)))
    assert ingest(["a.csv"], contracts={"orders": base}).success

    spec["columns"].append({"name": "channel", "type": "string", "source": "Channel"})
    evolved = parse_contract(spec)
    upload(s3, "orders/b.csv", HEADER.strip() + ",Channel\n"
           + "".join(line + ",web\n" for line in rows(range(10, 12)).splitlines()))
    assert ingest(["b.csv"], contracts={"orders": evolved}).success

    t = table()
    assert t.schema().find_field("channel").optional
    got = sorted((r["_source_key"], r["order_id"], r["channel"])
                 for r in t.scan().to_arrow().to_pylist())
    assert got == [("a.csv", 1, None), ("a.csv", 2, None), ("a.csv", 3, None),
                   ("b.csv", 10, "web"), ("b.csv", 11, "web")]
    glue_cols = boto3.client("glue", region_name=REGION).get_table(
        DatabaseName="platform", Name="orders")["Table"]["StorageDescriptor"]["Columns"]
    assert "channel" in {c["Name"] for c in glue_cols}  # what Athena's schema shows


def test_moto_alone_loses_a_concurrent_glue_update(aws):
    """Why the shim exists: moto applies an UpdateTable whose VersionId is stale.

    If this starts failing, moto enforces the check itself and the shim can go.
    """
    glue = boto3.client("glue", region_name=REGION)
    glue.create_table(DatabaseName="platform", TableInput={"Name": "t", "Parameters": {"v": "0"}})
    version = glue.get_table(DatabaseName="platform", Name="t")["Table"]["VersionId"]
    for v in ("1", "2"):  # two writers that both read `version`
        glue.update_table(DatabaseName="platform", VersionId=version,
                          TableInput={"Name": "t", "Parameters": {"v": v}})
    assert glue.get_table(DatabaseName="platform", Name="t")["Table"]["Parameters"] == {"v": "2"}


def test_concurrent_commits_both_land_through_glue_optimistic_locking(aws, monkeypatch):
    """Two runs commit to the same table at once; both read the same Glue table version, one
    wins and the other gets Glue's ConcurrentModificationException (moto made to enforce it by
    the shim), which pyiceberg maps to CommitFailedException and the commit retries."""
    _, s3 = aws
    upload(s3, "orders/seed.csv", HEADER + rows(range(1, 4)))
    assert ingest(["seed.csv"]).success  # tables exist; the race is about commits, not creation

    both_at_update = threading.Barrier(2, timeout=60)
    met: set[int] = set()

    def before_update(name):
        # The first data commit of each run waits for the other's: both read the same version.
        if name == "orders" and threading.get_ident() not in met:
            met.add(threading.get_ident())
            both_at_update.wait()
    real_glue = GlueCatalog.glue
    monkeypatch.setattr(GlueCatalog, "glue", lambda self: glue_shim.VersionCheckingGlue(
        real_glue(self), before_update=before_update))
    glue_shim.conflicts.clear()

    for p in ("p", "q"):
        upload(s3, f"orders/{p}.csv", HEADER + rows(range(ord(p) * 100, ord(p) * 100 + 7)))
    results = {}

    def run(key):
        with dg.DagsterInstance.ephemeral() as instance:  # closed in the thread that opened it
            results[key] = ingest([key], instance=instance)

    threads = [threading.Thread(target=run, args=(k,)) for k in ("p.csv", "q.csv")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert all(r.success for r in results.values()), {k: r.success for k, r in results.items()}
    assert "orders" in glue_shim.conflicts  # the race happened and was refused, not lost
    data = table().scan().to_arrow()
    keys = data.column("_source_key").to_pylist()
    assert sorted(set(keys)) == ["p.csv", "q.csv", "seed.csv"]
    assert data.num_rows == 17 == len(data.column("order_id").unique())


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


def test_athena_query_runs_in_the_workgroup_and_types_results(aws):
    """moto's Athena returns the canned answer queued here, whatever the SQL: this checks the
    request (workgroup, database, output location) and the typing of results, not a count."""
    endpoint, _ = aws
    queue_athena_results(endpoint, [["7", "3"]])
    assert catalog().query('SELECT count(*), 3 FROM "orders"') == [(7, 3)]
    athena = boto3.client("athena", region_name=REGION)
    (qid,) = athena.list_query_executions(WorkGroup="platform")["QueryExecutionIds"]
    sent = athena.get_query_execution(QueryExecutionId=qid)["QueryExecution"]
    assert sent["Query"] == 'SELECT count(*), 3 FROM "orders"'
    assert sent["QueryExecutionContext"]["Database"] == "platform"
    assert catalog().expose(["orders"]) is None  # Athena reads Iceberg itself: nothing to do


def test_maintenance_compacts_through_athena_and_records_bytes_scanned_and_cost(aws,
                                                                                monkeypatch):
    """Athena cannot run OPTIMIZE or VACUUM here: a botocore Stubber answers the four
    statements (two per table) with SUCCEEDED and a DataScannedInBytes. What is asserted is
    what the op does with Athena's answers (sent in order, summed, priced), not the numbers."""
    _, s3 = aws
    upload(s3, "orders/a.csv", HEADER + rows(range(1, 4)))
    assert ingest(["a.csv"]).success
    client = boto3.client("athena", region_name=REGION)
    stub = Stubber(client)
    scanned = {"OPTIMIZE platform.orders REWRITE DATA USING BIN_PACK": 30 * MB,
               "VACUUM platform.orders": 0,
               "OPTIMIZE platform.orders_rejected REWRITE DATA USING BIN_PACK": 2 * MB,
               "VACUUM platform.orders_rejected": 0}
    for i, (sql, nbytes) in enumerate(scanned.items()):
        stub.add_response("start_query_execution", {"QueryExecutionId": f"q{i}"}, {
            "QueryString": sql, "WorkGroup": "platform",
            "QueryExecutionContext": {"Database": "platform"},
            "ResultConfiguration": {"OutputLocation": "s3://lake-bucket/athena-results/"}})
        stub.add_response("get_query_execution", {"QueryExecution": {
            "QueryExecutionId": f"q{i}", "StatementType": "DML", "Status": {"State": "SUCCEEDED"},
            "Statistics": {"DataScannedInBytes": nbytes}}}, {"QueryExecutionId": f"q{i}"})
        stub.add_response("get_query_results", {"ResultSet": {
            "Rows": [], "ResultSetMetadata": {"ColumnInfo": []}}},
            {"QueryExecutionId": f"q{i}", "MaxResults": 1000})
    monkeypatch.setattr(GlueCatalog, "athena", lambda self: client)
    with stub:
        result = build_definitions("aws").resolve_job_def("maintain_tables_job") \
            .execute_in_process(instance=dg.DagsterInstance.ephemeral())
        stub.assert_no_pending_responses()
    assert result.success
    (meta,) = [e.event_specific_data.metadata for e in result.all_events
               if e.event_type_value == "STEP_OUTPUT"]
    assert meta["athena_queries"].value == 4
    assert meta["athena_bytes_scanned"].value == 32 * MB
    # each statement is billed for at least 10 MB, the two scanning less included
    expected = sum(max(n, 10 * MB) for n in scanned.values()) / TB * 5.0
    assert meta["athena_estimated_cost_usd"].value == pytest.approx(expected)
    per_table = meta["tables"].value
    assert per_table["orders"]["athena_bytes_scanned"] == 30 * MB
    assert per_table["orders"]["compaction"].startswith("query engine: OPTIMIZE platform.orders ")
