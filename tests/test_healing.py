"""Healing in the raw-upload sensor: a requested version that no run finishes is requested
again (never while a run still carries it) and, after its attempts, given up with a reason.

The sensor is driven as the daemon drives it (tests/helpers.tick: run-key dedup, partitions
added, runs recorded); runs are executed in process with the run config the sensor gave them.
"""

import dagster as dg
import pytest
from data_platform import staging as st
from data_platform.definitions import build_definitions
from data_platform.resources import DuckDBCatalog
from data_platform.resources.storage import LocalObjectStore
from data_platform.sensors.healing import plan_healing

from .conftest import write_raw
from .helpers import sensor_state, tick

CSV = "Order ID,Customer,Amount,Currency,Ordered At,Order Date,Gift?\n"


def order_rows(first: int, n: int = 5) -> str:
    return "".join(f"{i},c{i},1.50,EUR,2026-11-20T10:00:00+00:00,2026-11-20,false\n"
                   for i in range(first, first + n))


ROWS = order_rows(1)


@pytest.fixture
def env(data_dir, monkeypatch):
    monkeypatch.setenv("PLATFORM_SENSOR_SETTLE_SECONDS", "0")
    monkeypatch.setenv("PLATFORM_SENSOR_HEAL_AFTER_SECONDS", "0")
    return data_dir, build_definitions(), dg.DagsterInstance.ephemeral()


def request_once(data_dir, defs, instance, submit=True):
    """Drop one file and tick until the sensor requests it; return (requests, cursor)."""
    write_raw(data_dir, "orders/a.csv", CSV + ROWS)
    reqs, _, cursor = tick(defs, instance, None)
    assert reqs == []  # first sight: waiting to settle
    reqs, _, cursor = tick(defs, instance, cursor, submit=submit)
    assert len(reqs) == 1
    return reqs, cursor


def fail_runs(instance):
    """Mark every unfinished run failed, as run monitoring does for a dead worker."""
    for run in instance.get_runs():
        if not run.is_finished:
            instance.report_run_failed(run, "run worker process is gone")


def execute(defs, instance, req):
    job = defs.resolve_job_def(req.job_name)
    tags = {k: v for k, v in req.tags.items() if k.startswith("dagster/asset_partition_range")}
    return job.execute_in_process(instance=instance, run_config=req.run_config, tags=tags,
                                  partition_key=req.partition_key, raise_on_error=False)


def rows(data_dir):
    return DuckDBCatalog(path=str(data_dir / "catalog.duckdb")).query(
        "SELECT count(*), count(DISTINCT order_id) FROM orders")[0]


def test_a_lost_run_is_requested_again_pinned_to_the_same_version(env):
    data_dir, defs, instance = env
    # The run was never created (lost between the tick and the launch).
    first, cursor = request_once(data_dir, defs, instance, submit=False)
    again, _, cursor = tick(defs, instance, cursor)
    assert len(again) == 1
    assert again[0].run_key != first[0].run_key
    assert again[0].run_config == first[0].run_config
    assert again[0].tags["platform/reason"] == "requested again (attempt 2)"
    assert execute(defs, instance, again[0]).success
    assert rows(data_dir) == (5, 5)
    # The run recorded by the tick stands for the one executed here: end it, as it would end.
    fail_runs(instance)
    # Committed: nothing more to heal, nothing requested, the state forgets it.
    reqs, _, cursor = tick(defs, instance, cursor)
    assert reqs == []
    assert sensor_state(instance, cursor)["datasets"]["orders"]["inflight"] == {}


def test_nothing_is_requested_again_while_a_run_carries_the_version(env):
    data_dir, defs, instance = env
    _, cursor = request_once(data_dir, defs, instance)
    for _ in range(3):  # the run is STARTING: alive, however long it takes
        reqs, _, cursor = tick(defs, instance, cursor)
        assert reqs == []
    fail_runs(instance)  # its worker died and its retries ran out
    reqs, _, cursor = tick(defs, instance, cursor)
    assert len(reqs) == 1
    assert execute(defs, instance, reqs[0]).success
    reqs, _, cursor = tick(defs, instance, cursor)
    assert reqs == [] and rows(data_dir) == (5, 5)


def test_a_version_that_never_finishes_is_given_up_with_the_reason(env, monkeypatch):
    data_dir, defs, instance = env
    monkeypatch.setenv("PLATFORM_SENSOR_HEAL_MAX_ATTEMPTS", "2")
    _, cursor = request_once(data_dir, defs, instance)
    fail_runs(instance)
    reqs, _, cursor = tick(defs, instance, cursor)
    assert len(reqs) == 1  # attempt 2
    fail_runs(instance)
    reqs, _, cursor = tick(defs, instance, cursor)
    assert reqs == []  # gave up
    lake = LocalObjectStore(data_dir / "lake")
    rec = st.latest_record(lake, "orders", "a.csv")
    assert rec.status == st.FAILED
    assert rec.reason.startswith("gave up: requested 2 times, never finished; run ")
    assert "run worker process is gone" in rec.reason
    for _ in range(2):
        reqs, _, cursor = tick(defs, instance, cursor)
        assert reqs == []
    # A new version of the file is a new request, with its own attempts.
    write_raw(data_dir, "orders/a.csv", CSV + ROWS + ROWS.replace("1.50", "2.50"))
    _, _, cursor = tick(defs, instance, cursor)
    reqs, _, cursor = tick(defs, instance, cursor)
    assert [r.tags.get("platform/reason") for r in reqs] == ["new version"]


def test_a_failed_check_is_final_and_not_requested_again(env):
    data_dir, defs, instance = env
    write_raw(data_dir, "orders/bad.csv", CSV + "x,y,z\n" * 5)  # every row rejected: ERROR
    reqs, _, cursor = tick(defs, instance, None)
    reqs, _, cursor = tick(defs, instance, cursor)
    assert not execute(defs, instance, reqs[0]).success
    fail_runs(instance)
    reqs, _, cursor = tick(defs, instance, cursor)
    assert reqs == []
    assert sensor_state(instance, cursor)["datasets"]["orders"]["inflight"] == {}


def test_lost_neighbours_of_a_ranged_run_come_back_as_one_ranged_run(env):
    data_dir, defs, instance = env
    for i in range(3):
        write_raw(data_dir, f"orders/p{i}.csv", CSV + order_rows(10 * (i + 1)))
    reqs, _, cursor = tick(defs, instance, None)
    reqs, _, cursor = tick(defs, instance, cursor, submit=False)
    assert len(reqs) == 1
    again, _, cursor = tick(defs, instance, cursor)
    assert len(again) == 1
    assert again[0].tags["dagster/asset_partition_range_start"] == "p0.csv"
    assert again[0].tags["dagster/asset_partition_range_end"] == "p2.csv"
    assert execute(defs, instance, again[0]).success
    assert rows(data_dir) == (15, 15)


def test_plan_healing_waits_with_a_doubling_delay():
    sec = 10**9
    inflight = {"a": ["sig", 7, 0, 1, 0], "b": ["sig", 8, 0, 3, 0]}
    seen = []

    def status(k, s):
        seen.append(k)
        return None

    plan = plan_healing(inflight, set(), status, now_ns=100 * sec, heal_after_ns=60 * sec,
                        max_attempts=5)
    # a: first request 100 s ago, delay 60 s: due. b: third request, delay 240 s: not yet.
    assert [a[0] for a in plan.again] == ["a"] and seen == ["a"]
    assert plan.inflight["b"] == inflight["b"]
    alive = plan_healing(inflight, {("a", 7), ("b", 8)}, status, now_ns=10**6 * sec,
                         heal_after_ns=60 * sec, max_attempts=5)
    assert alive.again == [] and alive.inflight["a"][4] == 10**6 * sec
