"""A Dagster Pipes client for AWS Batch jobs (dagster-aws has ECS, EMR, Glue, Lambda, no Batch).

Modelled on dagster-aws' `PipesECSClient`: the Pipes bootstrap variables go into the job's
`containerOverrides.environment` (with the command), the job is polled with `DescribeJobs` until
it SUCCEEDED or FAILED, and it is terminated when the Dagster run is interrupted or the overall
timeout passes. Messages come through S3 (`PipesS3MessageReader`, the default when a reader is
given) or from the job's CloudWatch log stream, whose name DescribeJobs reports once it starts.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Mapping
from typing import Any

import dagster as dg
from dagster import PipesClient
from dagster._core.definitions.resource_annotation import TreatAsResourceParam
from dagster._core.errors import DagsterExecutionInterruptedError
from dagster._core.pipes.client import (
    PipesClientCompletedInvocation,
    PipesContextInjector,
    PipesMessageReader,
)
from dagster._core.pipes.utils import PipesEnvContextInjector, open_pipes_session
from dagster_aws.pipes import PipesCloudWatchLogReader, PipesCloudWatchMessageReader

from .aws import aws_client

FINAL_STATUSES = ("SUCCEEDED", "FAILED")
# Where Batch sends a job's output when its definition names no log group.
DEFAULT_LOG_GROUP = "/aws/batch/job"


class BatchJobFailed(Exception):
    """The Batch job ended FAILED (or could not be followed); the message says why."""


class BatchJobTimeout(BatchJobFailed):
    """The job did not finish within the client's timeout; it has been terminated."""


class PipesBatchClient(PipesClient, TreatAsResourceParam):
    """Runs one AWS Batch job per call inside a Pipes session.

    Args:
        client: boto3 Batch client (default: one with the platform's timeouts and retries).
        message_reader: where messages come from; default CloudWatch logs of the job.
        context_injector: how the context reaches the job; default the environment.
        poll_interval: seconds between DescribeJobs calls.
        timeout: seconds after which the job is terminated and the step fails.
        forward_termination: terminate the job when the Dagster run is interrupted.
        sleep, clock: injected for tests (default `time.sleep`, `time.monotonic`).
    """

    def __init__(
        self,
        client: Any = None,
        message_reader: PipesMessageReader | None = None,
        context_injector: PipesContextInjector | None = None,
        *,
        poll_interval: float = 10.0,
        timeout: float = 4 * 3600.0,
        forward_termination: bool = True,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ):
        self._client = client or aws_client("batch")
        self._message_reader = message_reader or PipesCloudWatchMessageReader(
            client=aws_client("logs")
        )
        self._context_injector = context_injector or PipesEnvContextInjector()
        self.poll_interval = poll_interval
        self.timeout = timeout
        self.forward_termination = forward_termination
        self._sleep = sleep
        self._clock = clock

    @classmethod
    def _is_dagster_maintained(cls) -> bool:
        return False

    def run(  # type: ignore[override]
        self,
        *,
        context: dg.OpExecutionContext | dg.AssetExecutionContext,
        submit_job_params: Mapping[str, Any],
        extras: Mapping[str, Any] | None = None,
    ) -> PipesClientCompletedInvocation:
        """Submit the job (`submit_job_params` as for boto3's submit_job) and wait for it.

        Returns the completed invocation (`.get_results()` is what the job reported).
        Raises BatchJobFailed when the job FAILED (status reason and container exit code in the
        message), BatchJobTimeout after terminating a job that outlived `timeout`, and re-raises
        an interrupt of the run after terminating the job.
        """
        with open_pipes_session(
            context=context,
            message_reader=self._message_reader,
            context_injector=self._context_injector,
            extras=dict(extras or {}),
        ) as session:
            params = self._with_pipes(dict(copy.deepcopy(submit_job_params)), session)
            job_id = self._client.submit_job(**params)["jobId"]
            name = params["jobName"]
            context.log.info(f"[pipes] submitted AWS Batch job {name} ({job_id})")
            try:
                job = self._wait(context, session, job_id)
            except (DagsterExecutionInterruptedError, KeyboardInterrupt):
                if self.forward_termination:
                    context.log.warning("[pipes] run interrupted, terminating the Batch job")
                    self._terminate(context, job_id, "Dagster run was interrupted")
                raise
            except BatchJobTimeout:
                self._terminate(context, job_id, f"Exceeded the {self.timeout:.0f} s timeout")
                raise
            if job["status"] == "FAILED":
                raise BatchJobFailed(describe_failure(job))
        context.log.info(f"[pipes] AWS Batch job {name} ({job_id}) succeeded")
        return PipesClientCompletedInvocation(session, metadata=self._metadata(job))

    def _with_pipes(self, params: dict, session: Any) -> dict:
        overrides = params.setdefault("containerOverrides", {})
        pipes_env = session.get_bootstrap_env_vars()
        # Pipes variables win over any of the same name the caller set.
        kept = [e for e in overrides.get("environment", []) if e["name"] not in pipes_env]
        overrides["environment"] = kept + [{"name": k, "value": v} for k, v in pipes_env.items()]
        tags = dict(params.get("tags") or {})
        tags.update(session.default_remote_invocation_info)
        params["tags"] = tags
        return params

    def _wait(self, context: Any, session: Any, job_id: str) -> dict:
        deadline = self._clock() + self.timeout
        status = None
        launched = False
        while True:
            jobs = self._client.describe_jobs(jobs=[job_id])["jobs"]
            if not jobs:
                raise BatchJobFailed(f"AWS Batch job {job_id} is not known to DescribeJobs")
            job = jobs[0]
            if job["status"] != status:
                status = job["status"]
                context.log.info(f"[pipes] AWS Batch job {job_id} is {status}")
            if not launched and job.get("container", {}).get("logStreamName"):
                launched = True
                self._follow_logs(session, job)
            if status in FINAL_STATUSES:
                return job
            if self._clock() >= deadline:
                raise BatchJobTimeout(
                    f"AWS Batch job {job_id} still {status} after {self.timeout:.0f} s; terminated"
                )
            self._sleep(self.poll_interval)

    def _follow_logs(self, session: Any, job: dict) -> None:
        """Point a CloudWatch reader at the job's log stream, now that it has one."""
        if not isinstance(self._message_reader, PipesCloudWatchMessageReader):
            return
        container = job["container"]
        options = (container.get("logConfiguration") or {}).get("options") or {}
        group = options.get("awslogs-group", DEFAULT_LOG_GROUP)
        stream = container["logStreamName"]
        session.report_launched({"extras": {"log_group": group, "log_stream": stream}})
        self._message_reader.add_log_reader(
            PipesCloudWatchLogReader(
                client=self._message_reader.client,
                log_group=group,
                log_stream=stream,
                start_time=int(session.created_at.timestamp() * 1000),
                debug_info=f"Batch job {job['jobId']}",
            )
        )

    def _terminate(self, context: Any, job_id: str, reason: str) -> None:
        try:
            self._client.terminate_job(jobId=job_id, reason=reason)
        except Exception as error:  # the run fails anyway; say the job may still be running
            context.log.warning(f"[pipes] could not terminate AWS Batch job {job_id}: {error}")

    def _metadata(self, job: Mapping[str, Any]) -> dict:
        region = self._client.meta.region_name
        job_id = job["jobId"]
        metadata: dict = {
            "AWS Batch job id": job_id,
            "AWS Batch job URL": dg.MetadataValue.url(
                f"https://{region}.console.aws.amazon.com/batch/home?region={region}"
                f"#jobs/detail/{job_id}"
            ),
        }
        stream = job.get("container", {}).get("logStreamName")
        if stream:
            metadata["AWS Batch log stream"] = stream
        return metadata


def describe_failure(job: Mapping[str, Any]) -> str:
    """Return one line saying why a FAILED job failed: status reason, exit code, container reason,
    and the log stream to read."""
    container = job.get("container") or {}
    parts = [f"AWS Batch job {job.get('jobName', '?')} ({job['jobId']}) FAILED"]
    parts.append(f"status reason: {job.get('statusReason') or 'none given'}")
    exit_code = container.get("exitCode")
    parts.append(f"container exit code: {exit_code if exit_code is not None else 'none'}")
    if container.get("reason"):
        parts.append(f"container reason: {container['reason']}")
    attempts = job.get("attempts") or []
    if len(attempts) > 1:
        parts.append(f"after {len(attempts)} attempts")
    if container.get("logStreamName"):
        parts.append(f"log stream: {container['logStreamName']}")
    return "; ".join(parts)
