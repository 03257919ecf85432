"""The compute resources end to end: an asset runs a step through Dagster Pipes (a real
subprocess of the entry point, or in the run's own process) and what the step reports reaches the
Dagster event log; a failing step fails the asset with the step's own error."""


import os
import subprocess
import sys

import boto3
import dagster as dg
import pytest
from botocore.stub import Stubber
from data_platform.compute import resolve_step
from data_platform.compute.messages import StepCloudWatchMessageReader, StepS3MessageReader
from data_platform.resources import (
    AwsCompute,
    BatchCompute,
    ECSCompute,
    InProcessCompute,
    LocalCompute,
    SubprocessCompute,
)
from data_platform.resources.compute import ComputeResource

from . import compute_steps
from .conftest import S3_REGION, moto_server

CHECK = dg.AssetCheckSpec("rows_positive", asset="measured")


def _asset(step: str, params: dict, checks: bool = True):
    @dg.asset(name="measured", check_specs=[CHECK] if checks else None)
    def measured(context: dg.AssetExecutionContext, compute: ComputeResource):
        return compute.run(context, step=step, params=params)

    return measured


def _materialize(compute: ComputeResource, step: str, params: dict,
                 checks: bool = True) -> dg.ExecuteInProcessResult:
    return dg.materialize([_asset(step, params, checks)], resources={"compute": compute},
                          raise_on_error=False)


def _failure_message(result: dg.ExecuteInProcessResult) -> str:
    (failure,) = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    error = failure.step_failure_data.error
    return error.message + "".join(c.message for c in _chain(error))


def _chain(error):
    while error is not None:
        yield error
        error = error.cause


LAUNCHERS = [SubprocessCompute(), InProcessCompute()]
IDS = ["subprocess", "in_process"]


@pytest.mark.parametrize("compute", LAUNCHERS, ids=IDS)
def test_step_reports_reach_the_event_log(compute, tmp_path):
    result = _materialize(compute, "tests.compute_steps:report", {"rows": 3, "source": "a.csv"})
    assert result.success
    (mat,) = result.asset_materializations_for_node("measured")
    assert mat.metadata["rows"] == dg.IntMetadataValue(3)
    assert mat.metadata["source"] == dg.TextMetadataValue("a.csv")
    (check,) = result.get_asset_check_evaluations()
    assert check.check_name == "rows_positive" and check.passed
    assert check.metadata["rows"] == dg.IntMetadataValue(3)


@pytest.mark.parametrize("compute", LAUNCHERS, ids=IDS)
def test_failed_check_is_reported_not_raised(compute):
    result = _materialize(compute, "tests.compute_steps:report", {"rows": 0})
    assert result.success
    (check,) = result.get_asset_check_evaluations()
    assert not check.passed


@pytest.mark.parametrize("compute", LAUNCHERS, ids=IDS)
def test_failing_step_fails_the_asset_with_its_error(compute):
    result = _materialize(compute, "tests.compute_steps:explode", {"key": "cat.jpg"})
    assert not result.success
    message = _failure_message(result)
    assert ("step tests.compute_steps:explode failed: ValueError: cannot decode cat.jpg: "
            "not an image") in message


@pytest.mark.parametrize("compute", LAUNCHERS, ids=IDS)
def test_unknown_step_fails_with_the_lookup_error(compute):
    result = _materialize(compute, "tests.compute_steps:missing", {})
    assert not result.success
    assert "has no 'missing'" in _failure_message(result)


def test_registered_name_in_a_module_is_reached_by_dotted_path():
    result = _materialize(SubprocessCompute(), "tests.compute_steps:tests.registered", {},
                          checks=False)
    assert result.success
    (mat,) = result.asset_materializations_for_node("measured")
    assert mat.metadata["registered"] == dg.BoolMetadataValue(True)


def test_resolve_step_by_name_and_path():
    assert resolve_step("tests.compute_steps:report") is compute_steps.report
    assert resolve_step("tests.registered") is compute_steps.registered
    assert resolve_step("probe").__name__ == "probe"
    with pytest.raises(LookupError, match="unknown step 'nope'"):
        resolve_step("nope")
    with pytest.raises(LookupError, match="cannot import"):
        resolve_step("tests.no_such_module:x")


def test_local_compute_picks_the_launcher_at_run_time(monkeypatch):
    monkeypatch.delenv("PLATFORM_COMPUTE", raising=False)
    assert isinstance(LocalCompute().selected(), SubprocessCompute)
    monkeypatch.setenv("PLATFORM_COMPUTE", "in_process")
    assert isinstance(LocalCompute().selected(), InProcessCompute)
    assert isinstance(LocalCompute(launcher="subprocess").selected(), SubprocessCompute)
    monkeypatch.setenv("PLATFORM_COMPUTE", "batch")
    with pytest.raises(ValueError, match="not a local one"):
        LocalCompute().selected()


def test_local_compute_runs_the_selected_launcher(monkeypatch):
    monkeypatch.setenv("PLATFORM_COMPUTE", "in_process")
    result = _materialize(LocalCompute(), "tests.compute_steps:report", {"rows": 2})
    assert result.success
    (mat,) = result.asset_materializations_for_node("measured")
    assert mat.metadata["rows"] == dg.IntMetadataValue(2)


def test_a_finished_step_is_not_failed_by_the_process_teardown():
    """The entry point leaves without the interpreter's teardown once the step's messages are
    written: a teardown that aborts (here an exit handler the step registered) cannot turn a
    finished step into a failed one."""
    result = _materialize(SubprocessCompute(), "tests.compute_steps:aborts_at_exit", {},
                          checks=False)
    assert result.success
    (mat,) = result.asset_materializations_for_node("measured")
    assert mat.metadata["done"] == dg.BoolMetadataValue(True)


def test_entry_point_outside_pipes_exits_non_zero():
    done = subprocess.run([sys.executable, "-m", "data_platform.compute.entry"],
                          capture_output=True, text=True, timeout=120,
                          env={k: v for k, v in os.environ.items()
                               if not k.startswith("DAGSTER_PIPES")})
    assert done.returncode == 1
    assert "not launched through Dagster Pipes" in done.stderr


# --- ECS: the API cannot run here, so it is botocore's Stubber on a real boto3 client; the task's
# container is the real entry point, started with the environment RunTask was given, writing its
# messages to moto's S3 server.

ECS_CLUSTER = "data-platform"
ECS_FAMILY = "data-platform-step"
TASK_ARN = f"arn:aws:ecs:{S3_REGION}:123456789012:task/{ECS_CLUSTER}/0123456789abcdef"


class FakeECS:
    """A stubbed ECS client that runs the entry point when RunTask is called."""

    def __init__(self):
        self.client = boto3.client("ecs", region_name=S3_REGION)
        self.stubber = Stubber(self.client)
        self.run_task_params: dict = {}
        self.client.meta.events.register("provide-client-params.ecs.RunTask", self._run)

    def _run(self, params, **_):
        self.run_task_params = params
        (override,) = params["overrides"]["containerOverrides"]
        env = {**os.environ, **{e["name"]: e["value"] for e in override["environment"]}}
        self.exit_code = subprocess.run([sys.executable, *override["command"][1:]], env=env,
                                        capture_output=True, timeout=120).returncode

    def expect_run(self, exit_code: int):
        container = {"name": "step", "runtimeId": "r-1", "exitCode": exit_code}
        self.stubber.add_response("describe_task_definition", {"taskDefinition": {
            "containerDefinitions": [{"name": "step", "logConfiguration": {
                "logDriver": "awslogs", "options": {"awslogs-group": "g",
                                                    "awslogs-stream-prefix": "step"}}}]}},
            {"taskDefinition": ECS_FAMILY})
        self.stubber.add_response("run_task", {"tasks": [
            {"taskArn": TASK_ARN, "containers": [{"name": "step"}]}]})
        stopped = {"tasks": [{"taskArn": TASK_ARN, "clusterArn": f"cluster/{ECS_CLUSTER}",
                              "lastStatus": "STOPPED", "containers": [container]}]}
        query = {"cluster": ECS_CLUSTER, "tasks": [TASK_ARN]}
        self.stubber.add_response("describe_tasks", stopped, query)  # the waiter
        self.stubber.add_response("describe_tasks", stopped, query)  # the final state


def ecs_compute(fake: FakeECS | None = None, **fields) -> ECSCompute:
    class StubbedECS(ECSCompute):
        def client(self, service: str):
            return fake.client if service == "ecs" else super().client(service)

    config = dict(cluster=ECS_CLUSTER, task_definition=ECS_FAMILY, container_name="step",
                  subnets="subnet-a, subnet-b", security_groups="sg-1",
                  messages_bucket="pipes-bucket", messages_interval_seconds=0.2,
                  poll_interval_seconds=1, region_name=S3_REGION)
    return StubbedECS(**{**config, **fields})


@pytest.fixture
def pipes_bucket(monkeypatch):
    """moto's S3 server with the Pipes message bucket."""
    monkeypatch.setattr("dagster._core.pipes.utils.WAIT_FOR_LOGS_AFTER_EXECUTION_INTERVAL", 0)
    with moto_server(monkeypatch):
        boto3.client("s3", region_name=S3_REGION).create_bucket(
            Bucket="pipes-bucket", CreateBucketConfiguration={"LocationConstraint": S3_REGION})
        yield


def test_ecs_task_runs_the_entry_point_with_the_pipes_bootstrap(pipes_bucket):
    fake = FakeECS()
    fake.expect_run(exit_code=0)
    with fake.stubber:
        result = _materialize(ecs_compute(fake), "tests.compute_steps:report", {"rows": 4})
    assert result.success, _failure_message(result)
    fake.stubber.assert_no_pending_responses()
    params = fake.run_task_params
    assert params["cluster"] == ECS_CLUSTER and params["taskDefinition"] == ECS_FAMILY
    assert params["launchType"] == "FARGATE"
    assert params["networkConfiguration"]["awsvpcConfiguration"] == {
        "subnets": ["subnet-a", "subnet-b"], "securityGroups": ["sg-1"],
        "assignPublicIp": "DISABLED"}
    (override,) = params["overrides"]["containerOverrides"]
    assert override["name"] == "step"
    assert override["command"] == ["python", "-m", "data_platform.compute.entry"]
    names = {e["name"] for e in override["environment"]}
    assert {"DAGSTER_PIPES_CONTEXT", "DAGSTER_PIPES_MESSAGES"} <= names
    (mat,) = result.asset_materializations_for_node("measured")
    assert mat.metadata["rows"] == dg.IntMetadataValue(4)
    assert "AWS ECS Task URL" in mat.metadata
    (check,) = result.get_asset_check_evaluations()
    assert check.passed


def test_ecs_task_failure_fails_with_the_step_error(pipes_bucket):
    fake = FakeECS()
    fake.expect_run(exit_code=1)
    with fake.stubber:
        result = _materialize(ecs_compute(fake), "tests.compute_steps:explode", {"key": "x.png"})
    assert not result.success
    assert fake.exit_code == 1
    message = _failure_message(result)
    assert "step tests.compute_steps:explode failed: ValueError: cannot decode x.png" in message
    assert "non-zero exit code" in message


def test_ecs_task_that_outlives_the_timeout_is_stopped(pipes_bucket):
    fake = FakeECS()
    fake.client.meta.events.unregister("provide-client-params.ecs.RunTask", fake._run)
    fake.stubber.add_response("describe_task_definition", {"taskDefinition": {
        "containerDefinitions": [{"name": "step"}]}})
    fake.stubber.add_response("run_task", {"tasks": [{"taskArn": TASK_ARN,
                                                      "containers": [{"name": "step"}]}]})
    fake.stubber.add_response("describe_tasks", {"tasks": [
        {"taskArn": TASK_ARN, "lastStatus": "RUNNING"}]})
    fake.stubber.add_response("stop_task", {}, {"cluster": ECS_CLUSTER, "task": TASK_ARN,
                                                "reason": "Dagster step timed out"})
    with fake.stubber:
        result = _materialize(ecs_compute(fake, timeout_seconds=1), "tests.compute_steps:report",
                              {"rows": 1})
    assert not result.success
    fake.stubber.assert_no_pending_responses()
    assert "Max attempts exceeded" in _failure_message(result)


def test_aws_launchers_read_messages_from_s3_or_cloudwatch():
    assert isinstance(ecs_compute().message_reader(), StepS3MessageReader)
    reader = ecs_compute(messages_bucket=None).message_reader()
    assert isinstance(reader, StepCloudWatchMessageReader)


def test_aws_compute_runs_the_launcher_the_deploy_names():
    batch = BatchCompute(job_queue="q", job_definition="d")
    ecs = ecs_compute()
    assert isinstance(AwsCompute(launcher="batch", batch=batch, ecs=ecs).selected(), BatchCompute)
    assert isinstance(AwsCompute(launcher="ecs", batch=batch, ecs=ecs).selected(), ECSCompute)
    with pytest.raises(ValueError, match="expected one of"):
        AwsCompute(launcher="lambda", batch=batch, ecs=ecs).selected()
