"""What Dagster says of each file (partition) of a dataset: committed, failed, running, missing,
and what its asset checks last said of it. Shared by `backfill`, `check` and `status`.

A check runs once per run over all of the run's files and names the files it failed (metadata
`failed`, `warned`, `refused`, `problems`; `detail` names every file it looked at). So what a
check says of one file is its newest evaluation that names the file, unless that was an ERROR
and the file's table partition was materialized after it (a later run found it unchanged and
did not re-audit it).
"""

from __future__ import annotations

import dataclasses

from .sources import CheckEvaluation, Source

FAILING_KEYS = ("failed", "refused", "problems")  # {file: reason} at the evaluation's severity
WARNED_KEYS = ("warned",)
SEEN_KEYS = FAILING_KEYS + WARNED_KEYS + ("detail",)


def assets_of(dataset: str) -> tuple[list[str], list[str]]:
    """The dataset's two materializable assets: cleaned/<ds> and table/<ds>."""
    return ["cleaned", dataset], ["table", dataset]


@dataclasses.dataclass
class CheckVerdict:
    """What one check says now: the files it fails (ERROR), warns about, and its last run."""

    asset: str
    check: str
    errors: dict[str, str]
    warnings: dict[str, str]
    latest: CheckEvaluation | None

    @property
    def passed(self) -> bool:
        return not self.errors and not self.warnings

    @property
    def severity(self) -> str:
        if self.errors:
            return "ERROR"
        if self.warnings:
            return "WARN"
        return "ERROR"  # what a failure of the platform's checks blocks at, at most


@dataclasses.dataclass
class DatasetState:
    """Dagster's view of one dataset's files."""

    dataset: str
    partitions: list[str]
    materialized: set[str]  # table/<ds> materialized at least once
    failed: set[str]  # the latest attempt of cleaned/<ds> or table/<ds> failed
    in_progress: set[str]
    checks: list[CheckVerdict]

    def check_failed(self) -> dict[str, str]:
        """Files an ERROR check currently fails: {file: 'check: reason'}."""
        out: dict[str, str] = {}
        for v in self.checks:
            for k, why in v.errors.items():
                out.setdefault(k, f"{v.check}: {why}")
        return out

    def failed_partitions(self) -> list[str]:
        """Files whose latest run failed or that an ERROR check currently fails."""
        bad = self.failed | set(self.check_failed())
        return [p for p in self.partitions if p in bad]

    def missing_partitions(self) -> list[str]:
        """Files never materialized into the table (and not running now)."""
        return [p for p in self.partitions
                if p not in self.materialized and p not in self.in_progress]


def _named(ev: CheckEvaluation, keys: tuple[str, ...]) -> dict[str, str]:
    out = {}
    for name in keys:
        value = ev.metadata.get(name)
        if isinstance(value, dict):
            out.update({k: str(v) for k, v in value.items() if not k.startswith("_")})
    return out


def verdict(source: Source, asset: list[str], check: str, table_asset: list[str]
            ) -> CheckVerdict:
    """What `check` of `asset` says now of each file it has evaluated (see module docstring)."""
    evaluations = source.evaluations(asset, check)
    said: dict[str, tuple[str, str, float]] = {}  # file -> (ok|WARN|ERROR, reason, order)
    for ev in evaluations:  # newest first: the first mention of a file decides
        failing, warned = _named(ev, FAILING_KEYS), _named(ev, WARNED_KEYS)
        if not ev.passed and not failing and not warned:
            # A failed evaluation naming no file (e.g. a snapshot total that does not add up)
            # concerns the table, not a file.
            failing = {"(table)": str(ev.metadata.get("problems") or "failed")}
        for k in set(_named(ev, SEEN_KEYS)) | set(failing) | set(warned):
            if k in said:
                continue
            if k in failing:
                said[k] = ("ERROR" if ev.severity == "ERROR" else "WARN", failing[k], ev.order)
            elif k in warned:
                said[k] = ("WARN", warned[k], ev.order)
            else:
                said[k] = ("ok", "", ev.order)
    flagged = {k for k, (s, _, _) in said.items() if s != "ok"}
    later = source.materialized_order(table_asset, flagged - {"(table)"})
    errors, warnings = {}, {}
    for k in sorted(flagged):
        severity, reason, order = said[k]
        if severity == "ERROR" and later.get(k, float("-inf")) > order:
            # An ERROR keeps a file out of the table, so a later materialization means a later
            # run found it fine without naming it (unchanged content): the verdict is stale.
            # A WARN does not block, so the file's own commit follows it in the same run.
            continue
        (errors if severity == "ERROR" else warnings)[k] = reason
    return CheckVerdict("/".join(asset), check, errors, warnings,
                        evaluations[0] if evaluations else None)


def dataset_state(source: Source, dataset: str, *, with_checks: bool = True) -> DatasetState:
    """Read Dagster's view of `dataset`; raises OperatingError for an unknown dataset."""
    cleaned, table = assets_of(dataset)
    partitions = source.partitions(table)
    st_cleaned, st_table = source.status(cleaned), source.status(table)
    checks = []
    if with_checks:
        for asset in (cleaned, table):
            checks += [verdict(source, asset, name, table) for name in source.check_names(asset)]
    return DatasetState(
        dataset=dataset, partitions=partitions,
        materialized=st_table.materialized,
        failed=st_cleaned.failed | st_table.failed,
        in_progress=st_cleaned.in_progress | st_table.in_progress,
        checks=checks,
    )
