"""An AWS Batch queue on Fargate with one job definition running the platform image.

Heavy steps (the tensor step) are submitted here through Dagster Pipes (PipesBatchClient): the run
names the job queue and definition from PLATFORM_BATCH_JOB_QUEUE / PLATFORM_BATCH_JOB_DEFINITION,
passes the Pipes bootstrap variables and the command (the definition's own command is the same
entry point), and reads the job's messages from S3 (PLATFORM_PIPES_BUCKET) or CloudWatch.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import aws_cdk as cdk
from aws_cdk import aws_batch as batch
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_efs as efs
from aws_cdk import aws_iam as iam
from aws_cdk import aws_logs as logs
from constructs import Construct


class FargateBatchQueue(Construct):
    """Compute environment, job queue and job definition, with EFS scratch mounted in every job.

    Jobs run in `subnets` (private ones with egress by default), on Fargate Spot when `spot`.
    The compute environment keeps no capacity while no job runs (Fargate has no minimum vCPU).
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        name: str,
        vpc: ec2.IVpc,
        security_group: ec2.ISecurityGroup,
        image: ecs.ContainerImage,
        job_role: iam.IRole,
        max_vcpus: int,
        command: Sequence[str],
        environment: Mapping[str, str],
        scratch: efs.IFileSystem,
        scratch_access_point: efs.IAccessPoint,
        scratch_path: str,
        log_retention: logs.RetentionDays,
        vcpus: float = 2,
        memory_gib: int = 8,
        timeout: cdk.Duration | None = None,
        subnets: ec2.SubnetSelection | None = None,
        assign_public_ip: bool = False,
        spot: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(scope, construct_id)
        self.log_group = logs.LogGroup(
            self, "Logs", retention=log_retention, removal_policy=cdk.RemovalPolicy.DESTROY
        )
        self.compute_environment = batch.FargateComputeEnvironment(
            self,
            "ComputeEnvironment",
            vpc=vpc,
            vpc_subnets=subnets
            or ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS),
            security_groups=[security_group],
            maxv_cpus=max_vcpus,
            # Spot is safe here: the job definition retries jobs whose capacity was reclaimed.
            spot=spot,
        )
        self.job_queue = batch.JobQueue(
            self,
            "JobQueue",
            job_queue_name=name,
            priority=1,
            compute_environments=[
                batch.OrderedComputeEnvironment(
                    compute_environment=self.compute_environment, order=1
                )
            ],
        )
        self.container = batch.EcsFargateContainerDefinition(
            self,
            "Container",
            image=image,
            cpu=vcpus,
            memory=cdk.Size.gibibytes(memory_gib),
            job_role=job_role,
            command=list(command),
            environment=dict(environment),
            # Jobs in public subnets (no NAT) pull the image and ship logs through a public IP.
            assign_public_ip=assign_public_ip,
            fargate_cpu_architecture=ecs.CpuArchitecture.X86_64,
            fargate_operating_system_family=ecs.OperatingSystemFamily.LINUX,
            logging=ecs.LogDriver.aws_logs(stream_prefix="batch", log_group=self.log_group),
            volumes=[
                batch.EcsVolume.efs(
                    name="scratch",
                    file_system=scratch,
                    access_point_id=scratch_access_point.access_point_id,
                    enable_transit_encryption=True,
                    use_job_role=True,
                    container_path=scratch_path,
                )
            ],
        )
        self.job_definition = batch.EcsJobDefinition(
            self,
            "JobDefinition",
            job_definition_name=name,
            container=self.container,
            # Retried when the capacity under the job goes away (Spot or host reclaimed, image
            # pull failed), never when the job itself failed: a real error would fail again.
            # AWS retries when no condition matches, hence the final EXIT for everything else.
            retry_attempts=3,
            retry_strategies=[
                # Fargate Spot reclaim and EC2 host loss both stop the task with this reason.
                batch.RetryStrategy.of(batch.Action.RETRY,
                                       batch.Reason.custom(on_status_reason="Host EC2*")),
                batch.RetryStrategy.of(batch.Action.RETRY, batch.Reason.CANNOT_PULL_CONTAINER),
                batch.RetryStrategy.of(batch.Action.EXIT, batch.Reason.custom(on_reason="*")),
            ],
            timeout=timeout or cdk.Duration.hours(4),
            **kwargs,
        )
