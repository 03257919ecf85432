"""Freshness: how long since a dataset's last upload, against the contract's `max_age`.

The last upload is the newest modification time of a raw file the platform has ingested (the
version each ingest run pinned; locally the change time, which a copy with an old mtime still
moves). Each `cleaned/<dataset>` run records it in one small JSON object in the lake,
`_monitor/<dataset>/uploads.json`, so the check reads one object: no listing of raw/ (which
grows with every upload and which the sensor already lists), and it works the same with or
without a Dagster instance. Re-runs of old files do not make a dataset look fresh (their
modification time is old); files the sensor has not picked up yet do not count. Before any
upload is recorded, the table's last commit time stands in.
"""

from __future__ import annotations

import datetime as dt
import time

from ..assets.audit import WARN, AuditResult
from ..contract_checks import format_duration
from ..contracts import Contract
from ..resources.storage import ObjectStore
from .uploads import last_upload


def _iso(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.timezone.utc).isoformat(timespec="seconds")


def _human(seconds: float) -> str:
    seconds = max(0.0, seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f}{unit}"
    return f"{seconds:.0f}s"


def check_freshness(contract: Contract, lake: ObjectStore, data_table=None,
                    now: float | None = None) -> AuditResult:
    """`freshness`: passes when the last upload is at most `max_age` old; a failure is a WARN.

    `data_table` (the dataset's Iceberg table, optional) gives the fallback of its last
    commit. Without a max_age in the contract it passes with a note.
    """
    name, max_age = "freshness", contract.checks.max_age_seconds
    if max_age is None:
        return AuditResult(name, True, metadata={"note": "no max_age in the contract"})
    now = time.time() if now is None else now
    seen = last_upload(lake, contract.name)
    source, key = "recorded uploads", None
    if seen is not None:
        last, key = seen["last_upload"], seen.get("key")
    else:
        snap = data_table.current_snapshot() if data_table is not None else None
        if snap is None:
            return AuditResult(name, False, WARN, "no upload seen yet",
                               {"max_age": format_duration(max_age), "last_upload": None})
        last, source = snap.timestamp_ms / 1000, "last commit (no upload recorded yet)"
    age = now - last
    meta = {"last_upload": _iso(last), "age_seconds": round(age), "age": _human(age),
            "max_age": format_duration(max_age), "max_age_seconds": max_age, "source": source}
    if key:
        meta["file"] = key
    if age > max_age:
        return AuditResult(name, False, WARN, f"no upload for {_human(age)} (max_age "
                           f"{format_duration(max_age)}; last {_iso(last)})", meta)
    return AuditResult(name, True, metadata=meta)
