"""The three always-on Dagster services (webserver, daemon, code location) and the way people
reach the webserver, sized by the deploy profile.

`add_dagster_services` creates its constructs directly in the stack it is given, under the same
ids the platform stack always used, so moving this code out of the stack changed no logical id
(a service with a fixed name cannot be replaced in place). The webserver is reached through the
load balancer (components.webserver_alb) or, in a profile without one, through ECS Exec port
forwarding (the service has ECS Exec enabled and no inbound rule at all).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import aws_cdk as cdk
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_iam as iam
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_servicediscovery as servicediscovery
from constructs import Construct
from stacks.profiles import TaskSize
from stacks.settings import (
    CODE_LOCATION_SERVICE_NAME,
    CODE_SERVER_COMMAND,
    CODE_SERVER_HEALTH_CHECK,
    CODE_SERVER_PORT,
    DAEMON_COMMAND,
    WEBSERVER_COMMAND,
    WEBSERVER_PORT,
    DeploySettings,
)

from components.fargate_task import PlatformTask
from components.webserver_alb import WebserverLoadBalancer


@dataclass
class DagsterServices:
    """What `add_dagster_services` created; `load_balancer` is None without one."""

    webserver_task: PlatformTask
    daemon_task: PlatformTask
    code_location_task: PlatformTask
    webserver_service: ecs.FargateService
    daemon_service: ecs.FargateService
    code_location_service: ecs.FargateService
    load_balancer: WebserverLoadBalancer | None


def _capacity(size: TaskSize) -> dict[str, Any]:
    """Service options placing the task on Fargate Spot when its size says so."""
    if not size.spot:
        return {}
    return {
        "capacity_provider_strategies": [
            ecs.CapacityProviderStrategy(capacity_provider="FARGATE_SPOT", weight=1)
        ]
    }


def add_dagster_services(
    scope: Construct,
    *,
    settings: DeploySettings,
    vpc: ec2.IVpc,
    vpc_cidr: str,
    cluster: ecs.Cluster,
    namespace: servicediscovery.IPrivateDnsNamespace,
    image: ecs.ContainerImage,
    roles: Mapping[str, iam.IRole],
    security_groups: Mapping[str, ec2.ISecurityGroup],
    launcher_environment: Mapping[str, str],
    code_location_environment: Mapping[str, str],
    secrets: Mapping[str, ecs.Secret],
    access_logs_bucket: s3.IBucket,
) -> DagsterServices:
    """Create the webserver, daemon and code-location task definitions and services in `scope`.

    `roles` and `security_groups` are keyed "webserver", "daemon", "code_location" (and "run" for
    the security group the daemon carries so that runs inherit it). Returns what was created.
    """
    profile = settings.profile
    webserver_task = PlatformTask(
        scope,
        "Webserver",
        family=f"{settings.name}-webserver",
        image=image,
        container_name="webserver",
        command=WEBSERVER_COMMAND,
        cpu=profile.webserver.cpu,
        memory_mib=profile.webserver.memory_mib,
        task_role=roles["webserver"],
        environment=launcher_environment,
        secrets=secrets,
        log_retention=settings.log_retention,
        port_mappings=[ecs.PortMapping(container_port=WEBSERVER_PORT)],
    )
    daemon_task = PlatformTask(
        scope,
        "Daemon",
        family=f"{settings.name}-daemon",
        image=image,
        container_name="daemon",
        command=DAEMON_COMMAND,
        cpu=profile.daemon.cpu,
        memory_mib=profile.daemon.memory_mib,
        task_role=roles["daemon"],
        environment=launcher_environment,
        secrets=secrets,
        log_retention=settings.log_retention,
    )
    code_location_task = PlatformTask(
        scope,
        "CodeLocation",
        family=f"{settings.name}-code-location",
        image=image,
        container_name="code-location",
        command=CODE_SERVER_COMMAND,
        cpu=profile.code_location.cpu,
        memory_mib=profile.code_location.memory_mib,
        task_role=roles["code_location"],
        environment=code_location_environment,
        secrets=secrets,
        log_retention=settings.log_retention,
        port_mappings=[ecs.PortMapping(container_port=CODE_SERVER_PORT)],
        health_check=ecs.HealthCheck(
            command=["CMD", *CODE_SERVER_HEALTH_CHECK],
            interval=cdk.Duration.seconds(30),
            timeout=cdk.Duration.seconds(10),
            retries=3,
            start_period=cdk.Duration.seconds(120),
        ),
    )

    if any(size.spot for size in (profile.webserver, profile.daemon, profile.code_location)):
        cluster.enable_fargate_capacity_providers()
    desired = 1 if settings.services_running else 0
    common_service_options: dict[str, Any] = {
        "cluster": cluster,
        "vpc_subnets": settings.task_subnets,
        # Without a NAT gateway, tasks reach ECR, CloudWatch Logs and Secrets Manager through
        # their own public IP; their security groups admit nothing from the internet.
        "assign_public_ip": profile.public_tasks,
        "desired_count": desired,
        "circuit_breaker": ecs.DeploymentCircuitBreaker(enable=True, rollback=True),
        "propagate_tags": ecs.PropagatedTagSource.SERVICE,
        "enable_ecs_managed_tags": True,
    }
    code_location_service = ecs.FargateService(
        scope,
        "CodeLocationService",
        service_name=f"{settings.name}-code-location",
        task_definition=code_location_task.task_definition,
        security_groups=[security_groups["code_location"]],
        min_healthy_percent=100,
        max_healthy_percent=200,
        cloud_map_options=ecs.CloudMapOptions(
            name=CODE_LOCATION_SERVICE_NAME,
            cloud_map_namespace=namespace,
            dns_record_type=servicediscovery.DnsRecordType.A,
            dns_ttl=cdk.Duration.seconds(10),
        ),
        **_capacity(profile.code_location),
        **common_service_options,
    )
    webserver_options: dict[str, Any] = {}
    if profile.webserver_load_balancer:
        webserver_options["health_check_grace_period"] = cdk.Duration.seconds(120)
    else:
        # No load balancer: people reach the UI by port forwarding into the task (ECS Exec).
        webserver_options["enable_execute_command"] = True
    webserver_service = ecs.FargateService(
        scope,
        "WebserverService",
        service_name=f"{settings.name}-webserver",
        task_definition=webserver_task.task_definition,
        security_groups=[security_groups["webserver"]],
        min_healthy_percent=100,
        max_healthy_percent=200,
        **webserver_options,
        **_capacity(profile.webserver),
        **common_service_options,
    )
    # Exactly one daemon: stop the old task before starting the new one. Runs are started
    # with this task's network configuration (use_current_ecs_task_config: subnets, security
    # groups and whether to assign a public IP), so the daemon also carries the run security
    # group.
    daemon_service = ecs.FargateService(
        scope,
        "DaemonService",
        service_name=f"{settings.name}-daemon",
        task_definition=daemon_task.task_definition,
        security_groups=[security_groups["daemon"], security_groups["run"]],
        min_healthy_percent=0,
        max_healthy_percent=100,
        **_capacity(profile.daemon),
        **common_service_options,
    )

    load_balancer = None
    if profile.webserver_load_balancer:
        oidc = settings.oidc
        load_balancer = WebserverLoadBalancer(
            scope,
            "WebserverAccess",
            vpc=vpc,
            vpc_cidr=vpc_cidr,
            service=webserver_service,
            container_name="webserver",
            port=WEBSERVER_PORT,
            access=settings.webserver_access,
            access_logs_bucket=access_logs_bucket,
            certificate_arn=settings.certificate_arn,
            domain_name=settings.webserver_domain,
            allowed_cidr=settings.allowed_cidr,
            cognito_domain_prefix=settings.cognito_domain_prefix,
            oidc_issuer=oidc.issuer if oidc else None,
            oidc_authorization_endpoint=oidc.authorization_endpoint if oidc else None,
            oidc_token_endpoint=oidc.token_endpoint if oidc else None,
            oidc_user_info_endpoint=oidc.user_info_endpoint if oidc else None,
            oidc_client_id=oidc.client_id if oidc else None,
            oidc_client_secret_name=oidc.client_secret_name if oidc else None,
        )
    return DagsterServices(
        webserver_task=webserver_task,
        daemon_task=daemon_task,
        code_location_task=code_location_task,
        webserver_service=webserver_service,
        daemon_service=daemon_service,
        code_location_service=code_location_service,
        load_balancer=load_balancer,
    )
