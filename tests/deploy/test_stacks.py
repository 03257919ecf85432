"""The synthesized CloudFormation of the deploy app: what runs, who may do what, and what is
encrypted, private and retained. Assertions read the templates; no logical IDs are pinned."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from .conftest import DEPLOY, IMAGE_TAG, REPO, Synthesized

pytestmark = pytest.mark.deploy

PLATFORM_VARIABLES = {
    "PLATFORM_ENV",
    "PLATFORM_RAW_URL",
    "PLATFORM_LAKE_URL",
    "PLATFORM_GLUE_DATABASE",
    "PLATFORM_ATHENA_WORKGROUP",
    "PLATFORM_ATHENA_OUTPUT_URL",
    "PLATFORM_SCRATCH_DIR",
    "PLATFORM_RAW_EVENTS_QUEUE_URL",
    "PLATFORM_BATCH_JOB_QUEUE",
    "PLATFORM_BATCH_JOB_DEFINITION",
    "PLATFORM_ECS_CLUSTER",
    "AWS_REGION",
}
INSTANCE_VARIABLES = {
    "DAGSTER_PG_HOST",
    "DAGSTER_PG_PORT",
    "DAGSTER_PG_DB",
    "DAGSTER_PG_USERNAME",
    "DAGSTER_PG_PASSWORD",
}


# --- helpers -----------------------------------------------------------------------------------


def containers(synth: Synthesized) -> dict[str, dict[str, Any]]:
    """Container definitions of every ECS task definition, by container name."""
    found = {}
    for task in synth.resources("AWS::ECS::TaskDefinition").values():
        for container in task["Properties"]["ContainerDefinitions"]:
            found[container["Name"]] = {**container, "_task": task["Properties"]}
    return found


def variables(container: dict[str, Any]) -> dict[str, Any]:
    """Plain environment values and secrets of a container, by name (secrets as valueFrom)."""
    env = {e["Name"]: e["Value"] for e in container.get("Environment", [])}
    secrets = {s["Name"]: s["ValueFrom"] for s in container.get("Secrets", [])}
    return {**env, **secrets}


def service_containers(synth: Synthesized) -> dict[str, dict[str, Any]]:
    """The container each ECS service runs, by service name."""
    tasks = synth.resources("AWS::ECS::TaskDefinition")
    found = {}
    for service in synth.resources("AWS::ECS::Service").values():
        task_id = service["Properties"]["TaskDefinition"]["Ref"]
        (container,) = tasks[task_id]["Properties"]["ContainerDefinitions"]
        found[service["Properties"]["ServiceName"]] = {**container, "_service": service}
    return found


def allow_statements(synth: Synthesized) -> list[tuple[str, dict[str, Any]]]:
    """Every Allow statement of every identity policy in the app, with the policy's id."""
    found = []
    for policy_type in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
        for logical_id, policy in synth.resources(policy_type).items():
            for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
                found.append((logical_id, statement))
    for logical_id, role in synth.resources("AWS::IAM::Role").items():
        for policy in role["Properties"].get("Policies", []):
            for statement in policy["PolicyDocument"]["Statement"]:
                found.append((logical_id, statement))
    return [(i, s) for i, s in found if s["Effect"] == "Allow"]


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def statements_of(synth: Synthesized, role_prefix: str) -> list[dict[str, Any]]:
    """Statements of the default policy attached to the role whose logical id starts with
    `role_prefix` (for example "DaemonRole")."""
    roles = [i for i in synth.resources("AWS::IAM::Role", "Services") if i.startswith(role_prefix)]
    assert len(roles) == 1, roles
    found = []
    for policy in synth.resources("AWS::IAM::Policy", "Services").values():
        if {"Ref": roles[0]} in policy["Properties"]["Roles"]:
            found.extend(policy["Properties"]["PolicyDocument"]["Statement"])
    return found


def actions_of(statements: list[dict[str, Any]]) -> set[str]:
    return {a for s in statements for a in as_list(s["Action"])}


def dockerfile_cmd() -> list[str]:
    lines = (DEPLOY / "Dockerfile").read_text().splitlines()
    (line,) = [text for text in lines if text.startswith("CMD ")]
    return json.loads(line.removeprefix("CMD "))


# --- cdk-nag ----------------------------------------------------------------------------------


def test_cdk_nag_aws_solutions_passes(synthesized: Synthesized):
    assert synthesized.validation_error is None, (
        synthesized.validation_error,
        json.dumps(synthesized.validation_report, indent=1)[:6000],
    )
    for plugin in (synthesized.validation_report or {}).get("pluginReports", []):
        errors = [v for v in plugin.get("violations", []) if v.get("severity") == "error"]
        assert not errors, errors


def test_cdk_nag_passes_for_public_webserver(synthesized_public: Synthesized):
    assert synthesized_public.validation_error is None, synthesized_public.validation_error


def test_cdk_nag_really_runs_during_synthesis(synthesized: Synthesized, deploy_modules):
    """The pack reports unacknowledged findings on this very app: the passing test above is not
    passing because nothing was checked."""
    from cdk_nag import AwsSolutionsChecks

    report = AwsSolutionsChecks().validate_scope(synthesized.app)
    assert report.success, [(v.rule_name, v.severity) for v in report.violations]
    nag = deploy_modules["components.nag"]
    with pytest.raises(ValueError, match="unreviewed service-wide action"):
        nag._review_statement({"Effect": "Allow", "Action": "*", "Resource": "*"}, "probe")
    with pytest.raises(ValueError, match="Resource '\\*'"):
        nag._review_statement(
            {"Effect": "Allow", "Action": ["s3:PutObject"], "Resource": "*"}, "probe"
        )


def test_every_acknowledgment_carries_a_reason(synthesized: Synthesized):
    import aws_cdk as cdk

    key = cdk.Validations.ACKNOWLEDGED_RULES_METADATA_KEY
    acknowledged: dict[str, str] = {}
    for construct in synthesized.app.node.find_all():
        for entry in construct.node.metadata:
            if entry.type == key and entry.data:
                for rule, reason in dict(entry.data).items():
                    acknowledged[f"{construct.node.path} {rule}"] = reason
    assert acknowledged, "expected reviewed acknowledgments (ECS2, IAM5, ...)"
    weak = {k: r for k, r in acknowledged.items() if len(str(r).split()) < 8}
    assert not weak, weak
    assert not any("IAM5[Action::*]" in k for k in acknowledged)


# --- services ---------------------------------------------------------------------------------


def test_three_services_run_the_dagster_processes(synthesized: Synthesized, deploy_modules):
    services = service_containers(synthesized)
    assert len(services) == 3
    by_role = {
        "webserver": services["data-platform-webserver"],
        "daemon": services["data-platform-daemon"],
        "code": services["data-platform-code-location"],
    }
    workspace = "/opt/dagster/dagster_home/workspace.yaml"
    assert by_role["webserver"]["Command"] == [
        "dagster-webserver",
        "-h",
        "0.0.0.0",
        "-p",
        "3000",
        "-w",
        workspace,
    ]
    assert by_role["daemon"]["Command"] == ["dagster-daemon", "run", "-w", workspace]
    code = by_role["code"]["Command"]
    assert code == dockerfile_cmd(), "the code location runs the image's default command"
    assert code[:3] == ["dagster", "code-server", "start"]
    assert code[code.index("-p") + 1] == "4000"
    assert code[code.index("-m") + 1] == "data_platform.definitions"
    assert by_role["webserver"]["PortMappings"][0]["ContainerPort"] == 3000
    assert by_role["code"]["PortMappings"][0]["ContainerPort"] == 4000
    assert by_role["code"]["HealthCheck"]["Command"][1:4] == ["dagster", "api", "grpc-health-check"]
    for container in services.values():
        service = container["_service"]["Properties"]
        assert service["LaunchType"] == "FARGATE"
        assert service["DesiredCount"] == 1
        network = service["NetworkConfiguration"]["AwsvpcConfiguration"]
        assert network["AssignPublicIp"] == "DISABLED"
        assert all("private" in json.dumps(s).lower() for s in network["Subnets"])


def test_one_image_everywhere(synthesized: Synthesized):
    images = {json.dumps(c["Image"], sort_keys=True) for c in containers(synthesized).values()}
    for job in synthesized.resources("AWS::Batch::JobDefinition").values():
        images.add(json.dumps(job["Properties"]["ContainerProperties"]["Image"], sort_keys=True))
    assert len(images) == 1, images
    (image,) = images
    assert f":{IMAGE_TAG}" in image and "ecr" in image


def test_daemon_never_overlaps_itself(synthesized: Synthesized):
    daemon = service_containers(synthesized)["data-platform-daemon"]["_service"]["Properties"]
    assert daemon["DeploymentConfiguration"]["MaximumPercent"] == 100
    assert daemon["DeploymentConfiguration"]["MinimumHealthyPercent"] == 0


def test_workspace_points_at_the_code_location_service(synthesized: Synthesized):
    workspace = yaml.safe_load((DEPLOY / "workspace.yaml").read_text())
    (entry,) = workspace["load_from"]
    server = entry["grpc_server"]
    (namespace,) = synthesized.resources("AWS::ServiceDiscovery::PrivateDnsNamespace").values()
    (discovery,) = synthesized.resources("AWS::ServiceDiscovery::Service").values()
    assert server["host"] == f"{discovery['Properties']['Name']}.{namespace['Properties']['Name']}"
    assert server["port"] == 4000
    code = service_containers(synthesized)["data-platform-code-location"]
    assert code["_service"]["Properties"]["ServiceRegistries"], "registered in Cloud Map"
    pyproject = (REPO / "pyproject.toml").read_text()
    assert f'code_location_name = "{server["location_name"]}"' in pyproject


def test_platform_code_gets_every_platform_variable(synthesized: Synthesized):
    """The code location (sensors), run tasks and Batch jobs all run platform code."""
    by_name = containers(synthesized)
    batch = synthesized.resources("AWS::Batch::JobDefinition")
    (job,) = batch.values()
    batch_env = {
        e["Name"]: e["Value"] for e in job["Properties"]["ContainerProperties"]["Environment"]
    }
    for name, env in (
        ("code-location", variables(by_name["code-location"])),
        ("run", variables(by_name["run"])),
        ("batch", batch_env),
    ):
        missing = PLATFORM_VARIABLES - set(env)
        assert not missing, (name, missing)
        assert env["PLATFORM_ENV"] == "aws"
        assert env["PLATFORM_SCRATCH_DIR"] == "/mnt/scratch"

    env = variables(by_name["run"])
    buckets = {
        b["Properties"]["BucketName"] for b in synthesized.resources("AWS::S3::Bucket").values()
    }
    raw_bucket, raw_prefix = re.fullmatch(r"s3://([^/]+)/(.+)", env["PLATFORM_RAW_URL"]).groups()
    lake_bucket, lake_prefix = re.fullmatch(r"s3://([^/]+)/(.+)", env["PLATFORM_LAKE_URL"]).groups()
    assert {raw_bucket, lake_bucket} <= buckets and raw_bucket != lake_bucket
    assert (raw_prefix, lake_prefix) == ("raw", "lake")
    assert env["PLATFORM_ATHENA_OUTPUT_URL"] == f"s3://{lake_bucket}/athena-results/"
    (workgroup,) = synthesized.resources("AWS::Athena::WorkGroup").values()
    assert env["PLATFORM_ATHENA_WORKGROUP"] == workgroup["Properties"]["Name"]
    (database,) = synthesized.resources("AWS::Glue::Database").values()
    assert env["PLATFORM_GLUE_DATABASE"] == database["Properties"]["DatabaseInput"]["Name"]
    (queue,) = synthesized.resources("AWS::Batch::JobQueue").values()
    assert env["PLATFORM_BATCH_JOB_QUEUE"] == queue["Properties"]["JobQueueName"]
    assert env["PLATFORM_BATCH_JOB_DEFINITION"] == job["Properties"]["JobDefinitionName"]
    (cluster,) = synthesized.resources("AWS::ECS::Cluster").values()
    assert env["PLATFORM_ECS_CLUSTER"] == cluster["Properties"]["ClusterName"]
    assert "RawEvents" in json.dumps(env["PLATFORM_RAW_EVENTS_QUEUE_URL"])


def test_instance_variables_of_dagster_yaml_are_set(synthesized: Synthesized):
    """Every `env:` the instance config reads is set on every Dagster process."""
    config = yaml.safe_load((DEPLOY / "dagster.yaml").read_text())

    def env_names(node: Any) -> set[str]:
        if isinstance(node, dict):
            if set(node) == {"env"}:
                return {node["env"]}
            return set().union(*(env_names(v) for v in node.values())) if node else set()
        if isinstance(node, list):
            return set().union(*(env_names(v) for v in node)) if node else set()
        return set()

    needed = env_names(config)
    assert INSTANCE_VARIABLES <= needed
    by_name = containers(synthesized)
    for name in ("webserver", "daemon", "code-location", "run"):
        have = set(variables(by_name[name]))
        launcher_only = {"DAGSTER_RUN_TASK_DEFINITION"}
        expected = needed if name in ("webserver", "daemon") else needed - launcher_only
        assert expected <= have, (name, expected - have)
        password = by_name[name].get("Secrets", [])
        assert [s["Name"] for s in password] == ["DAGSTER_PG_PASSWORD"]
        assert "secretsmanager" in json.dumps(password[0]["ValueFrom"]) or "Ref" in json.dumps(
            password[0]["ValueFrom"]
        )
        assert "DAGSTER_PG_PASSWORD" not in {e["Name"] for e in by_name[name]["Environment"]}


def test_run_task_definition_is_what_the_launcher_expects(synthesized: Synthesized):
    launcher = yaml.safe_load((DEPLOY / "dagster.yaml").read_text())["run_launcher"]["config"]
    by_name = containers(synthesized)
    run = by_name[launcher["container_name"]]
    task = run["_task"]
    assert run.get("Command") is None, "the launcher sets the command of each run"
    assert task["Cpu"] == launcher["run_resources"]["cpu"]
    assert task["Memory"] == launcher["run_resources"]["memory"]
    assert task["RequiresCompatibilities"] == ["FARGATE"]
    (volume,) = task["Volumes"]
    efs = volume["EFSVolumeConfiguration"]
    assert efs["TransitEncryption"] == "ENABLED"
    assert efs["AuthorizationConfig"]["IAM"] == "ENABLED"
    assert efs["AuthorizationConfig"]["AccessPointId"]
    (mount,) = run["MountPoints"]
    assert mount["ContainerPath"] == variables(run)["PLATFORM_SCRATCH_DIR"]
    assert mount["SourceVolume"] == volume["Name"]
    # The webserver and daemon name this very task definition to the launcher.
    run_task_id = [
        i
        for i, t in synthesized.resources("AWS::ECS::TaskDefinition").items()
        if t["Properties"] is task
    ][0]
    for name in ("webserver", "daemon"):
        assert variables(by_name[name])["DAGSTER_RUN_TASK_DEFINITION"] == {"Ref": run_task_id}
    assert launcher["task_definition"] == {"env": "DAGSTER_RUN_TASK_DEFINITION"}


def test_no_image_tag_means_no_running_tasks(synthesized_public: Synthesized):
    services = service_containers(synthesized_public)
    assert {s["_service"]["Properties"]["DesiredCount"] for s in services.values()} == {0}


# --- storage ----------------------------------------------------------------------------------


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
    (config,) = props["NotificationConfiguration"]["QueueConfigurations"]
    assert config["Events"] == ["s3:ObjectCreated:*"]
    assert config["Filter"]["Key"]["FilterRules"] == [{"Name": "prefix", "Value": "raw/"}]
    queue_id = config["QueueArn"]["Fn::GetAtt"][0]
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


def endpoint_services(synth: Synthesized) -> dict[str, str]:
    """VPC endpoints by type: the service names as one string."""
    found: dict[str, list] = {}
    for e in synth.resources("AWS::EC2::VPCEndpoint").values():
        kind = e["Properties"].get("VpcEndpointType", "Gateway")
        found.setdefault(kind, []).append(e["Properties"]["ServiceName"])
    return {kind: json.dumps(names) for kind, names in found.items()}


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


# --- webserver access ---------------------------------------------------------------------------


def listeners(synth: Synthesized) -> list[dict[str, Any]]:
    return [
        listener["Properties"]
        for listener in synth.resources("AWS::ElasticLoadBalancingV2::Listener").values()
    ]


def test_webserver_is_internal_by_default(synthesized: Synthesized):
    (alb,) = synthesized.resources("AWS::ElasticLoadBalancingV2::LoadBalancer").values()
    assert alb["Properties"]["Scheme"] == "internal"
    assert all("private" in json.dumps(s).lower() for s in alb["Properties"]["Subnets"])
    for group in synthesized.resources("AWS::EC2::SecurityGroup").values():
        for rule in group["Properties"].get("SecurityGroupIngress", []):
            assert rule.get("CidrIp") != "0.0.0.0/0", rule
    for ingress in synthesized.resources("AWS::EC2::SecurityGroupIngress").values():
        assert ingress["Properties"].get("CidrIp") != "0.0.0.0/0", ingress


def test_public_webserver_authenticates_every_request(synthesized_public: Synthesized):
    (alb,) = synthesized_public.resources("AWS::ElasticLoadBalancingV2::LoadBalancer").values()
    assert alb["Properties"]["Scheme"] == "internet-facing"
    found = listeners(synthesized_public)
    assert len(found) == 2
    for listener in found:
        actions = sorted(listener["DefaultActions"], key=lambda a: a.get("Order", 0))
        if listener["Port"] == 443:
            assert listener["Protocol"] == "HTTPS"
            assert actions[0]["Type"] in ("authenticate-cognito", "authenticate-oidc")
            assert actions[-1]["Type"] == "forward"
        else:
            assert [a["Type"] for a in actions] == ["redirect"]
            assert actions[0]["RedirectConfig"]["Protocol"] == "HTTPS"


def test_public_webserver_without_certificate_is_refused(deploy_modules):
    settings = deploy_modules["stacks.settings"]
    with pytest.raises(ValueError, match="certificate_arn"):
        settings.DeploySettings(webserver_access="oidc")
    with pytest.raises(ValueError, match="webserver_access must be one of"):
        settings.DeploySettings(webserver_access="public")


# --- IAM ----------------------------------------------------------------------------------------


def policy_statements(node: Any) -> list[dict[str, Any]]:
    """Every statement of every policy document anywhere in a template (IAM, bucket, queue,
    file system policies)."""
    found = []
    if isinstance(node, dict):
        if isinstance(node.get("Statement"), list):
            found.extend(node["Statement"])
        for value in node.values():
            found.extend(policy_statements(value))
    elif isinstance(node, list):
        for value in node:
            found.extend(policy_statements(value))
    return found


def test_no_statement_allows_any_action_on_any_resource(synthesized: Synthesized):
    everywhere = [s for t in synthesized.templates.values() for s in policy_statements(t)]
    assert len(everywhere) > len(allow_statements(synthesized))
    for statement in everywhere:
        assert "*" not in as_list(statement.get("Action", [])), statement
    statements = allow_statements(synthesized)
    assert statements
    for logical_id, statement in statements:
        actions = as_list(statement["Action"])
        resources = as_list(statement.get("Resource", []))
        assert "*" not in actions, (logical_id, statement)
        assert not any(a.endswith(":*") for a in actions), (logical_id, statement)
        if "*" in resources:
            assert all(":" in a and not a.endswith("*") for a in actions), (logical_id, statement)


def test_one_role_per_service_and_for_runs(synthesized: Synthesized):
    tasks = synthesized.resources("AWS::ECS::TaskDefinition", "Services")
    task_roles = {json.dumps(t["Properties"]["TaskRoleArn"]) for t in tasks.values()}
    assert len(task_roles) == len(tasks) == 4


def test_daemon_launches_only_run_tasks_and_passes_only_run_roles(synthesized: Synthesized):
    statements = statements_of(synthesized, "DaemonRole")
    run_task = [s for s in statements if "ecs:RunTask" in as_list(s["Action"])]
    assert len(run_task) == 1
    assert as_list(run_task[0]["Resource"]) == [
        "arn:aws:ecs:eu-west-1:123456789012:task-definition/data-platform-run:*"
    ]
    assert "ecs:cluster" in json.dumps(run_task[0]["Condition"])
    tag = [s for s in statements if "ecs:TagResource" in as_list(s["Action"])]
    assert tag and tag[0]["Condition"] == {"StringEquals": {"ecs:CreateAction": "RunTask"}}
    (pass_role,) = [s for s in statements if "iam:PassRole" in as_list(s["Action"])]
    passed = {r["Fn::GetAtt"][0] for r in as_list(pass_role["Resource"])}
    assert {p.rstrip("0123456789ABCDEF") for p in passed} == {"RunRole", "RunExecutionRole"}
    assert pass_role["Condition"] == {
        "StringEquals": {"iam:PassedToService": "ecs-tasks.amazonaws.com"}
    }
    assert not any(
        a.startswith(("s3:", "glue:", "athena:", "batch:")) for a in actions_of(statements)
    )


def test_runs_reach_only_the_platforms_own_resources(synthesized: Synthesized):
    statements = statements_of(synthesized, "RunRole")
    actions = actions_of(statements)
    assert {
        "s3:PutObject",
        "glue:CreateTable",
        "athena:StartQueryExecution",
        "batch:SubmitJob",
        "elasticfilesystem:ClientWrite",
    } <= actions
    text = json.dumps(statements)
    # Raw is read-only for runs: nothing that writes names the raw bucket.
    for statement in statements:
        if any(
            a.startswith(("s3:Put", "s3:Delete", "s3:Abort")) for a in as_list(statement["Action"])
        ):
            assert "-raw-" not in json.dumps(statement["Resource"]), statement
    assert "table/data_platform/*" in text and "workgroup/data-platform" in text
    submit = [s for s in statements if "batch:SubmitJob" in as_list(s["Action"])]
    assert submit and all("*" != r for s in submit for r in as_list(s["Resource"]))


def test_code_location_reads_raw_and_consumes_the_queue(synthesized: Synthesized):
    actions = actions_of(statements_of(synthesized, "CodeLocationRole"))
    assert {"sqs:ReceiveMessage", "sqs:DeleteMessage", "s3:GetObject*", "s3:List*"} <= actions
    assert not any(a.startswith(("s3:Put", "s3:Delete", "ecs:", "iam:")) for a in actions)


def test_cdk_json_runs_the_app_with_python():
    cdk_json = json.loads((DEPLOY / "cdk.json").read_text())
    assert cdk_json["app"] == "python3 app.py"
    assert Path(DEPLOY / "app.py").exists()


def test_context_values_from_the_command_line_are_parsed_and_checked(deploy_modules):
    """`-c key=value` arrives as strings; bad values stop the synth with the key's name."""
    settings = deploy_modules["stacks.settings"]

    class FakeNode:
        def __init__(self, values: dict[str, str]):
            self.values = values

        def try_get_context(self, key: str):
            return self.values.get(key)

    parsed = settings.DeploySettings.from_context(
        FakeNode({"interface_endpoints": "true", "max_azs": "3", "db_multi_az": "False"})
    )
    assert (parsed.interface_endpoints, parsed.max_azs, parsed.db_multi_az) == (True, 3, False)
    with pytest.raises(ValueError, match="max_azs must be an integer"):
        settings.DeploySettings.from_context(FakeNode({"max_azs": "two"}))
    with pytest.raises(ValueError, match="db_multi_az must be true or false"):
        settings.DeploySettings.from_context(FakeNode({"db_multi_az": "maybe"}))
    with pytest.raises(ValueError, match="log_retention_days must be one of"):
        settings.DeploySettings(log_retention_days=31)
