"""An S3 bucket with the settings every bucket of the platform shares."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import aws_cdk as cdk
from aws_cdk import aws_s3 as s3
from constructs import Construct


class SecureBucket(Construct):
    """A private, encrypted, TLS-only bucket that writes server access logs to `access_logs`.

    Public access is blocked at the bucket, objects are encrypted with S3-managed keys (the
    encryption S3 event notifications, Athena results and ALB logs all support), object ACLs
    are disabled, and incomplete multipart uploads are cleaned up after a week. Extra
    `lifecycle_rules` expire temporary prefixes.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        bucket_name: str | None = None,
        versioned: bool = False,
        removal_policy: cdk.RemovalPolicy = cdk.RemovalPolicy.RETAIN,
        access_logs: s3.IBucket | None = None,
        access_logs_prefix: str | None = None,
        lifecycle_rules: Sequence[s3.LifecycleRule] = (),
        **kwargs: Any,
    ) -> None:
        super().__init__(scope, construct_id)
        rules = [
            s3.LifecycleRule(
                id="abort-incomplete-multipart-uploads",
                abort_incomplete_multipart_upload_after=cdk.Duration.days(7),
            ),
            *lifecycle_rules,
        ]
        self.bucket = s3.Bucket(
            self,
            "Bucket",
            bucket_name=bucket_name,
            versioned=versioned,
            encryption=s3.BucketEncryption.S3_MANAGED,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            enforce_ssl=True,
            minimum_tls_version=1.2,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            server_access_logs_bucket=access_logs,
            server_access_logs_prefix=access_logs_prefix,
            lifecycle_rules=rules,
            removal_policy=removal_policy,
            **kwargs,
        )
