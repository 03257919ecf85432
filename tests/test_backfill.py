"""`data-platform backfill` against `dagster dev` (webserver and daemon) on a free port: real
asset backfills in the instance, run by the daemon, through the local instance and through the
webserver's GraphQL API.

The sensor is kept from launching runs of its own (its settle time is set beyond the test), so
every run here is the backfill's; the partitions are added as the sensor would add them.
"""

import re

import dagster as dg
import pytest
from data_platform.cli import main
from data_platform.resources import DuckDBCatalog

from .conftest import write_raw
from .devserver import DevServer

HEADER = "Order ID,Customer,Amount,Currency,Ordered At,Order Date,Gift?\n"
WAIT = ["--wait", "--interval", "1", "--timeout", "420"]


def rows(ids, amount="2.50"):
    return "".join(f"{i},c{i},{amount},EUR,2026-11-20T10:00:00+00:00,2026-11-20,false\n"
                   for i in ids)


@pytest.fixture
def dev(data_dir, tmp_path, monkeypatch):
    home = tmp_path / "dagster_home"
    server = DevServer(data_dir, home, tmp_path / "dagster_dev.log",
                       env={"PLATFORM_SENSOR_SETTLE_SECONDS": "1000000"})
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    server.start()
    try:
        yield server
    finally:
        server.stop()


def upload(data_dir, instance, files: dict[str, str]):
    """Write raw files and register their partitions (what the sensor does first)."""
    for key, body in files.items():
        write_raw(data_dir, f"orders/{key}", HEADER + body)
    known = set(instance.get_dynamic_partitions("raw_orders"))
    instance.add_dynamic_partitions("raw_orders", [k for k in files if k not in known])


def launched_id(out: str) -> str:
    return re.search(r"launched backfill (\S+):", out).group(1)


def per_file(catalog):
    return catalog.query("SELECT _source_key, count(*) FROM orders GROUP BY 1 ORDER BY 1")


@pytest.mark.e2e
def test_backfill_through_the_local_instance(data_dir, dev, capsys):
    instance = dg.DagsterInstance.from_config(str(dev.home))
    catalog = DuckDBCatalog(path=str(data_dir / "catalog.duckdb"))
    upload(data_dir, instance, {"a.csv": rows(range(1, 11)),
                                "b.csv": rows(range(11, 21), "12x"),  # every row rejected
                                "c.csv": rows(range(21, 31))})

    assert main(["backfill", "orders", "--all", "--dry-run"]) == 0
    assert capsys.readouterr().out.split("\n")[1:4] == ["  a.csv\tall", "  b.csv\tall",
                                                        "  c.csv\tall"]
    assert instance.get_backfills() == []  # a dry run launches nothing
    assert main(["backfill", "orders", "--partitions", "a.csv,zz.csv"]) == 2
    assert "no partition(s) 'zz.csv'" in capsys.readouterr().err
    assert main(["backfill", "nope", "--all"]) == 2

    # All three files: a real asset backfill, run by the daemon; one file fails its checks.
    assert main(["backfill", "orders", "--all", *WAIT]) == 1, dev.tail()
    out = capsys.readouterr().out
    first = launched_id(out)
    assert "COMPLETED_FAILED: 2/3 files done, 1 failed" in out
    backfill = instance.get_backfill(first)
    assert backfill.is_asset_backfill
    assert backfill.status.value == "COMPLETED_FAILED"
    assert backfill.title == "data-platform backfill orders --all"
    runs = instance.get_runs(filters=dg.RunsFilter.for_backfill(first))
    assert runs, "the daemon launched no run"
    for run in runs:  # the assets' single-run policy: both assets, a range of files per run
        assert run.asset_selection == {dg.AssetKey(["cleaned", "orders"]),
                                       dg.AssetKey(["table", "orders"])}
        assert run.status in (dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE)
    assert per_file(catalog) == [("a.csv", 10), ("c.csv", 10)]

    # --failed picks exactly the file that failed.
    assert main(["backfill", "orders", "--failed", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[1:] == [
        "  b.csv\trejected_share: 100.0% of records rejected (error above 10%)"]

    # Fixed and rerun: the backfill succeeds, and nothing is failed any more.
    write_raw(data_dir, "orders/b.csv", HEADER + rows(range(11, 21)))
    assert main(["backfill", "orders", "--failed", *WAIT]) == 0, dev.tail()
    second = launched_id(capsys.readouterr().out)
    assert instance.get_backfill(second).status.value == "COMPLETED_SUCCESS"
    assert instance.get_backfill(second).get_asset_backfill_data(
        dev_graph()).target_subset.get_partitions_subset(
        dg.AssetKey(["table", "orders"])).get_partition_keys() == {"b.csv"}
    assert per_file(catalog) == [("a.csv", 10), ("b.csv", 10), ("c.csv", 10)]
    assert main(["backfill", "orders", "--failed"]) == 0
    assert "nothing to backfill" in capsys.readouterr().out
    assert {b.backfill_id for b in instance.get_backfills()} == {first, second}

    # --missing: only the file never materialized.
    upload(data_dir, instance, {"d.csv": rows(range(31, 41))})
    assert main(["backfill", "orders", "--missing", "--dry-run"]) == 0
    assert capsys.readouterr().out.splitlines()[1:] == ["  d.csv\tnever materialized"]
    assert main(["check", "orders"]) == 0


def dev_graph():
    from data_platform.definitions import build_definitions

    return build_definitions().resolve_asset_graph()


@pytest.mark.e2e
def test_backfill_through_the_webserver(data_dir, dev, capsys, monkeypatch):
    instance = dg.DagsterInstance.from_config(str(dev.home))
    url = f"http://127.0.0.1:{dev.port}"
    upload(data_dir, instance, {"a.csv": rows(range(1, 11)),
                                "b.csv": rows(range(11, 21), "12x")})
    # Nothing local is needed: the webserver is the whole interface.
    monkeypatch.delenv("DAGSTER_HOME")

    assert main(["backfill", "orders", "--partitions", "a.csv", "--url", url, *WAIT]) == 0, \
        dev.tail()
    out = capsys.readouterr().out
    first = launched_id(out)
    assert f"{url}/runs/b/{first}" in out
    assert "COMPLETED_SUCCESS: 1/1 files done" in out
    assert main(["backfill", "orders", "--missing", "--url", url, *WAIT]) == 1
    capsys.readouterr()
    assert main(["backfill", "orders", "--failed", "--url", url, "--dry-run"]) == 0
    assert capsys.readouterr().out.splitlines()[1:] == [
        "  b.csv\trejected_share: 100.0% of records rejected (error above 10%)"]
    assert main(["backfill", "orders", "--partitions", "zz.csv", "--url", url]) == 2
    assert main(["backfill", "nope", "--all", "--url", url]) == 2
    assert "no asset table/nope" in capsys.readouterr().err
    assert main(["status", "--url", url, "--json"]) == 0
    assert '"failed": 1' in capsys.readouterr().out

    backfills = {b.backfill_id: b for b in instance.get_backfills()}
    assert first in backfills and backfills[first].is_asset_backfill
    assert backfills[first].status.value == "COMPLETED_SUCCESS"
    assert len(backfills) == 2
    assert DuckDBCatalog(path=str(data_dir / "catalog.duckdb")).query(
        "SELECT count(*) FROM orders") == [(10,)]
