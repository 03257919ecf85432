"""The raw-upload sensor: every new version of an object under raw/<dataset>/ is launched once,
as a partition of that dataset and a run pinned to that version.

**Listing mode** (the default; locally always). A tick lists raw/ and never reads content. Each
object has a cheap *signature* (size, mtime, ctime and inode locally; size, ETag and
LastModified on S3) and an ordering time, `changed_ns` (the ctime locally, which every write,
rename or `cp -p` moves forward and nobody can set back; LastModified on S3). Per dataset the
state keeps a watermark on that time, the signatures handled at or above it (less a look-back on
S3, whose LastModified is a multipart upload's start), and the objects seen but not yet settled
with the time each signature was first seen (planning.plan_dataset). A candidate is launched
once settled: the same signature in the previous tick, and already older than the settle time
then, so a file still being copied is never read half-written.

**Queue mode** (PLATFORM_RAW_EVENTS_QUEUE_URL set, as the deploy does). A tick reads S3 event
notifications from SQS instead of listing (events.py): per key its newest event, then one HEAD,
and the object as it is now is launched unless its signature was handled already
(planning.plan_events). A tick costs the same whatever the bucket holds. Messages are deleted by
the next tick, once the cursor that recorded them is saved; a crash in between only means a
redelivery, found handled. A reconciliation listing (every `reconcile_seconds`, and at the first
tick) launches what no event announced (planning.plan_reconcile).

Both modes: a version is (seq, signature), passed to the run through run config, and the run key
derives from the versions it carries: a re-upload, even of identical bytes or of earlier content
(A -> B -> A), is a new run, while a tick replayed from the same state repeats its run keys,
which the daemon drops. Whether the content really changed is the run's business: it copies
exactly that version and hashes the copy. New keys of a dataset are added in one sorted request,
so they form one contiguous range of the dynamic partitions and run in a few ranged runs (each
file keeps its own partition status); a known key with a new version runs alone. A tick launches
at most `max_files_per_tick` files, shared fairly between datasets; a backlog drains over ticks.
Every version requested is remembered until its staging record is final; one that no run
finished is requested again or given up (healing.py), so a crash anywhere loses no file. The
state lives in the instance's database, not in the cursor (state.py).
"""

import dataclasses
import hashlib
import itertools
import json
import os
import time
from collections.abc import Mapping

import dagster as dg
from dagster._core.storage.tags import (
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
)

from .. import staging as st
from ..assets import DatasetDefs
from ..resources.storage import ObjectInfo, StorageResource
from ..sizing import RunSizing, ecs_tags, size_for
from ..versions import versions_run_config
from . import state as ss
from .partitions import CACHE, existing
from .events import EventQueue, latest_per_key, raw_relative
from .healing import alive_versions, give_up, plan_healing
from .planning import (
    DAGSTER_PARTITION_LIMIT,
    SensorSettings,
    Version,
    fair_shares,
    ignored_reason,
    plan_dataset,
    plan_events,
    plan_reconcile,
    run_key,
)

QUEUE_URL_VAR = "PLATFORM_RAW_EVENTS_QUEUE_URL"
UNLIMITED = 10**12

__all__ = ["build_raw_uploads_sensor", "SensorSettings", "ignored_reason", "run_key",
           "heal_requests", "QUEUE_URL_VAR"]


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


class Tick:
    """One evaluation: what it requests, and its notes for the skip reason."""

    def __init__(self, context: dg.SensorEvaluationContext, datasets: Mapping[str, DatasetDefs],
                 settings: SensorSettings, storage: StorageResource, state: dict, now_ns: int):
        self.context, self.datasets, self.settings = context, datasets, settings
        self.instance = context.instance
        self.raw, self.lake = storage.raw(), storage.lake()
        self.state, self.now_ns = state, now_ns
        self.run_requests: list[dg.RunRequest] = []
        self.partition_requests: list = []
        self.events: list[dg.AssetMaterialization] = []
        self.notes: list[str] = []
        self.ignored: dict[str, list[str]] = {}
        # Runs are sized by their input where a launcher honours it (ECS, PLATFORM_ENV=aws).
        self.sizing = RunSizing.from_env() if os.environ.get("PLATFORM_ENV") == "aws" else None

    def ds_state(self, ds: str) -> dict:
        return self.state.setdefault("datasets", {}).setdefault(ds, {})

    def classify(self, key: str) -> tuple[str, str] | None:
        """(dataset, key inside it) of a key relative to raw/, or None (noted) if ignored."""
        ds, _, rel = key.partition("/")
        if not rel:
            self.ignored.setdefault("not inside a dataset folder", []).append(key)
        elif ds not in self.datasets:
            self.ignored.setdefault(f"unknown dataset {ds!r}", []).append(key)
        elif reason := ignored_reason(rel):
            self.ignored.setdefault(reason, []).append(key)
        else:
            return ds, rel
        return None

    def split(self, objects) -> dict[str, list[ObjectInfo]]:
        """Group raw objects by dataset, with keys relative to raw/<dataset>/."""
        by_dataset: dict[str, list[ObjectInfo]] = {}
        for o in objects:
            if found := self.classify(o.key):
                by_dataset.setdefault(found[0], []).append(dataclasses.replace(o, key=found[1]))
        return by_dataset

    def heal(self, ds: str) -> None:
        """Request again, or give up, the versions in flight that no run finished."""
        d, s = self.datasets[ds], self.ds_state(ds)
        inflight = s.get("inflight") or {}
        if not inflight:
            return
        settings = self.settings
        heal = plan_healing(
            inflight, alive_versions(self.instance, d.job.name, ds),
            lambda k, sig: getattr(st.read_record(self.lake, ds, k, sig), "status", None),
            now_ns=self.now_ns, heal_after_ns=int(settings.heal_after_seconds * 1e9),
            max_attempts=settings.heal_max_attempts)
        s["inflight"] = heal.inflight
        for key, seq, why in heal.gave_up:
            reason = give_up(self.lake, self.instance, d.job.name, ds, key, seq, why)
            self.context.log.warning(f"{ds}/{key} (version {seq}): {reason}")
            self.notes.append(f"{ds}: gave up on {key}")
        if heal.again:
            self.context.log.info(f"{ds}: requesting {len(heal.again)} file(s) again: "
                                  + ", ".join(a[0] for a in heal.again[:20]))
            order = self.instance.get_dynamic_partitions(d.partitions.name)
            self.run_requests.extend(heal_requests(ds, d.job.name, heal.again, order,
                                                   max(1, settings.max_files_per_run)))

    def launch(self, ds: str, new: list[Version], changed: list[Version]) -> None:
        """Runs for new keys (ranged, after adding their partitions) and changed keys (alone)."""
        d, s = self.datasets[ds], self.ds_state(ds)
        # `known` may be a little stale (partitions.py): the keys launched are checked exactly.
        exact = existing(self.instance, d.partitions.name, [v.key for v in new + changed])
        new, changed = sorted([v for v in new + changed if v.key not in exact or v in new],
                              key=lambda v: v.key), [v for v in changed if v.key in exact]
        inflight = s.setdefault("inflight", {})
        for v in new + changed:
            inflight[v.key] = [v.signature, v.seq, self.now_ns, 1, 0]
        new_keys = [v.key for v in new if v.key not in exact]
        if new_keys:
            self.partition_requests.append(d.partitions.build_add_request(new_keys))
        for v in new + changed:
            self.events.append(dg.AssetMaterialization(
                asset_key=d.raw.key, partition=v.key,
                metadata={"size": v.info.size, "signature": v.signature, "seq": v.seq,
                          "changed_ns": v.info.changed_ns, "uri": self.raw.uri(f"{ds}/{v.key}")},
            ))
        step = max(1, self.settings.max_files_per_run)
        for i in range(0, len(new), step):
            chunk = new[i:i + step]
            self.run_requests.append(dg.RunRequest(
                run_key=run_key(ds, chunk), job_name=d.job.name,
                run_config=_run_config(ds, chunk),
                tags={ASSET_PARTITION_RANGE_START_TAG: chunk[0].key,
                      ASSET_PARTITION_RANGE_END_TAG: chunk[-1].key,
                      "platform/dataset": ds, "platform/files": str(len(chunk)),
                      **self.size_tags(chunk)}))
        for v in changed:
            self.run_requests.append(dg.RunRequest(
                run_key=run_key(ds, [v]), job_name=d.job.name, partition_key=v.key,
                run_config=_run_config(ds, [v]),
                tags={"platform/dataset": ds, "platform/files": "1",
                      "platform/reason": "new version", **self.size_tags([v])}))

    def size_tags(self, versions: list[Version]) -> dict[str, str]:
        """The run's input size, and on AWS the task size for it (EcsRunLauncher reads the
        `ecs/*` tags): a 2 KB file gets the smallest task, a 30 GB one a large one."""
        total = sum(v.info.size for v in versions)
        tags = {"platform/input_bytes": str(total)}
        if self.sizing is not None:
            tags.update(ecs_tags(size_for(total, self.sizing)))
        return tags

    def warn_partitions(self, ds: str, count: int) -> None:
        if count >= self.settings.partition_warn_at:
            self.context.log.warning(
                f"{ds} has {count} partitions; Dagster advises at most "
                f"{DAGSTER_PARTITION_LIMIT}. Upload larger files or archives.")

    def skip_reason(self) -> str:
        why = self.notes + [
            f"{reason}: {', '.join(keys[:20])}" + (" ..." if len(keys) > 20 else "")
            for reason, keys in sorted(self.ignored.items())]
        return "no new or changed files" + ("; " + "; ".join(why) if why else "")


def listing_tick(tick: Tick, last_tick_ns: int | None) -> None:
    """List raw/, plan each dataset, share the tick's budget fairly, launch."""
    settings = tick.settings
    lookback_ns = 0 if tick.raw.ordering_time_exact else int(settings.lookback_seconds * 1e9)
    by_dataset = tick.split(tick.raw.list())
    known, demand = {}, {}
    for ds, d in tick.datasets.items():
        tick.heal(ds)
        known[ds] = CACHE.known(tick.instance, d.partitions.name)
        tick.warn_partitions(ds, len(known[ds]))
        if by_dataset.get(ds):
            probe = plan_dataset(by_dataset[ds], tick.ds_state(ds), known[ds],
                                 now_ns=tick.now_ns, last_tick_ns=last_tick_ns,
                                 settings=settings, budget=UNLIMITED, lookback_ns=lookback_ns)
            demand[ds] = len(probe.new) + len(probe.changed)
    shares = fair_shares(demand, settings.max_files_per_tick)
    for ds in tick.datasets:
        plan = plan_dataset(by_dataset.get(ds, []), tick.ds_state(ds), known[ds],
                            now_ns=tick.now_ns, last_tick_ns=last_tick_ns, settings=settings,
                            budget=shares.get(ds, 0), lookback_ns=lookback_ns)
        tick.ds_state(ds).update(plan.state)
        if plan.waiting:
            tick.notes.append(f"{ds}: waiting for {len(plan.waiting)} file(s) to settle")
        if plan.deferred:
            tick.notes.append(f"{ds}: {plan.deferred} file(s) deferred to the next tick")
        tick.launch(ds, plan.new, plan.changed)


def queue_tick(tick: Tick, queue: EventQueue, committed: dict) -> None:
    """Acknowledge what the committed state recorded, read new events, launch; reconcile."""
    settings, state = tick.settings, tick.state
    queue.acknowledge(committed.get("ack") or [])
    state["ack"] = []
    received = queue.receive(settings.max_files_per_tick,
                             visibility_s=settings.queue_visibility_seconds)
    for p in received.poison:
        tick.context.log.warning(f"left for the dead-letter queue: message {p}")
    state["ack"] = received.receipts
    per_ds: dict[str, list] = {}
    outside = 0
    for e in received.events:
        rel = raw_relative(e, tick.raw.uri())
        if rel is None:
            outside += 1
        elif found := tick.classify(rel):
            per_ds.setdefault(found[0], []).append((found[1], e))
    if outside:
        tick.notes.append(f"{outside} event(s) outside the raw prefix")
    for ds, d in tick.datasets.items():
        tick.heal(ds)
        if ds not in per_ds:
            continue
        latest = latest_per_key(per_ds[ds])
        seen = {}
        for rel, e in latest.items():
            info = tick.raw.stat(f"{ds}/{rel}")
            seen[rel] = (e.time_ns, None if info is None else dataclasses.replace(info, key=rel))
        handled = ss.handled_rows(tick.instance, ds, seen)
        inflight = tick.ds_state(ds).get("inflight") or {}
        known = existing(tick.instance, d.partitions.name, list(seen))
        new, changed, flush = plan_events(seen, handled, inflight, known)
        state.setdefault("flush", {}).setdefault(ds, {}).update(flush)
        tick.launch(ds, new, changed)
    reconcile(tick)


def reconcile(tick: Tick) -> None:
    """Every `reconcile_seconds` (and at the first tick), list raw/ and launch what no event
    announced. A pass reads at most `reconcile_objects_per_tick` objects and launches at most the
    tick's remaining budget per tick, then goes on at the next tick from the key it reached, so
    no tick grows with the bucket."""
    settings, state = tick.settings, tick.state
    rec = dict(state.get("reconcile") or {})
    after = rec.get("after")
    if after is None and tick.now_ns - int(rec.get("last", 0)) < settings.reconcile_seconds * 1e9:
        return
    started = int(rec.get("started") or tick.now_ns) if after is not None else tick.now_ns
    before = started - int(settings.reconcile_grace_seconds * 1e9)
    budget = settings.max_files_per_tick - sum(int(r.tags.get("platform/files", 1))
                                               for r in tick.run_requests)
    objects = tick.raw.list(start_after=after)
    scanned, reached, found = 0, after, 0
    done = True
    while True:
        page = list(itertools.islice(objects, min(1000, settings.reconcile_objects_per_tick)))
        if not page:
            break
        scanned += len(page)
        by_dataset = tick.split(page)
        todo: list[tuple[str, Version]] = []
        for ds, listed in by_dataset.items():
            handled = ss.handled_rows(tick.instance, ds, [o.key for o in listed])
            pending = state.get("flush", {}).get(ds, {})
            handled.update({k: (v[0], int(v[1])) for k, v in pending.items()})
            todo += [(ds, v) for v in plan_reconcile(
                listed, handled, tick.ds_state(ds).get("inflight") or {}, before_ns=before)]
        todo.sort(key=lambda t: f"{t[0]}/{t[1].key}")
        reached = page[-1].key
        if len(todo) > budget:  # stop at the last file launched; the rest of the page next tick
            todo, done = todo[:max(0, budget)], False
            reached = f"{todo[-1][0]}/{todo[-1][1].key}" if todo else after
        found += len(todo)
        budget -= len(todo)
        for ds in sorted({t[0] for t in todo}):
            versions = [v for d, v in todo if d == ds]
            known = existing(tick.instance, tick.datasets[ds].partitions.name,
                             [v.key for v in versions])
            state.setdefault("flush", {}).setdefault(ds, {}).update(
                {v.key: [v.signature, v.seq] for v in versions})
            tick.launch(ds, [v for v in versions if v.key not in known],
                        [v for v in versions if v.key in known])
        if not done or scanned >= settings.reconcile_objects_per_tick:
            done = False
            break
    if found:
        tick.context.log.info(f"reconciliation: launching {found} file(s) no event announced")
    if done:
        state["reconcile"] = {"last": started}
    else:
        state["reconcile"] = {"last": int(rec.get("last", 0)), "after": reached,
                              "started": started}
        tick.notes.append(f"reconciliation continues after {reached!r}")


def build_raw_uploads_sensor(datasets: Mapping[str, DatasetDefs]) -> dg.SensorDefinition:
    @dg.sensor(
        name="raw_uploads_sensor",
        jobs=[d.job for d in datasets.values()],
        minimum_interval_seconds=5,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Watches raw/<dataset>/ for new or changed files (listing, or S3 events "
                    "from SQS in queue mode), adds one partition per file and launches batched "
                    "ingest runs, each pinned to the file versions it saw; reads no raw "
                    "content itself, and requests again what no run finished.",
    )
    def raw_uploads_sensor(context: dg.SensorEvaluationContext, storage: StorageResource):
        settings = SensorSettings.from_env()
        gen, last_tick_ns = ss.parse_cursor(context.cursor)
        committed = ss.load_state(context.instance, gen) if gen is not None \
            else ss.legacy_state(context.cursor)
        # The committed state's handled versions become rows now that its cursor is saved.
        ss.write_handled(context.instance, committed.get("flush") or {})
        state = json.loads(json.dumps({**committed, "flush": {}}))
        tick = Tick(context, datasets, settings, storage, state, time.time_ns())
        queue_url = os.environ.get(QUEUE_URL_VAR)
        if queue_url:
            queue_tick(tick, EventQueue(queue_url), committed)
        else:
            listing_tick(tick, last_tick_ns)
        new_gen = ss.save_state(context.instance, gen, committed, state)
        cursor = ss.make_cursor(new_gen, tick.now_ns)
        if tick.run_requests:
            return dg.SensorResult(
                run_requests=tick.run_requests, asset_events=tick.events, cursor=cursor,
                dynamic_partitions_requests=tick.partition_requests)
        return dg.SensorResult(skip_reason=dg.SkipReason(tick.skip_reason()), cursor=cursor,
                               dynamic_partitions_requests=tick.partition_requests or None)

    return raw_uploads_sensor
