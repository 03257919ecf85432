"""The six ways the old table layer kept wrong data, each driven end to end as in production:
the sensor ticks as the daemon runs it (partition requests applied, run-key dedup), each accepted
run request executes the real ingest job with its run config, and the table is read back through
the DuckDB views people use. Real folders, a real SQLite Iceberg catalog, a real instance.
"""

import time

import dagster as dg
import pytest
from data_platform import staging as st
from data_platform.definitions import build_definitions
from data_platform.resources import DuckDBCatalog, LocalStorage

from .conftest import write_raw
from .helpers import tick

HEADER = "Order ID,Customer,Amount,Currency,Ordered At,Order Date,Gift?\n"


def rows(ids, day="2026-11-20"):
    return "".join(f"{i},c{i},2.50,EUR,{day}T10:00:00+00:00,{day},false\n" for i in ids)


def q(sql):
    return DuckDBCatalog().query(sql)


class Platform:
    """The sensor and the runs it launches, as `dagster dev`'s daemon would drive them."""

    def __init__(self):
        self.defs = build_definitions()
        self.instance = dg.DagsterInstance.ephemeral()
        self.cursor = None
        self.results = []

    def launch(self, req: dg.RunRequest) -> dg.ExecuteInProcessResult:
        job = self.defs.resolve_job_def(req.job_name)
        return job.execute_in_process(instance=self.instance, run_config=req.run_config,
                                      tags=req.tags, partition_key=req.partition_key,
                                      raise_on_error=False)

    def tick(self) -> list[dg.RunRequest]:
        requests, _, self.cursor = tick(self.defs, self.instance, self.cursor)
        return requests

    def settle(self, run: bool = True, ticks: int = 3) -> list[dg.RunRequest]:
        """Tick until nothing new is requested, running each accepted request at once."""
        launched = []
        for _ in range(ticks):
            requests = self.tick()
            launched += requests
            if run:
                self.results += [self.launch(r) for r in requests]
        return launched


@pytest.fixture
def platform(data_dir, monkeypatch):
    monkeypatch.setenv("PLATFORM_SENSOR_SETTLE_SECONDS", "0")
    return Platform()


def write(data_dir, key, content, mtime=None):
    time.sleep(0.02)  # distinct change times, as real uploads have
    return write_raw(data_dir, key, content, mtime)


def test_1_glob_characters_in_names_are_never_patterns(data_dir, platform):
    write(data_dir, "orders/r1.csv", HEADER + rows(range(1, 4)))
    write(data_dir, "orders/r[1].csv", HEADER + rows(range(10, 12)))
    write(data_dir, "orders/*.csv", HEADER + rows(range(20, 21)))
    write(data_dir, "orders/a?.csv", HEADER + rows(range(30, 35)))
    platform.settle()
    assert all(r.success for r in platform.results)
    assert dict(q("SELECT _source_key, count(*) FROM orders GROUP BY 1")) == {
        "r1.csv": 3, "r[1].csv": 2, "*.csv": 1, "a?.csv": 5}


def test_2_file_replaced_while_its_run_waits_is_never_misrecorded(data_dir, platform):
    write(data_dir, "orders/f.csv", HEADER + rows(range(1, 3)))
    first = platform.settle(run=False)  # requested with version A, not yet run
    assert len(first) == 1
    write(data_dir, "orders/f.csv", HEADER + rows(range(1, 8)))  # B replaces A
    r = platform.launch(first[0])
    assert r.success  # A's run sees the object changed and leaves it to B's run
    rec = st.latest_record(LocalStorage().lake(), "orders", "f.csv")
    assert rec.status == st.SUPERSEDED and rec.content_hash is None  # nothing of A recorded
    platform.settle()
    assert q("SELECT count(*), count(DISTINCT _source_version) FROM orders") == [(7, 1)]


def test_2_file_rewritten_in_place_while_its_run_cleans_it(data_dir, platform, monkeypatch):
    """The local raw file is cleaned where it lies (no copy): a writer appending to it while
    the engine reads it is caught after the last read, and only the new version lands."""
    import data_platform.assets.clean as clean_mod

    write(data_dir, "orders/f.csv", HEADER + rows(range(1, 3)))
    real, calls = clean_mod.clean_file, []

    def clean_then_append(*args, **kwargs):
        result = real(*args, **kwargs)
        if not calls:
            calls.append(1)
            with open(data_dir / "raw" / "orders" / "f.csv", "a") as f:
                f.write(rows(range(3, 6)))
        return result

    monkeypatch.setattr(clean_mod, "clean_file", clean_then_append)
    platform.settle(ticks=5)  # A seen, A run (B written meanwhile), B seen, B run
    recs = sorted(st.records(LocalStorage().lake(), "orders"), key=lambda r: r.version)
    assert [r.status for r in recs] == [st.SUPERSEDED, st.COMMITTED]
    assert "changed while it was read" in recs[0].reason
    assert recs[0].content_hash is None and not recs[0].data_files
    assert q("SELECT count(*), count(DISTINCT _source_version) FROM orders") == [(5, 1)]


def test_3_a_b_a_processes_a_again_and_a_failed_file_can_be_retried(data_dir, platform):
    a, b = HEADER + rows(range(1, 3)), HEADER + rows(range(1, 6))
    for content in (a, b, a):
        write(data_dir, "orders/f.csv", content)
        assert len(platform.settle()) == 1
    assert q("SELECT count(*) FROM orders") == [(2,)]
    # A file that cannot be read fails; uploading the same bytes again retries it.
    write(data_dir, "orders/g.csv", b"")
    platform.settle()
    assert not platform.results[-1].success
    write(data_dir, "orders/g.csv", b"")
    assert len(platform.settle()) == 1  # not dropped as a duplicate run


def test_4_overwrite_with_an_old_modification_time_is_seen(data_dir, platform):
    write(data_dir, "orders/f.csv", HEADER + rows(range(1, 3)))
    platform.settle()
    old = time.time() - 30 * 86400
    write(data_dir, "orders/f.csv", HEADER + rows(range(1, 9)), mtime=old)  # as `cp -p` does
    platform.settle()
    assert q("SELECT count(*) FROM orders") == [(8,)]
    # `mv` of an old file over the key, as rsync and editors do.
    tmp = write(data_dir, "orders/.incoming", HEADER + rows(range(1, 5)), mtime=old)
    tmp.rename(data_dir / "raw" / "orders" / "f.csv")
    platform.settle()
    assert q("SELECT count(*) FROM orders") == [(4,)]


def test_5_a_file_failing_an_error_check_is_never_visible(data_dir, platform):
    write(data_dir, "orders/a.csv", HEADER + rows(range(1, 11)))
    platform.settle()
    bad = "".join(f"{i},c,12x,EUR,2026-11-20T10:00:00+00:00,2026-11-20,false\n"
                  for i in range(100, 110))
    write(data_dir, "orders/a.csv", HEADER + rows(range(50, 52)) + bad)  # 83% rejected
    write(data_dir, "orders/b.csv", HEADER + rows(range(200, 203)))
    platform.settle()
    assert q("SELECT _source_key, count(*), min(order_id) FROM orders GROUP BY 1 ORDER BY 1") == [
        ("a.csv", 10, 1), ("b.csv", 3, 200)]
    assert q("SELECT count(*) FROM orders_rejected WHERE _source_key = 'a.csv'") == [(0,)]


def test_6_a_renamed_file_moves_its_rows_and_a_rerun_replaces_atomically(data_dir, platform):
    write(data_dir, "orders/a.csv", HEADER + rows(range(1, 6), "2026-11-19")
          + rows(range(6, 9), "2026-11-20"))
    platform.settle()
    (data_dir / "raw" / "orders" / "a.csv").rename(data_dir / "raw" / "orders" / "b.csv")
    platform.settle()
    assert all(r.success for r in platform.results)
    assert q("SELECT _source_key, count(*) FROM orders GROUP BY 1") == [("b.csv", 8)]
    # Rerun of b with other days: the old partitions' rows are gone in the same snapshot.
    write(data_dir, "orders/b.csv", HEADER + rows(range(1, 3), "2026-11-21"))
    platform.settle()
    assert q("SELECT count(*), min(order_date)::VARCHAR FROM orders") == [(2, "2026-11-21")]
    table = DuckDBCatalog().iceberg().load_table(("platform", "orders"))
    assert [s.summary["total-records"] for s in table.snapshots()] == ["8", "8", "2"]


def test_a_data_folder_of_the_old_layout_is_rebuilt_from_raw(samples, platform):
    """An old `.data/`: Parquet under lake/cleaned, manifests, a version-1 sensor cursor and the
    partitions already known. The first tick starts over, and raw rebuilds both tables."""
    old = samples / "lake" / "cleaned" / "orders" / "order_date=2026-11-20"
    old.mkdir(parents=True)
    (old / "stale.parquet").write_bytes(b"PAR1 stale")
    (samples / "lake" / "_manifests" / "orders").mkdir(parents=True)
    keys = sorted(p.name for p in (samples / "raw" / "orders").iterdir())
    platform.instance.add_dynamic_partitions("raw_orders", keys)
    now = time.time_ns()
    platform.cursor = ('{"v": 1, "datasets": {"orders": {"wm": %d, "done": {%s}, "pending": {}}}}'
                       % (now, ", ".join(f'"{k}": "1:{now}"' for k in keys)))
    platform.settle()
    assert all(r.success for r in platform.results)
    assert q("SELECT count(*) FROM orders") == [(240,)]
    assert q("SELECT count(*) FROM penguins") == [(250,)]
