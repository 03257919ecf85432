"""Healing: every file version the sensor requested ends committed or failed, whatever died.

Run monitoring and run retries (the instance's) recover most crashes: a dead run worker is
marked failed and its run launched again. What they cannot see, the sensor heals: a run lost
before it was created or started, a tick whose runs were made but whose cursor was not saved,
a run whose retries ran out, a step that raised. The sensor remembers, per dataset, each version
it requested and not yet seen finished (`inflight`: key -> [signature, seq, requested at (ns),
requests so far, last seen alive (ns)]). Each tick, for a version no unfinished run carries:

- once `heal_after_seconds` (doubling with each request) have passed since it was requested or
  last seen alive, its staging record is read; a final status (committed, unchanged,
  superseded, unreadable, failed) drops it from `inflight`;
- otherwise it is requested again, pinned to the same version, with a new run key;
- after `heal_max_attempts` requests it is given up: its staging record says failed, with the
  last failed run's error, and nothing asks for it again until the file changes.

A version an unfinished run carries (queued, starting, started, or a retry of one) is never
requested again: "alive" is read from the run config of the job's unfinished runs.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping

import dagster as dg
from dagster._core.events import DagsterEventType
from dagster._core.storage.dagster_run import NOT_FINISHED_STATUSES

from .. import staging as st
from ..versions import op_name

FINAL = (st.COMMITTED, st.UNCHANGED, st.SUPERSEDED, st.UNREADABLE, st.FAILED)


@dataclasses.dataclass
class HealPlan:
    """What healing decided for one dataset in one tick."""

    again: list[tuple[str, int, str, int]]  # (key, seq, signature, attempt) to request again
    gave_up: list[tuple[str, int, str]]  # (key, seq, reason)
    inflight: dict[str, list]
    checked: int = 0  # staging records read


def run_versions(run: dg.DagsterRun, dataset: str) -> dict[str, int]:
    """{key: seq} a run of the dataset's ingest job was pinned to (empty if none)."""
    cfg = (run.run_config or {}).get("ops", {}).get(op_name(dataset), {}).get("config", {})
    return {k: int(v["seq"]) for k, v in (cfg.get("versions") or {}).items()}


def alive_versions(instance: dg.DagsterInstance, job_name: str, dataset: str) -> set[tuple]:
    """(key, seq) of every version an unfinished run of the job carries."""
    runs = instance.get_runs(filters=dg.RunsFilter(job_name=job_name,
                                                   statuses=NOT_FINISHED_STATUSES))
    return {(k, s) for run in runs for k, s in run_versions(run, dataset).items()}


def last_failure(instance: dg.DagsterInstance, job_name: str, dataset: str, key: str,
                 seq: int) -> str:
    """The error of the newest failed run that carried this version, for the give-up reason."""
    runs = instance.get_runs(filters=dg.RunsFilter(job_name=job_name,
                                                   statuses=[dg.DagsterRunStatus.FAILURE]),
                             limit=200)
    for run in runs:
        if run_versions(run, dataset).get(key) != seq:
            continue
        for kind in (DagsterEventType.STEP_FAILURE, DagsterEventType.RUN_FAILURE):
            recs = instance.get_records_for_run(run.run_id, of_type=kind, limit=1,
                                                ascending=False).records
            if recs:
                ev = recs[0].event_log_entry.dagster_event
                err = getattr(ev.event_specific_data, "error", None)
                text = err.message.strip() if err else (ev.message or "")
                return f"run {run.run_id} failed: {text[:500]}"
        return f"run {run.run_id} failed"
    return "no run that carried it finished"


def plan_healing(inflight: Mapping[str, list], alive: set[tuple],
                 read_status: Callable[[str, int], str | None], *, now_ns: int,
                 heal_after_ns: int, max_attempts: int) -> HealPlan:
    """Decide what to request again or give up; pure but for `read_status(key, seq)`."""
    out = HealPlan(again=[], gave_up=[], inflight={})
    for key, entry in sorted(inflight.items()):
        sig, seq, at, n, seen = entry
        if (key, seq) in alive:
            out.inflight[key] = [sig, seq, at, n, now_ns]
            continue
        delay = heal_after_ns * 2 ** max(0, n - 1)
        if now_ns - max(at, seen) < delay:
            out.inflight[key] = list(entry)
            continue
        out.checked += 1
        status = read_status(key, seq)
        if status in FINAL:
            continue
        if n >= max_attempts:
            out.gave_up.append((key, seq, f"requested {n} times, never finished"))
            continue
        out.again.append((key, seq, sig, n + 1))
        out.inflight[key] = [sig, seq, now_ns, n + 1, seen]
    return out


def give_up(lake, instance: dg.DagsterInstance, job_name: str, dataset: str, key: str,
            seq: int, why: str) -> str:
    """Record the version as failed (its staged files, if any, stay inspectable)."""
    reason = f"{why}; {last_failure(instance, job_name, dataset, key, seq)}"
    rec = st.read_record(lake, dataset, key, seq) or st.StagingRecord(
        dataset=dataset, key=key, version=seq, status=st.FAILED)
    rec.status, rec.reason = st.FAILED, f"gave up: {reason}"
    rec.save(lake)
    return rec.reason
