"""Listing mode's bounded ticks: a tick's budget shared fairly between datasets, the state kept
in the instance's database (the cursor stays a small pointer), and the partitions of a dataset
read incrementally. Against a real on-disk (SQLite) instance and real raw folders, the sensor
driven as the daemon does (tests/helpers.tick)."""

import os
import time

import dagster as dg
import pytest
from data_platform.definitions import build_definitions
from data_platform.instance import write_instance_yaml
from data_platform.sensors.partitions import PartitionCache

from .helpers import sensor_state, tick

CSV = "Order ID,Customer,Amount,Currency,Ordered At,Order Date,Gift?\n1,c,1.50,EUR,2026-11-20T10:00:00+00:00,2026-11-20,false\n"
PENGUINS = "studyName,Sample Number\nPAL0708,1\n"


@pytest.fixture
def env(data_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("PLATFORM_SENSOR_SETTLE_SECONDS", "0")
    write_instance_yaml(tmp_path / "home")
    instance = dg.DagsterInstance.from_config(str(tmp_path / "home"))
    yield data_dir, build_definitions(), instance
    instance.dispose()


def files(requests, dataset):
    return sum(int(r.tags["platform/files"]) for r in requests
               if r.tags["platform/dataset"] == dataset)


def test_a_backlog_does_not_starve_another_datasets_single_file(env):
    """The runs requested are not recorded here (submit=False): Dagster's run creation logs a
    planned event per partition (0.7-1 s per 100-file run on the local instance, 5 s on
    Dagster's own SQLite storage: bench/instance_storage.py), which is the daemon's cost, not
    the sensor's; each tick's requests are new, so no run key repeats."""
    data_dir, defs, instance = env
    folder = data_dir / "raw" / "orders" / "backlog"
    folder.mkdir(parents=True)
    for i in range(10_000):
        (folder / f"{i:05d}.csv").write_text(CSV)
    (data_dir / "raw" / "penguins").mkdir()
    (data_dir / "raw" / "penguins" / "one.csv").write_text(PENGUINS)

    requests, skip, cursor = tick(defs, instance, None)
    assert requests == [] and "waiting for 10000 file(s)" in skip  # first sight: settling
    requests, skip, cursor = tick(defs, instance, cursor, submit=False)
    assert files(requests, "penguins") == 1  # in the first tick that launches anything
    assert files(requests, "orders") == 999  # the rest of the tick's 1,000
    # The cursor is a pointer; the state (10,000 pending signatures) is in the instance.
    assert len(cursor) < 100
    assert len(sensor_state(instance, cursor)["datasets"]["orders"]["inflight"]) == 999
    launched = 999
    for _ in range(12):
        requests, _, cursor = tick(defs, instance, cursor, submit=False)
        launched += files(requests, "orders")
        if not requests:
            break
    assert launched == 10_000
    assert len(instance.get_dynamic_partitions("raw_orders")) == 10_000


def test_partitions_are_read_incrementally_and_deletions_are_seen_on_reload(env):
    _, _, instance = env
    cache = PartitionCache(full_reload_s=3600)
    instance.add_dynamic_partitions("raw_orders", ["a", "b"])
    assert cache.known(instance, "raw_orders") == {"a", "b"}
    instance.add_dynamic_partitions("raw_orders", ["c"])
    assert cache.known(instance, "raw_orders") == {"a", "b", "c"}  # only "c" was read
    instance.delete_dynamic_partition("raw_orders", "a")
    assert "a" in cache.known(instance, "raw_orders")  # stale until the reload ...
    cache.full_reload_s = 0
    assert cache.known(instance, "raw_orders") == {"b", "c"}  # ... which forgets it


def launch_one(env):
    """orders/a.csv uploaded and seen over two ticks (settle, then launch): (path, the second
    tick's run requests, its cursor)."""
    data_dir, defs, instance = env
    p = data_dir / "raw" / "orders" / "a.csv"
    p.parent.mkdir(parents=True)
    p.write_text(CSV)
    _, _, cursor = tick(defs, instance, None)
    requests, _, cursor = tick(defs, instance, cursor)
    return p, requests, cursor


def test_a_deleted_partition_is_added_again_when_its_file_changes(env, monkeypatch):
    """A partition deleted in the UI while the process still counts it as known: the file's
    next version is launched against a partition that exists (checked exactly)."""
    data_dir, defs, instance = env
    p, requests, cursor = launch_one(env)
    assert [r.tags["platform/files"] for r in requests] == ["1"]
    instance.delete_dynamic_partition("raw_orders", "a.csv")
    time.sleep(0.02)
    p.write_text(CSV + "2,c,1.50,EUR,2026-11-20T10:00:00+00:00,2026-11-20,false\n")
    os.utime(p)
    _, _, cursor = tick(defs, instance, cursor)
    requests, _, cursor = tick(defs, instance, cursor)
    assert len(requests) == 1
    assert instance.get_dynamic_partitions("raw_orders") == ["a.csv"]


def test_a_cursor_of_the_previous_format_is_taken_over(env):
    """Upgraded in place: the v2 cursor held the state itself; the new sensor carries on from
    it (nothing launched again) and moves it into the instance."""
    import json

    data_dir, defs, instance = env
    _, requests, cursor = launch_one(env)
    assert len(requests) == 1
    old = json.dumps({"v": 2, "t": json.loads(cursor)["t"],
                      "datasets": sensor_state(instance, cursor)["datasets"]})
    requests, _, new = tick(defs, instance, old)
    assert requests == [] and json.loads(new)["v"] == 3
    assert sensor_state(instance, new)["datasets"]["orders"]["done"]
