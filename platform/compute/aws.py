"""boto3 clients for the compute launchers and the entry point, all with timeouts and retries."""

from __future__ import annotations

import boto3
from botocore.config import Config

# Adaptive retries ride out throttling of the polling calls (DescribeJobs, DescribeTasks,
# GetObject of message chunks); the timeouts keep a dead endpoint from hanging a run.
BOTO_CONFIG = Config(
    retries={"max_attempts": 8, "mode": "adaptive"}, connect_timeout=5, read_timeout=60
)


def aws_client(service: str, region_name: str | None = None):
    """Return a boto3 client for `service` (region and endpoint from the environment if unset)."""
    return boto3.session.Session().client(service, region_name=region_name, config=BOTO_CONFIG)
