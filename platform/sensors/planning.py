"""What one tick of the raw-upload sensor decides, as pure functions of what it saw and its
state: which object versions to launch (listing mode: `plan_dataset`; queue mode:
`plan_events`; reconciliation: `plan_reconcile`), how to share a tick's budget fairly between
datasets, and the run key of a set of versions. See raw_uploads.py for the whole picture.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections.abc import Iterable, Mapping

from ..resources.storage import ObjectInfo
from ..sizing import env_values

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
    # Queue mode (PLATFORM_RAW_EVENTS_QUEUE_URL set): messages hidden this long once received
    # (acknowledged by the next tick); a reconciliation listing this often, of objects older
    # than the grace (younger ones are their events' business).
    queue_visibility_seconds: int = 300
    queue_receive_per_tick: int = 2000
    queue_backlog_max: int = 50_000
    reconcile_seconds: float = 86400.0
    reconcile_grace_seconds: float = 300.0
    reconcile_objects_per_tick: int = 20_000

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> "SensorSettings":
        """Settings from `PLATFORM_SENSOR_*` variables (defaults for those unset); raises
        ValueError naming a malformed variable."""
        return cls(**env_values(cls, "PLATFORM_SENSOR_",
                                os.environ if environ is None else environ))


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




def fair_shares(demands: Mapping[str, int], budget: int) -> dict[str, int]:
    """Split `budget` between datasets wanting `demands` files: every dataset gets an equal
    share or all it wants, what a dataset leaves over goes to the others (water-filling); a
    dataset's backlog can never starve another's single file."""
    shares = {ds: 0 for ds in demands}
    left = max(0, budget)
    wanting = sorted((ds for ds, n in demands.items() if n > 0), key=lambda d: (demands[d], d))
    while wanting and left > 0:
        each = max(1, left // len(wanting))
        still = []
        for ds in wanting:
            give = min(each, demands[ds] - shares[ds], left)
            shares[ds] += give
            left -= give
            if shares[ds] < demands[ds]:
                still.append(ds)
            if left == 0:
                break
        wanting = still
    return shares


def _next_seq(prev: tuple[str, int] | None, at_ns: int) -> int:
    """A version's sequence number: its own time, but above every earlier version of the key
    (a multipart upload's LastModified is its start, which can precede an earlier version's)."""
    return max(int(at_ns), (prev[1] + 1) if prev else 0)


def plan_events(seen: Mapping[str, tuple[int, ObjectInfo | None]],
                handled: Mapping[str, tuple[str, int]], inflight: Mapping[str, list],
                known: set[str]) -> tuple[list[Version], list[Version], dict[str, list]]:
    """Queue mode, for one dataset: `seen` maps each key with events this tick to (its newest
    event's time, the object as it is now or None if gone). Returns (new keys to launch, known
    keys to launch again, the handled rows to record {key: [signature, seq]}).

    An event only says that something happened to a key: what is launched is the object as it
    is now, unless that very signature was handled or is in flight already (a duplicate, a
    redelivery or an event older than the object it names). A version's seq derives from the
    event and the key's last version, so a tick replayed from the same state decides the same.
    """
    new, changed, flush = [], [], {}
    for key in sorted(seen):
        at_ns, info = seen[key]
        fly = inflight.get(key)
        prev = (fly[0], int(fly[1])) if fly else handled.get(key)
        if info is None:
            if prev and prev[0]:
                flush[key] = ["", prev[1]]  # removed: a later upload is new whatever it holds
            continue
        if prev and prev[0] == info.signature:
            continue
        v = Version(key, info, _next_seq(prev, at_ns or info.changed_ns))
        (changed if key in known else new).append(v)
        flush[key] = [v.signature, v.seq]
    return new, changed, flush


def plan_reconcile(objects: Iterable[ObjectInfo], handled: Mapping[str, tuple[str, int]],
                   inflight: Mapping[str, list], *, before_ns: int) -> list[Version]:
    """Queue mode's safety net, for one dataset: every listed object older than `before_ns`
    whose signature is neither handled nor in flight (its event was lost, or never sent)."""
    out = []
    for o in objects:
        if o.changed_ns >= before_ns:
            continue
        fly = inflight.get(o.key)
        prev = (fly[0], int(fly[1])) if fly else handled.get(o.key)
        if prev and prev[0] == o.signature:
            continue
        out.append(Version(o.key, o, _next_seq(prev, o.changed_ns)))
    return out
