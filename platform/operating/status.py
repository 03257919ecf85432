"""`data-platform status`: one line per dataset, on one screen.

Files seen (raw objects and known partitions), committed (files with rows or rejected rows in
the current Iceberg snapshots: the tables are the truth), failed (the latest run failed or an
ERROR check fails them, per Dagster; without an instance, per the staging records), waiting
(seen, neither committed nor failed: new, running, or not picked up yet), the last upload and
what the dataset's checks last said.
"""

from __future__ import annotations

import dataclasses
import datetime as dt

from .. import staging as st
from ..resources.storage import ObjectStore
from ..sensors.raw_uploads import ignored_reason
from .checks import rows_by_key
from .state import DatasetState


@dataclasses.dataclass
class DatasetStatus:
    """The status line of one dataset."""

    dataset: str
    seen: int
    committed: int
    failed: int
    waiting: int
    running: int
    last_upload: float | None  # epoch seconds
    checks: str

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def raw_files(raw: ObjectStore, dataset: str) -> tuple[set[str], float | None]:
    """The dataset's raw file keys the sensor would take, and the newest modification time."""
    keys, newest = set(), None
    for o in raw.list(f"{dataset}/"):
        rel = o.key[len(dataset) + 1:]
        if ignored_reason(rel) is None:
            keys.add(rel)
            newest = max(newest or 0.0, o.mtime_ns / 1e9)
    return keys, newest


def checks_summary(state: DatasetState | None) -> str:
    """`8 ok` / `1 ERROR (rejected_share), 1 WARN (...)` / `no runs yet` / `no instance`."""
    if state is None:
        return "no instance (DAGSTER_HOME)"
    evaluated = [v for v in state.checks if v.latest is not None]
    if not evaluated:
        return "no check runs yet"
    errors = [v.check for v in evaluated if v.errors]
    warns = [v.check for v in evaluated if not v.errors and v.warnings]
    ok = len(evaluated) - len(errors) - len(warns)
    parts = [f"{ok} ok"] if ok else []
    if errors:
        parts.append(f"{len(errors)} ERROR ({', '.join(errors)})")
    if warns:
        parts.append(f"{len(warns)} WARN ({', '.join(warns)})")
    newest = max(v.latest.timestamp for v in evaluated)
    return ", ".join(parts) + f"; last run {_when(newest)}"


def dataset_status(dataset: str, raw: ObjectStore, lake: ObjectStore, data_table,
                   rejected_table, state: DatasetState | None) -> DatasetStatus:
    """Compute one dataset's status line from raw, the tables and (optionally) Dagster."""
    keys, newest = raw_files(raw, dataset)
    committed = set(rows_by_key(data_table)) | set(rows_by_key(rejected_table))
    if state is not None:
        seen = keys | set(state.partitions)
        failed = set(state.failed_partitions())
        running = len(state.in_progress)
    else:
        seen = keys
        latest = {}
        for r in st.records(lake, dataset):
            if r.key not in latest or r.version > latest[r.key].version:
                latest[r.key] = r
        failed = {k for k, r in latest.items() if r.status in (st.FAILED, st.UNREADABLE)}
        running = 0
    seen |= committed
    committed_now = committed - failed
    return DatasetStatus(
        dataset=dataset, seen=len(seen), committed=len(committed_now),
        failed=len(failed & seen), waiting=len(seen - committed_now - failed),
        running=running, last_upload=newest, checks=checks_summary(state))


def _when(ts: float | None) -> str:
    if ts is None:
        return "-"
    return dt.datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M")


def render(rows: list[DatasetStatus]) -> list[str]:
    """Aligned text lines: a header, then one line per dataset."""
    head = ("dataset", "seen", "committed", "failed", "waiting", "running", "last upload",
            "checks")
    body = [(r.dataset, str(r.seen), str(r.committed), str(r.failed), str(r.waiting),
             str(r.running), _when(r.last_upload), r.checks) for r in rows]
    widths = [max(len(row[i]) for row in [head, *body]) for i in range(len(head) - 1)]
    return ["  ".join(c.ljust(w) for c, w in zip(row[:-1], widths)) + "  " + row[-1]
            for row in [head, *body]]
