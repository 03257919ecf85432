"""Freshness on crafted upload histories, the scheduled checks' jobs and schedules run on a real
instance, and `data-platform check --json` with freshness and drift.

Real local resources on tmp folders (Iceberg SQL catalog, lake folder, Dagster instance); a
crafted history is the lake's record of the last upload written with an old time (a raw file's
change time cannot be set back), or the check evaluated with a later `now`.
"""

import json
import time

import dagster as dg
import pytest
from data_platform import contracts as contracts_mod
from data_platform import definitions as definitions_mod
from data_platform.cli import main
from data_platform.contract_checks import parse_duration
from data_platform.contracts import ContractError, load_contracts, parse_contract
from data_platform.definitions import build_definitions
from data_platform.instance import write_instance_yaml
from data_platform.monitor.freshness import check_freshness
from data_platform.monitor.uploads import last_upload, record_upload, uploads_key
from data_platform.resources import DuckDBCatalog, LocalStorage
from data_platform.tables.store import load_table

from .conftest import write_raw
from .helpers import check_results, run_ingest

HEADER = "Order ID,Customer,Amount,Currency,Ordered At,Order Date,Gift?\n"
HOUR, DAY = 3600, 86400


def rows(ids, amount="2.50"):
    return "".join(f"{i},c{i},{amount},EUR,2026-11-20T10:00:00+00:00,2026-11-20,false\n"
                   for i in ids)


def with_checks(**checks):
    """The shipped contracts, orders with `checks` added to its own."""
    shipped = load_contracts()
    orders = shipped["orders"].to_dict()
    orders["checks"] = {**orders["checks"], **checks}
    return {**shipped, "orders": parse_contract(orders, where="orders.yaml")}


def evaluations(result) -> dict:
    return {name: e for (asset, name), e in check_results(result).items()
            if asset == "table/orders"}


# --- contract -------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "seconds"), [
    ("90s", 90), ("30m", 1800), ("26h", 26 * HOUR), ("2d", 2 * DAY), ("1w", 7 * DAY),
    ("1d12h", 36 * HOUR), (" 1.5h ", 5400)])
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(("value", "message"), [
    ("26", "not a duration like 30m, 26h or 2d"), (26, "not a duration"),
    ("soon", "not a duration"), ("-1h", "not a duration"), ("0h", "longer than zero"),
    ("2 days", "not a duration"), ("", "not a duration")])
def test_bad_max_age_is_a_contract_error(value, message):
    with pytest.raises(ContractError, match=f"orders.yaml: checks.max_age: .*{message}"):
        with_checks(max_age=value)


@pytest.mark.parametrize(("checks", "message"), [
    ({"drift_threshold": 0}, "drift_threshold must be a number above 0"),
    ({"drift_threshold": "high"}, "drift_threshold must be a number"),
    ({"drift_history": 0}, "drift_history must be a whole number"),
    ({"drift_history": 2.5}, "drift_history must be a whole number"),
    ({"drift_ignore": "amount"}, "drift_ignore must be a list"),
    ({"drift_ignore": ["nope"]}, "undeclared columns"),
    ({"max_agee": "1h"}, "checks may only set")])
def test_bad_monitoring_settings(checks, message):
    with pytest.raises(ContractError, match=message):
        with_checks(**checks)


def test_monitoring_settings_round_trip():
    c = with_checks(max_age="36h", drift_threshold=4, drift_history=10,
                    drift_ignore=["customer"])["orders"]
    assert (c.checks.max_age_seconds, c.checks.drift_threshold, c.checks.drift_history,
            c.checks.drift_ignore) == (36 * HOUR, 4.0, 10, ("customer",))
    assert c.to_dict()["checks"]["max_age"] == "36h"
    assert parse_contract(c.to_dict()).checks == c.checks
    # The shipped samples set no max_age: a newcomer's `make dev` is not yellow a day later.
    assert all(s.checks.max_age_seconds is None for s in load_contracts().values())


# --- freshness ------------------------------------------------------------------------------


def test_freshness_on_crafted_histories(data_dir):
    contract = with_checks(max_age="26h")["orders"]
    lake = LocalStorage().lake()
    never = check_freshness(contract, lake)
    assert (never.passed, never.severity, never.reason) == (False, "WARN", "no upload seen yet")

    now = time.time()
    record_upload(lake, "orders", now - HOUR, "recent.csv")
    fresh = check_freshness(contract, lake, now=now)
    assert fresh.passed
    assert (fresh.metadata["age"], fresh.metadata["max_age"], fresh.metadata["file"]) == (
        "1.0h", "26h", "recent.csv")
    late = check_freshness(contract, lake, now=now + 3 * DAY)
    assert (late.passed, late.severity) == (False, "WARN")
    assert late.reason.startswith("no upload for 3.0d (max_age 26h; last ")
    assert late.metadata["age_seconds"] == 3 * DAY + HOUR
    # An older upload (a file re-run or picked up late) never makes the dataset look stale.
    record_upload(lake, "orders", now - 3 * DAY, "old.csv")
    assert last_upload(lake, "orders")["key"] == "recent.csv"


def test_freshness_through_the_ingest_and_the_last_commit_fallback(data_dir):
    contract = with_checks(max_age="1h")["orders"]
    write_raw(data_dir, "orders/a.csv", HEADER + rows(range(1, 6)))
    before = time.time()
    r = run_ingest(build_definitions(contracts=with_checks(max_age="1h")),
                   dg.DagsterInstance.ephemeral(), "orders", ["a.csv"])
    assert r.success
    lake = LocalStorage().lake()
    seen = last_upload(lake, "orders")
    assert seen["key"] == "a.csv" and before - 60 < seen["last_upload"] <= time.time()
    assert check_freshness(contract, lake).passed
    assert not check_freshness(contract, lake, now=time.time() + 2 * HOUR).passed
    # Without the record (a lake from before freshness checks) the last commit stands in.
    lake.delete(uploads_key("orders"))
    table = load_table(DuckDBCatalog().iceberg(), "platform", "orders")
    fallback = check_freshness(contract, lake, table)
    assert fallback.passed and fallback.metadata["source"].startswith("last commit")


# --- jobs and schedules ---------------------------------------------------------------------


def test_jobs_and_schedules_in_the_definitions(data_dir, monkeypatch):
    defs = build_definitions(contracts=with_checks(max_age="26h"))
    checks_job = defs.resolve_job_def("table_checks_job")
    fresh_job = defs.resolve_job_def("freshness_checks_job")
    assert {n.name for n in checks_job.nodes} == {
        "committed_checks_orders", "committed_checks_penguins", "committed_checks_shapes"}
    assert len(fresh_job.nodes) == 1  # only orders has a max_age
    # An ingest run runs its own audits and the drift check, never the whole-table checks.
    ingest = defs.resolve_job_def("ingest_orders_job")
    assert {n.name for n in ingest.nodes} == {"cleaned__orders", "table__orders"}
    schedules = {s.name: s for s in defs.schedules}
    daily, hourly = schedules["table_checks_schedule"], schedules["freshness_checks_schedule"]
    assert (daily.cron_schedule, daily.job_name) == ("0 6 * * *", "table_checks_job")
    assert (hourly.cron_schedule, hourly.job_name) == ("0 * * * *", "freshness_checks_job")
    assert daily.default_status == dg.DefaultScheduleStatus.RUNNING
    assert daily.execution_timezone == "UTC"
    # Without any max_age there is no freshness job; the crons come from the environment.
    monkeypatch.setenv("PLATFORM_CHECKS_CRON", "15 5 * * 1-5")
    plain = build_definitions()
    assert [s.cron_schedule for s in plain.schedules if s.name == "table_checks_schedule"] == [
        "15 5 * * 1-5"]
    assert "freshness_checks_schedule" not in {s.name for s in plain.schedules}
    monkeypatch.setenv("PLATFORM_CHECKS_CRON", "every morning")
    with pytest.raises(ValueError, match="PLATFORM_CHECKS_CRON='every morning'"):
        build_definitions()


def test_checks_job_evaluates_the_committed_snapshot(data_dir):
    defs = build_definitions(contracts=with_checks(max_age="26h"))
    instance = dg.DagsterInstance.ephemeral()
    job = defs.resolve_job_def("table_checks_job")
    empty = evaluations(job.execute_in_process(instance=instance))
    assert (empty["committed_schema"].passed, empty["committed_schema"].severity) == (
        False, dg.AssetCheckSeverity.WARN)
    assert "no table yet" in empty["committed_schema"].description

    # 2 of 100 records rejected: above the 1% warn line, below the 10% error line.
    write_raw(data_dir, "orders/a.csv", HEADER + rows(range(1, 99)) + rows([99, 100], "12x"))
    assert run_ingest(defs, instance, "orders", ["a.csv"]).success
    found = evaluations(job.execute_in_process(instance=instance))
    for name in ("committed_primary_key", "committed_schema", "committed_rows_reconcile"):
        assert found[name].passed, (name, found[name].description)
    assert found["committed_primary_key"].metadata["rows"].value == 98
    share = found["committed_rejected_share"]
    assert (share.passed, share.severity) == (False, dg.AssetCheckSeverity.WARN)
    assert "2.0% of records rejected" in share.description
    # Nothing was materialized by the checks job.
    assert len(instance.fetch_materializations(dg.AssetKey(["table", "orders"]),
                                               limit=10).records) == 1

    fresh_job = defs.resolve_job_def("freshness_checks_job")
    assert evaluations(fresh_job.execute_in_process(instance=instance))["freshness"].passed
    LocalStorage().lake().put_bytes(json.dumps({"last_upload": time.time() - 3 * DAY,
                                                "key": "a.csv"}).encode(),
                                    uploads_key("orders"))
    stale = evaluations(fresh_job.execute_in_process(instance=instance))["freshness"]
    assert (stale.passed, stale.severity) == (False, dg.AssetCheckSeverity.WARN)
    assert stale.metadata["max_age"].value == "26h" and stale.metadata["age"].value == "3.0d"


# --- data-platform check --------------------------------------------------------------------


def test_check_command_reports_freshness_and_drift(data_dir, tmp_path, monkeypatch, capsys):
    home = tmp_path / "dagster_home"
    write_instance_yaml(home)
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    contracts = with_checks(max_age="26h")
    monkeypatch.setattr(contracts_mod, "load_contracts", lambda *a: contracts)
    monkeypatch.setattr(definitions_mod, "load_contracts", lambda *a: contracts)
    instance = dg.DagsterInstance.from_config(str(home))
    defs = build_definitions()
    write_raw(data_dir, "orders/a.csv", HEADER + rows(range(1, 11)))
    assert run_ingest(defs, instance, "orders", ["a.csv"]).success
    defs.resolve_job_def("table_checks_job").execute_in_process(instance=instance)
    defs.resolve_job_def("freshness_checks_job").execute_in_process(instance=instance)

    assert main(["check", "orders", "--json"]) == 0
    found = {(r["check"], r["source"]): r for r in json.loads(capsys.readouterr().out)}
    fresh = found[("freshness", "recorded uploads")]
    assert fresh["passed"] and "max_age=26h" in fresh["detail"]
    drift = found[("drift", "drift history")]
    assert drift["passed"] and "files=1" in drift["detail"]
    # What the scheduled checks and the last ingest run said, from the instance.
    latest = {c for c, s in found if s == "latest runs"}
    assert {"freshness", "drift", "committed_rows_reconcile", "committed_schema"} <= latest

    # Three days without an upload: a WARN, and the command still exits 0.
    LocalStorage().lake().put_bytes(json.dumps({"last_upload": time.time() - 3 * DAY,
                                                "key": "a.csv"}).encode(),
                                    uploads_key("orders"))
    assert main(["check", "orders", "--json"]) == 0
    found = {(r["check"], r["source"]): r for r in json.loads(capsys.readouterr().out)}
    stale = found[("freshness", "recorded uploads")]
    assert (stale["passed"], stale["severity"]) == (False, "WARN")
    assert "no upload for 3.0d" in stale["detail"]


def test_image_datasets_get_freshness_and_no_drift(data_dir):
    from .image_samples import jpeg

    photos = parse_contract({"name": "photos", "kind": "images", "images": {"size": [32, 32]},
                             "checks": {"max_age": "2d"}})
    defs = build_definitions(contracts={"photos": photos})
    checks = {k.name for k in defs.resolve_asset_graph().asset_check_keys
              if k.asset_key == dg.AssetKey(["table", "photos"])}
    assert "freshness" in checks and "drift" not in checks
    write_raw(data_dir, "photos/cats/a.jpg", jpeg(1))
    instance = dg.DagsterInstance.ephemeral()
    assert run_ingest(defs, instance, "photos", ["cats/a.jpg"]).success
    assert last_upload(LocalStorage().lake(), "photos")["key"] == "cats/a.jpg"
    fresh = evaluations_of(defs.resolve_job_def("freshness_checks_job").execute_in_process(
        instance=instance), "photos")["freshness"]
    assert fresh.passed and fresh.metadata["max_age"].value == "2d"


def evaluations_of(result, dataset: str) -> dict:
    return {name: e for (asset, name), e in check_results(result).items()
            if asset == f"table/{dataset}"}
