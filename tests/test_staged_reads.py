"""The key facts and column profile of a staged file are read off the cleaned step's critical
path and handed to the table step of the same run (assets/reads.py). Real ingest runs into a
local Iceberg table: whichever way the reads go, the commit's key check and the records stay
exact."""

import dagster as dg
import pytest
from data_platform import staging as st
from data_platform.assets import reads
from data_platform.definitions import build_definitions
from data_platform.resources import DuckDBCatalog, LocalScratch, LocalStorage

from .conftest import write_raw
from .helpers import check_results, run_ingest

HEADER = "Order ID,Customer,Amount,Currency,Ordered At,Order Date,Gift?\n"


def rows(ids, day="2026-11-20"):
    return "".join(f"{i},c{i},2.50,EUR,{day}T10:00:00+00:00,{day},false\n" for i in ids)


@pytest.fixture
def instance():
    return dg.DagsterInstance.ephemeral()


@pytest.fixture
def saved(monkeypatch):
    """Every staging record as saved: (key, status, key facts, profile)."""
    out = []
    real = st.StagingRecord.save

    def save(self, lake):
        out.append((self.key, self.status, self.key_facts, self.profile))
        return real(self, lake)

    monkeypatch.setattr(st.StagingRecord, "save", save)
    return out


def checks(result):
    found = check_results(result)
    return found[("table/orders", "primary_key_unique")], found[("table/orders", "drift")]


def leftovers() -> list[str]:
    reads._PROFILES.submit(lambda: None).result()  # one worker, in order: clean-ups done
    return sorted(p.name for p in LocalScratch().root().glob("reads-*"))


def test_reads_are_handed_to_the_table_step_and_kept_in_the_records(data_dir, instance, saved):
    write_raw(data_dir, "orders/a.csv", HEADER + rows(range(1, 101)))
    r = run_ingest(build_definitions(), instance, "orders", ["a.csv"])
    assert r.success
    pk, drift = checks(r)
    assert pk.metadata["method"].value == "staged facts"  # the handed-over facts decided
    assert "a.csv" in drift.metadata["profiles"].value and \
        drift.metadata["profiles"].value["a.csv"]["rows"] == 100
    # The cleaned step saved its record without them (once: it did not wait for them); the
    # table step saved them with it.
    assert [s for s in saved if s[1] == st.STAGED] == [("a.csv", st.STAGED, None, None)]
    final = st.latest_record(LocalStorage().lake(), "orders", "a.csv")
    assert final.status == st.COMMITTED
    assert (final.key_facts["rows"], final.key_facts["lo"], final.key_facts["hi"]) == (100, 1, 100)
    assert final.profile["rows"] == 100
    assert leftovers() == []  # the hard links went with the reads


def test_reads_lost_with_their_process_leave_the_commit_exact(data_dir, instance, monkeypatch):
    """A table step in another process (a retry after a crash) finds no reads: the commit reads
    the new keys itself and still refuses a clash; drift says it has no profile."""
    monkeypatch.setattr(reads, "take", lambda record: None)
    defs = build_definitions()
    write_raw(data_dir, "orders/a.csv", HEADER + rows(range(1, 101)))
    r = run_ingest(defs, instance, "orders", ["a.csv"])
    assert r.success
    pk, drift = checks(r)
    assert pk.metadata["method"].value == "sorted in memory"
    assert "no profile recorded" in drift.metadata["detail"].value["a.csv"]["note"]
    write_raw(data_dir, "orders/b.csv", HEADER + rows(range(100, 151)))
    r = run_ingest(defs, instance, "orders", ["b.csv"])
    assert not r.success
    pk, _ = checks(r)
    assert not pk.passed and "already committed" in pk.metadata["refused"].value["b.csv"]
    assert DuckDBCatalog().query("SELECT count(*), max(order_id) FROM orders")[0] == (100, 100)
    assert leftovers() == []


def test_without_hard_links_the_cleaned_step_reads_and_waits(data_dir, instance, saved,
                                                            monkeypatch):
    def no_links(src, dst):
        raise OSError(18, "Invalid cross-device link")

    monkeypatch.setattr(reads, "_link", no_links)
    handed = []
    monkeypatch.setattr(reads, "hand_over", lambda record, pending: handed.append(record.key))
    write_raw(data_dir, "orders/a.csv", HEADER + rows(range(1, 101)))
    r = run_ingest(build_definitions(), instance, "orders", ["a.csv"])
    assert r.success and handed == []
    pk, drift = checks(r)
    assert pk.metadata["method"].value == "staged facts"
    key, status, facts, profile = saved[0]
    assert (key, status, facts["rows"], profile["rows"]) == ("a.csv", st.STAGED, 100, 100)
    assert leftovers() == []


def test_a_file_that_fails_its_audit_hands_nothing_over(data_dir, instance, monkeypatch):
    handed = []
    real = reads.hand_over
    monkeypatch.setattr(reads, "hand_over",
                        lambda record, pending: (handed.append(record.key), real(record, pending)))
    # Half the rows break the contract: the rejected share fails the file (ERROR).
    bad = "".join(f"{i},c{i},lots,EUR,2026-11-20T10:00:00+00:00,2026-11-20,false\n"
                  for i in range(200, 260))
    write_raw(data_dir, "orders/bad.csv", HEADER + rows(range(1, 41)) + bad)
    r = run_ingest(build_definitions(), instance, "orders", ["bad.csv"])
    assert not r.success
    assert st.latest_record(LocalStorage().lake(), "orders", "bad.csv").status == st.FAILED
    assert handed == [] and not [k for k in reads._PENDING if k[0] == r.run_id]
    assert leftovers() == []


def test_reads_see_the_files_through_links_and_remove_them(tmp_path):
    """The reads see the files as written even when they move or go at once; the profile runs
    at background priority; the links' folder goes when both reads are done."""
    import os
    import threading

    staged = []
    for i in range(2):
        staged.append(tmp_path / f"part_{i}.parquet")
        staged[-1].write_bytes(b"x" * (i + 1) * 1000)
    started = threading.Event()

    def facts(links):
        started.wait(5)
        return [p.read_bytes() for p in links]

    def profile(links):
        return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())

    pending = reads.start(staged, tmp_path, facts, profile)
    for p in staged:
        p.unlink()  # moved into the lake, or its scratch folder removed
    started.set()
    assert pending.key_facts() == [b"x" * 1000, b"x" * 2000]
    assert pending.column_profile(None, "orders/a.csv") >= reads.PROFILE_NICE
    reads._PROFILES.submit(lambda: None).result()
    assert sorted(tmp_path.iterdir()) == []


def test_a_run_without_the_table_step_keeps_the_reads_in_its_records(data_dir, instance):
    """Materializing cleaned/<ds> alone (from the UI, say): the reads are waited for and saved
    in the record, so the later commit, in another process, still has the facts and profile."""
    defs = build_definitions()
    write_raw(data_dir, "orders/a.csv", HEADER + rows(range(1, 101)))
    instance.add_dynamic_partitions("raw_orders", ["a.csv"])
    job = defs.resolve_job_def("ingest_orders_job")
    r = job.execute_in_process(instance=instance, partition_key="a.csv", raise_on_error=False,
                               asset_selection=[dg.AssetKey(["cleaned", "orders"])])
    assert r.success
    rec = st.latest_record(LocalStorage().lake(), "orders", "a.csv")
    assert rec.status == st.STAGED and rec.key_facts["rows"] == 100 and rec.profile["rows"] == 100
    assert not [k for k in reads._PENDING if k[0] == r.run_id]
    r = job.execute_in_process(instance=instance, partition_key="a.csv", raise_on_error=False,
                               asset_selection=[dg.AssetKey(["table", "orders"])])
    assert r.success
    assert DuckDBCatalog().query("SELECT count(*) FROM orders")[0][0] == 100
    pk, drift = checks(r)
    assert pk.metadata["method"].value == "staged facts"
    assert "no profile recorded" not in drift.metadata["detail"].value["a.csv"]["note"]
    assert leftovers() == []


def test_the_reads_make_no_database_of_their_own(data_dir, instance, monkeypatch):
    """The key facts, the profiles and the views' file use this process's databases
    (duckdb_pool): a new DuckDB database costs ~15 ms of CPU, and these fell where the commit
    and the end of the run wait. Only the engine makes one per file it cleans."""
    import duckdb

    defs = build_definitions()
    write_raw(data_dir, "orders/a.csv", HEADER + rows(range(1, 101)))
    assert run_ingest(defs, instance, "orders", ["a.csv"]).success
    made, real = [], duckdb.connect

    def connect(*args, **kwargs):
        import traceback

        made.append(traceback.extract_stack(limit=2)[0].filename)
        return real(*args, **kwargs)

    monkeypatch.setattr(duckdb, "connect", connect)
    write_raw(data_dir, "orders/b.csv", HEADER + rows(range(101, 201)))
    write_raw(data_dir, "orders/c.csv", HEADER + rows(range(201, 301)))
    r = run_ingest(defs, instance, "orders", ["b.csv", "c.csv"])
    pk, drift = checks(r)
    assert r.success and pk.metadata["method"].value == "staged facts"
    assert drift.metadata["profiles"].value["c.csv"]["rows"] == 100
    assert [f.rsplit("/", 2)[-2:] for f in made] == [["cleaning", "base.py"]] * 2, made
    assert DuckDBCatalog().query("SELECT count(*) FROM orders") == [(300,)]


def test_a_run_makes_its_databases_while_the_engine_cleans(data_dir, instance, monkeypatch):
    """A run's new process makes the databases of the key facts, the profile and the views
    while the engine cleans, on the reads' threads, not when the reads or the views need them
    (each costs 11-19 ms of CPU): none is made after the cleaning ends."""
    import threading

    import data_platform.assets.clean as clean_mod
    from data_platform import duckdb_pool

    monkeypatch.setattr(duckdb_pool, "_DBS", {})  # as in a run's new process
    made, cleaning = {}, threading.Event()
    real_connect, real_clean = duckdb_pool.duckdb.connect, clean_mod.clean_file

    def connect(*args, **kwargs):
        import traceback

        if traceback.extract_stack(limit=2)[0].filename.endswith("duckdb_pool.py"):
            made[len(made)] = (threading.current_thread().name, cleaning.is_set())
        return real_connect(*args, **kwargs)

    def clean_file(*args, **kwargs):
        for pool in (reads._FACTS, reads._PROFILES):  # noqa: SLF001 - queued behind the prepare
            pool.submit(lambda: None).result(10)
        cleaning.set()
        return real_clean(*args, **kwargs)

    monkeypatch.setattr(duckdb_pool.duckdb, "connect", connect)
    monkeypatch.setattr(clean_mod, "clean_file", clean_file)
    write_raw(data_dir, "orders/a.csv", HEADER + rows(range(1, 101)))
    assert run_ingest(build_definitions(), instance, "orders", ["a.csv"]).success
    names = sorted(k[1] for k in duckdb_pool._DBS)  # noqa: SLF001
    assert names == ["keys", "profile", "views"]
    assert len(made) == 3 and all(not after for _, after in made.values()), made
    assert sorted(t.split("_")[0] for t, _ in made.values()) == \
        ["staged-facts", "staged-facts", "staged-profiles"]


def test_pooled_databases_are_made_once_per_process_with_their_settings(monkeypatch):
    from data_platform import duckdb_pool

    duckdb_pool.register("test-pool", memory_limit="64MB", threads=1)
    a, b = duckdb_pool.connect("test-pool"), duckdb_pool.connect("test-pool")
    try:
        a.execute("CREATE TABLE shared AS SELECT 42 AS x")  # one database: b sees it
        assert b.execute("SELECT x FROM shared").fetchall() == [(42,)]
        assert b.execute("SELECT current_setting('threads')").fetchall() == [(1,)]
        assert "61" in b.execute("SELECT current_setting('memory_limit')").fetchall()[0][0]
    finally:
        a.close()
        b.close()
    # Closing a connection leaves the database open for the next one.
    c = duckdb_pool.connect("test-pool")
    assert c.execute("SELECT count(*) FROM shared").fetchall() == [(1,)]
    c.close()
    # Another process id (a forked child) makes its own database.
    real = duckdb_pool.os.getpid()
    monkeypatch.setattr(duckdb_pool.os, "getpid", lambda: real + 1)
    d = duckdb_pool.connect("test-pool")
    try:
        assert d.execute("SELECT count(*) FROM duckdb_tables() WHERE table_name = 'shared'"
                         ).fetchall() == [(0,)]
    finally:
        d.close()
