"""Crash safety with real processes killed for real: `dagster dev` as `make dev` runs it, the
local instance's run monitoring and run retries, and the sensor's healing.

- A run worker SIGKILLed (data_platform.crashpoints: the worker kills itself with SIGKILL at a
  named point, once) in the middle of cleaning, between staging and commit, and right after
  the data commit: the platform finishes the file by itself.
- Dagster's sensor daemon SIGKILLed between creating a tick's run and saving its cursor.
- The whole `dagster dev` process group SIGKILLed at random moments while 20 files are in
  flight (some dropped while it is down), restarted each time: every row lands exactly once.

After each, the table's history is read: no (file, version) was added by two snapshots.
"""

import random
import re
import subprocess
import sys
import time

import dagster as dg
import pytest
from data_platform.instance import write_instance_yaml
from data_platform.resources import DuckDBCatalog
from data_platform.sensors.healing import run_versions
from pyiceberg.manifest import ManifestEntryStatus

from .conftest import write_raw
from .devserver import REPO, DevServer

HEADER = "Order ID,Customer,Amount,Currency,Ordered At,Order Date,Gift?\n"
TAG = re.compile(r"/([^/]+-v\d+)-[0-9a-f]{8}(-\d+)?\.parquet$")

pytestmark = pytest.mark.e2e


def orders(first: int, n: int, bad: int = 0) -> str:
    good = "".join(f"{i},c{i},{i % 97}.25,EUR,2026-11-20T10:00:00+00:00,2026-11-20,false\n"
                   for i in range(first, first + n))
    return HEADER + good + "x,bad,12x,EUR\n" * bad


def table(name: str):
    return DuckDBCatalog().iceberg().load_table(("platform", name))


def added_by_snapshot(name: str) -> dict[int, set[str]]:
    """{snapshot id: the `<file>-v<version>` tags of the data files it added}."""
    t = table(name)
    out: dict[int, set[str]] = {}
    for snap in t.snapshots():
        tags = out.setdefault(snap.snapshot_id, set())
        for m in snap.manifests(t.io):
            if m.added_snapshot_id != snap.snapshot_id:
                continue
            for e in m.fetch_manifest_entry(t.io, discard_deleted=True):
                if e.status == ManifestEntryStatus.ADDED:
                    match = TAG.search(e.data_file.file_path)
                    tags.add(match.group(1) if match else e.data_file.file_path)
    return out


def assert_no_duplicate_commit(name: str) -> None:
    seen: dict[str, int] = {}
    for snap, tags in added_by_snapshot(name).items():
        for tag in tags:
            assert tag not in seen, f"{name}: {tag} added by snapshots {seen[tag]} and {snap}"
            seen[tag] = snap


def committed_rows(catalog: DuckDBCatalog) -> int:
    try:
        return count(catalog)[0]
    except FileNotFoundError:  # no table registered yet
        return 0


def count(catalog: DuckDBCatalog) -> tuple:
    return catalog.query("SELECT count(*), count(DISTINCT order_id) FROM orders")[0]


def test_a_run_worker_killed_at_each_point_is_finished_by_the_platform(data_dir, tmp_path):
    markers = tmp_path / "crashes"
    markers.mkdir()
    dev = DevServer(data_dir, tmp_path / "home", tmp_path / "dev.log", env={
        "PLATFORM_CRASH_AT": "stage,before-commit,commit", "PLATFORM_CRASH_DIR": str(markers),
    }).start()
    try:
        t0 = time.monotonic()
        write_raw(data_dir, "orders/killed.csv", orders(1, 300, bad=2))
        catalog = DuckDBCatalog()
        # Killed three times, in three places: each time monitoring finds the dead worker and
        # a retry takes over from the step that did not finish.
        dev.wait_for(lambda: count(catalog) == (300, 300), 300, "the rows of killed.csv")
        took = time.monotonic() - t0
        assert sorted(p.name for p in markers.iterdir()) == ["before-commit", "commit", "stage"]
        assert catalog.query("SELECT count(*) FROM orders_rejected") == [(2,)]
        instance = dg.DagsterInstance.from_config(str(tmp_path / "home"))
        runs = instance.get_runs()
        failed = [r for r in runs if r.status == dg.DagsterRunStatus.FAILURE]
        assert len(failed) == 3 and len(runs) == 4, [(r.run_id, r.status) for r in runs]
        print(f"killed.csv: 3 kills, committed {took:.0f} s after the upload")
    finally:
        dev.stop()
    # One commit of the file in each table, though the third kill came after the data commit.
    assert len(table("orders").snapshots()) == 1
    assert len(table("orders_rejected").snapshots()) == 1
    assert_no_duplicate_commit("orders")


def test_the_whole_platform_killed_repeatedly_lands_every_file_once(data_dir, tmp_path):
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    print(f"seed {seed}")
    dev = DevServer(data_dir, tmp_path / "home", tmp_path / "dev.log",
                    env={"PLATFORM_SENSOR_HEAL_AFTER_SECONDS": "20"})
    catalog = DuckDBCatalog()
    n = 40_000
    files = [(f"orders/f{i:02d}.csv", orders(n * (i + 1), n, bad=i % 3)) for i in range(20)]
    waves = [files[i:i + 5] for i in range(0, 20, 5)]
    try:
        dev.start()
        instance = dg.DagsterInstance.from_config(str(tmp_path / "home"))
        killed_runs = set()
        for kill in range(3):
            for key, body in waves[kill] if kill != 1 else []:
                write_raw(data_dir, key, body)
            if kill == 1:
                # Once in the middle of a run: as soon as one is seen working.
                killed_runs.update(dev.wait_for(lambda: [r.run_id for r in instance.get_runs(
                    filters=dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED]))],
                    120, "a run in flight", interval=0.2))
            else:
                # At a random moment: listing, settling, queued, launching or running.
                time.sleep(rng.uniform(1, 20))
            dev.kill()
            uploaded = sum(1 for p in (data_dir / "raw" / "orders").iterdir()) * n
            in_table = committed_rows(catalog)
            # Reported, not asserted: a random moment may fall after the wave committed. The
            # kill that must hit a run in flight is the one above, checked at the end.
            print(f"kill {kill}: {uploaded - in_table} of {uploaded} uploaded rows in flight")
            if kill in (0, 2):  # uploads keep coming while the platform is down
                for key, body in waves[kill + 1]:
                    write_raw(data_dir, key, body)
            dev.start()
        t0 = time.monotonic()
        dev.wait_for(lambda: count(catalog) == (20 * n, 20 * n), 420, "all 20 files")
        print(f"seed {seed}: all rows {time.monotonic() - t0:.0f} s after the last restart")
        assert catalog.query("SELECT count(*) FROM orders_rejected") == [(19,)]
        assert catalog.query("SELECT count(DISTINCT _source_key) FROM orders") == [(20,)]
        # The run killed while working was found dead by monitoring after the restart.
        killed = instance.get_runs(filters=dg.RunsFilter(run_ids=list(killed_runs)))
        assert [r.status for r in killed] == [dg.DagsterRunStatus.FAILURE] * len(killed)
    finally:
        dev.stop()
    assert_no_duplicate_commit("orders")
    assert_no_duplicate_commit("orders_rejected")


def test_the_sensor_daemon_killed_between_run_request_and_cursor_write(samples, tmp_path,
                                                                       monkeypatch):
    """Dagster's sensor daemon loop, SIGKILLed (its own debug crash flag) right after it created
    the first run of a tick, before launching it and before the tick's cursor was saved. The
    next iteration finishes the tick: every file is carried by exactly one run, none lost."""
    monkeypatch.setenv("PLATFORM_SENSOR_SETTLE_SECONDS", "0")
    home = tmp_path / "home"
    write_instance_yaml(home)

    def iteration(crash: str = "") -> int:
        time.sleep(5.5)  # the sensor's minimum interval
        args = [sys.executable, "-m", "tests.sensor_daemon", str(home)] + ([crash] if crash else [])
        return subprocess.run(args, cwd=REPO, capture_output=True, timeout=300).returncode

    assert iteration() == 0  # first sight of the sample files: settling
    assert iteration("RUN_CREATED") == -9  # killed after creating the first run
    instance = dg.DagsterInstance.from_config(str(home))
    assert len(instance.get_runs()) == 1
    assert iteration() == 0  # the restarted daemon resumes the tick
    assert iteration() == 0  # and the next tick asks for nothing more
    carried: dict[tuple, int] = {}
    for run in instance.get_runs():
        ds = run.tags["platform/dataset"]
        for key in run_versions(run, ds):
            carried[(ds, key)] = carried.get((ds, key), 0) + 1
    raw = samples / "raw"
    expected = {(p.relative_to(raw).parts[0], p.relative_to(raw / p.relative_to(raw).parts[0])
                 .as_posix()) for p in raw.rglob("*") if p.is_file()}
    assert set(carried) == expected and set(carried.values()) == {1}, carried
    assert len(instance.get_runs()) == 3  # one per dataset
