"""The raw-upload sensor (listing mode): new objects under raw/<dataset>/ become partitions and runs.

Per dataset the cursor keeps a modification-time watermark, the objects handled at or above it,
and the objects seen but not yet settled. An object is a candidate when it is at or above the
watermark and not handled in that exact version (size, mtime), or when it is below the
watermark but not yet a partition (a file copied with its old mtime, an upload that finished
late, a tick that crashed). Equal timestamps are therefore safe, and a restart resumes from
the saved cursor.

A candidate is launched only once it has settled: unchanged since the previous tick and older
than the settle time, so a file still being copied is never read half-written. Its content hash
then decides: a new key is a new partition; a known key with new content is rerun; the same
content again is a no-op. New keys of a dataset are added in one sorted request, so they form
one contiguous range of the dynamic partitions and run in a few ranged runs (each file keeps its
own partition status). One tick hashes at most `max_files_per_tick` files; a backlog drains
over several ticks (and at most `max_bytes_per_tick` bytes, past the first file).
"""


import dataclasses
import hashlib
import json
import os
import time
from collections.abc import Iterable, Mapping

import dagster as dg
from dagster._core.storage.tags import (
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
)

from ..assets import DatasetDefs
from ..staging import read_ledger
from ..resources.storage import ObjectInfo, StorageResource

DAGSTER_PARTITION_LIMIT = 100_000
INVALID_KEY_PARTS = ("...", "\a", "\b", "\f", "\n", "\r", "\t", "\v", "\0")


@dataclasses.dataclass(frozen=True)
class SensorSettings:
    """Limits of one tick; read from PLATFORM_SENSOR_* variables when the sensor runs."""

    max_files_per_tick: int = 1000
    max_bytes_per_tick: int = 4 * 1024**3  # hashing local files runs at ~1.5 GB/s
    max_files_per_run: int = 100
    settle_seconds: float = 5.0
    partition_warn_at: int = 80_000

    @classmethod
    def from_env(cls) -> "SensorSettings":
        def get(name, default, cast):
            value = os.environ.get(f"PLATFORM_SENSOR_{name.upper()}")
            return cast(value) if value else default

        return cls(**{
            f.name: get(f.name, f.default, type(f.default)) for f in dataclasses.fields(cls)
        })


def _sig(o: ObjectInfo) -> str:
    return f"{o.size}:{o.mtime_ns}"


def ignored_reason(rel_key: str) -> str | None:
    """Why a key under raw/<dataset>/ is left alone, or None if it is a candidate."""
    parts = rel_key.split("/")
    if any(p.startswith((".", "_")) for p in parts):
        return "hidden or temporary"
    if any(bad in rel_key for bad in INVALID_KEY_PARTS):
        return "name contains characters Dagster partition keys cannot hold"
    return None


@dataclasses.dataclass
class DatasetPlan:
    """What one tick decided for one dataset."""

    new: list[tuple[str, str, ObjectInfo]]  # (key, content hash, info), in key order
    changed: list[tuple[str, str, ObjectInfo]]
    unchanged: list[str]
    waiting: list[str]
    deferred: int
    state: dict
    bytes_taken: int = 0


def plan_dataset(
    objects: Iterable[ObjectInfo],
    state: Mapping,
    known: set[str],
    *,
    now_ns: int,
    settings: SensorSettings,
    budget: int,
    content_hash,
    last_hash,
    byte_budget: int | None = None,
) -> DatasetPlan:
    """Decide, for one dataset, which objects to launch; pure apart from the two callbacks.

    `objects` have keys relative to raw/<dataset>/; `known` is the set of existing partitions;
    `content_hash(key)` hashes an object; `last_hash(key)` returns the hash last published.
    """
    wm = int(state.get("wm", 0))
    done: dict[str, str] = dict(state.get("done", {}))
    pending: dict[str, str] = dict(state.get("pending", {}))
    settle_ns = int(settings.settle_seconds * 1e9)

    above, below = [], []
    for o in objects:
        if o.mtime_ns >= wm:
            if done.get(o.key) != _sig(o):
                above.append(o)
        elif o.key not in known:
            below.append(o)
    new_pending: dict[str, str] = {}
    ready, waiting = [], []
    for o in sorted(below + above, key=lambda o: (o.mtime_ns, o.key)):
        settled = pending.get(o.key) == _sig(o) and now_ns - o.mtime_ns >= settle_ns
        if settled:
            ready.append(o)
        else:
            waiting.append(o)
            new_pending[o.key] = _sig(o)
    # At most `budget` files and, past the first, `byte_budget` bytes to hash in this tick.
    n, total = 0, 0
    for o in ready[:budget]:
        if n and byte_budget is not None and total + o.size > byte_budget:
            break
        n, total = n + 1, total + o.size
    taken, deferred = ready[:n], ready[n:]
    for o in deferred:
        new_pending[o.key] = _sig(o)

    new, changed, unchanged = [], [], []
    for o in taken:
        digest = content_hash(o.key)
        if o.key not in known:
            new.append((o.key, digest, o))
        elif last_hash(o.key) == digest:
            unchanged.append(o.key)
        else:
            changed.append((o.key, digest, o))
        done[o.key] = _sig(o)

    # The watermark moves up to the oldest object still to handle above it, never down.
    unhandled_above = [o.mtime_ns for o in waiting + deferred if o.mtime_ns >= wm]
    if unhandled_above:
        new_wm = min(unhandled_above)
    else:
        new_wm = max([wm] + [o.mtime_ns for o in taken])
    done = {k: v for k, v in done.items() if int(v.split(":")[1]) >= new_wm}
    return DatasetPlan(
        new=sorted(new, key=lambda t: t[0]), changed=changed, unchanged=unchanged,
        waiting=[o.key for o in waiting], deferred=len(deferred),
        state={"wm": new_wm, "done": done, "pending": new_pending}, bytes_taken=total,
    )


def _run_key(dataset: str, items: list[tuple[str, str, ObjectInfo]]) -> str:
    blob = json.dumps([(k, h) for k, h, _ in items]).encode()
    return f"{dataset}:{hashlib.sha256(blob).hexdigest()[:24]}"


def build_raw_uploads_sensor(datasets: Mapping[str, DatasetDefs]) -> dg.SensorDefinition:
    @dg.sensor(
        name="raw_uploads_sensor",
        jobs=[d.job for d in datasets.values()],
        minimum_interval_seconds=5,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Watches raw/<dataset>/ for new or changed files, adds one partition per "
                    "file and launches batched ingest runs; never launches the same content "
                    "twice.",
    )
    def raw_uploads_sensor(context: dg.SensorEvaluationContext, storage: StorageResource):
        settings = SensorSettings.from_env()
        cursor = json.loads(context.cursor) if context.cursor else {}
        states = cursor.get("datasets", {})
        raw, lake = storage.raw(), storage.lake()
        now_ns = time.time_ns()

        by_dataset: dict[str, list[ObjectInfo]] = {}
        ignored: dict[str, list[str]] = {}
        for o in raw.list():
            ds, _, rel = o.key.partition("/")
            if not rel:
                ignored.setdefault("not inside a dataset folder", []).append(o.key)
            elif ds not in datasets:
                ignored.setdefault(f"unknown dataset {ds!r}", []).append(o.key)
            elif reason := ignored_reason(rel):
                ignored.setdefault(reason, []).append(o.key)
            else:
                by_dataset.setdefault(ds, []).append(dataclasses.replace(o, key=rel))

        run_requests, partition_requests, events = [], [], []
        budget, byte_budget = settings.max_files_per_tick, settings.max_bytes_per_tick
        notes: list[str] = []
        new_states = dict(states)
        for ds, d in datasets.items():
            objects = by_dataset.get(ds, [])
            known = set(context.instance.get_dynamic_partitions(d.partitions.name))
            if len(known) >= settings.partition_warn_at:
                context.log.warning(
                    f"{ds} has {len(known)} partitions; Dagster advises at most "
                    f"{DAGSTER_PARTITION_LIMIT}. Upload larger files or archives."
                )

            def last_hash(key, ds=ds):
                m = read_ledger(lake, ds, key)
                return m["content_hash"] if m else None

            plan = plan_dataset(
                objects, states.get(ds, {}), known, now_ns=now_ns, settings=settings,
                budget=budget, content_hash=lambda k, ds=ds: raw.content_hash(f"{ds}/{k}"),
                last_hash=last_hash, byte_budget=byte_budget,
            )
            budget -= len(plan.new) + len(plan.changed) + len(plan.unchanged)
            byte_budget = max(0, byte_budget - plan.bytes_taken)
            new_states[ds] = plan.state
            if plan.waiting:
                notes.append(f"{ds}: waiting for {len(plan.waiting)} file(s) to settle")
            if plan.deferred:
                notes.append(f"{ds}: {plan.deferred} file(s) deferred to the next tick")
            if plan.unchanged:
                context.log.info(f"{ds}: same content re-uploaded, not rerun: {plan.unchanged}")

            if plan.new:
                partition_requests.append(
                    d.partitions.build_add_request([k for k, _, _ in plan.new]))
            for k, h, o in plan.new + plan.changed:
                events.append(dg.AssetMaterialization(
                    asset_key=d.raw.key, partition=k,
                    metadata={"size": o.size, "content_hash": h,
                              "modified_ns": o.mtime_ns, "uri": raw.uri(f"{ds}/{k}")},
                ))
            step = max(1, settings.max_files_per_run)
            for i in range(0, len(plan.new), step):
                chunk = plan.new[i:i + step]
                run_requests.append(dg.RunRequest(
                    run_key=_run_key(ds, chunk),
                    job_name=d.job.name,
                    tags={
                        ASSET_PARTITION_RANGE_START_TAG: chunk[0][0],
                        ASSET_PARTITION_RANGE_END_TAG: chunk[-1][0],
                        "platform/dataset": ds,
                        "platform/files": str(len(chunk)),
                    },
                ))
            for k, h, o in plan.changed:
                run_requests.append(dg.RunRequest(
                    run_key=_run_key(ds, [(k, h, o)]), job_name=d.job.name, partition_key=k,
                    tags={"platform/dataset": ds, "platform/files": "1",
                          "platform/reason": "content changed"},
                ))

        new_cursor = json.dumps({"v": 1, "datasets": new_states}, sort_keys=True)
        if run_requests:
            return dg.SensorResult(
                run_requests=run_requests, dynamic_partitions_requests=partition_requests,
                asset_events=events, cursor=new_cursor,
            )
        why = notes + [f"{reason}: {', '.join(keys[:20])}" + (" ..." if len(keys) > 20 else "")
                       for reason, keys in sorted(ignored.items())]
        return dg.SensorResult(
            skip_reason=dg.SkipReason("no new or changed files" + (
                "; " + "; ".join(why) if why else "")),
            cursor=new_cursor,
            asset_events=events,
        )

    return raw_uploads_sensor
