"""The asset graph (raw -> cleaned -> table) and its checks, run for real on tmp folders."""

import hashlib
import json
import multiprocessing
import time
from pathlib import Path

import dagster as dg
import duckdb
import pyarrow.parquet as pq
import pytest
from data_platform.assets.checks import reconcile, schema_problems
from data_platform.assets.clean import effective_contract
from data_platform.contracts import Column, load_contracts
from data_platform.definitions import build_definitions
from data_platform.resources import DuckDBCatalog, LocalStorage
from data_platform.resources.storage import ReadOnlyError

from .conftest import write_raw
from .helpers import check_results, run_ingest

HEADER = "Order ID,Customer,Amount,Currency,Ordered At,Order Date,Gift?\n"


def rows(ids, day="2026-11-20", customer="c"):
    return "".join(
        f"{i},{customer}{i},2.50,EUR,{day}T10:00:00+00:00,{day},false\n" for i in ids
    )


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def instance():
    return dg.DagsterInstance.ephemeral()


def test_samples_materialize_with_checks_and_query(samples, instance):
    defs = build_definitions()
    before = {p: digest(p) for p in (samples / "raw").rglob("*.csv")}
    r = run_ingest(defs, instance, "orders", ["2026-11-20.csv", "2026-11-21.csv"])
    assert r.success
    checks = check_results(r)
    assert checks[("cleaned/orders", "rows_reconcile")].passed
    assert checks[("cleaned/orders", "schema_matches_contract")].passed
    assert checks[("table/orders", "primary_key_unique")].passed
    assert checks[("table/orders", "row_count_matches_parquet")].passed
    share = checks[("cleaned/orders", "rejected_share")]  # 2 bad rows of 122: above 1%
    assert not share.passed and share.severity == dg.AssetCheckSeverity.WARN

    catalog = DuckDBCatalog()
    assert catalog.query("SELECT count(*) FROM orders") == [(240,)]
    rejected = catalog.query(
        "SELECT source_key, line, error_type FROM orders_rejected ORDER BY source_key, line")
    assert rejected == [
        ("orders/2026-11-20.csv", 16, "CAST"),
        ("orders/2026-11-20.csv", 41, "MISSING COLUMNS"),
        ("orders/2026-11-21.csv", 34, "NOT NULL"),
        ("orders/2026-11-21.csv", 35, "CAST"),
    ]
    # Every partition keeps its own status; raw files are untouched.
    assert instance.get_materialized_partitions(dg.AssetKey(["cleaned", "orders"])) == {
        "2026-11-20.csv", "2026-11-21.csv"}
    assert before == {p: digest(p) for p in (samples / "raw").rglob("*.csv")}
    with pytest.raises(ReadOnlyError):
        LocalStorage().raw().put_bytes(b"x", "orders/2026-11-20.csv")


def test_inferred_schema_is_recorded_and_holds_later_files(samples, instance):
    defs = build_definitions()
    r = run_ingest(defs, instance, "penguins", ["station_a_2008.csv"])
    assert r.success
    recorded = (samples / "lake" / "_contracts" / "penguins.json").read_text()
    assert '"culmen_length_mm"' in recorded and '"body_mass_g"' in recorded
    r = run_ingest(defs, instance, "penguins", ["station_b_2009.csv"])
    assert r.success
    reasons = DuckDBCatalog().query(
        "SELECT line, column_name FROM penguins_rejected WHERE source_key LIKE '%station_b%' "
        "ORDER BY line")
    assert reasons == [(21, "body_mass_g"), (71, "sample_date")]
    types = dict(DuckDBCatalog().query(
        "SELECT column_name, data_type FROM information_schema.columns "
        "WHERE table_name = 'penguins'"))
    assert types["body_mass_g"] == "BIGINT" and types["culmen_length_mm"] == "DOUBLE"


def test_rerun_replaces_a_partition_exactly(data_dir, instance):
    defs = build_definitions()
    write_raw(data_dir, "orders/f.csv", HEADER + rows(range(1, 5), "2026-11-19")
              + rows(range(5, 9), "2026-11-20"))
    assert run_ingest(defs, instance, "orders", ["f.csv"]).success
    cleaned = data_dir / "lake" / "cleaned" / "orders"
    assert {p.parent.name for p in cleaned.rglob("*.parquet")} == {
        "order_date=2026-11-19", "order_date=2026-11-20"}

    # New content for the same key, now on another day only.
    write_raw(data_dir, "orders/f.csv", HEADER + rows(range(1, 4), "2026-11-21"))
    assert run_ingest(defs, instance, "orders", ["f.csv"]).success
    files = sorted(p.relative_to(cleaned).as_posix() for p in cleaned.rglob("*.parquet"))
    assert len(files) == 1 and files[0].startswith("order_date=2026-11-21/f.csv-")
    assert DuckDBCatalog().query("SELECT count(*), min(order_date) FROM orders")[0][0] == 3
    assert not list((data_dir / "lake" / "_manifests").rglob("*.pending.json"))
    assert not list((data_dir / "lake").rglob(".tmp-*"))


def test_unreadable_file_fails_its_partition_only(data_dir, instance):
    defs = build_definitions()
    write_raw(data_dir, "orders/a_good.csv", HEADER + rows(range(1, 4)))
    empty = write_raw(data_dir, "orders/b_empty.csv", b"")
    r = run_ingest(defs, instance, "orders", ["a_good.csv", "b_empty.csv"])
    assert not r.success
    failure = next(e for e in r.all_events if e.event_type_value == "STEP_FAILURE")
    assert "b_empty.csv" in failure.message or "b_empty.csv" in str(
        failure.event_specific_data.error)
    assert instance.get_materialized_partitions(dg.AssetKey(["cleaned", "orders"])) == {
        "a_good.csv"}
    assert empty.exists() and empty.stat().st_size == 0


def test_high_rejected_share_blocks_the_table(data_dir, instance):
    defs = build_definitions()
    bad = "".join(f"{i},c,notanumber,EUR,2026-11-20T10:00:00+00:00,2026-11-20,false\n"
                  for i in range(100, 110))
    write_raw(data_dir, "orders/bad.csv", HEADER + rows(range(1, 11)) + bad)
    r = run_ingest(defs, instance, "orders", ["bad.csv"])
    share = check_results(r)[("cleaned/orders", "rejected_share")]
    assert not share.passed and share.severity == dg.AssetCheckSeverity.ERROR
    assert instance.get_latest_materialization_event(dg.AssetKey(["table", "orders"])) is None


def test_duplicate_primary_key_across_files_fails_the_check(data_dir, instance):
    defs = build_definitions()
    write_raw(data_dir, "orders/a.csv", HEADER + rows(range(1, 5)))
    write_raw(data_dir, "orders/b.csv", HEADER + rows(range(3, 7)))
    r = run_ingest(defs, instance, "orders", ["a.csv", "b.csv"])
    pk = check_results(r)[("table/orders", "primary_key_unique")]
    assert not pk.passed and pk.severity == dg.AssetCheckSeverity.ERROR
    assert pk.metadata["duplicate_keys"].value == 2


def test_reconcile_and_schema_checks_detect_tampering(data_dir, instance):
    defs = build_definitions()
    write_raw(data_dir, "orders/a.csv", HEADER + rows(range(1, 41)) + "x,y\n")
    assert run_ingest(defs, instance, "orders", ["a.csv"]).success
    lake = LocalStorage().lake()
    contract = load_contracts()["orders"]
    assert reconcile(lake, "orders", ["a.csv"])[0]
    assert schema_problems(lake, contract, ["a.csv"]) == {}

    (published,) = (data_dir / "lake" / "cleaned" / "orders").rglob("*.parquet")
    table = pq.read_table(published)
    pq.write_table(table.slice(0, 2).set_column(0, "order_id", table["order_id"].slice(0, 2)
                                                .cast("string")), published)
    ok, meta = reconcile(lake, "orders", ["a.csv"])
    assert not ok and "rows_in=41 != written 2 + rejected 1" in str(meta["problems"].value)
    problems = schema_problems(lake, contract, ["a.csv"])
    assert problems and "expected int64, found string" in str(problems)


def _register_many(db: str, lake_glob_dir: str, n: int, name: str) -> int:
    catalog = DuckDBCatalog(path=db)
    for _ in range(n):
        catalog.register_table(name, [Column("x", "int")], lake_glob_dir, has_data=True)
    return n


def test_catalog_concurrent_writers_and_an_open_reader(tmp_path):
    """Two processes refresh the catalog at once while a reader keeps it open read-only."""
    data = tmp_path / "lake"
    data.mkdir()
    duckdb.connect().execute(f"COPY (SELECT range AS x FROM range(10)) TO '{data}/p.parquet'")
    db = str(tmp_path / "catalog.duckdb")
    DuckDBCatalog(path=db).register_table("t0", [Column("x", "int")], str(data), has_data=True)
    reader = duckdb.connect(db, read_only=True)
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(2) as pool:
        jobs = [pool.apply_async(_register_many, (db, str(data), 15, f"t{i}")) for i in (1, 2)]
        while not all(j.ready() for j in jobs):
            assert reader.execute("SELECT count(*) FROM t0").fetchone() == (10,)
            time.sleep(0.01)
        assert [j.get(timeout=60) for j in jobs] == [15, 15]
    reader.close()
    fresh = DuckDBCatalog(path=db)
    assert fresh.query("SELECT (SELECT count(*) FROM t1), (SELECT count(*) FROM t2)") == [(10, 10)]


def test_put_if_absent_keeps_the_first_write(data_dir):
    lake = LocalStorage().lake()
    assert lake.put_bytes_if_absent(b'{"columns": []}', "_contracts/p.json")
    assert not lake.put_bytes_if_absent(b'{"columns": [1]}', "_contracts/p.json")
    assert lake.get_bytes("_contracts/p.json") == b'{"columns": []}'
    assert not list((data_dir / "lake" / "_contracts").glob(".tmp-*"))


def test_schema_inference_losing_a_race_follows_the_recorded_schema(samples, tmp_path):
    """Another run records its schema between our look-up and our write: ours is discarded."""
    lake = LocalStorage().lake()
    contract = load_contracts()["penguins"]
    theirs = json.dumps({"columns": [{"name": "species", "type": "string"}]}).encode()
    looked_up = []

    class Racing(type(lake)):
        def get_bytes(self, key):
            if key.startswith("_contracts/") and not looked_up:
                looked_up.append(key)
                super().put_bytes_if_absent(theirs, key)  # the other run wins now
                return None
            return super().get_bytes(key)

    racing = Racing(lake.root)
    sample = samples / "raw" / "penguins" / "station_a_2008.csv"
    eff = effective_contract(contract, racing, sample=sample, scratch=tmp_path / "work")
    assert [c.name for c in eff.columns] == ["species"]
    assert lake.get_bytes("_contracts/penguins.json") == theirs
