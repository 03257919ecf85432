"""Helpers for running the platform's jobs and sensor against a real ephemeral instance."""

import socket

import dagster as dg
from dagster._core.definitions.partitions.context import partition_loading_context
from data_platform.versions import versions_run_config
from dagster._core.storage.dagster_run import DagsterRunStatus
from dagster._core.storage.tags import (
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
    RUN_KEY_TAG,
    SENSOR_NAME_TAG,
)


def run_ingest(defs: dg.Definitions, instance: dg.DagsterInstance, dataset: str, keys: list[str],
               add_partitions: bool = True, versions: dict | None = None,
               ) -> dg.ExecuteInProcessResult:
    """Run a dataset's ingest job over `keys` (one ranged run, as the sensor launches it).

    `versions` ({key: (seq, signature)}) pins object versions as the sensor's run config does.
    """
    name = f"raw_{dataset}"
    if add_partitions:
        existing = set(instance.get_dynamic_partitions(name))
        instance.add_dynamic_partitions(name, [k for k in keys if k not in existing])
    job = defs.resolve_job_def(f"ingest_{dataset}_job")
    tags = {ASSET_PARTITION_RANGE_START_TAG: keys[0], ASSET_PARTITION_RANGE_END_TAG: keys[-1]}
    run_config = versions_run_config(dataset, versions) if versions else None
    return job.execute_in_process(instance=instance, tags=tags, raise_on_error=False,
                                  run_config=run_config)


def check_results(result: dg.ExecuteInProcessResult) -> dict[tuple[str, str], object]:
    """Map (asset key path, check name) -> AssetCheckEvaluation for one run."""
    out = {}
    for ev in result.all_events:
        if ev.event_type_value == "ASSET_CHECK_EVALUATION":
            e = ev.event_specific_data
            out[("/".join(e.asset_key.path), e.check_name)] = e
    return out


def tick(defs: dg.Definitions, instance: dg.DagsterInstance, cursor: str | None, *,
         submit: bool = True):
    """Evaluate the raw-upload sensor once and apply its results as the daemon does: add the
    requested partitions, drop run requests whose run key this sensor already submitted, and
    record a launched run (with the run-key tag) for each request it accepts. With
    `submit=False`, return every request as the sensor made it and submit nothing.

    Returns (accepted run_requests, skip_reason, new_cursor).
    """
    name = "raw_uploads_sensor"
    sensor = defs.resolve_sensor_def(name)
    with dg.build_sensor_context(instance=instance, cursor=cursor,
                                 resources={"storage": defs.resources["storage"]},
                                 definitions=defs) as ctx:
        # The daemon evaluates with the instance as partition store; do the same here.
        with partition_loading_context(dynamic_partitions_store=instance):
            data = sensor.evaluate_tick(ctx)
    for req in data.dynamic_partitions_requests or []:
        instance.add_dynamic_partitions(req.partitions_def_name, list(req.partition_keys))
    requests = list(data.run_requests or [])
    if not submit:
        return requests, data.skip_message, data.cursor
    accepted = [req for req in requests if submit_run(defs, instance, name, req)]
    return accepted, data.skip_message, data.cursor


def submit_run(defs: dg.Definitions, instance: dg.DagsterInstance, sensor_name: str,
               req: dg.RunRequest) -> bool:
    """Record `req` as a launched run unless a run of this sensor has its run key already (the
    daemon's idempotence check); return whether it was accepted. Validates the run config."""
    if req.run_key:
        tags = {RUN_KEY_TAG: req.run_key, SENSOR_NAME_TAG: sensor_name}
        if instance.get_runs(filters=dg.RunsFilter(tags=tags), limit=1):
            return False
    job = defs.resolve_job_def(req.job_name)
    dg.validate_run_config(job, req.run_config or None)
    tags = {**req.tags, SENSOR_NAME_TAG: sensor_name}
    if req.run_key:
        tags[RUN_KEY_TAG] = req.run_key
    instance.create_run_for_job(job_def=job, run_config=req.run_config, tags=tags,
                                status=DagsterRunStatus.STARTING)
    return True


def sensor_state(instance: dg.DagsterInstance, cursor: str | None) -> dict:
    """The raw-upload sensor's state that `cursor` points to (kept in the instance)."""
    from data_platform.sensors import state as ss

    return ss.load_state(instance, ss.parse_cursor(cursor)[0])


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
