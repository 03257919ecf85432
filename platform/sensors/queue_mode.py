"""Queue mode of the raw-upload sensor (PLATFORM_RAW_EVENTS_QUEUE_URL set): S3 event
notifications from SQS instead of listing, and the reconciliation listing that catches what no
event announced. See raw_uploads.py for the whole picture and events.py for the messages.
"""

import dataclasses
import itertools
from concurrent.futures import ThreadPoolExecutor

from . import state as ss
from .events import EventQueue, Received, raw_relative
from .partitions import existing
from .planning import Version, fair_shares, plan_events, plan_reconcile
from .tick import Tick

HEAD_THREADS = 16


def _newer(a: list, b: list) -> bool:
    """Whether backlog entry a = [time_ns, sequencer] is a later event than b (same key)."""
    return (a[1].rjust(32, "0"), a[0]) > (b[1].rjust(32, "0"), b[0])


def _stat_all(raw, keys: list[str]) -> dict[str, object]:
    """HEAD many keys at once (boto3 clients are thread-safe; each call waits on the network)."""
    if len(keys) <= 1:
        return {k: raw.stat(k) for k in keys}
    with ThreadPoolExecutor(max_workers=min(HEAD_THREADS, len(keys))) as pool:
        return dict(zip(keys, pool.map(raw.stat, keys)))


def queue_tick(tick: Tick, queue: EventQueue, committed: dict) -> None:
    """Acknowledge the messages the committed state recorded; receive new ones into the
    per-dataset backlog (in the state: the messages are acknowledged once it is saved); launch
    from the backlogs, the tick's budget shared fairly between datasets; reconcile.

    Receiving and launching are decoupled so that one dataset's burst does not make another's
    single file wait for the burst's runs: the file waits only for its event to be read (up to
    `queue_receive_per_tick` messages a tick; the backlog holds at most `queue_backlog_max`
    keys, beyond which messages stay in the queue)."""
    settings, state = tick.settings, tick.state
    queue.acknowledge(committed.get("ack") or [])
    backlog: dict[str, dict[str, list]] = state.setdefault("backlog", {})
    room = settings.queue_backlog_max - sum(len(v) for v in backlog.values())
    received = queue.receive(min(settings.queue_receive_per_tick, room),
                             visibility_s=settings.queue_visibility_seconds) \
        if room > 0 else Received()
    for p in received.poison:
        tick.context.log.warning(f"left for the dead-letter queue: message {p}")
    state["ack"] = received.receipts
    outside = 0
    for e in received.events:
        rel = raw_relative(e, tick.raw.uri())
        if rel is None:
            outside += 1
        elif found := tick.classify(rel):
            ds, key = found
            entry, held = [e.time_ns, e.sequencer], backlog.setdefault(ds, {}).get(found[1])
            if held is None or _newer(entry, held):
                backlog[ds][key] = entry
    if outside:
        tick.notes.append(f"{outside} event(s) outside the raw prefix")
    shares = fair_shares({ds: len(keys) for ds, keys in backlog.items()},
                         settings.max_files_per_tick)
    for ds, d in tick.datasets.items():
        tick.heal(ds)
        waiting = backlog.get(ds) or {}
        take = sorted(waiting, key=lambda k: (waiting[k][0], k))[:shares.get(ds, 0)]
        if not take:
            continue
        infos = _stat_all(tick.raw, [f"{ds}/{k}" for k in take])
        seen = {}
        for k in take:
            info = infos[f"{ds}/{k}"]
            seen[k] = (waiting.pop(k)[0], None if info is None
                       else dataclasses.replace(info, key=k))
        handled = ss.handled_rows(tick.instance, ds, seen)
        inflight = tick.ds_state(ds).get("inflight") or {}
        known = existing(tick.instance, d.partitions.name, list(seen))
        new, changed, flush = plan_events(seen, handled, inflight, known)
        state.setdefault("flush", {}).setdefault(ds, {}).update(flush)
        tick.launch(ds, new, changed)
    state["backlog"] = {ds: keys for ds, keys in backlog.items() if keys}
    left = sum(len(v) for v in state["backlog"].values())
    if left:
        tick.notes.append(f"{left} file(s) with events wait for the next tick")
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
