"""Dagster's SQLite storage for the local instance, with its database connections kept open.

Dagster's SQLite run, event-log and schedule storages build a new SQLAlchemy engine for every
transaction and close its one connection afterwards (NullPool). So every event a run writes pays
for an engine (whose compiled-statement cache starts empty), a new connection, and the WAL
checkpoint SQLite runs when the last connection to a file closes (the database file written and
synced again). A run of the ingest job writes ~40 events; on a 1 MB file it took 1.7-2.1 s on
Dagster's SQLite storage against 0.7-0.9 s on an in-memory instance, for the same work.

`PooledSqliteStorage` is `storage: sqlite` with the same files, schema and migrations, and
five changes:
- one engine per database file per process (at most MAX_ENGINES, the least recently used
  disposed), whose connections stay open in its pool;
- a new run's database file is a copy of an empty one made once per folder and Dagster version
  by Dagster's own code (`.run-template-<version>.db`): 2 ms instead of 110-150 ms of table
  creation and migration stamps per run;
- `PRAGMA synchronous=NORMAL` on WAL databases (all of Dagster's are): a commit is safe once the
  OS has it. A killed process loses nothing; a power cut can lose the last commits but never
  corrupts the file (SQLite's documented guarantee for WAL with NORMAL);
- a run's live event watch (the webserver's run view) also follows the file's write-ahead log,
  where commits land while connections stay open (Dagster's watches only the database file,
  which changed at each connection close before);
- `has_table` (Dagster asks it ~35 times a run, each time on an engine and connection of its
  own) answers from the pooled engine and remembers the tables it found.
A process never uses nor closes an engine its parent made before a fork (engines are per process
id).
An instance can switch back to `storage: sqlite` with the same base_dir at any time.
"""

from __future__ import annotations

import atexit
import collections
import contextlib
import os
import shutil
import threading
import uuid
from collections.abc import Iterator

import sqlalchemy as db
from dagster import __version__ as dagster_version
from dagster._core.storage.event_log.sqlite.sqlite_event_log import (
    INDEX_SHARD_NAME,
    SqliteEventLogStorage,
    SqliteEventLogStorageWatchdog,
)
from dagster._core.storage.runs.sqlite.sqlite_run_storage import SqliteRunStorage
from dagster._core.storage.schedules.sqlite.sqlite_schedule_storage import SqliteScheduleStorage
from dagster._core.storage.sqlite import SQLITE_BUSY_TIMEOUT_SECONDS
from dagster._core.storage.sqlite_storage import (
    DagsterSqliteStorage,
    _event_logs_directory,
    _runs_directory,
    _schedule_directory,
)
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.pool import NullPool
from watchdog.events import FileSystemEvent, PatternMatchingEventHandler
from watchdog.observers import Observer

MAX_ENGINES = 16  # run shards a process keeps open (the webserver reads many runs)
_ENGINES: collections.OrderedDict[tuple[int, str], Engine] = collections.OrderedDict()
_LOCK = threading.Lock()
_INHERITED: list[Engine] = []  # never closed (nor collected) in a forked child


def _on_connect(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    try:
        mode = cursor.execute("PRAGMA journal_mode").fetchone()[0]
        if str(mode).lower() == "wal":  # NORMAL is only crash-safe with a write-ahead log
            cursor.execute("PRAGMA synchronous=NORMAL")
    finally:
        cursor.close()


def engine(conn_string: str, timeout: float | None = None) -> Engine:
    """This process's engine for `conn_string` (made once; pooled connections)."""
    key = (os.getpid(), conn_string)
    with _LOCK:
        found = _ENGINES.get(key)
        if found is not None:
            _ENGINES.move_to_end(key)
            return found
        args = {"timeout": timeout} if timeout is not None else {}
        made = db.create_engine(conn_string, connect_args=args, pool_size=2, max_overflow=8)
        db.event.listen(made, "connect", _on_connect)
        _ENGINES[key] = made
        while len(_ENGINES) > MAX_ENGINES:
            (pid, _), old = _ENGINES.popitem(last=False)
            if pid == os.getpid():
                old.dispose()  # idle connections close (checked-out ones when returned)
            else:  # a parent's, copied by a fork: its connections are the parent's to close
                _INHERITED.append(old)
        return made


def forget(prefix: str) -> None:
    """Dispose this process's engines of files under `prefix` (before they are deleted)."""
    with _LOCK:
        for key in [k for k in _ENGINES if k[0] == os.getpid() and prefix in k[1]]:
            _ENGINES.pop(key).dispose()


@atexit.register
def _close_all() -> None:  # the last close checkpoints each write-ahead log into its file
    with _LOCK:
        for key in [k for k in _ENGINES if k[0] == os.getpid()]:
            _ENGINES.pop(key).dispose()


@contextlib.contextmanager
def _transaction(made: Engine) -> Iterator[Connection]:
    with made.connect() as conn:
        with conn.begin():
            yield conn


class PooledSqliteRunStorage(SqliteRunStorage):
    @contextlib.contextmanager
    def connect(self) -> Iterator[Connection]:
        with _transaction(engine(self._conn_string)) as conn:
            yield conn


class PooledSqliteScheduleStorage(SqliteScheduleStorage):
    @contextlib.contextmanager
    def connect(self) -> Iterator[Connection]:
        with _transaction(engine(self._conn_string)) as conn:
            yield conn


class _WalWatchdog(SqliteEventLogStorageWatchdog):
    """Dagster's run watch, told of changes to the run's database file or its log."""

    def __init__(self, storage, run_id, callback, cursor):
        super().__init__(storage, run_id, callback, cursor)
        self._paths = (self._log_path, self._log_path + "-wal")
        PatternMatchingEventHandler.__init__(self, patterns=list(self._paths))

    def on_modified(self, event: FileSystemEvent) -> None:
        if event.src_path in self._paths:
            self._process_log()


class PooledSqliteEventLogStorage(SqliteEventLogStorage):
    def __init__(self, base_dir: str, inst_data=None):
        super().__init__(base_dir, inst_data)
        self._tables: set[str] = set()  # tables seen in the index (Dagster never drops one)

    def has_table(self, table_name: str) -> bool:
        """Whether the index has `table_name`, on a pooled connection and asked until it does
        (Dagster asks ~35 times per run; its own answer makes an engine and a connection each
        time). Takes no lock: Dagster calls it inside transactions of its own."""
        if table_name in self._tables:
            return True
        made = engine(self.conn_string_for_shard(INDEX_SHARD_NAME), SQLITE_BUSY_TIMEOUT_SECONDS)
        with made.connect() as conn:
            found = bool(made.dialect.has_table(conn, table_name))
        if found:
            self._tables.add(table_name)
        return found

    @contextlib.contextmanager
    def _connect(self, shard: str) -> Iterator[Connection]:
        with self._db_lock:
            made = engine(self.conn_string_for_shard(shard), SQLITE_BUSY_TIMEOUT_SECONDS)
            if shard not in self._initialized_dbs:
                if shard == INDEX_SHARD_NAME or not self._new_shard(shard):
                    self._initdb(made)  # may have made the file and switched it to WAL:
                made.dispose()  # its connections reopen, so synchronous=NORMAL applies
                self._initialized_dbs.add(shard)
            with _transaction(made) as conn:
                yield conn

    def _new_shard(self, shard: str) -> bool:
        """Make a run's new database file as a copy of an empty one at this Dagster's schema
        (a few ms; Dagster's own creation and migration stamp take 110-150 ms per run). False
        when the file exists already (then Dagster's check of its schema runs as usual)."""
        path = self.path_for_shard(shard)
        if os.path.exists(path):
            return False
        template = os.path.join(self._base_dir, f".run-template-{dagster_version}.db")
        if not os.path.exists(template):  # once per folder and Dagster version
            tmp = f"{template}.{uuid.uuid4().hex}.tmp"
            made = db.create_engine(f"sqlite:///{tmp}", poolclass=NullPool)
            try:
                self._initdb(made)
            finally:
                made.dispose()
            os.replace(tmp, template)
        tmp = f"{path}.{uuid.uuid4().hex}.tmp"
        shutil.copyfile(template, tmp)
        try:
            os.link(tmp, path)  # never over a file another process made meanwhile
        except FileExistsError:
            return False
        finally:
            os.unlink(tmp)
        return True

    def watch(self, run_id: str, cursor: str | None, callback) -> None:
        if not self._obs:
            self._obs = Observer()
            self._obs.start()
        handler = _WalWatchdog(self, run_id, callback, cursor)
        self._watchers[run_id][callback] = (
            handler, self._obs.schedule(handler, self._base_dir, recursive=True))

    def wipe(self) -> None:
        forget(self._base_dir)
        super().wipe()


class PooledSqliteStorage(DagsterSqliteStorage):
    """`storage: sqlite` (same base_dir and files) with pooled connections: see the module."""

    def __init__(self, base_dir: str, inst_data=None):
        self.base_dir = base_dir
        self._run_storage = PooledSqliteRunStorage.from_local(_runs_directory(base_dir))
        self._event_log_storage = PooledSqliteEventLogStorage(_event_logs_directory(base_dir))
        self._schedule_storage = PooledSqliteScheduleStorage.from_local(
            _schedule_directory(base_dir))
        self._inst_data = inst_data
        super(DagsterSqliteStorage, self).__init__()

    @classmethod
    def from_config_value(cls, inst_data, config_value):
        return cls.from_local(inst_data=inst_data, **config_value)
