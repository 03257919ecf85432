"""The local instance's storage (data_platform.local_storage): Dagster's SQLite files with
connections kept open. What is written is what other processes read (Dagster's own storage
included), a run's live watch sees events another process writes while it still runs, and no
process uses an engine its parent made before a fork."""

import multiprocessing
import os
import sqlite3
import subprocess
import sys
import textwrap
import threading

import dagster as dg
import pytest
from dagster._core.storage.event_log.sqlite import sqlite_event_log
from dagster._core.storage.sql import check_alembic_revision, get_alembic_config
from data_platform import local_storage
from data_platform.instance import write_instance_yaml


@dg.op
def one():
    return 1


@dg.job
def tiny():
    one()


def _in_child(home, body: str, *args: str, timeout=120) -> str:
    """Run `body` in a new Python process with `instance` open on `home` (`args` in
    sys.argv[2:]); its stdout."""
    code = textwrap.dedent("""
        import sys, time
        import dagster as dg
        with dg.DagsterInstance.from_config(sys.argv[1]) as instance:
    """) + textwrap.indent(textwrap.dedent(body), "    ")
    done = subprocess.run([sys.executable, "-c", code, str(home), *args], capture_output=True,
                          text=True, timeout=timeout)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


@pytest.fixture
def home(tmp_path):
    write_instance_yaml(tmp_path / "home")
    return tmp_path / "home"


def test_the_instance_uses_it_and_other_processes_read_what_it_wrote(home, tmp_path):
    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert isinstance(instance.run_storage, local_storage.PooledSqliteRunStorage)
        assert isinstance(instance.event_log_storage, local_storage.PooledSqliteEventLogStorage)
        assert isinstance(instance.schedule_storage, local_storage.PooledSqliteScheduleStorage)
        run_ids = [tiny.execute_in_process(instance=instance).run_id for _ in range(2)]
        mine = {r: len(instance.all_logs(r)) for r in run_ids}
        assert all(n > 5 for n in mine.values())
        alembic = get_alembic_config(sqlite_event_log.__file__)
        for run_id in run_ids:  # each run's new file (a copy of the template): Dagster's
            with instance.event_log_storage.run_connection(run_id) as conn:  # current schema,
                revision, head = check_alembic_revision(alembic, conn)  # a write-ahead log
                assert revision == head and head is not None
                assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
                assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 1  # NORMAL
        assert len(list((home / "storage" / "history" / "runs").glob(".run-template-*"))) == 1
        # Read while this process still holds its connections (the writes sit in the logs).
        out = _in_child(home, """
            for run_id in sys.argv[2:]:
                print(run_id, len(instance.all_logs(run_id)),
                      instance.get_run_by_id(run_id).status.value)
        """, *run_ids)
    assert out.split("\n")[:2] == [f"{r} {mine[r]} SUCCESS" for r in run_ids]
    # Dagster's own SQLite storage on the same folder reads the same history.
    stock = tmp_path / "stock"
    stock.mkdir()
    (stock / "dagster.yaml").write_text(
        f"storage:\n  sqlite:\n    base_dir: \"{home / 'storage'}\"\n")
    with dg.DagsterInstance.from_config(str(stock)) as other:
        assert not isinstance(other.event_log_storage, local_storage.PooledSqliteEventLogStorage)
        assert {r: len(other.all_logs(r)) for r in run_ids} == mine


def test_a_runs_watch_sees_events_another_process_writes_while_it_runs(home):
    """The writer keeps its connections open until told to stop: its commits are in the
    database's write-ahead log, not yet in the file Dagster's own watch looks at."""
    with dg.DagsterInstance.from_config(str(home)) as instance:
        run = instance.create_run_for_job(tiny, run_config={})
        seen, arrived = [], threading.Event()

        def on_event(entry, _cursor):
            seen.append(entry.message)
            if "from the writer" in (entry.message or ""):
                arrived.set()

        instance.watch_event_logs(run.run_id, None, on_event)
        stop = home / "stop"
        code = textwrap.dedent(f"""
            import os, sys, time
            import dagster as dg
            with dg.DagsterInstance.from_config({str(home)!r}) as instance:
                run = instance.get_run_by_id({run.run_id!r})
                instance.report_engine_event("from the writer", run)
                print("written", flush=True)
                while not os.path.exists({str(stop)!r}):
                    time.sleep(0.05)
        """)
        writer = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True)
        try:
            assert writer.stdout.readline().strip() == "written", writer.stderr.read()
            assert arrived.wait(20), f"the watch saw only {seen}"
            assert writer.poll() is None  # it arrived while the writer still held its files
        finally:
            stop.write_text("")
            writer.wait(60)
        instance.end_watch_event_logs(run.run_id, on_event)


def test_has_table_uses_the_pool_and_sees_tables_made_later(home, monkeypatch):
    """Dagster asks `has_table` ~35 times a run; the answer comes from the pooled engine (no
    engine of its own), inside an open transaction too, and a table missing at first is seen
    once another connection makes it (only tables found are remembered)."""
    with dg.DagsterInstance.from_config(str(home)) as instance:
        storage = instance.event_log_storage
        assert storage.supports_asset_checks

        def no_new_engine(*args, **kwargs):
            raise AssertionError("has_table made an engine of its own")

        monkeypatch.setattr(sqlite_event_log, "create_engine", no_new_engine)
        assert storage.has_table("dynamic_partitions")
        assert not storage.has_table("made_later")
        answers = []
        with storage.index_connection() as conn:  # Dagster asks inside its transactions
            asking = threading.Thread(target=lambda: answers.append(
                storage.has_table("asset_check_executions")))
            asking.start()
            asking.join(30)
            conn.exec_driver_sql("SELECT 1")
        assert answers == [True]
        index = home / "storage" / "history" / "runs" / "index.db"
        other = sqlite3.connect(index)
        other.execute("CREATE TABLE made_later (a INTEGER)")
        other.commit()
        other.close()
        assert storage.has_table("made_later")


def _child_engine(conn_string, parent_id, out):
    made = local_storage.engine(conn_string)
    with made.connect() as conn:
        conn.exec_driver_sql("SELECT 1")
    out.put(id(made) != parent_id)


def test_a_forked_process_makes_its_own_engine(tmp_path):
    cs = f"sqlite:///{tmp_path / 'x.db'}"
    parent = local_storage.engine(cs)
    with parent.connect() as conn:
        conn.exec_driver_sql("CREATE TABLE t (a INT)")
    assert local_storage.engine(cs) is parent
    ctx = multiprocessing.get_context("fork")
    out = ctx.Queue()
    child = ctx.Process(target=_child_engine, args=(cs, id(parent), out))
    child.start()
    child.join(60)
    assert child.exitcode == 0 and out.get(timeout=5) is True
    local_storage.forget(str(tmp_path))


def test_engines_beyond_the_limit_are_disposed_oldest_first(tmp_path, monkeypatch):
    monkeypatch.setattr(local_storage, "MAX_ENGINES", 3)
    made = [local_storage.engine(f"sqlite:///{tmp_path / f'{i}.db'}") for i in range(5)]
    kept = [k for k in local_storage._ENGINES if str(tmp_path) in k[1]]  # noqa: SLF001
    assert [k[1] for k in kept] == [f"sqlite:///{tmp_path / f'{i}.db'}" for i in (2, 3, 4)]
    assert local_storage.engine(f"sqlite:///{tmp_path / '0.db'}") is not made[0]
    local_storage.forget(str(tmp_path))
    assert not [k for k in local_storage._ENGINES if k[0] == os.getpid()  # noqa: SLF001
                and str(tmp_path) in k[1]]


def test_processes_writing_at_once_lose_no_event(home):
    """Four processes write into one run (its file and the cross-run index) at the same time,
    each through its own pooled connections; every event is there afterwards."""
    with dg.DagsterInstance.from_config(str(home)) as instance:
        run = instance.create_run_for_job(tiny, run_config={})
        before = len(instance.all_logs(run.run_id))
    code = textwrap.dedent(f"""
        import sys
        import dagster as dg
        with dg.DagsterInstance.from_config({str(home)!r}) as instance:
            run = instance.get_run_by_id({run.run_id!r})
            for i in range(100):
                instance.report_engine_event(f"writer {{sys.argv[1]}} event {{i}}", run)
                if i % 10 == 0:  # asset events go to the index as well
                    instance.report_runless_asset_event(
                        dg.AssetMaterialization(asset_key=f"w{{sys.argv[1]}}"))
    """)
    writers = [subprocess.Popen([sys.executable, "-c", code, str(n)], stderr=subprocess.PIPE,
                                text=True) for n in range(4)]
    for w in writers:
        assert w.wait(120) == 0, w.stderr.read()[-3000:]
    out = _in_child(home, """
        run_id = sys.argv[2]
        print(sum("writer" in (e.message or "") for e in instance.all_logs(run_id)))
        print(sum(instance.get_latest_materialization_event(dg.AssetKey(f"w{n}")) is not None
                  for n in range(4)))
        print(len(instance.fetch_materializations(dg.AssetKey("w0"), limit=100).records))
    """, run.run_id)
    assert out.split() == ["400", "4", "10"]
    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert len(instance.all_logs(run.run_id)) == before + 400
