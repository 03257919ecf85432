"""Data stack: everything stateful the platform reads and writes.

Raw and lake buckets, the queue of raw-upload events, the Glue database and Athena workgroup, the
Postgres instance behind Dagster, the EFS scratch file system and the image repository. Kept apart
from the services so that redeploying or tearing down the services never touches data, and so that
teardown keeps what cannot be recreated (see `RemovalPolicy` on each resource).
"""

from __future__ import annotations

from typing import Any

import aws_cdk as cdk
from aws_cdk import aws_athena as athena
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_ecr as ecr
from aws_cdk import aws_efs as efs
from aws_cdk import aws_glue as glue
from aws_cdk import aws_iam as iam
from aws_cdk import aws_logs as logs
from aws_cdk import aws_rds as rds
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_s3_notifications as s3n
from aws_cdk import aws_sqs as sqs
from components.nag import acknowledge, acknowledge_reviewed_iam_wildcards
from components.secure_bucket import SecureBucket
from constructs import Construct, IConstruct

from stacks.settings import IMAGE_GID, IMAGE_UID, DeploySettings

# Key layout inside the buckets; PLATFORM_RAW_URL / PLATFORM_LAKE_URL point at the first two.
RAW_PREFIX = "raw"
LAKE_PREFIX = "lake"
ATHENA_RESULTS_PREFIX = "athena-results"
COMPUTE_LOGS_PREFIX = "compute-logs"  # dagster.yaml: compute_logs.config.prefix
PIPES_PREFIX = "pipes"  # PLATFORM_PIPES_PREFIX: Dagster Pipes message chunks of heavy steps
TMP_PREFIX = "tmp"
DB_NAME = "dagster"
DB_USERNAME = "dagster"


def bucket_names(settings: DeploySettings, stack: cdk.Stack) -> dict[str, str]:
    """Physical bucket names; deterministic so that every stack can name them without a cross-stack
    reference (IAM statements on `<bucket>/*` stay reviewable, see components.nag)."""
    suffix = f"{stack.account}-{stack.region}"
    return {
        purpose: f"{settings.name}-{purpose}-{suffix}" for purpose in ("raw", "lake", "access-logs")
    }


class DataStack(cdk.Stack):
    """Buckets, raw-upload queue, catalog, Postgres, scratch file system and image repository."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        settings: DeploySettings,
        vpc: ec2.IVpc,
        **kwargs: Any,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        names = bucket_names(settings, self)
        profile = settings.profile
        private = ec2.SubnetSelection(subnet_type=settings.private_subnet_type)

        # --- buckets -------------------------------------------------------------------------
        self.access_logs_bucket = SecureBucket(
            self,
            "AccessLogs",
            bucket_name=names["access-logs"],
            lifecycle_rules=[s3.LifecycleRule(id="expire-logs", expiration=cdk.Duration.days(365))],
        ).bucket
        acknowledge(
            self.access_logs_bucket,
            "AwsSolutions-S1",
            "This is the server access log bucket of the other buckets; logging its own access "
            "would log into itself.",
        )

        # Raw uploads are the source of truth: versioned (an overwrite keeps the old object) and
        # retained when the stack is deleted.
        self.raw_bucket = SecureBucket(
            self,
            "Raw",
            bucket_name=names["raw"],
            versioned=True,
            removal_policy=cdk.RemovalPolicy.RETAIN,
            access_logs=self.access_logs_bucket,
            access_logs_prefix="s3/raw/",
            lifecycle_rules=[
                s3.LifecycleRule(
                    id="noncurrent-versions-to-infrequent-access",
                    noncurrent_version_transitions=[
                        s3.NoncurrentVersionTransition(
                            storage_class=s3.StorageClass.INFREQUENT_ACCESS,
                            transition_after=cdk.Duration.days(30),
                        )
                    ],
                )
            ],
        ).bucket

        # Everything derived from raw. Retained too: rebuilding it means re-running every run.
        self.lake_bucket = SecureBucket(
            self,
            "Lake",
            bucket_name=names["lake"],
            removal_policy=cdk.RemovalPolicy.RETAIN,
            access_logs=self.access_logs_bucket,
            access_logs_prefix="s3/lake/",
            lifecycle_rules=[
                s3.LifecycleRule(
                    id="expire-tmp", prefix=f"{TMP_PREFIX}/", expiration=cdk.Duration.days(7)
                ),
                s3.LifecycleRule(
                    id="expire-athena-results",
                    prefix=f"{ATHENA_RESULTS_PREFIX}/",
                    expiration=cdk.Duration.days(30),
                ),
                # Read by the run while its step runs; kept a week for debugging, no longer.
                s3.LifecycleRule(
                    id="expire-pipes-messages",
                    prefix=f"{PIPES_PREFIX}/",
                    expiration=cdk.Duration.days(7),
                ),
                s3.LifecycleRule(
                    id="expire-compute-logs",
                    prefix=f"{COMPUTE_LOGS_PREFIX}/",
                    expiration=cdk.Duration.days(90),
                ),
            ],
        ).bucket
        self.raw_url = f"s3://{names['raw']}/{RAW_PREFIX}"
        self.lake_url = f"s3://{names['lake']}/{LAKE_PREFIX}"
        self.athena_output_url = f"s3://{names['lake']}/{ATHENA_RESULTS_PREFIX}/"

        # --- raw-upload events for the queue-mode sensor --------------------------------------
        self.raw_events_dlq = sqs.Queue(
            self,
            "RawEventsDeadLetter",
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
            retention_period=cdk.Duration.days(14),
        )
        self.raw_events_queue = sqs.Queue(
            self,
            "RawEvents",
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
            retention_period=cdk.Duration.days(14),
            visibility_timeout=cdk.Duration.minutes(5),
            dead_letter_queue=sqs.DeadLetterQueue(queue=self.raw_events_dlq, max_receive_count=5),
        )
        # Created (put, copy, multipart complete) and removed: the queue-mode sensor launches
        # the first and records the second, so that an older event can never revive a key.
        for event in (s3.EventType.OBJECT_CREATED, s3.EventType.OBJECT_REMOVED):
            self.raw_bucket.add_event_notification(
                event,
                s3n.SqsDestination(self.raw_events_queue),
                s3.NotificationKeyFilter(prefix=f"{RAW_PREFIX}/"),
            )
        library_managed = _acknowledge_bucket_notifications_handler(self)

        # --- catalog ---------------------------------------------------------------------------
        self.glue_database_name = settings.glue_database
        glue.CfnDatabase(
            self,
            "GlueDatabase",
            catalog_id=self.account,
            database_input=glue.CfnDatabase.DatabaseInputProperty(
                name=self.glue_database_name,
                description="Catalog tables of the data platform (table/<dataset>).",
                location_uri=f"s3://{names['lake']}/{LAKE_PREFIX}/",
            ),
        )
        self.athena_workgroup_name = settings.name
        athena.CfnWorkGroup(
            self,
            "AthenaWorkgroup",
            name=self.athena_workgroup_name,
            description="Queries of the data platform; results encrypted in the lake bucket.",
            recursive_delete_option=True,
            state="ENABLED",
            work_group_configuration=athena.CfnWorkGroup.WorkGroupConfigurationProperty(
                enforce_work_group_configuration=True,
                publish_cloud_watch_metrics_enabled=True,
                bytes_scanned_cutoff_per_query=settings.athena_bytes_scanned_cutoff_gb * 1024**3,
                engine_version=athena.CfnWorkGroup.EngineVersionProperty(
                    selected_engine_version="AUTO"
                ),
                result_configuration=athena.CfnWorkGroup.ResultConfigurationProperty(
                    output_location=self.athena_output_url,
                    encryption_configuration=athena.CfnWorkGroup.EncryptionConfigurationProperty(
                        encryption_option="SSE_S3"
                    ),
                ),
            ),
        )

        # --- Dagster instance database ---------------------------------------------------------
        db_identifier = f"{settings.name}-dagster"
        db_log_group = logs.LogGroup(
            self,
            "DatabaseLogs",
            log_group_name=f"/aws/rds/instance/{db_identifier}/postgresql",
            retention=settings.log_retention,
            removal_policy=cdk.RemovalPolicy.DESTROY,
        )
        self.database = rds.DatabaseInstance(
            self,
            "Database",
            instance_identifier=db_identifier,
            engine=rds.DatabaseInstanceEngine.postgres(version=rds.PostgresEngineVersion.VER_16),
            instance_type=ec2.InstanceType(profile.db_instance_class),
            vpc=vpc,
            vpc_subnets=private,
            publicly_accessible=False,
            credentials=rds.Credentials.from_generated_secret(
                DB_USERNAME, secret_name=f"{settings.name}/dagster-db"
            ),
            database_name=DB_NAME,
            storage_encrypted=True,
            storage_type=rds.StorageType.GP3,
            allocated_storage=profile.db_storage_gib,
            max_allocated_storage=200,
            multi_az=profile.db_multi_az,
            backup_retention=cdk.Duration.days(profile.db_backup_retention_days),
            delete_automated_backups=False,
            deletion_protection=settings.db_deletion_protection,
            removal_policy=cdk.RemovalPolicy.SNAPSHOT,
            auto_minor_version_upgrade=True,
            cloudwatch_logs_exports=["postgresql"],
            copy_tags_to_snapshot=True,
        )
        self.database.node.add_dependency(db_log_group)
        self.database_secret = self.database.secret
        acknowledge(
            self.database,
            "AwsSolutions-RDS11",
            "The instance is reachable only from the platform's own security groups inside "
            "private subnets; a non-standard port would add no protection there.",
        )
        if not profile.db_multi_az:
            acknowledge(
                self.database,
                "AwsSolutions-RDS3",
                "Single-AZ by default to halve the database cost of a small team's platform; "
                "backups and snapshots cover loss of the AZ. Deploy with -c db_multi_az=true "
                "for a standby.",
            )
        if not settings.db_deletion_protection:
            acknowledge(
                self.database,
                "AwsSolutions-RDS10",
                "Deletion protection was switched off explicitly (-c db_deletion_protection="
                "false), e.g. for a throwaway environment; teardown still keeps a snapshot.",
            )
        if self.database_secret is not None:
            acknowledge(
                self.database,
                "AwsSolutions-SMG4",
                "ECS injects the password when a task starts, so rotating it under running "
                "services would break their connections; rotate it together with a redeploy "
                "(see the deploy README).",
            )

        # --- scratch for heavy steps (run tasks and Batch jobs) --------------------------------
        self.scratch = efs.FileSystem(
            self,
            "Scratch",
            vpc=vpc,
            vpc_subnets=private,
            encrypted=True,
            performance_mode=efs.PerformanceMode.GENERAL_PURPOSE,
            throughput_mode=efs.ThroughputMode.ELASTIC,
            lifecycle_policy=efs.LifecyclePolicy.AFTER_7_DAYS,
            allow_anonymous_access=False,
            enable_automatic_backups=False,
            removal_policy=cdk.RemovalPolicy.DESTROY,
        )
        self.scratch.add_to_resource_policy(
            iam.PolicyStatement(
                sid="DenyInsecureTransport",
                effect=iam.Effect.DENY,
                principals=[iam.AnyPrincipal()],
                actions=[
                    "elasticfilesystem:ClientMount",
                    "elasticfilesystem:ClientWrite",
                    "elasticfilesystem:ClientRootAccess",
                ],
                conditions={"Bool": {"aws:SecureTransport": "false"}},
            )
        )
        self.scratch_access_point = self.scratch.add_access_point(
            "ScratchAccessPoint",
            path="/scratch",
            create_acl=efs.Acl(
                owner_uid=str(IMAGE_UID), owner_gid=str(IMAGE_GID), permissions="750"
            ),
            posix_user=efs.PosixUser(uid=str(IMAGE_UID), gid=str(IMAGE_GID)),
        )

        # --- image repository -----------------------------------------------------------------
        self.repository = ecr.Repository(
            self,
            "Images",
            repository_name=settings.name,
            image_scan_on_push=True,
            image_tag_mutability=ecr.TagMutability.IMMUTABLE,
            encryption=ecr.RepositoryEncryption.AES_256,
            removal_policy=cdk.RemovalPolicy.RETAIN,
            lifecycle_rules=[
                ecr.LifecycleRule(
                    description=f"Keep the last {profile.image_count} images",
                    max_image_count=profile.image_count,
                )
            ],
        )

        cdk.CfnOutput(self, "RawBucketName", value=self.raw_bucket.bucket_name)
        cdk.CfnOutput(self, "LakeBucketName", value=self.lake_bucket.bucket_name)
        cdk.CfnOutput(self, "ImageRepositoryUri", value=self.repository.repository_uri)

        acknowledge_reviewed_iam_wildcards(self, skip=library_managed)


def _acknowledge_bucket_notifications_handler(stack: cdk.Stack) -> list[IConstruct]:
    """The raw bucket's event notification is configured by a Lambda that aws-cdk-lib provides
    (one per stack); its role is defined by the library, not by us. Returns that construct."""
    handlers = [
        child
        for child in stack.node.children
        if child.node.id.startswith("BucketNotificationsHandler")
    ]
    for child in handlers:
        acknowledge(
            child,
            "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/"
            "AWSLambdaBasicExecutionRole]",
            "aws-cdk-lib's BucketNotificationsHandler only writes its own logs with this "
            "managed policy; the function is part of the library.",
        )
        acknowledge(
            child,
            "AwsSolutions-IAM5[Resource::*]",
            "aws-cdk-lib's BucketNotificationsHandler calls s3:PutBucketNotification, which "
            "it is granted on '*' by the library; it only ever touches the raw bucket.",
        )
    return handlers
