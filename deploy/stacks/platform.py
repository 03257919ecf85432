"""Platform stack: the ECS cluster running Dagster, the run and Batch compute, and their IAM.

Three Fargate services run the same image: the webserver (behind the load balancer), the daemon
(schedules, sensors, run queue, run monitoring) and the code location (gRPC, found through Cloud
Map). The daemon launches each run as a task of the run task definition (EcsRunLauncher, see
deploy/dagster.yaml); heavy steps go through Dagster Pipes to the AWS Batch queue or, with
`-c compute_launcher=ecs`, to one-off tasks of the step task definition. Both run the same entry
point (`python -m data_platform.compute.entry`) with the same role, network and scratch.

Every service and the runs have their own task role, granted only what that process does.
"""

from __future__ import annotations

from typing import Any

import aws_cdk as cdk
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_iam as iam
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_servicediscovery as servicediscovery
from components.batch_queue import FargateBatchQueue
from components.dagster_services import add_dagster_services
from components.fargate_task import PlatformTask
from components.nag import acknowledge, acknowledge_reviewed_iam_wildcards
from components.role_grants import grant_platform_roles
from constructs import Construct

from stacks.data import (
    DB_NAME,
    DB_USERNAME,
    PIPES_PREFIX,
    DataStack,
    bucket_names,
)
from stacks.settings import (
    CODE_SERVER_PORT,
    RUN_CONTAINER_NAME,
    SCRATCH_MOUNT_PATH,
    SERVICE_DISCOVERY_NAMESPACE,
    STEP_COMMAND,
    STEP_CONTAINER_NAME,
    DeploySettings,
)

# Default size of a run task; dagster.yaml's run_resources must match (a test checks it).
RUN_CPU = 1024
RUN_MEMORY_MIB = 4096
# Until an image tag is given the services exist with no tasks (nothing to pull yet).
NO_IMAGE_TAG = "no-image-yet"


class PlatformStack(cdk.Stack):
    """ECS cluster with webserver, daemon and code-location services, run and Batch compute."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        settings: DeploySettings,
        vpc: ec2.IVpc,
        vpc_cidr: str,
        data: DataStack,
        **kwargs: Any,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        self.settings = settings
        names = bucket_names(settings, self)
        # Buckets by name: IAM statements on their keys then carry no cross-stack reference.
        raw = s3.Bucket.from_bucket_name(self, "RawBucket", names["raw"])
        lake = s3.Bucket.from_bucket_name(self, "LakeBucket", names["lake"])
        image = ecs.ContainerImage.from_ecr_repository(
            data.repository, tag=settings.image_tag or NO_IMAGE_TAG
        )

        cluster_name = settings.name
        run_family = f"{settings.name}-run"
        step_family = f"{settings.name}-step"
        batch_name = f"{settings.name}-tensors"

        self.cluster = ecs.Cluster(
            self,
            "Cluster",
            cluster_name=cluster_name,
            vpc=vpc,
            container_insights_v2=(
                ecs.ContainerInsights.ENABLED
                if settings.profile.container_insights
                else ecs.ContainerInsights.DISABLED
            ),
        )
        if not settings.profile.container_insights:
            acknowledge(
                self.cluster,
                "AwsSolutions-ECS4",
                "The lean profile leaves Container Insights off: its per-task metrics cost more "
                "than the services they watch; task and service metrics of ECS remain.",
            )
        namespace = servicediscovery.PrivateDnsNamespace(
            self, "Namespace", name=SERVICE_DISCOVERY_NAMESPACE, vpc=vpc
        )

        # --- identities ---------------------------------------------------------------------
        def task_role(role_id: str, description: str) -> iam.Role:
            return iam.Role(
                self,
                role_id,
                assumed_by=iam.ServicePrincipal("ecs-tasks.amazonaws.com"),
                description=description,
            )

        self.webserver_role = task_role("WebserverRole", "Dagster webserver tasks")
        self.daemon_role = task_role("DaemonRole", "Dagster daemon tasks")
        self.code_location_role = task_role("CodeLocationRole", "Dagster code-location tasks")
        self.run_role = task_role("RunRole", "Dagster run tasks launched by the EcsRunLauncher")
        self.run_execution_role = task_role(
            "RunExecutionRole", "Pulls the image, ships logs and reads the DB secret for runs"
        )
        # Heavy steps, as Batch jobs or as ECS tasks: one role, one network, one scratch.
        self.batch_job_role = task_role(
            "BatchJobRole", "Heavy steps (tensors): AWS Batch jobs and ECS step tasks"
        )
        self.step_execution_role = task_role(
            "StepExecutionRole", "Pulls the image and ships logs for ECS step tasks"
        )

        # --- network access -----------------------------------------------------------------
        # No inbound rule from the internet, also for tasks with a public IP (lean profile);
        # egress is closed except HTTPS (AWS APIs through the endpoints, the NAT gateway or the
        # task's public IP) and the ports granted below.
        def security_group(sg_id: str, description: str) -> ec2.SecurityGroup:
            group = ec2.SecurityGroup(
                self, sg_id, vpc=vpc, description=description, allow_all_outbound=False
            )
            group.add_egress_rule(ec2.Peer.any_ipv4(), ec2.Port.tcp(443), "HTTPS to AWS APIs")
            return group

        webserver_sg = security_group("WebserverSecurityGroup", "Dagster webserver tasks")
        daemon_sg = security_group("DaemonSecurityGroup", "Dagster daemon tasks")
        code_location_sg = security_group("CodeLocationSecurityGroup", "Dagster code location")
        run_sg = security_group("RunSecurityGroup", "Dagster run tasks (launched by the daemon)")
        batch_sg = security_group("BatchSecurityGroup", "Heavy steps: Batch jobs and ECS tasks")

        for client in (webserver_sg, daemon_sg):
            client.connections.allow_to(
                code_location_sg, ec2.Port.tcp(CODE_SERVER_PORT), "Dagster gRPC"
            )
        # Sensors run in the code location and read the instance, so it needs Postgres too.
        for client in (webserver_sg, daemon_sg, code_location_sg, run_sg):
            client.connections.allow_to_default_port(data.database, "Dagster instance storage")
        for client in (run_sg, batch_sg):
            client.connections.allow_to_default_port(data.scratch, "EFS scratch")

        # --- configuration shared by the containers -----------------------------------------
        db_environment = {
            "DAGSTER_PG_HOST": data.database.db_instance_endpoint_address,
            "DAGSTER_PG_PORT": data.database.db_instance_endpoint_port,
            "DAGSTER_PG_DB": DB_NAME,
            "DAGSTER_PG_USERNAME": DB_USERNAME,
            "DAGSTER_COMPUTE_LOGS_BUCKET": names["lake"],
            "AWS_REGION": self.region,
        }
        if data.database_secret is None:
            raise ValueError("the database must have a generated secret")
        db_secrets = {
            "DAGSTER_PG_PASSWORD": ecs.Secret.from_secrets_manager(data.database_secret, "password")
        }
        # What platform code reads: storage and catalog settings (every container running it).
        platform_environment = {
            "PLATFORM_ENV": "aws",
            "AWS_REGION": self.region,
            "PLATFORM_RAW_URL": data.raw_url,
            "PLATFORM_LAKE_URL": data.lake_url,
            "PLATFORM_GLUE_DATABASE": data.glue_database_name,
            "PLATFORM_ATHENA_WORKGROUP": data.athena_workgroup_name,
            "PLATFORM_ATHENA_OUTPUT_URL": data.athena_output_url,
            "PLATFORM_SCRATCH_DIR": SCRATCH_MOUNT_PATH,
        }
        # Where heavy steps go (resources.compute_aws): read by runs, which launch the steps.
        compute_environment = {
            "PLATFORM_COMPUTE": settings.compute_launcher,
            "PLATFORM_PIPES_BUCKET": names["lake"],
            "PLATFORM_PIPES_PREFIX": PIPES_PREFIX,
            "PLATFORM_BATCH_JOB_QUEUE": batch_name,
            "PLATFORM_BATCH_JOB_DEFINITION": batch_name,
            "PLATFORM_ECS_CLUSTER": cluster_name,
            "PLATFORM_ECS_TASK_DEFINITION": step_family,
            "PLATFORM_ECS_CONTAINER": STEP_CONTAINER_NAME,
            "PLATFORM_ECS_SUBNETS": ",".join(
                vpc.select_subnets(subnet_type=settings.task_subnets.subnet_type).subnet_ids
            ),
            "PLATFORM_ECS_SECURITY_GROUPS": batch_sg.security_group_id,
        }
        # The sensors (code location) consume upload events in queue mode; the queue-mode sensor
        # is a later change, so nothing reads this yet.
        sensor_environment = {"PLATFORM_RAW_EVENTS_QUEUE_URL": data.raw_events_queue.queue_url}

        # --- run tasks ----------------------------------------------------------------------
        self.run_task = PlatformTask(
            self,
            "Run",
            family=run_family,
            image=image,
            container_name=RUN_CONTAINER_NAME,
            command=None,
            cpu=RUN_CPU,
            memory_mib=RUN_MEMORY_MIB,
            task_role=self.run_role,
            execution_role=self.run_execution_role,
            environment={**platform_environment, **compute_environment, **db_environment},
            secrets=db_secrets,
            log_retention=settings.log_retention,
        )
        def mount_scratch(task: PlatformTask) -> None:
            task.task_definition.add_volume(
                name="scratch",
                efs_volume_configuration=ecs.EfsVolumeConfiguration(
                    file_system_id=data.scratch.file_system_id,
                    transit_encryption="ENABLED",
                    authorization_config=ecs.AuthorizationConfig(
                        access_point_id=data.scratch_access_point.access_point_id, iam="ENABLED"
                    ),
                ),
            )
            task.container.add_mount_points(
                ecs.MountPoint(
                    container_path=SCRATCH_MOUNT_PATH, source_volume="scratch", read_only=False
                )
            )

        mount_scratch(self.run_task)
        launcher_environment = {
            **db_environment,
            "DAGSTER_RUN_TASK_DEFINITION": self.run_task.task_definition.task_definition_arn,
        }

        # --- Batch for the tensor step --------------------------------------------------------
        self.batch = FargateBatchQueue(
            self,
            "Tensors",
            name=batch_name,
            vpc=vpc,
            security_group=batch_sg,
            image=image,
            job_role=self.batch_job_role,
            max_vcpus=settings.batch_max_vcpus,
            command=STEP_COMMAND,
            environment=platform_environment,
            scratch=data.scratch,
            scratch_access_point=data.scratch_access_point,
            scratch_path=SCRATCH_MOUNT_PATH,
            log_retention=settings.log_retention,
            subnets=settings.task_subnets,
            assign_public_ip=settings.profile.public_tasks,
            spot=settings.profile.batch_spot,
        )

        # The same step as a one-off ECS task (PLATFORM_COMPUTE=ecs), sized like a Batch job.
        self.step_task = PlatformTask(
            self,
            "Step",
            family=step_family,
            image=image,
            container_name=STEP_CONTAINER_NAME,
            command=STEP_COMMAND,
            cpu=2048,
            memory_mib=8192,
            task_role=self.batch_job_role,
            execution_role=self.step_execution_role,
            environment=platform_environment,
            secrets={},
            log_retention=settings.log_retention,
        )
        mount_scratch(self.step_task)

        # --- services -------------------------------------------------------------------------
        services = add_dagster_services(
            self,
            settings=settings,
            vpc=vpc,
            vpc_cidr=vpc_cidr,
            cluster=self.cluster,
            namespace=namespace,
            image=image,
            roles={
                "webserver": self.webserver_role,
                "daemon": self.daemon_role,
                "code_location": self.code_location_role,
            },
            security_groups={
                "webserver": webserver_sg,
                "daemon": daemon_sg,
                "code_location": code_location_sg,
                "run": run_sg,
            },
            launcher_environment=launcher_environment,
            code_location_environment={
                **platform_environment,
                **sensor_environment,
                **db_environment,
            },
            secrets=db_secrets,
            access_logs_bucket=data.access_logs_bucket,
        )
        self.webserver_task = services.webserver_task
        self.daemon_task = services.daemon_task
        self.code_location_task = services.code_location_task
        self.webserver_service = services.webserver_service
        self.daemon_service = services.daemon_service
        self.code_location_service = services.code_location_service
        self.webserver_load_balancer = services.load_balancer

        # --- permissions ----------------------------------------------------------------------
        grant_platform_roles(
            self,
            cluster=self.cluster,
            cluster_name=cluster_name,
            run_family=run_family,
            step_family=step_family,
            batch_name=batch_name,
            roles={
                "webserver": self.webserver_role,
                "daemon": self.daemon_role,
                "code_location": self.code_location_role,
                "run": self.run_role,
                "run_execution": self.run_execution_role,
                "batch_job": self.batch_job_role,
                "step_execution": self.step_execution_role,
            },
            raw=raw,
            lake=lake,
            data=data,
            batch=self.batch,
            run_logs=self.run_task.log_group,
            step_logs=self.step_task.log_group,
        )

        if self.webserver_load_balancer is not None:
            cdk.CfnOutput(
                self,
                "WebserverUrl",
                value=("https://" if settings.certificate_arn else "http://")
                + (
                    settings.webserver_domain
                    or self.webserver_load_balancer.load_balancer.load_balancer_dns_name
                ),
            )
        else:
            cdk.CfnOutput(
                self,
                "WebserverServiceName",
                value=self.webserver_service.service_name,
                description="No load balancer: reach the UI by ECS Exec port forwarding into "
                "a task of this service (deploy/README.md, Reaching the UI)",
            )
        cdk.CfnOutput(self, "ClusterName", value=self.cluster.cluster_name)
        if not settings.services_running:
            cdk.Annotations.of(self).add_warning_v2(
                "data-platform:no-image-tag",
                "No image tag given (-c image_tag=...): services are created with no running "
                "tasks. Push an image and deploy again with its tag (see deploy/README.md).",
            )

        acknowledge_reviewed_iam_wildcards(self)
