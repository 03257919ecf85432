"""The Definitions: every dataset's assets, checks and job, the sensor, the maintenance and
scheduled checks, and one resource set (storage, catalog, scratch, compute).

PLATFORM_ENV (default `local`) picks the resource set, PLATFORM_CONTRACTS_DIR (default: the
shipped `datasets/` folder) where the contracts are, and PLATFORM_CHECKS_CRON /
PLATFORM_FRESHNESS_CRON the crons of the scheduled checks; they are the only variables read
here. The contracts are read afresh at every load, so "Reload definitions" in the UI picks up
added, edited and deleted contracts. Nothing touches storage or the network while this module
loads.
"""

from __future__ import annotations

import os

import dagster as dg
from data_platform import arrow_memory
from data_platform.assets import build_dataset, extra_sensors
from data_platform.contracts import load_contracts
from data_platform.maintenance import build_maintenance
from data_platform.monitor.checks import build_monitoring
from data_platform.resources import (
    AwsCompute,
    BatchCompute,
    DuckDBCatalog,
    ECSCompute,
    GlueCatalog,
    LocalCompute,
    LocalScratch,
    LocalStorage,
    S3Storage,
)
from data_platform.sensors import build_raw_uploads_sensor


def resources_for(env: str) -> dict:
    """Return the resource set for `env`; raises ValueError for an unknown environment."""
    if env == "local":
        # LocalCompute: a subprocess, or in-process when PLATFORM_COMPUTE says so at run time.
        return {"storage": LocalStorage(), "catalog": DuckDBCatalog(), "scratch": LocalScratch(),
                "compute": LocalCompute()}
    if env == "aws":
        scratch = dg.EnvVar("PLATFORM_SCRATCH_DIR")
        return {
            "storage": S3Storage(raw_url=dg.EnvVar("PLATFORM_RAW_URL"),
                                 lake_url=dg.EnvVar("PLATFORM_LAKE_URL"), scratch_dir=scratch),
            "catalog": GlueCatalog(database=dg.EnvVar("PLATFORM_GLUE_DATABASE"),
                                   workgroup=dg.EnvVar("PLATFORM_ATHENA_WORKGROUP"),
                                   output_url=dg.EnvVar("PLATFORM_ATHENA_OUTPUT_URL")),
            "scratch": LocalScratch(scratch_dir=scratch),
            "compute": aws_compute(),
        }
    raise ValueError(f"PLATFORM_ENV={env!r} is not supported; expected 'local' or 'aws'")


def aws_compute() -> AwsCompute:
    """Return Batch and ECS launchers configured from the deploy's variables (read at run time);
    PLATFORM_COMPUTE picks one."""
    messages = {"messages_bucket": dg.EnvVar("PLATFORM_PIPES_BUCKET"),
                "messages_prefix": dg.EnvVar("PLATFORM_PIPES_PREFIX")}
    return AwsCompute(
        launcher=dg.EnvVar("PLATFORM_COMPUTE"),
        batch=BatchCompute(job_queue=dg.EnvVar("PLATFORM_BATCH_JOB_QUEUE"),
                           job_definition=dg.EnvVar("PLATFORM_BATCH_JOB_DEFINITION"), **messages),
        ecs=ECSCompute(cluster=dg.EnvVar("PLATFORM_ECS_CLUSTER"),
                       task_definition=dg.EnvVar("PLATFORM_ECS_TASK_DEFINITION"),
                       container_name=dg.EnvVar("PLATFORM_ECS_CONTAINER"),
                       subnets=dg.EnvVar("PLATFORM_ECS_SUBNETS"),
                       security_groups=dg.EnvVar("PLATFORM_ECS_SECURITY_GROUPS"), **messages),
    )


def build_definitions(env: str = "local", contracts: dict | None = None) -> dg.Definitions:
    """Assemble the Definitions for `env` from the shipped contracts (or the given ones)."""
    contracts = load_contracts() if contracts is None else contracts
    datasets = {name: build_dataset(c) for name, c in contracts.items()}
    maintain_job, maintain_schedule = build_maintenance(contracts)
    checks, check_jobs, check_schedules = build_monitoring(contracts)
    return dg.Definitions(
        assets=[d.raw for d in datasets.values()]
        + [a for d in datasets.values() for a in d.assets],
        asset_checks=checks,
        jobs=[d.job for d in datasets.values()] + [maintain_job] + check_jobs
        + [d.tensors_job for d in datasets.values() if d.tensors_job is not None],
        schedules=[maintain_schedule] + check_schedules,
        sensors=[build_raw_uploads_sensor(datasets)] + extra_sensors(datasets),
        resources=resources_for(env),
    )


arrow_memory.configure()  # every Dagster process of the platform loads this module
defs = build_definitions(os.environ.get("PLATFORM_ENV", "local"))
