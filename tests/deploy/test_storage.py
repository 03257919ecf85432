"""The synthesized app: buckets, queue, database, file system, catalog, Batch, logs and network
are encrypted, private, TLS-only, retained where they must be."""

from __future__ import annotations

import json
import re

import pytest

from .conftest import Synthesized
from .templates import (
    as_list,
    containers,
    endpoint_services,
)

pytestmark = pytest.mark.deploy


def test_buckets_are_private_encrypted_and_tls_only(synthesized: Synthesized):
    buckets = synthesized.resources("AWS::S3::Bucket")
    assert len(buckets) == 3
    policies = {
        json.dumps(p["Properties"]["Bucket"]): p["Properties"]["PolicyDocument"]["Statement"]
        for p in synthesized.resources("AWS::S3::BucketPolicy").values()
    }
    for logical_id, bucket in buckets.items():
        props = bucket["Properties"]
        assert props["PublicAccessBlockConfiguration"] == {
            "BlockPublicAcls": True,
            "BlockPublicPolicy": True,
            "IgnorePublicAcls": True,
            "RestrictPublicBuckets": True,
        }
        (rule,) = props["BucketEncryption"]["ServerSideEncryptionConfiguration"]
        assert rule["ServerSideEncryptionByDefault"]["SSEAlgorithm"] in ("AES256", "aws:kms")
        statements = policies[json.dumps({"Ref": logical_id})]
        assert any(
            s["Effect"] == "Deny" and s["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
            for s in statements
        ), logical_id
        assert bucket["DeletionPolicy"] == "Retain"


def test_raw_bucket_is_versioned_and_lake_expires_temporary_prefixes(synthesized: Synthesized):
    by_purpose = {
        b["Properties"]["BucketName"].split("-")[2]: b["Properties"]
        for b in synthesized.resources("AWS::S3::Bucket").values()
    }
    assert by_purpose["raw"]["VersioningConfiguration"] == {"Status": "Enabled"}
    expiring = {
        r.get("Prefix"): r["ExpirationInDays"]
        for r in by_purpose["lake"]["LifecycleConfiguration"]["Rules"]
        if "ExpirationInDays" in r
    }
    assert {"tmp/", "athena-results/", "compute-logs/"} <= set(expiring)
    assert all(
        r.get("Status") == "Enabled" for r in by_purpose["lake"]["LifecycleConfiguration"]["Rules"]
    )
    assert (
        "LoggingConfiguration" in by_purpose["raw"] and "LoggingConfiguration" in by_purpose["lake"]
    )


def test_raw_uploads_notify_an_encrypted_queue_with_a_dead_letter_queue(synthesized: Synthesized):
    (notification,) = synthesized.resources("Custom::S3BucketNotifications").values()
    props = notification["Properties"]
    raw_id = next(
        i
        for i, b in synthesized.resources("AWS::S3::Bucket").items()
        if "-raw-" in b["Properties"]["BucketName"]
    )
    assert props["BucketName"] == {"Ref": raw_id}
    configs = props["NotificationConfiguration"]["QueueConfigurations"]
    assert sorted(e for c in configs for e in c["Events"]) == ["s3:ObjectCreated:*",
                                                               "s3:ObjectRemoved:*"]
    for config in configs:
        assert config["Filter"]["Key"]["FilterRules"] == [{"Name": "prefix", "Value": "raw/"}]
    assert len({json.dumps(c["QueueArn"]) for c in configs}) == 1
    queue_id = configs[0]["QueueArn"]["Fn::GetAtt"][0]
    queues = synthesized.resources("AWS::SQS::Queue")
    queue = queues[queue_id]["Properties"]
    dlq_id = queue["RedrivePolicy"]["deadLetterTargetArn"]["Fn::GetAtt"][0]
    assert queue["RedrivePolicy"]["maxReceiveCount"] >= 1
    assert dlq_id in queues and dlq_id != queue_id
    for q in queues.values():
        assert q["Properties"]["SqsManagedSseEnabled"] is True
    tls_only = [
        p
        for p in synthesized.resources("AWS::SQS::QueuePolicy").values()
        if any(
            s["Effect"] == "Deny"
            and s.get("Condition") == {"Bool": {"aws:SecureTransport": "false"}}
            for s in p["Properties"]["PolicyDocument"]["Statement"]
        )
    ]
    covered = {json.dumps(q) for p in tls_only for q in p["Properties"]["Queues"]}
    assert {json.dumps({"Ref": queue_id}), json.dumps({"Ref": dlq_id})} <= covered
    # S3 may send to the queue, and only from the raw bucket.
    send = [
        s
        for p in synthesized.resources("AWS::SQS::QueuePolicy").values()
        for s in p["Properties"]["PolicyDocument"]["Statement"]
        if s["Effect"] == "Allow" and "sqs:SendMessage" in as_list(s["Action"])
    ]
    assert send and all(s["Principal"] == {"Service": "s3.amazonaws.com"} for s in send)
    assert all(raw_id in json.dumps(s["Condition"]) for s in send)


def test_database_is_private_encrypted_backed_up_and_kept(synthesized: Synthesized):
    (db,) = synthesized.resources("AWS::RDS::DBInstance").values()
    props = db["Properties"]
    assert props["Engine"] == "postgres"
    assert props["StorageEncrypted"] is True
    assert props["PubliclyAccessible"] is False
    assert props["BackupRetentionPeriod"] >= 7
    assert props["DeletionProtection"] is True
    assert db["DeletionPolicy"] == "Snapshot"
    (secret,) = synthesized.resources("AWS::SecretsManager::Secret").values()
    assert "GenerateSecretString" in secret["Properties"], "credentials are generated"
    assert "MasterUserPassword" in json.dumps(props) and "resolve:secretsmanager" in json.dumps(
        props
    )


def test_scratch_file_system_is_encrypted_with_an_access_point(synthesized: Synthesized):
    (fs,) = synthesized.resources("AWS::EFS::FileSystem").values()
    assert fs["Properties"]["Encrypted"] is True
    statements = fs["Properties"]["FileSystemPolicy"]["Statement"]
    assert any(
        s["Effect"] == "Deny" and s["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
        for s in statements
    )
    (ap,) = synthesized.resources("AWS::EFS::AccessPoint").values()
    assert ap["Properties"]["PosixUser"] == {"Uid": "1000", "Gid": "1000"}
    (job,) = synthesized.resources("AWS::Batch::JobDefinition").values()
    (volume,) = job["Properties"]["ContainerProperties"]["Volumes"]
    assert volume["EfsVolumeConfiguration"]["TransitEncryption"] == "ENABLED"
    assert volume["EfsVolumeConfiguration"]["AuthorizationConfig"]["Iam"] == "ENABLED"


def test_athena_results_are_encrypted_and_queries_capped(synthesized: Synthesized):
    (workgroup,) = synthesized.resources("AWS::Athena::WorkGroup").values()
    config = workgroup["Properties"]["WorkGroupConfiguration"]
    assert config["EnforceWorkGroupConfiguration"] is True
    assert config["BytesScannedCutoffPerQuery"] > 0
    result = config["ResultConfiguration"]
    assert result["EncryptionConfiguration"]["EncryptionOption"] in ("SSE_S3", "SSE_KMS")
    assert re.fullmatch(r"s3://[^/]+-lake-[^/]+/athena-results/", result["OutputLocation"])


def test_batch_runs_fargate_jobs_in_private_subnets(synthesized: Synthesized):
    (environment,) = synthesized.resources("AWS::Batch::ComputeEnvironment").values()
    resources = environment["Properties"]["ComputeResources"]
    assert resources["Type"] == "FARGATE"
    assert all("private" in json.dumps(s).lower() for s in resources["Subnets"])
    (job,) = synthesized.resources("AWS::Batch::JobDefinition").values()
    assert job["Properties"]["PlatformCapabilities"] == ["FARGATE"]
    container = job["Properties"]["ContainerProperties"]
    assert container["NetworkConfiguration"]["AssignPublicIp"] == "DISABLED"
    assert container["LogConfiguration"]["LogDriver"] == "awslogs"


def test_log_groups_have_retention_and_every_container_logs(synthesized: Synthesized):
    groups = synthesized.resources("AWS::Logs::LogGroup")
    assert len(groups) >= 6
    assert {g["Properties"].get("RetentionInDays") for g in groups.values()} == {30}
    for name, container in containers(synthesized).items():
        assert container["LogConfiguration"]["LogDriver"] == "awslogs", name


def test_network_has_an_s3_gateway_endpoint_and_flow_logs(synthesized: Synthesized):
    endpoints = endpoint_services(synthesized)
    assert set(endpoints) == {"Gateway"}, "interface endpoints are opt-in"
    assert ".s3" in endpoints["Gateway"]
    (flow_log,) = synthesized.resources("AWS::EC2::FlowLog").values()
    assert flow_log["Properties"]["LogDestinationType"] == "cloud-watch-logs"
    (nat,) = synthesized.resources("AWS::EC2::NatGateway").values()
    assert "public" in json.dumps(nat["Properties"]["SubnetId"]).lower()


def test_interface_endpoints_on_request_admit_only_the_vpc(synthesized_public: Synthesized):
    endpoints = endpoint_services(synthesized_public)
    for service in ("ecr.api", "ecr.dkr", "logs", "secretsmanager"):
        assert f".{service}" in endpoints["Interface"], service
    for group in synthesized_public.resources("AWS::EC2::SecurityGroup", "Network").values():
        for rule in group["Properties"].get("SecurityGroupIngress", []):
            assert rule["CidrIp"] == "10.40.0.0/16" and rule["FromPort"] == 443
