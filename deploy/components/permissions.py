"""Least-privilege grants that aws-cdk-lib has no grant_* method for: ECS tasks of one family in
one cluster, the platform's Glue database and Athena workgroup, its AWS Batch queue.

ARNs are built from names (no cross-stack references), so every wildcard they contain is one the
nag review in components.nag can recognise: tasks of one cluster, revisions of one definition,
tables of one database, jobs of Batch.
"""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_iam as iam

# Reading the catalog: pyiceberg's Glue catalog (GetDatabase for the namespace, GetTable for a
# table's metadata location) and Athena's query planning (table listings, partition lookups).
GLUE_READ_ACTIONS = [
    "glue:GetDatabase",
    "glue:GetTable",
    "glue:GetTables",
    "glue:GetPartition",
    "glue:GetPartitions",
    "glue:BatchGetPartition",
]
# Writing: exactly what pyiceberg's Glue catalog calls to create an Iceberg table and to commit
# (swap its metadata location with UpdateTable's optimistic VersionId). Iceberg tables have no
# Glue partitions, runs never drop tables, and the database is deployed, not created by runs.
GLUE_WRITE_ACTIONS = [
    "glue:CreateTable",
    "glue:UpdateTable",
]
ATHENA_QUERY_ACTIONS = [
    "athena:StartQueryExecution",
    "athena:GetQueryExecution",
    "athena:GetQueryResults",
    "athena:StopQueryExecution",
    "athena:GetWorkGroup",
]


def grant_catalog(role: iam.IRole, *, database: str, workgroup: str, write: bool) -> None:
    """Glue on one database and its tables (read, or read and write), Athena on one workgroup."""
    stack = cdk.Stack.of(role)
    role.add_to_principal_policy(
        iam.PolicyStatement(
            actions=GLUE_READ_ACTIONS + (GLUE_WRITE_ACTIONS if write else []),
            resources=[
                stack.format_arn(service="glue", resource="catalog"),
                stack.format_arn(service="glue", resource="database", resource_name=database),
                stack.format_arn(service="glue", resource="table", resource_name=f"{database}/*"),
            ],
        )
    )
    role.add_to_principal_policy(
        iam.PolicyStatement(
            actions=ATHENA_QUERY_ACTIONS,
            resources=[
                stack.format_arn(service="athena", resource="workgroup", resource_name=workgroup)
            ],
        )
    )


def grant_batch_jobs(
    role: iam.IRole,
    *,
    job_queue_arn: str,
    job_definition_name: str,
    job_tag_key: str,
    job_tag_value: str,
) -> None:
    """Submit jobs of one definition to one queue, follow them and stop them (Dagster Pipes).

    Job ids are random, so "the jobs of this queue" is expressed by a tag: the client tags every
    job it submits with `job_tag_key=job_tag_value` (the tag is set on submission, which IAM
    authorizes as TagResource with that request tag), and may terminate only jobs carrying it.
    DescribeJobs has no resource-level permissions: '*' is its only resource.
    """
    stack = cdk.Stack.of(role)
    jobs = stack.format_arn(service="batch", resource="job", resource_name="*")
    role.add_to_principal_policy(
        iam.PolicyStatement(
            sid="SubmitToPlatformBatchQueue",
            actions=["batch:SubmitJob"],
            resources=[
                job_queue_arn,
                stack.format_arn(
                    service="batch", resource="job-definition", resource_name=job_definition_name
                ),
                stack.format_arn(
                    service="batch",
                    resource="job-definition",
                    resource_name=f"{job_definition_name}:*",
                ),
            ],
        )
    )
    role.add_to_principal_policy(
        iam.PolicyStatement(
            sid="TagPlatformBatchJobsOnSubmit",
            actions=["batch:TagResource"],
            resources=[jobs],
            conditions={"StringEquals": {f"aws:RequestTag/{job_tag_key}": job_tag_value}},
        )
    )
    role.add_to_principal_policy(
        iam.PolicyStatement(
            sid="StopPlatformBatchJobs",
            actions=["batch:TerminateJob"],
            resources=[jobs],
            conditions={"StringEquals": {f"aws:ResourceTag/{job_tag_key}": job_tag_value}},
        )
    )
    role.add_to_principal_policy(
        iam.PolicyStatement(sid="FollowBatchJobs", actions=["batch:DescribeJobs"], resources=["*"])
    )


def grant_watch_tasks(role: iam.IRole, *, cluster_tasks: str) -> None:
    """Describe and stop tasks in the platform's cluster; describe task definitions."""
    role.add_to_principal_policy(
        iam.PolicyStatement(
            actions=["ecs:DescribeTasks", "ecs:StopTask"], resources=[cluster_tasks]
        )
    )
    role.add_to_principal_policy(
        iam.PolicyStatement(actions=["ecs:DescribeTaskDefinition"], resources=["*"])
    )


def grant_launch_tasks(
    role: iam.IRole,
    *,
    cluster_arn: str,
    cluster_tasks: str,
    task_definitions: str,
    roles: list[iam.Role],
) -> None:
    """Run (and tag, watch, stop) tasks of one task definition family in one cluster."""
    role.add_to_principal_policy(
        iam.PolicyStatement(
            actions=["ecs:RunTask"],
            resources=[task_definitions],
            conditions={"ArnEquals": {"ecs:cluster": cluster_arn}},
        )
    )
    role.add_to_principal_policy(
        iam.PolicyStatement(
            actions=["ecs:TagResource"],
            resources=[cluster_tasks],
            conditions={"StringEquals": {"ecs:CreateAction": "RunTask"}},
        )
    )
    grant_watch_tasks(role, cluster_tasks=cluster_tasks)
    role.add_to_principal_policy(
        iam.PolicyStatement(
            actions=["iam:PassRole"],
            resources=[r.role_arn for r in roles],
            conditions={"StringEquals": {"iam:PassedToService": "ecs-tasks.amazonaws.com"}},
        )
    )
