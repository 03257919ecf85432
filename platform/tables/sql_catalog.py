"""This process's pyiceberg SQL catalogs: one per database, its connections kept open.

pyiceberg's `SqlCatalog` builds a SQLAlchemy engine and checks its tables when it is made, and an
engine compiles each statement again before its first use: a new catalog and two table loads
cost ~5.5 ms of CPU, against ~1.6 ms on one already made. A run used to make three (the cleaned
step, the commit, the views), and every engine dropped kept its connections until Python's
cycle collector found it. `sql_catalog(uri)` makes one per process id and URI (a forked child
makes its own, never using its parent's connections) and keeps at most MAX_CATALOGS.

A SQLite file is switched to write-ahead logging (kept in the file: once per catalog). In its
default rollback journal a reader in any process blocks a commit until it finishes, and a
connection whose read statement was left open blocks every commit for as long as it stays open
(a CI run saw commits and table creations fail after SQLite's 5 s busy timeout, over 20 s).
With the log, readers never block the writer nor the writer readers; commits are as durable
(`synchronous` stays FULL: each commit is synced to the log).

A SQLite file that was deleted or replaced (a person's `rm -rf .data` under a running `dagster
dev`) is noticed by its inode: the catalog made on the old file is closed and a new one made, so
no process keeps reading or writing a file that is gone.
"""

from __future__ import annotations

import collections
import contextlib
import os
import sqlite3
import threading
import time
from urllib.parse import unquote

import sqlalchemy.exc
from pyiceberg.catalog.sql import SqlCatalog

MAX_CATALOGS = 8  # catalogs a process keeps (tests open many folders; a platform one)
_CATALOGS: collections.OrderedDict[tuple[int, str], tuple[object, SqlCatalog]] = \
    collections.OrderedDict()
_LOCK = threading.Lock()


def sqlite_file(uri: str) -> str | None:
    """The file of a `sqlite:///<path>` URI (None for other databases and in-memory ones)."""
    if not uri.startswith("sqlite:///"):
        return None
    path = unquote(uri[len("sqlite:///"):].split("?", 1)[0])
    return path if path and path != ":memory:" else None


def _identity(path: str | None) -> object:
    if path is None:
        return "server"
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return (st.st_dev, st.st_ino)


def sql_catalog(uri: str, name: str = "platform") -> SqlCatalog:
    """This process's catalog on database `uri`, made (with its tables) on first use."""
    path, key = sqlite_file(uri), (os.getpid(), uri)
    ident = _identity(path)
    with _LOCK:
        found = _CATALOGS.get(key)
        if found is not None and ident is not None and found[0] == ident:
            _CATALOGS.move_to_end(key)
            return found[1]
    if path is not None:
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        _use_wal(path)
    catalog = _open(name, uri)
    ident = _identity(path)
    with _LOCK:
        old = _CATALOGS.pop(key, None)
        _CATALOGS[key] = (ident, catalog)
        gone = [old] if old is not None else []
        while len(_CATALOGS) > MAX_CATALOGS:
            (pid, _), entry = _CATALOGS.popitem(last=False)
            if pid == os.getpid():
                gone.append(entry)
    for _, made in gone:  # idle connections close now, checked-out ones when returned
        made.engine.dispose()
    return catalog


def _open(name: str, uri: str) -> SqlCatalog:
    # Runs that start at once on a new catalog all create its tables: SQLAlchemy checks, then
    # creates, so all but one find the tables there already. Looking again succeeds.
    for attempt in range(5):
        try:
            return SqlCatalog(name, uri=uri, init_catalog_tables="true")
        except sqlalchemy.exc.OperationalError as e:
            if "already exists" not in str(e) or attempt == 4:
                raise
            time.sleep(0.05 * (attempt + 1))
    raise AssertionError("unreachable")


def _use_wal(path: str) -> None:
    """Switch the SQLite file at `path` to write-ahead logging (made if absent). Best effort:
    a file busy past the timeout keeps its mode until the next process opens it."""
    with contextlib.suppress(sqlite3.Error):
        con = sqlite3.connect(path, timeout=1.0)
        try:
            if con.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
                con.execute("PRAGMA journal_mode=WAL")
        finally:
            con.close()


def forget_all() -> None:
    """Close this process's catalogs (tests that delete their folders)."""
    with _LOCK:
        mine = [k for k in _CATALOGS if k[0] == os.getpid()]
        gone = [_CATALOGS.pop(k) for k in mine]
    for _, made in gone:
        made.engine.dispose()
