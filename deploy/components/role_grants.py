"""What each role of the platform may do: the webserver, daemon and code-location services, the
runs, and the heavy steps (Batch jobs and ECS step tasks). One function, called once by the
platform stack after every role, bucket and task definition exists.

Grants go through aws-cdk-lib's grant_* methods or components.permissions, whose ARNs are built
from names so that components.nag can review every wildcard.
"""

from __future__ import annotations

from collections.abc import Mapping

import aws_cdk as cdk
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_iam as iam
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from stacks.data import COMPUTE_LOGS_PREFIX, LAKE_PREFIX, RAW_PREFIX, DataStack
from stacks.settings import BATCH_JOB_TAG

from components.batch_queue import FargateBatchQueue
from components.permissions import (
    grant_batch_jobs,
    grant_catalog,
    grant_launch_tasks,
    grant_watch_tasks,
)


def grant_platform_roles(
    stack: cdk.Stack,
    *,
    cluster: ecs.ICluster,
    cluster_name: str,
    run_family: str,
    step_family: str,
    batch_name: str,
    roles: Mapping[str, iam.Role],
    raw: s3.IBucket,
    lake: s3.IBucket,
    data: DataStack,
    batch: FargateBatchQueue,
    run_logs: logs.ILogGroup,
    step_logs: logs.ILogGroup,
) -> None:
    """Grant each role in `roles` (keyed webserver, daemon, code_location, run, run_execution,
    batch_job, step_execution) what its process does, and nothing else. Returns nothing."""
    cluster_tasks = stack.format_arn(
        service="ecs", resource="task", resource_name=f"{cluster_name}/*"
    )
    run_task_definitions = stack.format_arn(
        service="ecs", resource="task-definition", resource_name=f"{run_family}:*"
    )
    run_roles = [roles["run"], roles["run_execution"]]
    step_task_definitions = stack.format_arn(
        service="ecs", resource="task-definition", resource_name=f"{step_family}:*"
    )

    # Webserver: shows step logs, and stops run tasks when a user terminates a run.
    lake.grant_read(roles["webserver"], f"{COMPUTE_LOGS_PREFIX}/*")
    grant_watch_tasks(roles["webserver"], cluster_tasks=cluster_tasks)

    # Daemon: launches, resumes and stops run tasks of the run family only, passes only the
    # run roles, reads a failed run's log stream for the failure message.
    grant_launch_tasks(
        roles["daemon"],
        cluster_arn=cluster.cluster_arn,
        cluster_tasks=cluster_tasks,
        task_definitions=run_task_definitions,
        roles=run_roles,
    )
    roles["daemon"].add_to_policy(
        iam.PolicyStatement(
            sid="ReadOwnTaskNetworkConfiguration",
            actions=["ec2:DescribeNetworkInterfaces"],
            resources=["*"],
        )
    )
    run_logs.grant_read(roles["daemon"])

    # Code location: evaluates the raw-upload sensor (listing or queue mode), which compares
    # raw objects with the manifests of what the lake already holds.
    raw.grant_read(roles["code_location"], f"{RAW_PREFIX}/*")
    lake.grant_read(roles["code_location"], f"{LAKE_PREFIX}/*")
    data.raw_events_queue.grant_consume_messages(roles["code_location"])

    # Runs: read raw, write the lake (data, Athena results, compute logs, Pipes messages),
    # the platform's catalog, EFS scratch.
    raw.grant_read(roles["run"], f"{RAW_PREFIX}/*")
    lake.grant_read_write(roles["run"])
    grant_catalog(
        roles["run"],
        database=data.glue_database_name,
        workgroup=data.athena_workgroup_name,
        write=True,
    )
    data.scratch.grant_read_write(roles["run"])
    # Heavy steps through Pipes: jobs of the platform's queue and definition, or tasks of the
    # step task definition (passing only its two roles); their logs, when messages are read
    # from CloudWatch. Pipes messages go through the lake bucket (granted above).
    grant_batch_jobs(
        roles["run"],
        job_queue_arn=batch.job_queue.job_queue_arn,
        job_definition_name=batch_name,
        job_tag_key=BATCH_JOB_TAG,
        job_tag_value=batch_name,
    )
    batch.log_group.grant_read(roles["run"])
    grant_launch_tasks(
        roles["run"],
        cluster_arn=cluster.cluster_arn,
        cluster_tasks=cluster_tasks,
        task_definitions=step_task_definitions,
        roles=[roles["batch_job"], roles["step_execution"]],
    )
    step_logs.grant_read(roles["run"])

    # Heavy steps (Batch jobs and ECS step tasks): read raw images, read/write the lake, read
    # the catalog.
    raw.grant_read(roles["batch_job"], f"{RAW_PREFIX}/*")
    lake.grant_read_write(roles["batch_job"])
    grant_catalog(
        roles["batch_job"],
        database=data.glue_database_name,
        workgroup=data.athena_workgroup_name,
        write=False,
    )
    data.scratch.grant_read_write(roles["batch_job"])
