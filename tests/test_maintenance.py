"""Table maintenance (expiry, orphans, compaction), time travel and rollback, on real tables."""

import os
import time
from pathlib import Path

import dagster as dg
import pytest
from data_platform import staging as st
from data_platform.cli import main as cli
from data_platform.definitions import build_definitions
from data_platform.resources import DuckDBCatalog, LocalStorage
from data_platform.tables import maintenance as mt
from data_platform.tables.views import snapshot_files

from .conftest import write_raw
from .helpers import run_ingest

HEADER = "Order ID,Customer,Amount,Currency,Ordered At,Order Date,Gift?\n"


def rows(ids, day="2026-11-20"):
    return "".join(f"{i},c{i},2.50,EUR,{day}T10:00:00+00:00,{day},false\n" for i in ids)


def q(sql):
    return DuckDBCatalog().query(sql)


def table(name="orders"):
    return DuckDBCatalog().iceberg().load_table(("platform", name))


@pytest.fixture
def instance():
    return dg.DagsterInstance.ephemeral()


def ingest(defs, instance, data_dir, n_files=6, start=0, per_file=4):
    keys = []
    for i in range(start, start + n_files):
        k = f"f{i:02d}.csv"
        write_raw(data_dir, f"orders/{k}", HEADER + rows(range(i * 100, i * 100 + per_file)))
        keys.append(k)
    assert run_ingest(defs, instance, "orders", keys).success
    return keys


def test_compaction_merges_small_files_in_one_commit_and_reingest_still_replaces(
        data_dir, instance):
    defs = build_definitions()
    for batch in range(3):  # three commits of six small files each, one partition
        ingest(defs, instance, data_dir, start=batch * 6)
    t = table()
    before_rows = sorted(tuple(r.values()) for r in t.scan().to_arrow().to_pylist())
    before_files, snaps = len(snapshot_files(t)), len(t.snapshots())
    replaced, written, note = mt.compact(t, target_file_mb=128, min_files=4)
    t = table()
    assert (replaced, written, note) == (before_files, 1, "compacted")
    assert len(snapshot_files(t)) == 1 and len(t.snapshots()) == snaps + 1
    after_rows = sorted(tuple(r.values()) for r in t.scan().to_arrow().to_pylist())
    assert after_rows == before_rows  # every row and column, lineage included, read by ids
    DuckDBCatalog().expose(["orders"])
    assert q("SELECT count(*), count(DISTINCT _source_key) FROM orders") == [(72, 18)]
    # One raw key re-ingested after compaction: exactly its rows change (the compacted file
    # is rewritten without them in the same commit).
    write_raw(data_dir, "orders/f03.csv", HEADER + rows(range(300, 302)))
    assert run_ingest(defs, instance, "orders", ["f03.csv"]).success
    assert q("SELECT count(*) FROM orders WHERE _source_key = 'f03.csv'") == [(2,)]
    assert q("SELECT count(*), count(DISTINCT order_id) FROM orders") == [(70, 70)]


def test_orphans_are_swept_but_young_failed_and_committed_files_stay(data_dir, instance):
    defs = build_definitions()
    ingest(defs, instance, data_dir, n_files=2)
    lake = LocalStorage().lake()
    data_dir_of_table = data_dir / "lake" / "warehouse" / "platform" / "orders" / "data"
    part = next(p for p in data_dir_of_table.iterdir() if p.is_dir())
    committed = set(snapshot_files(table()))
    old_orphan = part / "leftover-old.parquet"
    young_orphan = part / "leftover-young.parquet"
    for p in (old_orphan, young_orphan):
        p.write_bytes(Path(next(iter(committed))).read_bytes())
    two_days_ago = time.time() - 2 * 86400
    os.utime(old_orphan, (two_days_ago, two_days_ago))
    # A file failing its audit keeps its staged files for inspection.
    bad = "".join(f"{i},c,12x,EUR,2026-11-20T10:00:00+00:00,2026-11-20,false\n"
                  for i in range(900, 910))
    write_raw(data_dir, "orders/bad.csv", HEADER + rows(range(950, 951)) + bad)
    assert not run_ingest(defs, instance, "orders", ["bad.csv"]).success
    failed = st.latest_record(lake, "orders", "bad.csv")
    for f in failed.data_files + failed.rejected_files:
        os.utime(f, (two_days_ago, two_days_ago))
    t = table()
    n, size = mt.remove_orphans(t, lake, "platform", "orders",
                                mt.protected_files(t, lake, "orders"), older_than_hours=24)
    assert n == 1 and size > 0
    assert not old_orphan.exists() and young_orphan.exists()
    assert all(Path(f).exists() for f in failed.data_files)
    assert all(Path(f).exists() for f in snapshot_files(table()))
    assert q("SELECT count(*) FROM orders") == [(8,)]


def test_expiry_keeps_the_window_and_the_current_snapshot(data_dir, instance):
    defs = build_definitions()
    for batch in range(4):
        ingest(defs, instance, data_dir, n_files=1, start=batch)
    t = table()
    assert len(t.snapshots()) == 4
    assert mt.expire_snapshots(t, keep_days=7, keep_last=1) == []  # all inside the window
    expired = mt.expire_snapshots(table(), keep_days=0, keep_last=2)
    t = table()
    assert len(expired) == 2 and len(t.snapshots()) == 2
    assert t.current_snapshot().snapshot_id not in expired
    assert t.scan().to_arrow().num_rows == 16


def test_maintenance_job_runs_on_every_table(data_dir, instance):
    defs = build_definitions()
    for batch in range(2):
        ingest(defs, instance, data_dir, start=batch * 6)
    job = defs.resolve_job_def("maintain_tables_job")
    r = job.execute_in_process(instance=instance, run_config={"ops": {"maintain_tables": {
        "config": {"keep_days": 0, "keep_last": 1, "orphan_age_hours": 0}}}})
    assert r.success
    t = table()
    assert len(t.snapshots()) == 1 and len(snapshot_files(t)) == 1  # expired, compacted
    assert q("SELECT count(*) FROM orders") == [(48,)]
    # The expired snapshots' files were swept (nothing but the live file and metadata left).
    data_files = list((data_dir / "lake" / "warehouse" / "platform" / "orders" / "data")
                      .rglob("*.parquet"))
    assert len(data_files) == 1
    assert defs.get_schedule_def("maintain_tables_schedule").cron_schedule == "30 3 * * *"


def test_history_time_travel_and_rollback(data_dir, instance, capsys):
    defs = build_definitions()
    write_raw(data_dir, "orders/a.csv", HEADER + rows(range(1, 4)))
    assert run_ingest(defs, instance, "orders", ["a.csv"]).success
    first = table().current_snapshot()
    time.sleep(0.05)
    between = time.time()
    time.sleep(0.05)
    write_raw(data_dir, "orders/a.csv", HEADER + rows(range(1, 10)))
    assert run_ingest(defs, instance, "orders", ["a.csv"]).success
    second = table().current_snapshot()
    assert cli(["history", "orders"]) == 0
    out = capsys.readouterr().out
    assert str(first.snapshot_id) in out and f"* {second.snapshot_id}" in out
    import datetime as dt
    as_of = dt.datetime.fromtimestamp(between).isoformat()
    assert cli(["query", "SELECT count(*) FROM orders", "--as-of", as_of]) == 0
    assert capsys.readouterr().out.strip() == "3"
    assert cli(["rollback", "orders", "--to", str(first.snapshot_id)]) == 0
    assert "rows: 9 -> 3" in capsys.readouterr().out
    assert q("SELECT count(*) FROM orders") == [(3,)]
    assert st.read_ledger(LocalStorage().lake(), "orders", "a.csv") is None
    assert cli(["rollback", "orders", "--to", str(second.snapshot_id)]) == 0  # forward again
    assert q("SELECT count(*) FROM orders") == [(9,)]
    assert cli(["rollback", "orders", "--to", "12345"]) == 1


def test_scratch_sweep_removes_only_stale_leftovers(tmp_path):
    """A killed step's working folder untouched for a day goes; a folder in use (an old folder
    with a fresh file) and the persistent tensor cache stay."""
    import os
    import time

    from data_platform.resources.scratch import LocalScratch

    scratch = LocalScratch(scratch_dir=str(tmp_path / "scratch"))
    root = scratch.root()
    day_ago = time.time() - 25 * 3600
    for name in ("stage-orders-x", "tensor-step-shapes-1", "tensors-cache", "busy"):
        (root / name).mkdir()
        (root / name / "f").write_bytes(b"x")
        os.utime(root / name / "f", (day_ago, day_ago))
        os.utime(root / name, (day_ago, day_ago))
    (root / "busy" / "new").write_bytes(b"y")  # written now
    os.utime(root / "busy", (day_ago, day_ago))
    (root / "stale.part").write_bytes(b"z")
    os.utime(root / "stale.part", (day_ago, day_ago))
    assert sorted(scratch.sweep()) == ["stage-orders-x", "stale.part", "tensor-step-shapes-1"]
    assert sorted(p.name for p in root.iterdir()) == ["busy", "tensors-cache"]
