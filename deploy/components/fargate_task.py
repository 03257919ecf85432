"""A Fargate task definition with one container of the platform image and its own log group."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import aws_cdk as cdk
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_iam as iam
from aws_cdk import aws_logs as logs
from constructs import Construct

from components.nag import acknowledge


class PlatformTask(Construct):
    """One container per task, logs to a dedicated log group with retention.

    `environment` holds only non-secret configuration (names, URLs); anything secret goes through
    `secrets`, which ECS resolves from Secrets Manager when the task starts. `command=None` keeps
    the command of the image (the launcher that runs this task overrides it).
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        family: str,
        image: ecs.ContainerImage,
        container_name: str,
        command: Sequence[str] | None,
        cpu: int,
        memory_mib: int,
        task_role: iam.IRole,
        execution_role: iam.IRole | None = None,
        environment: Mapping[str, str],
        secrets: Mapping[str, ecs.Secret],
        log_retention: logs.RetentionDays,
        port_mappings: Sequence[ecs.PortMapping] = (),
        health_check: ecs.HealthCheck | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(scope, construct_id)
        self.log_group = logs.LogGroup(
            self,
            "Logs",
            retention=log_retention,
            removal_policy=cdk.RemovalPolicy.DESTROY,
        )
        self.task_definition = ecs.FargateTaskDefinition(
            self,
            "TaskDefinition",
            family=family,
            cpu=cpu,
            memory_limit_mib=memory_mib,
            task_role=task_role,
            execution_role=execution_role,
            runtime_platform=ecs.RuntimePlatform(
                cpu_architecture=ecs.CpuArchitecture.X86_64,
                operating_system_family=ecs.OperatingSystemFamily.LINUX,
            ),
            **kwargs,
        )
        self.container = self.task_definition.add_container(
            container_name,
            container_name=container_name,
            image=image,
            command=list(command) if command is not None else None,
            environment=dict(environment),
            secrets=dict(secrets),
            logging=ecs.LogDriver.aws_logs(stream_prefix=container_name, log_group=self.log_group),
            port_mappings=list(port_mappings),
            health_check=health_check,
            essential=True,
        )
        acknowledge(
            self.task_definition,
            "AwsSolutions-ECS2",
            "Plain environment values are non-secret configuration (bucket URLs, queue URL, "
            "database host, resource names) that the platform reads by name; the database "
            "password is injected from Secrets Manager as an ECS secret.",
        )
