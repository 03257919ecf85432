"""PipesBatchClient and BatchCompute: submit, poll, fail, cancel, time out.

AWS Batch cannot run here, so the Batch API is botocore's Stubber on a real boto3 client (the
requests are validated against the service model). Everything else is real: the job's "container"
is the real entry point started as a subprocess with the environment the client put in
`containerOverrides`, writing its Pipes messages to moto's S3 server, which the client reads.
"""

import os
import subprocess
import sys

import boto3
import dagster as dg
import pytest
from botocore.stub import ANY, Stubber
from dagster._core.errors import DagsterExecutionInterruptedError
from data_platform.compute.batch import PipesBatchClient, describe_failure
from data_platform.resources import BatchCompute
from data_platform.resources.compute import ENTRY_COMMAND
from data_platform.resources.compute_aws import JOB_QUEUE_TAG

from .conftest import S3_REGION, moto_server

BUCKET = "pipes-bucket"
JOB_ID = "0b7c1f9e-0000-4000-8000-000000000001"
QUEUE = "data-platform-tensors"
CHECK = dg.AssetCheckSpec("rows_positive", asset="tensors")


@pytest.fixture
def pipes_bucket(monkeypatch):
    """moto's S3 server with the Pipes message bucket; the reader's post-run grace period cut
    from 10 s to 0 so runs without messages (failed starts, timeouts) end promptly."""
    monkeypatch.setattr("dagster._core.pipes.utils.WAIT_FOR_LOGS_AFTER_EXECUTION_INTERVAL", 0)
    with moto_server(monkeypatch):
        s3 = boto3.client("s3", region_name=S3_REGION)
        s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": S3_REGION})
        yield s3


class FakeBatch:
    """A stubbed Batch client; `run_job=True` runs the entry point when the job is submitted."""

    def __init__(self, run_job: bool):
        self.client = boto3.client("batch", region_name=S3_REGION)
        self.stubber = Stubber(self.client)
        self.submitted: dict = {}
        self.job_output: subprocess.CompletedProcess | None = None
        self.client.meta.events.register("provide-client-params.batch.SubmitJob", self._submit)
        self.run_job = run_job
        self.sleeps: list[float] = []

    def _submit(self, params, **_):
        self.submitted = params
        if self.run_job:
            overrides = params["containerOverrides"]
            env = {**os.environ, **{e["name"]: e["value"] for e in overrides["environment"]}}
            command = [sys.executable, *overrides["command"][1:]]
            self.job_output = subprocess.run(command, env=env, capture_output=True, text=True,
                                             timeout=120)

    def expect_submit(self):
        self.stubber.add_response("submit_job", {"jobArn": f"arn:aws:batch:{S3_REGION}:123456789012:job/{JOB_ID}", "jobName": "j", "jobId": JOB_ID}, {
            "jobName": ANY, "jobQueue": QUEUE, "jobDefinition": QUEUE,
            "containerOverrides": ANY, "tags": ANY, "propagateTags": True})

    def expect_status(self, status: str, **job):
        body = {"jobId": JOB_ID, "jobName": "j", "jobQueue": QUEUE, "jobDefinition": QUEUE,
                "status": status, "startedAt": 1, **job}
        self.stubber.add_response("describe_jobs", {"jobs": [body]}, {"jobs": [JOB_ID]})

    def expect_terminate(self):
        self.stubber.add_response("terminate_job", {}, {"jobId": JOB_ID, "reason": ANY})

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)


def compute(fake: FakeBatch, *, sleep=None, clock=None, timeout: float = 3600.0):
    """A BatchCompute whose Pipes client uses the stubbed Batch client and fake sleep/clock."""

    class StubbedBatch(BatchCompute):
        def batch_client(self, reader):
            return PipesBatchClient(client=fake.client, message_reader=reader,
                                    poll_interval=self.poll_interval_seconds,
                                    timeout=self.timeout_seconds, sleep=sleep or fake.sleep,
                                    clock=clock or (lambda: 0.0))

    return StubbedBatch(job_queue=QUEUE, job_definition=QUEUE, messages_bucket=BUCKET,
                        messages_prefix="pipes/messages", messages_interval_seconds=0.2,
                        poll_interval_seconds=7, timeout_seconds=timeout, region_name=S3_REGION)


def materialize(resource, step: str, params: dict) -> dg.ExecuteInProcessResult:
    @dg.asset(name="tensors", check_specs=[CHECK])
    def tensors(context: dg.AssetExecutionContext, compute: BatchCompute):
        return compute.run(context, step=step, params=params)

    return dg.materialize([tensors], resources={"compute": resource}, raise_on_error=False)


def failure_text(result: dg.ExecuteInProcessResult) -> str:
    (event,) = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    error, text = event.step_failure_data.error, ""
    while error is not None:
        text += error.message + "\n"
        error = error.cause
    return text


def test_job_succeeds_and_its_s3_messages_reach_the_event_log(pipes_bucket):
    fake = FakeBatch(run_job=True)
    fake.expect_submit()
    fake.expect_status("RUNNABLE")
    fake.expect_status("RUNNING", container={"logStreamName": "batch/default/abc"})
    fake.expect_status("SUCCEEDED", container={"exitCode": 0, "logStreamName": "batch/default/abc"})
    with fake.stubber:
        result = materialize(compute(fake), "tests.compute_steps:report", {"rows": 5})
    assert result.success, failure_text(result)
    fake.stubber.assert_no_pending_responses()
    assert fake.job_output.returncode == 0, fake.job_output.stderr
    # What the job was started with: the entry point, the Pipes bootstrap, our tag.
    overrides = fake.submitted["containerOverrides"]
    assert overrides["command"] == ENTRY_COMMAND == ["python", "-m", "data_platform.compute.entry"]
    names = {e["name"] for e in overrides["environment"]}
    assert {"DAGSTER_PIPES_CONTEXT", "DAGSTER_PIPES_MESSAGES"} <= names
    assert fake.submitted["tags"][JOB_QUEUE_TAG] == QUEUE
    assert fake.submitted["tags"]["dagster/run-id"] == result.run_id
    assert fake.submitted["jobName"].startswith("platform-tests-compute_steps-report-")
    assert fake.sleeps == [7, 7]
    # What the job reported, read back from S3 under the configured prefix.
    (mat,) = result.asset_materializations_for_node("tensors")
    assert mat.metadata["rows"] == dg.IntMetadataValue(5)
    assert mat.metadata["AWS Batch job id"] == dg.TextMetadataValue(JOB_ID)
    (check,) = result.get_asset_check_evaluations()
    assert check.passed
    keys = [o["Key"] for o in pipes_bucket.list_objects_v2(Bucket=BUCKET)["Contents"]]
    assert keys and all(k.startswith("pipes/messages/") for k in keys)


def test_failed_step_fails_with_its_error_and_the_job_exit_code(pipes_bucket):
    fake = FakeBatch(run_job=True)
    fake.expect_submit()
    fake.expect_status("FAILED", statusReason="Essential container in task exited",
                       container={"exitCode": 1, "logStreamName": "batch/default/abc"})
    with fake.stubber:
        result = materialize(compute(fake), "tests.compute_steps:explode", {"key": "cat.jpg"})
    assert not result.success
    assert fake.job_output.returncode == 1
    text = failure_text(result)
    assert "step tests.compute_steps:explode failed: ValueError: cannot decode cat.jpg" in text
    assert "status reason: Essential container in task exited" in text
    assert "container exit code: 1" in text


def test_job_that_never_ran_fails_with_the_batch_reason(pipes_bucket):
    fake = FakeBatch(run_job=False)
    fake.expect_submit()
    fake.expect_status("FAILED", statusReason="Task failed to start",
                       container={"reason": "CannotPullContainerError: image not found"})
    with fake.stubber:
        result = materialize(compute(fake), "tests.compute_steps:report", {"rows": 1})
    assert not result.success
    text = failure_text(result)
    assert f"({JOB_ID}) FAILED" in text
    assert "status reason: Task failed to start" in text
    assert "container exit code: none" in text
    assert "CannotPullContainerError" in text


def test_interrupted_run_terminates_the_job(pipes_bucket):
    fake = FakeBatch(run_job=False)
    fake.expect_submit()
    fake.expect_status("RUNNING")
    fake.expect_terminate()

    def interrupted(_seconds):
        raise DagsterExecutionInterruptedError("run cancelled")

    with fake.stubber:
        result = materialize(compute(fake, sleep=interrupted), "tests.compute_steps:report",
                             {"rows": 1})
    assert not result.success
    fake.stubber.assert_no_pending_responses()


def test_keyboard_interrupt_terminates_the_job(pipes_bucket):
    fake = FakeBatch(run_job=False)
    fake.expect_submit()
    fake.expect_status("STARTING")
    fake.expect_terminate()

    def interrupted(_seconds):
        raise KeyboardInterrupt

    client = PipesBatchClient(client=fake.client, sleep=interrupted, message_reader=None,
                              poll_interval=1)

    @dg.asset
    def tensors(context: dg.AssetExecutionContext):
        return client.run(context=context, submit_job_params={
            "jobName": "j", "jobQueue": QUEUE, "jobDefinition": QUEUE,
            "containerOverrides": {"command": ENTRY_COMMAND}, "propagateTags": True},
        ).get_results()

    with fake.stubber, pytest.raises(KeyboardInterrupt):
        dg.materialize([tensors])
    fake.stubber.assert_no_pending_responses()


def test_timeout_terminates_the_job(pipes_bucket):
    fake = FakeBatch(run_job=False)
    fake.expect_submit()
    fake.expect_status("RUNNABLE")
    fake.expect_status("RUNNING")
    fake.expect_terminate()
    ticks = iter([0.0, 5.0, 11.0])  # the deadline, then one poll inside it, one past it
    with fake.stubber:
        result = materialize(compute(fake, clock=lambda: next(ticks), timeout=10),
                             "tests.compute_steps:report", {"rows": 1})
    assert not result.success
    fake.stubber.assert_no_pending_responses()
    assert "still RUNNING after 10 s; terminated" in failure_text(result)
    assert fake.sleeps == [7]


def test_describe_failure_names_attempts_and_log_stream():
    text = describe_failure({
        "jobId": JOB_ID, "jobName": "n", "statusReason": "Host EC2 terminated",
        "attempts": [{}, {}], "container": {"exitCode": 137, "logStreamName": "batch/x/1"}})
    assert text == (f"AWS Batch job n ({JOB_ID}) FAILED; status reason: Host EC2 terminated; "
                    "container exit code: 137; after 2 attempts; log stream: batch/x/1")
