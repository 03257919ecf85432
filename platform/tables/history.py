"""Time travel and rollback for people: list snapshots, query as of a time, restore a snapshot.

Used by the `data-platform` command on the local catalog. Rollback moves the table's current
snapshot (backwards or forwards among the retained ones) in one metadata commit, so readers
switch atomically, and forgets the ledger entries of keys whose committed version changed, so a
later upload of the same content is re-examined instead of skipped as unchanged.
"""

from __future__ import annotations

import datetime as dt

import duckdb

from .. import staging as st
from ..resources.catalog import DuckDBCatalog
from ..resources.storage import ObjectStore
from .maintenance import rollback
from .schema import SOURCE_KEY, SOURCE_VERSION
from .store import load_table, rejected_name
from .views import snapshot_files, view_sql


def _table(catalog: DuckDBCatalog, name: str):
    table = load_table(catalog.iceberg(), catalog.namespace, name)
    if table is None:
        raise ValueError(f"no table {name!r} (nothing was committed yet?)")
    return table


def history_lines(catalog: DuckDBCatalog, dataset: str, *, rejected: bool = False) -> list[str]:
    """One line per retained snapshot, oldest first; the current one is marked with `*`."""
    table = _table(catalog, rejected_name(dataset) if rejected else dataset)
    current = table.current_snapshot()
    lines = ["  snapshot_id          committed_at (UTC)    operation  added  deleted  total  run"]
    for s in sorted(table.snapshots(), key=lambda s: s.timestamp_ms):
        summary = s.summary
        when = dt.datetime.fromtimestamp(s.timestamp_ms / 1000, dt.timezone.utc)
        mark = "*" if current and s.snapshot_id == current.snapshot_id else " "
        lines.append(
            f"{mark} {s.snapshot_id:<20d} {when:%Y-%m-%d %H:%M:%S}   "
            f"{summary.operation.value:<10} {summary.get('added-records') or '0':>6} "
            f"{summary.get('deleted-records') or '0':>8} {summary.get('total-records') or '0':>6}  "
            f"{summary.get('platform.run-id') or summary.get('platform.operation') or ''}")
    return lines


def snapshot_as_of(table, when: dt.datetime) -> int | None:
    """The id of the snapshot that was current at `when` (None: the table was empty then)."""
    ms = when.timestamp() * 1000
    current = None
    for entry in table.metadata.snapshot_log:
        if entry.timestamp_ms <= ms:
            current = entry.snapshot_id
    return current


def query_as_of(catalog: DuckDBCatalog, sql: str, as_of: str) -> list[tuple]:
    """Run `sql` with every table as it was at `as_of` (views built in memory)."""
    try:
        when = dt.datetime.fromisoformat(as_of)
    except ValueError:
        raise ValueError(f"--as-of {as_of!r} is not an ISO date/time") from None
    if when.tzinfo is None:
        when = when.astimezone()
    ice = catalog.iceberg()
    con = duckdb.connect()
    try:
        for (ns, name) in ice.list_tables(catalog.namespace):
            table = ice.load_table((ns, name))
            snap = snapshot_as_of(table, when)
            con.execute(view_sql(name, table, snap, empty=snap is None))
        return con.execute(sql).fetchall()
    finally:
        con.close()


def rollback_dataset(catalog: DuckDBCatalog, lake: ObjectStore, dataset: str,
                     snapshot_id: int) -> list[str]:
    """Make `snapshot_id` current for `dataset`; returns lines describing what changed."""
    table = _table(catalog, dataset)
    before_rows = int((table.current_snapshot().summary.get("total-records") or 0)
                      if table.current_snapshot() else 0)
    before_keys = _versions(table)
    previous, _ = rollback(table, snapshot_id)
    table = _table(catalog, dataset)
    after_keys = _versions(table)
    changed = {k for k in set(before_keys) | set(after_keys)
               if before_keys.get(k) != after_keys.get(k)}
    for key in changed:
        st.forget_ledger(lake, dataset, key)
    catalog.expose([dataset, rejected_name(dataset)])
    after_rows = int(table.current_snapshot().summary.get("total-records") or 0)
    return [f"{dataset}: current snapshot {previous} -> {snapshot_id}",
            f"rows: {before_rows} -> {after_rows}; files whose committed version changed: "
            f"{len(changed)} (their ledger entries were forgotten)",
            "note: the rejected-rows table is unchanged; roll it back with its own snapshot ids "
            "if needed (data-platform history DATASET --rejected)"]


def _versions(table) -> dict[str, int]:
    """{raw key: committed version} from the current snapshot's file statistics."""
    if table.current_snapshot() is None:
        return {}
    import pyarrow.parquet as pq

    keys: dict[str, int] = {}
    for path in snapshot_files(table):
        with table.io.new_input(path).open() as stream:
            lineage = pq.read_table(stream, columns=[SOURCE_KEY, SOURCE_VERSION])
        for row in lineage.group_by(SOURCE_KEY).aggregate([(SOURCE_VERSION, "max")]).to_pylist():
            keys[row[SOURCE_KEY]] = max(keys.get(row[SOURCE_KEY], 0), row[f"{SOURCE_VERSION}_max"])
    return keys
