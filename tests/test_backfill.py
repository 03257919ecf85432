"""`data-platform backfill` against `dagster dev` (webserver and daemon) on a free port: real
asset backfills in the instance, run by the daemon, through the local instance and through the
webserver's GraphQL API.

The sensor is kept from launching runs of its own (its settle time is set beyond the test), so
every run here is the backfill's; the partitions are added as the sensor would add them. The
contracts are a copy in a temporary folder (PLATFORM_CONTRACTS_DIR), so that the test can edit,
add and delete them as a person would, and reload the definitions as the UI's button does.
"""

import re
import shutil
from decimal import Decimal

import dagster as dg
import pytest
from data_platform.cli import main
from data_platform.contracts import CONTRACTS_DIR
from data_platform.operating.sources import GraphQLClient
from data_platform.resources import DuckDBCatalog

from .conftest import write_raw
from .devserver import DevServer

HEADER = "Order ID,Customer,Amount,Currency,Ordered At,Order Date,Gift?\n"
WAIT = ["--wait", "--interval", "1", "--timeout", "420"]


def rows(ids, amount="2.50"):
    return "".join(f"{i},c{i},{amount},EUR,2026-11-20T10:00:00+00:00,2026-11-20,false\n"
                   for i in ids)


@pytest.fixture
def contracts(tmp_path, monkeypatch):
    folder = tmp_path / "contracts"
    shutil.copytree(CONTRACTS_DIR, folder)
    monkeypatch.setenv("PLATFORM_CONTRACTS_DIR", str(folder))
    return folder


@pytest.fixture
def dev(data_dir, tmp_path, monkeypatch, contracts):
    home = tmp_path / "dagster_home"
    server = DevServer(data_dir, home, tmp_path / "dagster_dev.log",
                       env={"PLATFORM_SENSOR_SETTLE_SECONDS": "1000000",
                            "PLATFORM_CONTRACTS_DIR": str(contracts)})
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


RELOAD = """mutation Reload($name: String!) { reloadRepositoryLocation(repositoryLocationName: $name)
  { __typename ... on WorkspaceLocationEntry { locationOrLoadError { __typename
      ... on PythonError { message } } } } }"""
ASSETS = "query { assetNodes { assetKey { path } } }"


def reload(url: str) -> set[tuple[str, ...]]:
    """Reload the code location as the UI's "Reload definitions" does; returns its asset keys."""
    gql = GraphQLClient(url)
    state = gql(RELOAD, name="data_platform")["reloadRepositoryLocation"]
    assert state["locationOrLoadError"]["__typename"] == "RepositoryLocation", state
    return {tuple(n["assetKey"]["path"]) for n in gql(ASSETS)["assetNodes"]}


def per_file(catalog):
    return catalog.query("SELECT _source_key, count(*) FROM orders GROUP BY 1 ORDER BY 1")


@pytest.mark.e2e
def test_backfills_through_the_webserver_and_the_local_instance(data_dir, dev, capsys,
                                                                 monkeypatch, contracts):
    """One `dagster dev` (the daemon runs a backfill in two of its 30 s iterations at least, so
    the scenarios share it): a backfill launched over GraphQL, then from the local instance
    the files never materialized, one of which fails on the contract (amounts too large for its
    decimal), then the contract is fixed, the definitions reloaded and --failed reruns exactly
    that file to green. Last, a contract added and deleted on the running server."""
    instance = dg.DagsterInstance.from_config(str(dev.home))
    catalog = DuckDBCatalog(path=str(data_dir / "catalog.duckdb"))
    url = f"http://127.0.0.1:{dev.port}"
    upload(data_dir, instance, {"a.csv": rows(range(1, 11)),
                                # too large for decimal(12,2): every row rejected
                                "b.csv": rows(range(11, 21), "123456789012.50"),
                                "c.csv": rows(range(21, 31))})

    # Through the webserver: nothing local is needed.
    monkeypatch.delenv("DAGSTER_HOME")
    assert main(["backfill", "orders", "--partitions", "a.csv", "--url", url, *WAIT]) == 0, \
        dev.tail()
    out = capsys.readouterr().out
    first = launched_id(out)
    assert f"{url}/runs/b/{first}" in out
    assert "COMPLETED_SUCCESS: 1/1 files done" in out
    assert main(["backfill", "orders", "--partitions", "zz.csv", "--url", url]) == 2
    assert main(["backfill", "nope", "--all", "--url", url]) == 2
    assert "no asset table/nope" in capsys.readouterr().err
    assert per_file(catalog) == [("a.csv", 10)]
    monkeypatch.setenv("DAGSTER_HOME", str(dev.home))

    # From the local instance: the files never materialized; one fails its checks.
    assert main(["backfill", "orders", "--missing", "--dry-run"]) == 0
    assert capsys.readouterr().out.splitlines()[1:] == ["  b.csv\tnever materialized",
                                                        "  c.csv\tnever materialized"]
    assert instance.get_backfills() and len(instance.get_backfills()) == 1  # a dry run: none
    assert main(["backfill", "orders", "--partitions", "a.csv,zz.csv"]) == 2
    assert "no partition(s) 'zz.csv'" in capsys.readouterr().err
    assert main(["backfill", "nope", "--all"]) == 2
    assert main(["backfill", "orders", "--missing", *WAIT]) == 1, dev.tail()
    out = capsys.readouterr().out
    second = launched_id(out)
    assert "COMPLETED_FAILED: 1/2 files done, 1 failed" in out
    backfill = instance.get_backfill(second)
    assert backfill.is_asset_backfill and backfill.status.value == "COMPLETED_FAILED"
    assert backfill.title == "data-platform backfill orders --missing"
    runs = instance.get_runs(filters=dg.RunsFilter.for_backfill(second))
    assert runs, "the daemon launched no run"
    for run in runs:  # the assets' single-run policy: both assets, a range of files per run
        assert run.asset_selection == {dg.AssetKey(["cleaned", "orders"]),
                                       dg.AssetKey(["table", "orders"])}
        assert run.status in (dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE)
    assert per_file(catalog) == [("a.csv", 10), ("c.csv", 10)]
    assert main(["status", "--url", url, "--json"]) == 0
    assert '"failed": 1' in capsys.readouterr().out

    # --failed picks exactly the file that failed; the contract fixed (a wider decimal, which
    # evolves the table), the definitions reloaded and the file rerun, it lands.
    assert main(["backfill", "orders", "--failed", "--dry-run"]) == 0
    assert capsys.readouterr().out.splitlines()[1:] == [
        "  b.csv\trejected_share: 100.0% of records rejected (error above 10%)"]
    orders = contracts / "orders.yaml"
    orders.write_text(orders.read_text().replace('"decimal(12,2)"', '"decimal(16,2)"'))
    assert ("table", "orders") in reload(url)
    assert main(["backfill", "orders", "--failed", *WAIT]) == 0, dev.tail()
    third = launched_id(capsys.readouterr().out)
    assert instance.get_backfill(third).status.value == "COMPLETED_SUCCESS"
    assert instance.get_backfill(third).get_asset_backfill_data(
        dev_graph()).target_subset.get_partitions_subset(
        dg.AssetKey(["table", "orders"])).get_partition_keys() == {"b.csv"}
    assert per_file(catalog) == [("a.csv", 10), ("b.csv", 10), ("c.csv", 10)]
    assert main(["backfill", "orders", "--failed"]) == 0
    assert "nothing to backfill" in capsys.readouterr().out
    assert {b.backfill_id for b in instance.get_backfills()} == {first, second, third}
    assert main(["check", "orders"]) == 0
    assert catalog.query("SELECT max(amount) FROM orders") == [
        (Decimal("123456789012.50"),)]

    # A contract added, then deleted, on the running server: a reload is all it takes.
    (contracts / "extra.yaml").write_text(
        orders.read_text().replace("name: orders", "name: extra"))
    assert ("table", "extra") in reload(url)
    (contracts / "extra.yaml").unlink()
    keys = reload(url)
    assert ("table", "extra") not in keys and ("table", "orders") in keys


def dev_graph():
    from data_platform.definitions import build_definitions

    return build_definitions().resolve_asset_graph()
