"""The asset graph (raw -> cleaned -> table): stage, audit, one Iceberg commit, run for real.

Real local resources on tmp folders: a pyiceberg SQL catalog on SQLite, DuckDB views, an
ephemeral Dagster instance.
"""

from pathlib import Path

import blake3
import dagster as dg
import pytest
from data_platform import staging as st
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
    return blake3.blake3(path.read_bytes()).hexdigest()


def q(sql):
    return DuckDBCatalog().query(sql)


@pytest.fixture
def instance():
    return dg.DagsterInstance.ephemeral()


def test_samples_materialize_with_checks_and_query(samples, instance):
    defs = build_definitions()
    before = {p: digest(p) for p in (samples / "raw").rglob("*.csv")}
    r = run_ingest(defs, instance, "orders", ["2026-11-20.csv", "2026-11-21.csv"])
    assert r.success
    checks = check_results(r)
    for name in ("file_readable", "rows_reconcile", "schema_matches_contract", "not_null"):
        assert checks[("cleaned/orders", name)].passed, name
    assert checks[("table/orders", "primary_key_unique")].passed
    assert checks[("table/orders", "commit_matches_plan")].passed
    share = checks[("cleaned/orders", "rejected_share")]  # 2 bad rows of 122: above 1%
    assert not share.passed and share.severity == dg.AssetCheckSeverity.WARN

    assert q("SELECT count(*) FROM orders") == [(240,)]
    assert q("SELECT _source_key, count(*) FROM orders GROUP BY 1 ORDER BY 1") == [
        ("2026-11-20.csv", 120), ("2026-11-21.csv", 120)]
    rejected = q("SELECT source_key, line, error_type FROM orders_rejected "
                 "ORDER BY source_key, line")
    assert rejected == [
        ("orders/2026-11-20.csv", 16, "CAST"),
        ("orders/2026-11-20.csv", 41, "MISSING COLUMNS"),
        ("orders/2026-11-21.csv", 34, "NOT NULL"),
        ("orders/2026-11-21.csv", 35, "CAST"),
    ]
    assert instance.get_materialized_partitions(dg.AssetKey(["table", "orders"])) == {
        "2026-11-20.csv", "2026-11-21.csv"}
    assert before == {p: digest(p) for p in (samples / "raw").rglob("*.csv")}
    with pytest.raises(ReadOnlyError):
        LocalStorage().raw().put_bytes(b"x", "orders/2026-11-20.csv")
    # The tables are Iceberg tables: one snapshot per run in the SQLite catalog.
    table = DuckDBCatalog().iceberg().load_table(("platform", "orders"))
    assert len(table.snapshots()) == 1
    assert table.scan().to_arrow().num_rows == 240


def test_inferred_schema_is_recorded_and_holds_later_files(samples, instance):
    defs = build_definitions()
    assert run_ingest(defs, instance, "penguins", ["station_a_2008.csv"]).success
    recorded = (samples / "lake" / "_contracts" / "penguins.json").read_text()
    assert '"culmen_length_mm"' in recorded and '"body_mass_g"' in recorded
    assert run_ingest(defs, instance, "penguins", ["station_b_2009.csv"]).success
    reasons = q("SELECT line, column_name FROM penguins_rejected "
                "WHERE source_key LIKE '%station_b%' ORDER BY line")
    assert reasons == [(21, "body_mass_g"), (71, "sample_date")]
    types = dict(q("SELECT column_name, data_type FROM information_schema.columns "
                   "WHERE table_name = 'penguins'"))
    assert types["body_mass_g"] == "BIGINT" and types["culmen_length_mm"] == "DOUBLE"


def test_rerun_replaces_a_file_exactly_in_one_snapshot(data_dir, instance):
    defs = build_definitions()
    write_raw(data_dir, "orders/f.csv", HEADER + rows(range(1, 5), "2026-11-19")
              + rows(range(5, 9), "2026-11-20"))
    write_raw(data_dir, "orders/g.csv", HEADER + rows(range(100, 103), "2026-11-19"))
    assert run_ingest(defs, instance, "orders", ["f.csv", "g.csv"]).success
    # New content for f only, now on another day.
    write_raw(data_dir, "orders/f.csv", HEADER + rows(range(1, 4), "2026-11-21"))
    assert run_ingest(defs, instance, "orders", ["f.csv"]).success
    assert q("SELECT _source_key, count(*), min(order_date)::VARCHAR FROM orders "
             "GROUP BY 1 ORDER BY 1") == [("f.csv", 3, "2026-11-21"), ("g.csv", 3, "2026-11-19")]
    table = DuckDBCatalog().iceberg().load_table(("platform", "orders"))
    assert [s.summary.operation.value for s in table.snapshots()] == ["append", "overwrite"]
    assert table.current_snapshot().summary["deleted-records"] == "8"
    assert table.current_snapshot().summary["added-records"] == "3"


def test_unreadable_file_fails_its_partition_and_good_files_commit(data_dir, instance):
    defs = build_definitions()
    write_raw(data_dir, "orders/a_good.csv", HEADER + rows(range(1, 4)))
    empty = write_raw(data_dir, "orders/b_empty.csv", b"")
    write_raw(data_dir, "orders/c_wrong.json", b'{"a": 1}\n')
    r = run_ingest(defs, instance, "orders", ["a_good.csv", "b_empty.csv", "c_wrong.json"])
    assert not r.success
    failure = next(e for e in r.all_events if e.event_type_value == "STEP_FAILURE")
    error = str(failure.event_specific_data.error)
    assert "b_empty.csv" in error and "empty" in error and "c_wrong.json" in error
    assert not check_results(r)[("cleaned/orders", "file_readable")].passed
    assert instance.get_materialized_partitions(dg.AssetKey(["table", "orders"])) == {
        "a_good.csv"}
    assert q("SELECT count(*) FROM orders") == [(3,)]
    assert empty.exists() and empty.stat().st_size == 0


def test_error_check_keeps_the_file_out_and_the_last_good_snapshot(data_dir, instance):
    """A file whose audit fails with ERROR is not committed: its earlier good version stays,
    the other files of the run commit, and its staged rows stay inspectable."""
    defs = build_definitions()
    write_raw(data_dir, "orders/a.csv", HEADER + rows(range(1, 11)))
    write_raw(data_dir, "orders/b.csv", HEADER + rows(range(20, 23)))
    assert run_ingest(defs, instance, "orders", ["a.csv", "b.csv"]).success
    # a.csv comes back with 5 good and 5 bad rows (50% rejected > 10%); b.csv changes too.
    bad = "".join(f"{i},c,12x,EUR,2026-11-20T10:00:00+00:00,2026-11-20,false\n"
                  for i in range(1, 6))
    write_raw(data_dir, "orders/a.csv", HEADER + rows(range(6, 11)) + bad)
    write_raw(data_dir, "orders/b.csv", HEADER + rows(range(20, 25)))
    r = run_ingest(defs, instance, "orders", ["a.csv", "b.csv"])
    assert not r.success
    share = check_results(r)[("cleaned/orders", "rejected_share")]
    assert not share.passed and share.severity == dg.AssetCheckSeverity.ERROR
    assert q("SELECT _source_key, count(*) FROM orders GROUP BY 1 ORDER BY 1") == [
        ("a.csv", 10), ("b.csv", 5)]
    rec = st.latest_record(LocalStorage().lake(), "orders", "a.csv")
    assert rec.status == st.FAILED and "rejected_share" in rec.reason
    assert rec.data_files and all(Path(f).exists() for f in rec.data_files)
    assert q(f"SELECT count(*) FROM read_parquet('{rec.data_files[0]}')") == [(5,)]


def test_names_with_glob_characters_ingest_only_themselves(data_dir, instance):
    defs = build_definitions()
    write_raw(data_dir, "orders/r1.csv", HEADER + rows(range(1, 4)))
    write_raw(data_dir, "orders/r[1].csv", HEADER + rows(range(10, 12)))
    write_raw(data_dir, "orders/*.csv", HEADER + rows(range(20, 21)))
    write_raw(data_dir, "orders/a?b c é.csv", HEADER + rows(range(30, 34)))
    keys = sorted(["r1.csv", "r[1].csv", "*.csv", "a?b c é.csv"])
    r = run_ingest(defs, instance, "orders", keys)
    assert r.success
    assert dict(q("SELECT _source_key, count(*) FROM orders GROUP BY 1")) == {
        "r1.csv": 3, "r[1].csv": 2, "*.csv": 1, "a?b c é.csv": 4}


def test_older_version_never_replaces_a_newer_one(data_dir, instance):
    defs = build_definitions()
    f = write_raw(data_dir, "orders/f.csv", HEADER + rows(range(1, 3)))
    sig_new = LocalStorage().raw().stat("orders/f.csv").signature
    assert run_ingest(defs, instance, "orders", ["f.csv"],
                      versions={"f.csv": (2000, sig_new)}).success
    # A run of an older version (seq 1000) arriving late commits nothing.
    r = run_ingest(defs, instance, "orders", ["f.csv"], versions={"f.csv": (1000, sig_new)})
    assert r.success
    rec = st.latest_record(LocalStorage().lake(), "orders", "f.csv")
    assert rec.version == 2000 and rec.status == st.COMMITTED
    old = st.StagingRecord.from_bytes(LocalStorage().lake().get_bytes(
        rec.record_key.replace(f"{2000:020d}", f"{1000:020d}")))
    assert old.status == st.SUPERSEDED and "2000 is already committed" in old.reason
    assert q("SELECT DISTINCT _source_version FROM orders") == [(2000,)]
    assert f.exists()


def test_file_replaced_after_the_sensor_saw_it_is_skipped_not_misrecorded(data_dir, instance):
    """The run copies exactly the version it was asked for: if the object changed since, the
    key is superseded (the sensor launches the new version); no hash of other bytes is kept."""
    defs = build_definitions()
    write_raw(data_dir, "orders/f.csv", HEADER + rows(range(1, 3)))
    seen = LocalStorage().raw().stat("orders/f.csv").signature
    write_raw(data_dir, "orders/f.csv", HEADER + rows(range(1, 6)))
    r = run_ingest(defs, instance, "orders", ["f.csv"], versions={"f.csv": (1000, seen)})
    assert r.success
    rec = st.latest_record(LocalStorage().lake(), "orders", "f.csv")
    assert rec.status == st.SUPERSEDED and rec.content_hash is None
    now = LocalStorage().raw().stat("orders/f.csv").signature
    assert run_ingest(defs, instance, "orders", ["f.csv"], versions={"f.csv": (2000, now)}).success
    rec = st.latest_record(LocalStorage().lake(), "orders", "f.csv")
    assert rec.content_hash == "blake3:" + digest(data_dir / "raw" / "orders" / "f.csv")
    assert q("SELECT count(*) FROM orders") == [(5,)]


def test_rows_dropped_silently_by_the_engine_fail_reconciliation_and_stay_out(
        data_dir, instance, monkeypatch):
    """The reconciliation counts the raw file's records independently: if the engine loses a
    row without rejecting it, the check fails and the file is not committed."""
    import data_platform.assets.clean as clean_mod
    import pyarrow.parquet as pq

    real = clean_mod.clean_file

    def lossy(*args, **kwargs):
        result = real(*args, **kwargs)
        f = result.files[0]
        table = pq.read_table(f.path)
        pq.write_table(table.slice(1), f.path)  # one row vanishes, nothing is rejected
        return result

    monkeypatch.setattr(clean_mod, "clean_file", lossy)
    write_raw(data_dir, "orders/a.csv", HEADER + rows(range(1, 6)))
    r = run_ingest(build_definitions(), instance, "orders", ["a.csv"])
    assert not r.success
    check = check_results(r)[("cleaned/orders", "rows_reconcile")]
    assert not check.passed and check.severity == dg.AssetCheckSeverity.ERROR
    assert "5 records but 4 were staged" in str(check.metadata["failed"].value)
    assert not instance.get_materialized_partitions(dg.AssetKey(["table", "orders"]))


def test_views_that_cannot_be_rebuilt_fail_the_run_after_its_commit(data_dir, instance,
                                                                   monkeypatch):
    """The views are rebuilt in a thread while the commit's checks are reported; the run still
    ends only after them, and fails with their error. The commit stands (the table's snapshot
    has the rows), and the next run's views show every committed row."""
    defs = build_definitions()
    write_raw(data_dir, "orders/f.csv", HEADER + rows(range(1, 5)))

    def broken(self, names):
        raise OSError("no space left on device while writing catalog.duckdb")

    with monkeypatch.context() as m:
        m.setattr(DuckDBCatalog, "expose", broken)
        result = run_ingest(defs, instance, "orders", ["f.csv"])
    assert not result.success
    failures = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    assert [e.step_key for e in failures] == ["table__orders"]
    assert "no space left on device" in str(failures[0].event_specific_data.error)
    assert check_results(result)[("table/orders", "commit_matches_plan")].passed
    table = DuckDBCatalog().iceberg().load_table(("platform", "orders"))
    assert table.current_snapshot().summary["total-records"] == "4"
    write_raw(data_dir, "orders/g.csv", HEADER + rows(range(100, 103)))
    assert run_ingest(defs, instance, "orders", ["g.csv"]).success
    assert q("SELECT count(*) FROM orders") == [(7,)]


def test_a_reader_holding_the_views_file_open_blocks_no_run(data_dir, instance, monkeypatch):
    """A person's read-only session (another process) keeps the file it opened, the snapshot it
    saw, while runs change a copy (attached to the run process's own DuckDB database) and
    rename it over. A change that fails midway leaves the file as it was; the next one works."""
    import subprocess
    import sys

    import duckdb

    defs = build_definitions()
    write_raw(data_dir, "orders/a.csv", HEADER + rows(range(1, 4)))
    assert run_ingest(defs, instance, "orders", ["a.csv"]).success
    reader = subprocess.Popen(
        [sys.executable, "-c", "import duckdb, sys\n"
         "con = duckdb.connect(sys.argv[1], read_only=True)\n"
         "q = lambda: print(con.execute('SELECT count(*) FROM orders').fetchall()[0][0], "
         "flush=True)\n"
         "q(); sys.stdin.readline(); q()", str(DuckDBCatalog().db_path())],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert reader.stdout.readline().strip() == "3"
        write_raw(data_dir, "orders/b.csv", HEADER + rows(range(10, 15)))
        assert run_ingest(defs, instance, "orders", ["b.csv"]).success
        assert q("SELECT count(*) FROM orders") == [(8,)]
        with monkeypatch.context() as m:
            m.setattr("data_platform.tables.views.view_sql", lambda *a, **k:
                      "CREATE OR REPLACE VIEW orders AS SELECT * FROM no_such_table")
            with pytest.raises(duckdb.Error):
                DuckDBCatalog().expose(["orders"])
        assert q("SELECT count(*) FROM orders") == [(8,)]
        write_raw(data_dir, "orders/c.csv", HEADER + rows(range(20, 22)))
        assert run_ingest(defs, instance, "orders", ["c.csv"]).success
        assert q("SELECT count(*) FROM orders") == [(10,)]
        out, _ = reader.communicate("\n", timeout=60)
        assert out.strip() == "3"  # its session still reads the file it opened
    finally:
        if reader.poll() is None:
            reader.kill()
