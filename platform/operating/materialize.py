"""`data-platform materialize`: ingest every raw file of some datasets now, in this process.

For CI and scripts, where no daemon runs: per dataset, every file under raw/<dataset>/ (the
keys the sensor would consider) becomes a partition, the ingest job runs over them in ranged
runs of at most `PLATFORM_SENSOR_MAX_FILES_PER_RUN` files (the same job, assets, audits and
commit as a sensor's run; files are taken as they are now, as a backfill takes them), and an
image dataset's tensors job runs after it. Content already committed is a no-op, so running it
twice changes nothing. Runs are recorded in the instance of DAGSTER_HOME (so that `check` and
`status` see them afterwards), or in a throwaway one when DAGSTER_HOME is not set.
"""

from __future__ import annotations

import dataclasses
import os
import sys

import dagster as dg
from dagster._core.storage.tags import (
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
)

from .sources import OperatingError


@dataclasses.dataclass
class Outcome:
    """What materializing one dataset did."""

    dataset: str
    files: int = 0
    runs: int = 0
    failed_runs: list[str] = dataclasses.field(default_factory=list)  # run id: why
    ignored: list[str] = dataclasses.field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failed_runs

    def line(self) -> str:
        head = (f"{self.dataset}: {self.files} file(s) in {self.runs} run(s): "
                + ("ok" if self.ok else f"{len(self.failed_runs)} run(s) failed"))
        extra = [f"  ignored {k}" for k in self.ignored] + [f"  {f}" for f in self.failed_runs]
        return "\n".join([head] + extra)


def contiguous_groups(keys: list[str], order: list[str], per_run: int) -> list[list[str]]:
    """Split `keys` into runs of keys next to each other in the partition `order` (a ranged run
    covers every partition between its ends), at most `per_run` each."""
    index = {k: i for i, k in enumerate(order)}
    groups: list[list[str]] = []
    for k in sorted(keys, key=index.__getitem__):
        g = groups[-1] if groups else None
        if g and len(g) < per_run and index[k] == index[g[-1]] + 1:
            g.append(k)
        else:
            groups.append([k])
    return groups


def _failure(result: dg.ExecuteInProcessResult) -> str:
    for ev in result.all_events:
        if ev.event_type_value == "STEP_FAILURE":
            err = ev.event_specific_data.error
            return f"{ev.step_key}: {err.message.strip() if err else 'failed'}"
    return "the run failed"


def materialize_dataset(defs: dg.Definitions, instance: dg.DagsterInstance, raw, dataset,
                        per_run: int, log=print) -> Outcome:
    """Ingest every candidate raw file of `dataset` (a DatasetDefs), then build its tensors if it
    is an image dataset. Returns what happened; raises nothing for failed runs."""
    from ..sensors.raw_uploads import ignored_reason

    ds = dataset.contract.name
    out = Outcome(ds)
    keys = []
    for o in raw.list(f"{ds}/"):
        rel = o.key[len(ds) + 1:]
        if (why := ignored_reason(rel)) is None:
            keys.append(rel)
        else:
            out.ignored.append(f"{rel!r}: {why}")
    known = instance.get_dynamic_partitions(dataset.partitions.name)
    instance.add_dynamic_partitions(dataset.partitions.name,
                                    sorted(set(keys) - set(known)))
    order = instance.get_dynamic_partitions(dataset.partitions.name)
    job = defs.resolve_job_def(dataset.job.name)
    out.files = len(keys)
    for group in contiguous_groups(keys, order, per_run):
        tags = {"platform/dataset": ds, "platform/files": str(len(group)),
                "platform/reason": "data-platform materialize"}
        if len(group) > 1:
            tags.update({ASSET_PARTITION_RANGE_START_TAG: group[0],
                         ASSET_PARTITION_RANGE_END_TAG: group[-1]})
        log(f"{ds}: ingesting {len(group)} file(s): {group[0]}"
            + (f" .. {group[-1]}" if len(group) > 1 else ""))
        result = job.execute_in_process(
            instance=instance, tags=tags, raise_on_error=False,
            partition_key=group[0] if len(group) == 1 else None)
        out.runs += 1
        if not result.success:
            out.failed_runs.append(f"run {result.run_id}: {_failure(result)}")
    if dataset.tensors_job is not None:
        log(f"{ds}: building tensors")
        result = defs.resolve_job_def(dataset.tensors_job.name).execute_in_process(
            instance=instance, raise_on_error=False,
            tags={"platform/dataset": ds, "platform/reason": "data-platform materialize"})
        out.runs += 1
        if not result.success:
            out.failed_runs.append(f"run {result.run_id}: {_failure(result)}")
    return out


def run(names: list[str] | None) -> int:
    """The command: 0 when every run succeeded, 1 when one failed, 2 for an unknown dataset."""
    from ..assets import build_dataset
    from ..contracts import load_contracts
    from ..definitions import build_definitions
    from ..sensors.raw_uploads import SensorSettings

    contracts = load_contracts()
    unknown = [n for n in names or [] if n not in contracts]
    if unknown:
        raise OperatingError(f"unknown dataset(s) {', '.join(map(repr, unknown))}; known: "
                             f"{', '.join(sorted(contracts)) or 'none'}")
    defs = build_definitions(contracts=contracts)
    per_run = max(1, SensorSettings.from_env().max_files_per_run)
    if os.environ.get("DAGSTER_HOME"):
        instance = dg.DagsterInstance.get()
    else:
        print("DAGSTER_HOME is not set: the runs go to a throwaway instance", file=sys.stderr)
        instance = dg.DagsterInstance.ephemeral()
    outcomes = []
    with instance, dg.build_resources({"storage": defs.resources["storage"]}) as res:
        raw = res.storage.raw()
        for name in names or sorted(contracts):
            outcomes.append(materialize_dataset(defs, instance, raw,
                                                build_dataset(contracts[name]), per_run))
    for o in outcomes:
        print(o.line())
    return 0 if all(o.ok for o in outcomes) else 1
