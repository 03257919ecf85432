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


import json
import os
import time
from collections.abc import Mapping

import dagster as dg

from ..assets import DatasetDefs
from ..resources.storage import StorageResource
from . import state as ss
from .events import EventQueue
from .partitions import CACHE
from .planning import SensorSettings, fair_shares, ignored_reason, plan_dataset, run_key
from .queue_mode import queue_tick
from .tick import Tick, heal_requests

QUEUE_URL_VAR = "PLATFORM_RAW_EVENTS_QUEUE_URL"
UNLIMITED = 10**12
_QUEUES: dict[str, EventQueue] = {}

__all__ = ["build_raw_uploads_sensor", "SensorSettings", "ignored_reason", "run_key",
           "heal_requests", "plan_dataset", "QUEUE_URL_VAR"]


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
            if queue_url not in _QUEUES:  # one client per process: building one costs ~0.1 s
                _QUEUES[queue_url] = EventQueue(queue_url)
            queue_tick(tick, _QUEUES[queue_url], committed)
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
