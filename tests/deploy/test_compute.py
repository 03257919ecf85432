"""The deploy agrees with the compute code: what the Batch job and the ECS step task run, the
variables the stacks set against the ones the code reads, and what runs may do with heavy steps
(this queue and definition, this task definition, these roles)."""

from __future__ import annotations

import json
import re

import pytest

from .conftest import REPO, Synthesized, _synthesize
from .templates import (
    COMPUTE_VARIABLES,
    PLATFORM_VARIABLES,
    as_list,
    containers,
    statements_of,
    variables,
)

pytestmark = pytest.mark.deploy

ENTRY = ["python", "-m", "data_platform.compute.entry"]


def _job(synth: Synthesized) -> dict:
    (job,) = synth.resources("AWS::Batch::JobDefinition").values()
    return job["Properties"]


def _set_variables(synth: Synthesized) -> set[str]:
    found = set()
    for container in containers(synth).values():
        found |= {n for n in variables(container) if n.startswith("PLATFORM_")}
    found |= {e["Name"] for e in _job(synth)["ContainerProperties"]["Environment"]}
    return {n for n in found if n.startswith("PLATFORM_")}


def _code_reads() -> tuple[set[str], set[str]]:
    """(every PLATFORM_* name in the platform code, the ones definitions.py takes as EnvVar)."""
    names = set()
    for path in (REPO / "platform").rglob("*.py"):
        names |= set(re.findall(r"PLATFORM_[A-Z_]+[A-Z]", path.read_text()))
    definitions = (REPO / "platform" / "definitions.py").read_text()
    env_vars = set(re.findall(r'EnvVar\("(PLATFORM_[A-Z_]+)"\)', definitions))
    return names, env_vars


def test_batch_job_and_ecs_step_task_run_the_one_entry_point(synthesized: Synthesized):
    from data_platform.resources.compute import ENTRY_COMMAND

    assert ENTRY_COMMAND == ENTRY
    assert _job(synthesized)["ContainerProperties"]["Command"] == ENTRY
    step = containers(synthesized)["step"]
    assert step["Command"] == ENTRY
    assert step["_task"]["Family"] == "data-platform-step"
    (mount,) = step["MountPoints"]
    assert mount["ContainerPath"] == variables(step)["PLATFORM_SCRATCH_DIR"]
    # Same role and security group whichever way the step is launched.
    job_role = _job(synthesized)["ContainerProperties"]["JobRoleArn"]
    assert step["_task"]["TaskRoleArn"] == job_role


def test_every_variable_set_is_read_and_every_one_needed_is_set(synthesized: Synthesized):
    read, needed = _code_reads()
    set_here = _set_variables(synthesized)
    assert set_here - read == set()
    run = set(variables(containers(synthesized)["run"]))
    assert needed - run == set(), "definitions.py takes these as EnvVar; runs must have them"
    assert COMPUTE_VARIABLES <= needed


def test_compute_variables_name_the_deployed_resources(synthesized: Synthesized):
    env = variables(containers(synthesized)["run"])
    assert env["PLATFORM_COMPUTE"] == "batch"
    assert env["PLATFORM_ECS_TASK_DEFINITION"] == "data-platform-step"
    assert env["PLATFORM_ECS_CONTAINER"] == "step"
    subnets = json.dumps(env["PLATFORM_ECS_SUBNETS"]).lower()
    assert subnets.count("privatesubnet") == 2 and "public" not in subnets, subnets
    assert "BatchSecurityGroup" in json.dumps(env["PLATFORM_ECS_SECURITY_GROUPS"])
    lake_bucket = re.fullmatch(r"s3://([^/]+)/.+", env["PLATFORM_LAKE_URL"]).group(1)
    assert (env["PLATFORM_PIPES_BUCKET"], env["PLATFORM_PIPES_PREFIX"]) == (lake_bucket, "pipes")
    # Message chunks do not pile up in the lake.
    rules = [r for b in synthesized.resources("AWS::S3::Bucket").values()
             if b["Properties"].get("BucketName") == lake_bucket
             for r in b["Properties"]["LifecycleConfiguration"]["Rules"]]
    assert any(r.get("Prefix") == "pipes/" and r.get("ExpirationInDays") for r in rules)
    # Code that does not launch steps does not get their settings.
    for name in ("code-location", "step"):
        assert not COMPUTE_VARIABLES & set(variables(containers(synthesized)[name])), name


def test_runs_start_only_step_tasks_and_pass_only_their_roles(synthesized: Synthesized):
    statements = statements_of(synthesized, "RunRole")
    (run_task,) = [s for s in statements if "ecs:RunTask" in as_list(s["Action"])]
    assert as_list(run_task["Resource"]) == [
        "arn:aws:ecs:eu-west-1:123456789012:task-definition/data-platform-step:*"
    ]
    assert "ecs:cluster" in json.dumps(run_task["Condition"])
    (pass_role,) = [s for s in statements if "iam:PassRole" in as_list(s["Action"])]
    passed = {r["Fn::GetAtt"][0] for r in as_list(pass_role["Resource"])}
    assert {p.rstrip("0123456789ABCDEF") for p in passed} == {"BatchJobRole", "StepExecutionRole"}
    assert pass_role["Condition"] == {
        "StringEquals": {"iam:PassedToService": "ecs-tasks.amazonaws.com"}
    }


def test_runs_submit_describe_and_stop_only_the_platforms_batch_jobs(synthesized: Synthesized):
    from data_platform.resources.compute_aws import JOB_QUEUE_TAG

    statements = statements_of(synthesized, "RunRole")
    by_action = {a: s for s in statements for a in as_list(s["Action"]) if a.startswith("batch:")}
    assert set(by_action) == {"batch:SubmitJob", "batch:TagResource", "batch:TerminateJob",
                              "batch:DescribeJobs"}
    submit = json.dumps(by_action["batch:SubmitJob"]["Resource"])
    assert "JobQueue" in submit and "job-definition/data-platform-tensors" in submit
    assert "*" not in submit.replace("data-platform-tensors:*", "")
    terminate = by_action["batch:TerminateJob"]
    assert terminate["Condition"] == {
        "StringEquals": {f"aws:ResourceTag/{JOB_QUEUE_TAG}": "data-platform-tensors"}}
    assert by_action["batch:TagResource"]["Condition"] == {
        "StringEquals": {f"aws:RequestTag/{JOB_QUEUE_TAG}": "data-platform-tensors"}}
    # DescribeJobs has no resource-level permissions: alone in its statement.
    assert as_list(by_action["batch:DescribeJobs"]["Action"]) == ["batch:DescribeJobs"]
    (queue,) = synthesized.resources("AWS::Batch::JobQueue").values()
    assert queue["Properties"]["JobQueueName"] == "data-platform-tensors"


def test_ecs_launcher_is_chosen_by_context(deploy_modules, tmp_path_factory):
    synth = _synthesize(deploy_modules, {"image_tag": "t", "compute_launcher": "ecs"},
                        tmp_path_factory.mktemp("cdk-ecs"))
    assert synth.validation_error is None, synth.validation_error
    assert variables(containers(synth)["run"])["PLATFORM_COMPUTE"] == "ecs"
    settings = deploy_modules["stacks.settings"]
    with pytest.raises(ValueError, match="compute_launcher must be one of batch, ecs"):
        settings.DeploySettings(compute_launcher="lambda")


def test_platform_variables_of_the_templates_helper_are_read(synthesized: Synthesized):
    read, _ = _code_reads()
    assert {v for v in PLATFORM_VARIABLES | COMPUTE_VARIABLES if v.startswith("PLATFORM_")} <= read
