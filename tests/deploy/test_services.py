"""The synthesized app: cdk-nag, the three services and what they run, the run task definition
the launcher reuses, and the variables every process reads. No logical IDs are pinned."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from .conftest import DEPLOY, IMAGE_TAG, REPO, Synthesized
from .templates import (
    ContextNode,
    INSTANCE_VARIABLES,
    COMPUTE_VARIABLES,
    PLATFORM_VARIABLES,
    containers,
    dockerfile_cmd,
    service_containers,
    variables,
)

pytestmark = pytest.mark.deploy


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


def test_batch_jobs_retry_lost_capacity_and_nothing_else(synthesized: Synthesized):
    """A reclaimed host or Spot instance retries the job; an error of the job itself exits
    (AWS retries whatever matches no condition, so the catch-all EXIT must come last)."""
    for job in synthesized.resources("AWS::Batch::JobDefinition").values():
        strategy = job["Properties"]["RetryStrategy"]
        assert strategy["Attempts"] >= 2
        rules = [(r["Action"].upper(), r.get("OnStatusReason") or r.get("OnReason"))
                 for r in strategy["EvaluateOnExit"]]
        assert ("RETRY", "Host EC2*") in rules
        assert rules[-1] == ("EXIT", "*")
        assert all(a == "RETRY" for a, _ in rules[:-1])


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
    """The code location (sensors), run tasks, Batch jobs and ECS step tasks all run platform
    code; runs also launch the heavy steps, the code location consumes upload events."""
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
        ("step", variables(by_name["step"])),
    ):
        missing = PLATFORM_VARIABLES - set(env)
        assert not missing, (name, missing)
        assert env["PLATFORM_ENV"] == "aws"
        assert env["PLATFORM_SCRATCH_DIR"] == "/mnt/scratch"

    assert COMPUTE_VARIABLES <= set(variables(by_name["run"]))
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
    code_location = variables(by_name["code-location"])
    assert "RawEvents" in json.dumps(code_location["PLATFORM_RAW_EVENTS_QUEUE_URL"])


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


def test_context_values_from_the_command_line_are_parsed_and_checked(deploy_modules):
    """`-c key=value` arrives as strings; bad values stop the synth with the key's name."""
    settings = deploy_modules["stacks.settings"]

    parsed = settings.DeploySettings.from_context(
        ContextNode({"interface_endpoints": "true", "max_azs": "3", "db_multi_az": "False"})
    )
    assert (parsed.interface_endpoints, parsed.max_azs, parsed.db_multi_az) == (True, 3, False)
    with pytest.raises(ValueError, match="max_azs must be an integer"):
        settings.DeploySettings.from_context(ContextNode({"max_azs": "two"}))
    with pytest.raises(ValueError, match="db_multi_az must be true or false"):
        settings.DeploySettings.from_context(ContextNode({"db_multi_az": "maybe"}))
    with pytest.raises(ValueError, match="log_retention_days must be one of"):
        settings.DeploySettings(log_retention_days=31)


def test_cdk_json_runs_the_app_with_python():
    cdk_json = json.loads((DEPLOY / "cdk.json").read_text())
    assert cdk_json["app"] == "python3 app.py"
    assert Path(DEPLOY / "app.py").exists()
