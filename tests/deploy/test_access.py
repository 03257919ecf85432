"""The synthesized app: who can reach the webserver, and what each role may do (least privilege,
no wildcard action on every resource)."""

from __future__ import annotations

import json

import pytest

from .conftest import Synthesized
from .templates import (
    actions_of,
    allow_statements,
    as_list,
    listeners,
    policy_statements,
    statements_of,
)

pytestmark = pytest.mark.deploy


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
    """Three services, the runs, and the heavy steps as ECS tasks: five task roles."""
    tasks = synthesized.resources("AWS::ECS::TaskDefinition", "Services")
    task_roles = {json.dumps(t["Properties"]["TaskRoleArn"]) for t in tasks.values()}
    assert len(task_roles) == len(tasks) == 5


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
    statements = statements_of(synthesized, "CodeLocationRole")
    objects = {r for s in statements for r in as_list(s["Resource"]) if isinstance(r, str)}
    assert {r.rsplit(":::", 1)[-1].split("-", 2)[-1] for r in objects if r.endswith("/*")} == {
        "raw-123456789012-eu-west-1/raw/*",
        "lake-123456789012-eu-west-1/lake/*",
    }
    actions = actions_of(statements)
    assert {"sqs:ReceiveMessage", "sqs:DeleteMessage", "s3:GetObject*", "s3:List*"} <= actions
    assert not any(a.startswith(("s3:Put", "s3:Delete", "ecs:", "iam:")) for a in actions)


def _glue_statements(synthesized: Synthesized, role_prefix: str) -> list[dict]:
    return [s for s in statements_of(synthesized, role_prefix)
            if any(a.startswith("glue:") for a in as_list(s["Action"]))]


def test_runs_may_do_what_pyicebergs_glue_catalog_does_on_the_platforms_tables(
        synthesized: Synthesized):
    """Create and commit Iceberg tables (GetDatabase, GetTable, CreateTable, UpdateTable) in the
    platform's database only; no partition writes, no drops, no new databases."""
    (statement,) = _glue_statements(synthesized, "RunRole")
    actions = set(as_list(statement["Action"]))
    assert {"glue:GetDatabase", "glue:GetTable", "glue:CreateTable",
            "glue:UpdateTable"} <= actions
    assert not actions & {"glue:DeleteTable", "glue:CreateDatabase", "glue:DeleteDatabase",
                          "glue:CreatePartition", "glue:BatchCreatePartition"}
    resources = {r.rsplit(":", 1)[-1] for r in as_list(statement["Resource"])}
    assert resources == {"catalog", "database/data_platform", "table/data_platform/*"}
    (batch,) = _glue_statements(synthesized, "BatchJobRole")
    assert not [a for a in as_list(batch["Action"])
                if a.startswith(("glue:Create", "glue:Update", "glue:Delete"))]
