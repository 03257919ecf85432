"""The raw-upload sensor (listing mode): every new version of an object under raw/<dataset>/ is
launched once, as a partition of that dataset and a run pinned to that version.

A tick only lists: it never reads content. Each object has a cheap *signature* (size, mtime,
ctime and inode locally; size, ETag and LastModified on S3) and an ordering time, `changed_ns`
(the ctime locally, which every write, rename or `cp -p` moves forward and nobody can set back;
LastModified on S3). Per dataset the cursor keeps a watermark on that time, the signatures
handled at or above it (less a look-back on S3, whose LastModified is a multipart upload's
start), and the objects seen but not yet settled with the time each signature was first seen.
An object is a candidate when it is in that window with a signature not handled yet, or below
it but not yet a partition (a tick that crashed, an upload that finished late).

A candidate is launched once settled: the same signature in the previous tick, and already
older than the settle time then, so a file still being copied is never read half-written and
the decision depends on the cursor and the listing only. Its version is (first-seen time,
signature), passed to the run through run config, and the run key is derived from the versions
it carries: a re-upload, even of identical bytes or of earlier content (A -> B -> A), is a new
run, while a tick replayed from the same cursor (a crash before the cursor was saved) repeats
its run keys, which the daemon drops. Whether the content really changed is the run's business:
it copies exactly that version and hashes the copy. New keys of a dataset are added in one
sorted request, so they form one contiguous range of the dynamic partitions and run in a few
ranged runs (each file keeps its own partition status); a known key with a new signature runs
alone. One tick launches at most `max_files_per_tick` files; a backlog drains over ticks.

Every version requested is remembered until its staging record is final; one that no run
finished is requested again or given up (healing.py), so a crash anywhere loses no file.
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

from .. import staging as st
from ..assets import DatasetDefs
from ..resources.storage import ObjectInfo, StorageResource
from ..versions import versions_run_config
from .healing import alive_versions, give_up, plan_healing

CURSOR_VERSION = 2
DAGSTER_PARTITION_LIMIT = 100_000
INVALID_KEY_PARTS = ("...", "\a", "\b", "\f", "\n", "\r", "\t", "\v", "\0")


@dataclasses.dataclass(frozen=True)
class SensorSettings:
    """Limits of one tick; read from PLATFORM_SENSOR_* variables when the sensor runs."""

    max_files_per_tick: int = 1000
    max_files_per_run: int = 100
    settle_seconds: float = 5.0
    lookback_seconds: float = 3600.0  # only where the ordering time is not exact (S3)
    partition_warn_at: int = 80_000
    heal_after_seconds: float = 300.0  # see healing.py; doubles with each request
    heal_max_attempts: int = 4

    @classmethod
    def from_env(cls) -> "SensorSettings":
        def get(name, default, cast):
            value = os.environ.get(f"PLATFORM_SENSOR_{name.upper()}")
            return cast(value) if value else default

        return cls(**{
            f.name: get(f.name, f.default, type(f.default)) for f in dataclasses.fields(cls)
        })


def ignored_reason(rel_key: str) -> str | None:
    """Why a key under raw/<dataset>/ is left alone, or None if it is a candidate."""
    parts = rel_key.split("/")
    if any(p.startswith((".", "_")) for p in parts):
        return "hidden or temporary"
    if any(bad in rel_key for bad in INVALID_KEY_PARTS):
        return "name contains characters Dagster partition keys cannot hold"
    return None


@dataclasses.dataclass(frozen=True)
class Version:
    """One object version to launch: its key, its info now, and its sequence number."""

    key: str
    info: ObjectInfo
    seq: int

    @property
    def signature(self) -> str:
        return self.info.signature


@dataclasses.dataclass
class DatasetPlan:
    """What one tick decided for one dataset."""

    new: list[Version]  # keys not yet partitions, in key order
    changed: list[Version]  # known keys with a new signature
    waiting: list[str]
    deferred: int
    state: dict


def plan_dataset(
    objects: Iterable[ObjectInfo],
    state: Mapping,
    known: set[str],
    *,
    now_ns: int,
    last_tick_ns: int | None,
    settings: SensorSettings,
    budget: int,
    lookback_ns: int = 0,
) -> DatasetPlan:
    """Decide, for one dataset, which object versions to launch; pure.

    `objects` have keys relative to raw/<dataset>/; `known` is the set of existing partitions;
    `state` is the dataset's part of the cursor; `last_tick_ns` is when the previous tick ran
    (None on the first). Returns the versions to launch and the dataset's next state.
    """
    wm = int(state.get("wm", 0))
    done: dict[str, str] = dict(state.get("done", {}))
    # key -> [signature, first seen (ns), 1 if the key was not a partition when first seen];
    # the flag keeps a replayed tick's runs as they were though its partitions now exist.
    pending: dict[str, list] = {k: list(v) for k, v in state.get("pending", {}).items()}
    settle_ns = int(settings.settle_seconds * 1e9)
    window = wm - lookback_ns

    candidates = []
    for o in objects:
        seen = pending.get(o.key)
        if o.changed_ns >= window:
            if done.get(o.key) != o.signature:
                candidates.append(o)
        elif o.key not in known or (seen and seen[0] == o.signature):
            candidates.append(o)  # late, or replayed: the previous tick already had it

    new_pending: dict[str, list] = {}
    ready, waiting = [], []
    for o in sorted(candidates, key=lambda o: (o.changed_ns, o.key)):
        seen = pending.get(o.key)
        if seen and seen[0] == o.signature:
            # Settled if unchanged since the previous tick and already old enough then.
            age = None if last_tick_ns is None else last_tick_ns - min(o.changed_ns, seen[1])
            entry = seen
            (ready if age is not None and age >= settle_ns else waiting).append(o)
        else:
            entry = [o.signature, now_ns, int(o.key not in known)]
            waiting.append(o)
        new_pending[o.key] = entry
    taken, deferred = ready[:max(0, budget)], ready[max(0, budget):]

    new, changed = [], []
    for o in taken:
        entry = new_pending.pop(o.key)
        was_new = len(entry) > 2 and entry[2]
        (new if was_new or o.key not in known else changed).append(Version(o.key, o, entry[1]))
        done[o.key] = o.signature

    # The watermark rises to the newest version handled, but not past the oldest object still
    # to handle (less the look-back), nor past this tick's own clock (an mtime set in the
    # future must not hide the next real change); it never moves down.
    top = max([wm] + [o.changed_ns for o in taken])
    unhandled = [o.changed_ns + lookback_ns for o in waiting + deferred
                 if o.changed_ns >= window]
    new_wm = max(wm, min([top, now_ns] + unhandled))
    floor = new_wm - lookback_ns
    done = {o.key: done[o.key] for o in objects if o.key in done and o.changed_ns >= floor}
    return DatasetPlan(
        new=sorted(new, key=lambda v: v.key), changed=changed,
        waiting=[o.key for o in waiting], deferred=len(deferred),
        state={"wm": new_wm, "done": done, "pending": new_pending},
    )


def run_key(dataset: str, versions: list[Version]) -> str:
    """A run key derived from the versions a run carries: same versions, same key."""
    blob = json.dumps([dataset] + [(v.key, v.signature, v.seq) for v in versions])
    return f"{dataset}:{hashlib.sha256(blob.encode()).hexdigest()[:24]}"


def heal_requests(dataset: str, job_name: str, again: list[tuple[str, int, str, int]],
                  order: list[str], per_run: int) -> list[dg.RunRequest]:
    """Runs that request versions again: keys next to each other among the dataset's
    partitions share a ranged run (a lost ranged run comes back as one), others run alone."""
    index = {k: i for i, k in enumerate(order)}
    todo = sorted(again, key=lambda a: index.get(a[0], -1))
    groups: list[list] = []
    for a in todo:
        g = groups[-1] if groups else None
        if g and len(g) < per_run and a[0] in index and g[-1][0] in index \
                and index[a[0]] == index[g[-1][0]] + 1:
            g.append(a)
        else:
            groups.append([a])
    out = []
    for g in groups:
        blob = json.dumps([dataset, "again"] + [list(a) for a in g])
        tags = {"platform/dataset": dataset, "platform/files": str(len(g)),
                "platform/reason": f"requested again (attempt {max(a[3] for a in g)})"}
        if len(g) > 1:
            tags.update({ASSET_PARTITION_RANGE_START_TAG: g[0][0],
                         ASSET_PARTITION_RANGE_END_TAG: g[-1][0]})
        out.append(dg.RunRequest(
            run_key=f"{dataset}:{hashlib.sha256(blob.encode()).hexdigest()[:24]}",
            job_name=job_name, partition_key=None if len(g) > 1 else g[0][0],
            run_config=versions_run_config(dataset, {k: (seq, sig) for k, seq, sig, _ in g}),
            tags=tags))
    return out


def _run_config(dataset: str, versions: list[Version]) -> dict:
    return versions_run_config(dataset, {v.key: (v.seq, v.signature) for v in versions})


def build_raw_uploads_sensor(datasets: Mapping[str, DatasetDefs]) -> dg.SensorDefinition:
    @dg.sensor(
        name="raw_uploads_sensor",
        jobs=[d.job for d in datasets.values()],
        minimum_interval_seconds=5,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Watches raw/<dataset>/ for new or changed files, adds one partition per "
                    "file and launches batched ingest runs, each pinned to the file versions "
                    "it saw; reads no raw content itself, and requests again what no run "
                    "finished.",
    )
    def raw_uploads_sensor(context: dg.SensorEvaluationContext, storage: StorageResource):
        settings = SensorSettings.from_env()
        cursor = json.loads(context.cursor) if context.cursor else {}
        if cursor.get("v") != CURSOR_VERSION:
            cursor = {}  # an older format: start over (runs skip content already committed)
        states, last_tick_ns = cursor.get("datasets", {}), cursor.get("t")
        raw, lake = storage.raw(), storage.lake()
        lookback_ns = 0 if raw.ordering_time_exact else int(settings.lookback_seconds * 1e9)
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
        budget = settings.max_files_per_tick
        notes: list[str] = []
        new_states = dict(states)
        for ds, d in datasets.items():
            order = context.instance.get_dynamic_partitions(d.partitions.name)
            known = set(order)
            inflight = dict(states.get(ds, {}).get("inflight", {}))
            if inflight:
                heal = plan_healing(
                    inflight, alive_versions(context.instance, d.job.name, ds),
                    lambda k, s: getattr(st.read_record(lake, ds, k, s), "status", None),
                    now_ns=now_ns, heal_after_ns=int(settings.heal_after_seconds * 1e9),
                    max_attempts=settings.heal_max_attempts)
                inflight = heal.inflight
                for key, seq, why in heal.gave_up:
                    reason = give_up(lake, context.instance, d.job.name, ds, key, seq, why)
                    context.log.warning(f"{ds}/{key} (version {seq}): {reason}")
                    notes.append(f"{ds}: gave up on {key}")
                if heal.again:
                    context.log.info(f"{ds}: requesting {len(heal.again)} file(s) again: "
                                     + ", ".join(a[0] for a in heal.again[:20]))
                    run_requests.extend(heal_requests(ds, d.job.name, heal.again, order,
                                                      max(1, settings.max_files_per_run)))
            if len(known) >= settings.partition_warn_at:
                context.log.warning(
                    f"{ds} has {len(known)} partitions; Dagster advises at most "
                    f"{DAGSTER_PARTITION_LIMIT}. Upload larger files or archives."
                )
            plan = plan_dataset(
                by_dataset.get(ds, []), states.get(ds, {}), known, now_ns=now_ns,
                last_tick_ns=last_tick_ns, settings=settings, budget=budget,
                lookback_ns=lookback_ns,
            )
            budget -= len(plan.new) + len(plan.changed)
            for v in plan.new + plan.changed:
                inflight[v.key] = [v.signature, v.seq, now_ns, 1, 0]
            new_states[ds] = {**plan.state, "inflight": inflight}
            if plan.waiting:
                notes.append(f"{ds}: waiting for {len(plan.waiting)} file(s) to settle")
            if plan.deferred:
                notes.append(f"{ds}: {plan.deferred} file(s) deferred to the next tick")

            new_keys = [v.key for v in plan.new if v.key not in known]
            if new_keys:
                partition_requests.append(d.partitions.build_add_request(new_keys))
            for v in plan.new + plan.changed:
                events.append(dg.AssetMaterialization(
                    asset_key=d.raw.key, partition=v.key,
                    metadata={"size": v.info.size, "signature": v.signature, "seq": v.seq,
                              "changed_ns": v.info.changed_ns, "uri": raw.uri(f"{ds}/{v.key}")},
                ))
            step = max(1, settings.max_files_per_run)
            for i in range(0, len(plan.new), step):
                chunk = plan.new[i:i + step]
                run_requests.append(dg.RunRequest(
                    run_key=run_key(ds, chunk),
                    job_name=d.job.name,
                    run_config=_run_config(ds, chunk),
                    tags={
                        ASSET_PARTITION_RANGE_START_TAG: chunk[0].key,
                        ASSET_PARTITION_RANGE_END_TAG: chunk[-1].key,
                        "platform/dataset": ds,
                        "platform/files": str(len(chunk)),
                    },
                ))
            for v in plan.changed:
                run_requests.append(dg.RunRequest(
                    run_key=run_key(ds, [v]), job_name=d.job.name, partition_key=v.key,
                    run_config=_run_config(ds, [v]),
                    tags={"platform/dataset": ds, "platform/files": "1",
                          "platform/reason": "new version"},
                ))

        new_cursor = json.dumps({"v": CURSOR_VERSION, "t": now_ns, "datasets": new_states},
                                sort_keys=True)
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
        )

    return raw_uploads_sensor
