"""The local instance: its dagster.yaml as `make dev` writes it, and the run worker health
check that lets run monitoring find runs whose worker died (a real process, killed)."""

import logging
import subprocess
import sys
import time

import dagster as dg
import pytest
from dagster._core.events import DagsterEvent, DagsterEventType, EngineEventData
from dagster._core.events.log import EventLogEntry
from dagster._core.launcher import WorkerStatus
from data_platform.instance import MANAGED, write_instance_yaml


@pytest.fixture
def instance(tmp_path):
    write_instance_yaml(tmp_path)
    with dg.DagsterInstance.from_config(str(tmp_path)) as inst:
        yield inst


def started_run(instance, pid: int) -> dg.DagsterRun:
    run = instance.create_run_for_job(dg.JobDefinition(
        graph_def=dg.GraphDefinition(name="g", node_defs=[])), run_config={})
    instance.report_engine_event(f"Started process for run (pid: {pid}).", run,
                                 EngineEventData.in_process(pid))
    return run


def test_the_instance_config_enables_monitoring_and_retries(instance, tmp_path):
    assert instance.run_monitoring_enabled and instance.run_retries_enabled
    assert instance.run_launcher.supports_check_run_worker_health
    assert "kept" not in write_instance_yaml(tmp_path)
    # A file a person edited (marker line removed) is left alone.
    path = tmp_path / "dagster.yaml"
    path.write_text(path.read_text().replace(MANAGED, "# mine:"))
    assert "kept" in write_instance_yaml(tmp_path)


def test_a_killed_run_worker_is_reported_failed(instance):
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        run = started_run(instance, proc.pid)
        assert instance.run_launcher.check_run_worker_health(run).status == WorkerStatus.RUNNING
    finally:
        proc.kill()
        proc.wait()
    result = instance.run_launcher.check_run_worker_health(run)
    assert result.status == WorkerStatus.FAILED and "is gone" in result.msg


def test_a_recycled_pid_is_not_mistaken_for_the_worker(instance):
    """A live process that started after the worker's event holds a reused pid: not the worker."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        run = instance.create_run_for_job(dg.JobDefinition(
            graph_def=dg.GraphDefinition(name="g", node_defs=[])), run_config={})
        event = DagsterEvent(DagsterEventType.ENGINE_EVENT.value, job_name=run.job_name,
                             message=f"Started process for run (pid: {proc.pid}).",
                             event_specific_data=EngineEventData.in_process(proc.pid))
        instance.store_event(EventLogEntry(
            error_info=None, level=logging.INFO, user_message="", run_id=run.run_id,
            timestamp=time.time() - 3600, dagster_event=event))  # the worker started an hour ago
        result = instance.run_launcher.check_run_worker_health(run)
    finally:
        proc.kill()
        proc.wait()
    assert result.status == WorkerStatus.FAILED and "pid reused" in result.msg
