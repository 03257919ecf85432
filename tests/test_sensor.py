"""The raw-upload sensor against a real (ephemeral) Dagster instance and a real raw folder."""

import json
import time

import dagster as dg
import pytest
from dagster._core.storage.tags import (
    ASSET_PARTITION_RANGE_END_TAG as END,
)
from dagster._core.storage.tags import (
    ASSET_PARTITION_RANGE_START_TAG as START,
)
from data_platform.definitions import build_definitions
from data_platform.resources.storage import ObjectInfo
from data_platform.sensors.raw_uploads import SensorSettings, plan_dataset

from .conftest import write_raw
from .helpers import run_ingest, tick

CSV = "Order ID,Customer,Amount,Currency,Ordered At,Order Date,Gift?\n"


def order_rows(start: int, n: int = 3) -> str:
    return CSV + "".join(
        f"{i},c{i},1.50,EUR,2026-11-20T10:00:00+00:00,2026-11-20,false\n"
        for i in range(start, start + n)
    )


@pytest.fixture
def env(data_dir, monkeypatch):
    monkeypatch.setenv("PLATFORM_SENSOR_SETTLE_SECONDS", "0")
    instance = dg.DagsterInstance.ephemeral()
    return data_dir, build_definitions(), instance


def launched(requests) -> list[tuple[str | None, str | None, str | None]]:
    return [(r.tags.get(START), r.tags.get(END), r.partition_key) for r in requests]


def keys_in_range(instance, dataset, start, end) -> list[str]:
    keys = instance.get_dynamic_partitions(f"raw_{dataset}")
    return keys[keys.index(start): keys.index(end) + 1]


def drain(defs, instance, cursor=None, max_ticks=10):
    """Tick until a tick launches nothing; return all requests and the final cursor."""
    all_requests = []
    for _ in range(max_ticks):
        requests, _, cursor = tick(defs, instance, cursor)
        all_requests += requests
        if not requests and not json.loads(cursor)["datasets"]["orders"].get("pending"):
            break
    return all_requests, cursor


def test_new_files_wait_one_tick_then_launch_once(env):
    data_dir, defs, instance = env
    old = time.time() - 100
    write_raw(data_dir, "orders/a.csv", order_rows(1), mtime=old)
    write_raw(data_dir, "orders/b.csv", order_rows(10), mtime=old + 1)

    requests, skip, cursor = tick(defs, instance, None)
    assert requests == [] and "waiting for 2 file(s) to settle" in skip

    requests, _, cursor = tick(defs, instance, cursor)
    assert launched(requests) == [("a.csv", "b.csv", None)]
    assert requests[0].job_name == "ingest_orders_job"
    assert instance.get_dynamic_partitions("raw_orders") == ["a.csv", "b.csv"]

    requests, skip, _ = tick(defs, instance, cursor)
    assert requests == [] and skip.startswith("no new or changed files")


def test_run_keys_are_deterministic(env):
    """Two evaluations of the same state produce the same run key, so Dagster dedupes them."""
    data_dir, defs, instance = env
    write_raw(data_dir, "orders/a.csv", order_rows(1), mtime=time.time() - 50)
    _, _, cursor = tick(defs, instance, None)
    first, _, _ = tick(defs, dg.DagsterInstance.ephemeral(), cursor)
    second, _, _ = tick(defs, dg.DagsterInstance.ephemeral(), cursor)
    assert first[0].run_key == second[0].run_key


def test_equal_timestamps_across_ticks_skip_nothing(env, monkeypatch):
    """Three files with one mtime, one file per tick: each is launched exactly once."""
    data_dir, defs, instance = env
    monkeypatch.setenv("PLATFORM_SENSOR_MAX_FILES_PER_TICK", "1")
    t = time.time() - 100
    for name in ("x.csv", "y.csv", "z.csv"):
        write_raw(data_dir, f"orders/{name}", order_rows(1), mtime=t)
    requests, cursor = drain(defs, instance)
    ranges = [keys_in_range(instance, "orders", s, e) for s, e, _ in launched(requests)]
    assert sorted(k for r in ranges for k in r) == ["x.csv", "y.csv", "z.csv"]
    # A file arriving later with the very same mtime is still picked up.
    write_raw(data_dir, "orders/w.csv", order_rows(1), mtime=t)
    requests, _ = drain(defs, instance, cursor)
    assert launched(requests) == [("w.csv", "w.csv", None)]


def test_late_file_with_old_mtime_and_restart_from_saved_cursor(env):
    """A file copied with an mtime older than the watermark is still new; a fresh sensor
    process resuming from the saved cursor launches nothing twice."""
    data_dir, defs, instance = env
    now = time.time()
    write_raw(data_dir, "orders/new.csv", order_rows(1), mtime=now - 10)
    requests, cursor = drain(defs, instance)
    assert len(requests) == 1
    write_raw(data_dir, "orders/old.csv", order_rows(5), mtime=now - 86400)

    restarted = build_definitions()  # a new code location process, same instance and cursor
    requests, cursor = drain(restarted, instance, cursor)
    assert launched(requests) == [("old.csv", "old.csv", None)]
    requests, _ = drain(restarted, instance, cursor)
    assert requests == []


def test_unknown_dataset_and_hidden_files_are_named_in_skip_reason(env):
    data_dir, defs, instance = env
    old = time.time() - 100
    write_raw(data_dir, "nosuch/file.csv", order_rows(1), mtime=old)
    write_raw(data_dir, "orders/.a.csv.swp", "x", mtime=old)
    write_raw(data_dir, "orders/_tmp/part.csv", "x", mtime=old)
    write_raw(data_dir, "stray.csv", "x", mtime=old)
    for _ in range(2):
        requests, skip, _ = tick(defs, instance, None)
        assert requests == []
    assert "unknown dataset 'nosuch': nosuch/file.csv" in skip
    assert "hidden or temporary: orders/.a.csv.swp, orders/_tmp/part.csv" in skip
    assert "not inside a dataset folder: stray.csv" in skip
    assert instance.get_dynamic_partitions("raw_orders") == []


def test_burst_is_batched_into_few_contiguous_runs(env, monkeypatch):
    data_dir, defs, instance = env
    monkeypatch.setenv("PLATFORM_SENSOR_MAX_FILES_PER_RUN", "100")
    t = time.time() - 100
    names = [f"burst/{i:04d}.csv" for i in range(250)]
    for i, name in enumerate(names):
        write_raw(data_dir, f"orders/{name}", order_rows(i), mtime=t + (i % 7))
    requests, _ = drain(defs, instance)
    assert len(requests) == 3
    covered = [k for s, e, _ in launched(requests) for k in keys_in_range(instance, "orders", s, e)]
    assert sorted(covered) == sorted(names) and len(covered) == len(set(covered))
    assert {r.tags["platform/files"] for r in requests} == {"100", "50"}


def test_tick_cap_drains_a_backlog_over_several_ticks(env, monkeypatch):
    data_dir, defs, instance = env
    monkeypatch.setenv("PLATFORM_SENSOR_MAX_FILES_PER_TICK", "40")
    t = time.time() - 100
    for i in range(100):
        write_raw(data_dir, f"orders/{i:03d}.csv", order_rows(i), mtime=t + i)
    _, _, cursor = tick(defs, instance, None)
    per_tick = []
    for _ in range(5):
        requests, _, cursor = tick(defs, instance, cursor)
        per_tick.append(sum(int(r.tags["platform/files"]) for r in requests))
    assert per_tick[:3] == [40, 40, 20] and per_tick[3:] == [0, 0]
    assert len(instance.get_dynamic_partitions("raw_orders")) == 100


def test_file_still_being_written_is_not_launched(env):
    data_dir, defs, instance = env
    p = write_raw(data_dir, "orders/big.csv", CSV + "1,c,1.0,EUR,", mtime=time.time() - 1)
    _, _, cursor = tick(defs, instance, None)
    with open(p, "a") as f:  # the copy goes on between ticks
        f.write("2026-11-20T10:00:00+00:00,2026-11-20,false\n")
    requests, skip, cursor = tick(defs, instance, cursor)
    assert requests == [] and "waiting for 1 file(s)" in skip
    requests, _, _ = tick(defs, instance, cursor)
    assert launched(requests) == [("big.csv", "big.csv", None)]


def test_reupload_new_content_reruns_identical_content_does_not(env):
    data_dir, defs, instance = env
    write_raw(data_dir, "orders/day.csv", order_rows(1), mtime=time.time() - 100)
    requests, cursor = drain(defs, instance)
    assert len(requests) == 1
    assert run_ingest(defs, instance, "orders", ["day.csv"], add_partitions=False).success

    # Same bytes written again (new mtime): not rerun.
    write_raw(data_dir, "orders/day.csv", order_rows(1), mtime=time.time() - 50)
    requests, cursor = drain(defs, instance, cursor)
    assert requests == []
    # New bytes under the same key: one run for that partition only.
    write_raw(data_dir, "orders/day.csv", order_rows(1, n=5), mtime=time.time() - 20)
    requests, cursor = drain(defs, instance, cursor)
    assert launched(requests) == [(None, None, "day.csv")]
    assert requests[0].tags["platform/reason"] == "content changed"


def _obj(key, mtime, size=10):
    return ObjectInfo(key=key, size=size, mtime_ns=mtime)


def test_plan_watermark_never_moves_past_an_unsettled_file():
    settings = SensorSettings(settle_seconds=0)
    hashes = {}
    objs = [_obj("a", 100), _obj("b", 200), _obj("c", 300)]
    state = {"pending": {"a": "10:100", "c": "10:300"}}  # b not seen before: not settled
    plan = plan_dataset(objs, state, set(), now_ns=10**12, settings=settings, budget=10,
                        content_hash=lambda k: hashes.setdefault(k, f"h-{k}"),
                        last_hash=lambda k: None)
    assert [k for k, _, _ in plan.new] == ["a", "c"]
    assert plan.waiting == ["b"] and plan.state["wm"] == 200
    assert plan.state["done"] == {"c": "10:300"}


def test_settle_time_is_respected():
    settings = SensorSettings(settle_seconds=5)
    objs = [_obj("a", 10**9 * 100)]
    plan = plan_dataset(objs, {"pending": {"a": f"10:{10**9 * 100}"}}, set(),
                        now_ns=10**9 * 103, settings=settings, budget=10,
                        content_hash=lambda k: "h", last_hash=lambda k: None)
    assert plan.new == [] and plan.waiting == ["a"]
    plan = plan_dataset(objs, plan.state, set(), now_ns=10**9 * 106, settings=settings,
                        budget=10, content_hash=lambda k: "h", last_hash=lambda k: None)
    assert [k for k, _, _ in plan.new] == ["a"]


def test_sensor_defaults_to_running_on_the_local_resources():
    defs = build_definitions()
    sensor = defs.resolve_sensor_def("raw_uploads_sensor")
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING
    assert type(defs.resources["storage"]).__name__ == "LocalStorage"


def test_byte_budget_defers_big_files_but_always_takes_one():
    settings = SensorSettings(settle_seconds=0)
    objs = [_obj("a", 1, size=60), _obj("b", 2, size=60), _obj("c", 3, size=10)]
    state = {"pending": {o.key: f"{o.size}:{o.mtime_ns}" for o in objs}}
    plan = plan_dataset(objs, state, set(), now_ns=10**12, settings=settings, budget=10,
                        byte_budget=50, content_hash=lambda k: "h", last_hash=lambda k: None)
    assert [k for k, _, _ in plan.new] == ["a"] and plan.deferred == 2
    assert plan.state["wm"] == 2  # b is next: the watermark waits for it
    plan = plan_dataset(objs, plan.state, {"a"}, now_ns=10**12, settings=settings, budget=10,
                        byte_budget=100, content_hash=lambda k: "h", last_hash=lambda k: None)
    assert [k for k, _, _ in plan.new] == ["b", "c"]
