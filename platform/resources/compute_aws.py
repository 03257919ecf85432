"""Compute on AWS: the entry point as an ECS task (dagster-aws' PipesECSClient) or an AWS Batch
job (our PipesBatchClient), with Pipes messages through S3 or CloudWatch logs.

The deploy sets every field through `PLATFORM_*` variables (see `definitions.py`); `AwsCompute`
holds both launchers and runs the one `PLATFORM_COMPUTE` names.
"""

from __future__ import annotations

import math
import re

import botocore.exceptions
from dagster._core.pipes.client import PipesClientCompletedInvocation
from dagster_aws.pipes import PipesECSClient
from pydantic import Field

from ..compute.aws import aws_client
from ..compute.batch import PipesBatchClient
from ..compute.messages import StepCloudWatchMessageReader, StepErrorCapture, StepS3MessageReader
from .compute import ENTRY_COMMAND, ComputeResource, SelectingCompute

# Every Batch job we submit carries this tag (value: the job queue), so that the run role may
# terminate only the platform's jobs (an IAM condition on aws:ResourceTag).
JOB_QUEUE_TAG = "data-platform:job-queue"
AWS_LAUNCHERS = ("batch", "ecs")


class _AwsLauncher(ComputeResource):
    """What ECS and Batch share: region, the Pipes message bucket, polling."""

    region_name: str | None = Field(default=None, description="AWS region; default from env")
    messages_bucket: str | None = Field(
        default=None,
        description="Bucket for Pipes message chunks; unset: read the job's CloudWatch logs",
    )
    messages_prefix: str = Field(default="pipes", description="Key prefix of message chunks")
    messages_interval_seconds: float = Field(
        default=10.0, description="How often the job uploads and the run reads message chunks"
    )
    poll_interval_seconds: float = Field(default=10.0, description="Seconds between status polls")
    timeout_seconds: float = Field(
        default=4 * 3600.0, description="The step fails (and the job is stopped) after this"
    )

    def client(self, service: str):
        """Return a boto3 client for `service` with timeouts and retries."""
        return aws_client(service, region_name=self.region_name)

    def message_reader(self) -> StepErrorCapture:
        if self.messages_bucket:
            return StepS3MessageReader(
                bucket=self.messages_bucket,
                prefix=self.messages_prefix,
                client=self.client("s3"),
                interval=self.messages_interval_seconds,
            )
        return StepCloudWatchMessageReader(client=self.client("logs"))


class ECSCompute(_AwsLauncher):
    """The entry point as a one-off ECS task of the tensor step's task definition."""

    cluster: str = Field(description="ECS cluster name or ARN")
    task_definition: str = Field(description="Task definition family[:revision] or ARN")
    container_name: str = Field(description="Container of the task definition that runs steps")
    subnets: str = Field(description="Comma-separated subnet ids for the task's network")
    security_groups: str = Field(default="", description="Comma-separated security group ids")
    launch_type: str = Field(default="FARGATE", description="FARGATE or EC2")
    assign_public_ip: bool = Field(default=False, description="Give the task a public IP")

    def run_task_params(self) -> dict:
        """Return the RunTask request (PipesECSClient adds the Pipes variables and tags)."""
        network = {
            "subnets": _split(self.subnets),
            "assignPublicIp": "ENABLED" if self.assign_public_ip else "DISABLED",
        }
        if self.security_groups:
            network["securityGroups"] = _split(self.security_groups)
        return {
            "cluster": self.cluster,
            "taskDefinition": self.task_definition,
            "launchType": self.launch_type,
            "count": 1,
            "networkConfiguration": {"awsvpcConfiguration": network},
            "overrides": {
                "containerOverrides": [{"name": self.container_name, "command": ENTRY_COMMAND}]
            },
        }

    def launch(self, context, extras, reader) -> PipesClientCompletedInvocation:
        ecs = self.client("ecs")
        started: list[str] = []
        # PipesECSClient stops the task when the run is interrupted, not when its waiter gives
        # up: note the task it starts, so a timeout stops it too.
        ecs.meta.events.register(
            "after-call.ecs.RunTask",
            lambda parsed, **_: started.extend(t["taskArn"] for t in parsed.get("tasks", [])),
        )
        delay = max(1, round(self.poll_interval_seconds))
        waiter = {"Delay": delay, "MaxAttempts": max(1, math.ceil(self.timeout_seconds / delay))}
        try:
            return PipesECSClient(client=ecs, message_reader=reader).run(  # type: ignore[arg-type]
                context=context,
                run_task_params=self.run_task_params(),  # type: ignore[arg-type]
                extras=extras,
                pipes_container_name=self.container_name,
                waiter_config=waiter,  # type: ignore[arg-type]
            )
        except botocore.exceptions.WaiterError as error:
            for task in started:
                context.log.warning(f"[pipes] stopping ECS task {task}: {error}")
                ecs.stop_task(cluster=self.cluster, task=task, reason="Dagster step timed out")
            raise


class BatchCompute(_AwsLauncher):
    """The entry point as an AWS Batch job on the platform's queue."""

    job_queue: str = Field(description="Batch job queue name or ARN")
    job_definition: str = Field(description="Batch job definition name[:revision] or ARN")
    job_name_prefix: str = Field(default="platform", description="Start of every job's name")

    def submit_job_params(self, context, step: str) -> dict:
        """Return the SubmitJob request (PipesBatchClient adds the Pipes variables and tags)."""
        name = re.sub(r"[^A-Za-z0-9_-]+", "-", f"{self.job_name_prefix}-{step}")
        name = f"{name[:110].strip('-')}-{context.run.run_id[:8]}"
        return {
            "jobName": name,
            "jobQueue": self.job_queue,
            "jobDefinition": self.job_definition,
            "containerOverrides": {"command": ENTRY_COMMAND},
            "tags": {JOB_QUEUE_TAG: self.job_queue.rsplit("/", 1)[-1]},
            "propagateTags": True,
        }

    def batch_client(self, reader: StepErrorCapture) -> PipesBatchClient:
        """Return the Pipes client reading messages with `reader` (one reader per launch)."""
        return PipesBatchClient(
            client=self.client("batch"),
            message_reader=reader,  # type: ignore[arg-type]
            poll_interval=self.poll_interval_seconds,
            timeout=self.timeout_seconds,
        )

    def launch(self, context, extras, reader) -> PipesClientCompletedInvocation:
        client = self.batch_client(reader)
        step = str(extras.get("step", "step"))
        return client.run(
            context=context,
            submit_job_params=self.submit_job_params(context, step),
            extras=extras,
        )


class AwsCompute(SelectingCompute):
    """Batch or ECS, as `launcher` (PLATFORM_COMPUTE in the deploy) says."""

    launcher: str = Field(default="batch", description="'batch' or 'ecs'")
    batch: BatchCompute
    ecs: ECSCompute

    def selected(self) -> ComputeResource:
        """Return the configured launcher; raises ValueError for an unknown name."""
        if self.launcher == "batch":
            return self.batch
        if self.launcher == "ecs":
            return self.ecs
        raise ValueError(f"compute launcher {self.launcher!r}: expected one of {AWS_LAUNCHERS}")


def _split(values: str) -> list[str]:
    return [v.strip() for v in values.split(",") if v.strip()]

