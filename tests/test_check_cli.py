"""`data-platform check` and `status`: the table-level checks of what is committed, the latest
check results of the instance, and the exit codes (0 passing or only WARN, 1 an ERROR fails,
2 an unknown dataset). Tables are built by running the real ingest job on small CSVs into a
real instance in DAGSTER_HOME, local Iceberg catalog and lake on tmp folders.
"""

import dataclasses
import json

import dagster as dg
import pytest
from data_platform import staging as st
from data_platform.cli import main
from data_platform.contracts import Column, load_contracts
from data_platform.definitions import build_definitions
from data_platform.instance import write_instance_yaml
from data_platform.operating.backfill import select_partitions
from data_platform.operating.checks import check_schema, rows_by_key
from data_platform.operating.commands import _source
from data_platform.resources import DuckDBCatalog, LocalStorage
from data_platform.tables.store import load_table

from .conftest import write_raw
from .helpers import run_ingest

HEADER = "Order ID,Customer,Amount,Currency,Ordered At,Order Date,Gift?\n"


def rows(ids, amount="2.50"):
    return "".join(f"{i},c{i},{amount},EUR,2026-11-20T10:00:00+00:00,2026-11-20,false\n"
                   for i in ids)


@pytest.fixture
def home(data_dir, tmp_path, monkeypatch):
    """DAGSTER_HOME with the platform's instance config; returns the instance."""
    h = tmp_path / "dagster_home"
    write_instance_yaml(h)
    monkeypatch.setenv("DAGSTER_HOME", str(h))
    return dg.DagsterInstance.from_config(str(h))


def ingest(instance, keys):
    return run_ingest(build_definitions(), instance, "orders", keys)


def run_check(capsys, *args):
    code = main(["check", *args, "--json"])
    out = capsys.readouterr().out
    return code, {(r["asset"], r["check"], r["source"].split()[0]): r for r in json.loads(out)}


def test_passing_checks_exit_0(data_dir, home, capsys):
    write_raw(data_dir, "orders/a.csv", HEADER + rows(range(1, 51)))
    write_raw(data_dir, "orders/b.csv", HEADER + rows(range(51, 101)))
    assert ingest(home, ["a.csv", "b.csv"]).success
    code, found = run_check(capsys, "orders")
    assert code == 0
    for check in ("primary_key_unique", "schema_matches_contract", "rejected_share",
                  "rows_reconcile"):
        row = found[("table/orders", check, "committed")]
        assert row["passed"], row
        assert set(row) >= {"asset", "check", "severity", "passed", "detail"}
    assert found[("table/orders", "primary_key_unique", "committed")]["detail"].startswith(
        "rows=100,")
    # The instance's latest results are there too, every one passing.
    latest = {k: r for k, r in found.items() if k[2] == "latest"}
    assert {(a, c) for a, c, _ in latest} >= {("cleaned/orders", "rows_reconcile"),
                                               ("table/orders", "commit_matches_plan")}
    assert all(r["passed"] for r in latest.values())
    # The text table says the same.
    assert main(["check", "orders"]) == 0
    text = capsys.readouterr().out
    assert "rows_reconcile" in text and " NO " not in text


def test_warning_checks_exit_0(data_dir, home, capsys):
    # 2 bad rows of 100 records: 2% rejected, above the 1% warn and below the 10% error line.
    write_raw(data_dir, "orders/a.csv", HEADER + rows(range(1, 99)) + rows([99, 100], "12x"))
    assert ingest(home, ["a.csv"]).success
    code, found = run_check(capsys, "orders")
    assert code == 0
    share = found[("table/orders", "rejected_share", "committed")]
    assert (share["passed"], share["severity"]) == (False, "WARN")
    assert "2.0% of records rejected" in share["detail"]
    latest = found[("cleaned/orders", "rejected_share", "latest")]
    assert (latest["passed"], latest["severity"]) == (False, "WARN")
    assert latest["failing_files"] == ["a.csv"]
    assert found[("table/orders", "rows_reconcile", "committed")]["passed"]


def test_failing_checks_exit_1_and_fix_clears_them(data_dir, home, capsys):
    write_raw(data_dir, "orders/good.csv", HEADER + rows(range(1, 11)))
    write_raw(data_dir, "orders/bad.csv", HEADER + rows(range(11, 21), "12x"))  # all rejected
    assert not ingest(home, ["good.csv", "bad.csv"]).success
    code, found = run_check(capsys, "orders")
    assert code == 1
    latest = found[("cleaned/orders", "rejected_share", "latest")]
    assert (latest["passed"], latest["severity"], latest["failing_files"]) == (
        False, "ERROR", ["bad.csv"])
    # What is committed is fine: the bad file never reached the table.
    assert all(r["passed"] for k, r in found.items() if k[2] == "committed")
    source = _source(None)
    assert select_partitions(source, "orders", failed=True)[0] == ["bad.csv"]
    assert select_partitions(source, "orders", missing=True)[0] == ["bad.csv"]

    # A later run of another file passes the same check; the bad file still fails it.
    write_raw(data_dir, "orders/other.csv", HEADER + rows(range(21, 31)))
    assert ingest(home, ["other.csv"]).success
    code, found = run_check(capsys, "orders")
    assert code == 1
    assert found[("cleaned/orders", "rejected_share", "latest")]["failing_files"] == ["bad.csv"]

    # Fixed and rerun: green, and nothing is selected as failed any more.
    write_raw(data_dir, "orders/bad.csv", HEADER + rows(range(11, 21)))
    assert ingest(home, ["bad.csv"]).success
    code, found = run_check(capsys, "orders")
    assert code == 0, [r for r in found.values() if not r["passed"]]
    assert select_partitions(_source(None), "orders", failed=True)[0] == []


def test_rows_not_reconciling_with_staging_fail(data_dir, home, capsys):
    write_raw(data_dir, "orders/a.csv", HEADER + rows(range(1, 11)) + rows([11], "12x"))
    assert ingest(home, ["a.csv"]).success
    lake = LocalStorage().lake()
    rec = st.latest_record(lake, "orders", "a.csv")
    assert (rec.status, rec.source_records) == (st.COMMITTED, 11)
    committed = rows_by_key(load_table(DuckDBCatalog().iceberg(), "platform", "orders"))
    assert committed["a.csv"].rows == 10 and committed["a.csv"].versions == {rec.version}
    # The record of the committed version claims a record the tables do not have.
    rec.source_records = 12
    rec.save(lake)
    code, found = run_check(capsys, "orders")
    assert code == 1
    bad = found[("table/orders", "rows_reconcile", "committed")]
    assert not bad["passed"] and bad["severity"] == "ERROR"
    assert "a.csv: the raw file has 12 records but 10 are in the table and 1 in the rejected " \
           "table" in bad["detail"]


def test_schema_check_against_an_edited_contract(data_dir, home):
    write_raw(data_dir, "orders/a.csv", HEADER + rows(range(1, 11)))
    assert ingest(home, ["a.csv"]).success
    table = load_table(DuckDBCatalog().iceberg(), "platform", "orders")
    contract = load_contracts()["orders"]
    assert check_schema(table, contract).passed
    added = dataclasses.replace(contract, columns=contract.columns + (
        Column(name="note", type="string"),))
    result = check_schema(table, added)
    assert (result.passed, result.severity) == (False, "WARN")
    assert "add note string" in result.reason
    retyped = dataclasses.replace(contract, columns=tuple(
        dataclasses.replace(c, type="string") if c.name == "amount" else c
        for c in contract.columns))
    result = check_schema(table, retyped)
    assert (result.passed, result.severity) == (False, "ERROR")
    assert "amount" in result.reason


def test_without_an_instance_and_unknown_dataset(data_dir, monkeypatch, capsys):
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    write_raw(data_dir, "orders/a.csv", HEADER + rows(range(1, 11)))
    code, found = run_check(capsys, "orders")
    # Nothing committed yet: a WARN, not a failure of the command.
    assert code == 0
    assert found[("table/orders", "table_exists", "committed")]["passed"] is False
    assert not [k for k in found if k[2] == "latest"]
    assert main(["check", "nope"]) == 2
    assert "unknown dataset" in capsys.readouterr().err


def test_status_one_line_per_dataset(data_dir, home, capsys):
    write_raw(data_dir, "orders/good.csv", HEADER + rows(range(1, 11)))
    write_raw(data_dir, "orders/bad.csv", HEADER + rows(range(11, 21), "12x"))
    write_raw(data_dir, "orders/new.csv", HEADER + rows(range(21, 31)))  # not picked up yet
    write_raw(data_dir, "orders/_tmp.csv", "partial")  # ignored, as by the sensor
    ingest(home, ["good.csv", "bad.csv"])
    assert main(["status", "--json"]) == 0
    by_ds = {r["dataset"]: r for r in json.loads(capsys.readouterr().out)}
    orders = by_ds["orders"]
    assert (orders["seen"], orders["committed"], orders["failed"], orders["waiting"]) == (
        3, 1, 1, 1)
    assert orders["last_upload"] is not None
    assert "ERROR (rejected_share)" in orders["checks"]
    assert by_ds["penguins"]["seen"] == 0
    assert main(["status"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:5] == ["dataset", "seen", "committed", "failed", "waiting"]
    assert len(lines) == 1 + len(by_ds)
