"""The raw-upload sensor against a real (ephemeral) Dagster instance and a real raw folder."""

import os
import time

import dagster as dg
import pytest
from dagster._core.storage.tags import (
    ASSET_PARTITION_RANGE_END_TAG as END,
)
from dagster._core.storage.tags import (
    ASSET_PARTITION_RANGE_START_TAG as START,
)
from data_platform import definitions
from data_platform.definitions import build_definitions
from data_platform.resources import S3Storage
from data_platform.resources.storage import LocalObjectStore, ObjectInfo, VersionChanged
from data_platform.sensors.raw_uploads import SensorSettings, plan_dataset

from .conftest import write_raw
from .helpers import sensor_state, tick

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


def versions(request) -> dict[str, dict]:
    """The {key: {seq, signature}} a run request pins, from its run config."""
    return request.run_config["ops"]["cleaned__orders"]["config"]["versions"]


def rewrite(path, content: str, mtime: float | None = None) -> None:
    """Write `path` again, past the file system's timestamp granularity."""
    time.sleep(0.02)
    path.write_text(content)
    if mtime is not None:
        os.utime(path, (mtime, mtime))


def keys_in_range(instance, dataset, start, end) -> list[str]:
    keys = instance.get_dynamic_partitions(f"raw_{dataset}")
    return keys[keys.index(start): keys.index(end) + 1]


def drain(defs, instance, cursor=None, max_ticks=10):
    """Tick until a tick launches nothing; return all requests and the final cursor."""
    all_requests = []
    for _ in range(max_ticks):
        requests, _, cursor = tick(defs, instance, cursor)
        all_requests += requests
        if not requests and not sensor_state(instance, cursor)["datasets"]["orders"].get(
                "pending"):
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
    """Two evaluations of the same state (a tick replayed because the daemon died before it
    saved the cursor) produce the same run key, so Dagster dedupes them."""
    data_dir, defs, instance = env
    write_raw(data_dir, "orders/a.csv", order_rows(1), mtime=time.time() - 50)
    _, _, cursor = tick(defs, instance, None)
    first, _, _ = tick(defs, instance, cursor, submit=False)
    second, _, _ = tick(defs, instance, cursor, submit=False)
    assert first and first[0].run_key == second[0].run_key


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
    first_seen = sensor_state(instance, cursor)["datasets"]["orders"]["pending"]["big.csv"][1]
    requests, _, _ = tick(defs, instance, cursor)
    assert launched(requests) == [("big.csv", "big.csv", None)]
    # The run is pinned to the complete file, as first seen complete.
    final = LocalObjectStore(data_dir / "raw").stat("orders/big.csv").signature
    assert versions(requests[0]) == {"big.csv": {"seq": first_seen, "signature": final}}


def test_a_b_a_is_three_versions_and_three_runs(env):
    """Content A, then B, then A again: each is a version with a larger seq and its own run
    key, so the daemon drops none of them (the run decides what the content means)."""
    data_dir, defs, instance = env
    p = write_raw(data_dir, "orders/day.csv", order_rows(1))
    runs, cursor = drain(defs, instance)
    for content in (order_rows(1, n=5), order_rows(1)):
        rewrite(p, content)
        requests, cursor = drain(defs, instance, cursor)
        assert launched(requests) == [(None, None, "day.csv")]
        assert requests[0].tags["platform/reason"] == "new version"
        runs += requests
    seqs = [versions(r)["day.csv"]["seq"] for r in runs]
    assert len(runs) == 3 and seqs == sorted(seqs) and len(set(seqs)) == 3
    assert len({versions(r)["day.csv"]["signature"] for r in runs}) == 3
    assert len({r.run_key for r in runs}) == 3
    assert len(instance.get_runs()) == 3


def test_identical_bytes_reuploaded_are_a_new_run(env):
    data_dir, defs, instance = env
    p = write_raw(data_dir, "orders/day.csv", order_rows(1))
    first, cursor = drain(defs, instance)
    rewrite(p, order_rows(1))  # e.g. to retry a file whose run failed
    again, cursor = drain(defs, instance, cursor)
    assert launched(again) == [(None, None, "day.csv")]
    assert again[0].run_key != first[0].run_key
    assert versions(again[0])["day.csv"]["seq"] > versions(first[0])["day.csv"]["seq"]


def test_known_key_overwritten_with_an_old_mtime_is_launched(env):
    """`cp -p` / `rsync -a`: new content, modification time far below the watermark."""
    data_dir, defs, instance = env
    p = write_raw(data_dir, "orders/day.csv", order_rows(1))
    _, cursor = drain(defs, instance)
    rewrite(p, order_rows(1, n=7), mtime=time.time() - 30 * 86400)
    requests, cursor = drain(defs, instance, cursor)
    assert launched(requests) == [(None, None, "day.csv")]
    assert drain(defs, instance, cursor)[0] == []


def test_mv_of_an_old_file_over_a_known_key_is_launched(env):
    data_dir, defs, instance = env
    write_raw(data_dir, "orders/day.csv", order_rows(1))
    _, cursor = drain(defs, instance)
    old = write_raw(data_dir, "elsewhere.csv", order_rows(20), mtime=time.time() - 86400)
    os.replace(old, data_dir / "raw" / "orders" / "day.csv")
    requests, cursor = drain(defs, instance, cursor)
    assert launched(requests) == [(None, None, "day.csv")]


def test_replayed_tick_repeats_its_run_keys_and_the_daemon_drops_them(env):
    """The daemon crashed after submitting the runs but before saving the cursor: the next
    tick starts from the old cursor and must not launch the same versions again."""
    data_dir, defs, instance = env
    p = write_raw(data_dir, "orders/known.csv", order_rows(9))
    _, before = drain(defs, instance)
    write_raw(data_dir, "orders/a.csv", order_rows(1))
    write_raw(data_dir, "orders/b.csv", order_rows(5))
    rewrite(p, order_rows(9, n=2))
    _, _, before = tick(defs, instance, before)  # a.csv, b.csv, known.csv' now pending

    requests, _, after = tick(defs, instance, before)
    assert launched(requests) == [("a.csv", "b.csv", None), (None, None, "known.csv")]
    time.sleep(0.01)
    replayed, _, _ = tick(defs, instance, before, submit=False)
    assert [r.run_key for r in replayed] == [r.run_key for r in requests]
    assert [r.run_config for r in replayed] == [r.run_config for r in requests]
    accepted, _, _ = tick(defs, instance, before)
    assert accepted == []
    assert tick(defs, instance, after)[0] == []


def test_names_with_glob_characters_spaces_and_unicode_keep_their_exact_key(env):
    data_dir, defs, instance = env
    names = ["*.csv", "orders/*.csv", "r[1].csv", "a?.csv", "with space.csv", "ünïcødé €.csv"]
    for name in names:
        write_raw(data_dir, f"orders/{name}", order_rows(1))
    write_raw(data_dir, "orders/r1.csv", order_rows(2))  # what the glob r[1].csv would match
    requests, _ = drain(defs, instance)
    expected = sorted(names + ["r1.csv"])
    assert instance.get_dynamic_partitions("raw_orders") == expected
    [req] = requests
    assert keys_in_range(instance, "orders", req.tags[START], req.tags[END]) == expected
    assert sorted(versions(req)) == expected
    sizes = {k: (data_dir / "raw" / "orders" / k).stat().st_size for k in expected}
    store = LocalObjectStore(data_dir / "raw")
    assert {k: v["signature"] for k, v in versions(req).items()} == {
        k: store.stat(f"orders/{k}").signature for k in sizes}


def test_a_tick_reads_no_content(env, monkeypatch):
    data_dir, defs, instance = env

    def forbidden(*args, **kwargs):
        raise AssertionError("the sensor read file content")

    for name in ("content_hash", "fetch", "open_read", "local_copy", "get_bytes"):
        monkeypatch.setattr(LocalObjectStore, name, forbidden)
    p = write_raw(data_dir, "orders/a.csv", order_rows(1))
    requests, cursor = drain(defs, instance)
    rewrite(p, order_rows(2))
    requests += drain(defs, instance, cursor)[0]
    assert launched(requests) == [("a.csv", "a.csv", None), (None, None, "a.csv")]


def test_s3_overwrites_are_new_versions_and_a_stale_fetch_is_refused(s3, data_dir, monkeypatch,
                                                                     tmp_path):
    for var, value in {"PLATFORM_RAW_URL": "s3://raw-bucket/raw",
                       "PLATFORM_LAKE_URL": "s3://raw-bucket/lake",
                       "PLATFORM_SCRATCH_DIR": str(tmp_path),
                       "PLATFORM_SENSOR_SETTLE_SECONDS": "0"}.items():
        monkeypatch.setenv(var, value)
    storage = S3Storage(raw_url="s3://raw-bucket/raw", lake_url="s3://raw-bucket/lake")
    # Only the storage resource matters to the sensor; the rest of the aws set is tested apart.
    local_set = definitions.resources_for("local")
    monkeypatch.setattr(definitions, "resources_for",
                        lambda env: {**local_set, "storage": storage})
    defs, instance = definitions.build_definitions("aws"), dg.DagsterInstance.ephemeral()
    raw = storage.raw()

    runs, cursor = [], None
    for body in (order_rows(1), order_rows(1, n=4), order_rows(1)):  # A, B, A again
        s3.put_object(Bucket="raw-bucket", Key="raw/orders/day.csv", Body=body.encode())
        requests, cursor = drain(defs, instance, cursor)
        assert len(requests) == 1
        runs += requests
        time.sleep(1.05)  # S3 keeps LastModified in whole seconds
    assert [r.partition_key for r in runs] == [None, "day.csv", "day.csv"]
    sigs = [versions(r)["day.csv"]["signature"] for r in runs]
    assert len(set(sigs)) == 3 and sigs[2] == raw.stat("orders/day.csv").signature
    with pytest.raises(VersionChanged):
        raw.fetch("orders/day.csv", tmp_path / "day.csv", signature=sigs[1])
    info = raw.fetch("orders/day.csv", tmp_path / "day.csv", signature=sigs[2])
    assert info.signature == sigs[2] and (tmp_path / "day.csv").read_text() == order_rows(1)


def _obj(key, t, size=10):
    return ObjectInfo(key=key, size=size, mtime_ns=t, ctime_ns=t, inode=1)


def _pending(objs, first_seen=1):
    return {o.key: [o.signature, first_seen, 1] for o in objs}


def test_plan_watermark_never_moves_past_an_unsettled_file():
    settings = SensorSettings(settle_seconds=0)
    a, b, c = _obj("a", 100), _obj("b", 200), _obj("c", 300)
    state = {"pending": _pending([a, c])}  # b not seen before: not settled
    plan = plan_dataset([a, b, c], state, set(), now_ns=10**12, last_tick_ns=10**11,
                        settings=settings, budget=10)
    assert [v.key for v in plan.new] == ["a", "c"] and [v.seq for v in plan.new] == [1, 1]
    assert plan.waiting == ["b"] and plan.state["wm"] == 200
    assert plan.state["done"] == {"c": c.signature}
    assert plan.state["pending"] == {"b": [b.signature, 10**12, 1]}


def test_plan_settles_on_the_previous_tick_time_and_keeps_first_seen_as_seq():
    settings = SensorSettings(settle_seconds=5)
    s = 10**9
    a = _obj("a", 100 * s)
    plan = plan_dataset([a], {}, set(), now_ns=101 * s, last_tick_ns=None,
                        settings=settings, budget=10)
    assert plan.waiting == ["a"] and plan.state["pending"]["a"][1] == 101 * s
    # At 107 s the previous tick (101 s) saw it only 1 s after its change: not yet settled.
    plan = plan_dataset([a], plan.state, set(), now_ns=107 * s, last_tick_ns=101 * s,
                        settings=settings, budget=10)
    assert plan.new == [] and plan.waiting == ["a"]
    plan = plan_dataset([a], plan.state, set(), now_ns=113 * s, last_tick_ns=107 * s,
                        settings=settings, budget=10)
    assert [(v.key, v.seq) for v in plan.new] == [("a", 101 * s)]


def test_plan_budget_defers_and_the_lookback_keeps_a_window_below_the_watermark():
    settings = SensorSettings(settle_seconds=0)
    objs = [_obj("a", 1000), _obj("b", 2000), _obj("c", 3000)]
    plan = plan_dataset(objs, {"pending": _pending(objs)}, set(), now_ns=10**12,
                        last_tick_ns=10**11, settings=settings, budget=1, lookback_ns=500)
    assert [v.key for v in plan.new] == ["a"] and plan.deferred == 2
    assert plan.state["wm"] == 1000  # b is next: the watermark waits for it
    plan = plan_dataset(objs, plan.state, {"a"}, now_ns=10**12, last_tick_ns=10**11,
                        settings=settings, budget=10, lookback_ns=500)
    assert [v.key for v in plan.new] == ["b", "c"] and plan.state["wm"] == 3000
    # A known key changed with an ordering time inside the look-back window is seen...
    late = ObjectInfo(key="c", size=11, mtime_ns=2600, etag="x")
    plan2 = plan_dataset([objs[0], objs[1], late], plan.state, {"a", "b", "c"},
                         now_ns=10**12, last_tick_ns=10**11, settings=settings, budget=10,
                         lookback_ns=500)
    assert plan2.waiting == ["c"]
    # ...below it, only a key that is not a partition yet is.
    plan3 = plan_dataset([objs[0], objs[1], late], plan.state, {"a", "b", "c"},
                         now_ns=10**12, last_tick_ns=10**11, settings=settings, budget=10,
                         lookback_ns=0)
    assert plan3.waiting == [] and plan3.new == []


def test_plan_watermark_does_not_follow_an_mtime_in_the_future():
    settings = SensorSettings(settle_seconds=0)
    future = ObjectInfo(key="f", size=1, mtime_ns=10**15, ctime_ns=10**11, inode=2)
    plan = plan_dataset([future], {"pending": _pending([future])}, set(), now_ns=10**12,
                        last_tick_ns=10**11, settings=settings, budget=10)
    assert [v.key for v in plan.new] == ["f"] and plan.state["wm"] == 10**12


def test_sensor_defaults_to_running_on_the_local_resources():
    defs = build_definitions()
    sensor = defs.resolve_sensor_def("raw_uploads_sensor")
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING
    assert type(defs.resources["storage"]).__name__ == "LocalStorage"
