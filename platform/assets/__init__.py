"""Assets, checks and jobs, built per dataset from its contract."""

from __future__ import annotations

import dataclasses

import dagster as dg

from ..contracts import Contract
from .clean import build_cleaned_asset
from .table import build_table_asset
from .tensors import build_tensors_asset, build_tensors_sensors, tensors_job_name


def partitions_name(dataset: str) -> str:
    return f"raw_{dataset}"


def job_name(dataset: str) -> str:
    return f"ingest_{dataset}_job"


@dataclasses.dataclass
class DatasetDefs:
    """Everything one dataset contributes to the Definitions."""

    contract: Contract
    partitions: dg.DynamicPartitionsDefinition
    raw: dg.AssetSpec
    assets: list[dg.AssetsDefinition]
    job: dg.UnresolvedAssetJobDefinition
    tensors_job: dg.UnresolvedAssetJobDefinition | None = None  # image datasets


def scheduled_check_keys(contract: Contract, table_key: dg.AssetKey) -> list[dg.AssetCheckKey]:
    """The checks on `table/<ds>` that the scheduled jobs run (monitor/checks.py)."""
    from ..monitor.checks import COMMITTED

    names = [n for n in COMMITTED if n != "committed_primary_key" or contract.primary_key]
    if contract.checks.max_age_seconds is not None:
        names.append("freshness")
    return [dg.AssetCheckKey(table_key, n) for n in names]


def build_dataset(contract: Contract) -> DatasetDefs:
    """Build the raw -> cleaned -> table graph, its checks and its ingest job for one dataset."""
    ds = contract.name
    partitions = dg.DynamicPartitionsDefinition(name=partitions_name(ds))
    raw = dg.AssetSpec(
        key=["raw", ds],
        partitions_def=partitions,
        group_name=ds,
        kinds={"file"},
        description=f"Raw uploads of {ds} (raw/{ds}/...), one partition per object; "
                    "observed by the raw-upload sensor, never modified.",
    )
    cleaned = build_cleaned_asset(contract, partitions, raw.key)
    table = build_table_asset(contract, partitions, cleaned.key)
    job = dg.define_asset_job(
        name=job_name(ds),
        # Not the scheduled checks of the table (whole-table scans, run by their own jobs):
        # an ingest run's cost grows with its files, not with the table.
        selection=dg.AssetSelection.assets(cleaned, table)
        - dg.AssetSelection.checks(*scheduled_check_keys(contract, table.key)),
        # Steps are light except cleaning, which DuckDB already spreads over the cores; one
        # process per step would cost more in start-up than the steps themselves.
        executor_def=dg.in_process_executor,
        description=f"Stage and audit new raw files of {ds}, then commit the ones that passed "
                    "to its Iceberg table in one snapshot.",
    )
    if contract.kind != "images":
        return DatasetDefs(contract, partitions, raw, [cleaned, table], job)
    tensors = build_tensors_asset(contract, table.key)
    tensors_job = dg.define_asset_job(
        name=tensors_job_name(ds), selection=dg.AssetSelection.assets(tensors),
        executor_def=dg.in_process_executor,
        description=f"Turn the valid committed images of {ds} into tensor shards (incremental).")
    return DatasetDefs(contract, partitions, raw, [cleaned, table, tensors], job, tensors_job)


def extra_sensors(datasets: dict[str, DatasetDefs]) -> list:
    """The sensors some datasets need besides the raw-upload sensor."""
    images = {n: d for n, d in datasets.items() if d.tensors_job is not None}
    if not images:
        return []
    return build_tensors_sensors({n: d.job for n, d in images.items()},
                                 {n: d.tensors_job for n, d in images.items()})
