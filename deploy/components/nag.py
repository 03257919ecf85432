"""Reviewed cdk-nag acknowledgments.

cdk-nag 3 reports through CDK's policy validation and reads acknowledgments from construct
metadata (`Validations.of(scope).acknowledge`). Rules are acknowledged one finding at a time, and a
wildcard finding (AwsSolutions-IAM5) is named after the flattened resource string, which contains
logical IDs. `acknowledge_reviewed_iam_wildcards` therefore inspects each IAM policy of a stack,
accepts only the kinds of wildcard listed in `_REVIEWED_WILDCARDS`, acknowledges exactly those
findings with the reason of their kind, and raises on anything else, so a new wildcard fails synth
until someone reviews it here.

Call it at the end of a stack's constructor, after every grant, and keep IAM resources with a
wildcard free of references to other stacks (those only resolve at synth time).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from typing import Any

import aws_cdk as cdk
from aws_cdk import aws_iam as iam
from constructs import IConstruct

# IAM actions that do not support resource-level permissions, so "*" is their only resource.
NO_RESOURCE_LEVEL_ACTIONS = frozenset(
    {
        "ecr:GetAuthorizationToken",
        "ecs:DescribeTaskDefinition",
        "ec2:DescribeNetworkInterfaces",
        "batch:DescribeJobs",
        "athena:ListWorkGroups",
        "glue:GetDatabases",
        "xray:PutTraceSegments",
        "xray:PutTelemetryRecords",
        # ECS Exec (the lean profile's way to the webserver UI): the SSM agent's channels.
        "ssmmessages:CreateControlChannel",
        "ssmmessages:CreateDataChannel",
        "ssmmessages:OpenControlChannel",
        "ssmmessages:OpenDataChannel",
    }
)

# Action wildcards the aws-cdk-lib grant_* helpers emit (bucket, queue and log group grants).
CDK_GRANT_ACTION_WILDCARDS = frozenset(
    {
        "s3:GetObject*",
        "s3:GetBucket*",
        "s3:List*",
        "s3:DeleteObject*",
        "s3:Abort*",
        "s3:PutObject*",
    }
)

_REVIEWED_WILDCARDS: dict[str, str] = {
    "cdk-grant-action": (
        "Action wildcard emitted by an aws-cdk-lib grant_* helper (read or read-write on one "
        "bucket of this app); the statement's resources are that bucket and its keys only."
    ),
    "object-keys": (
        "Key wildcard below one named resource of this app (objects in one bucket or prefix, "
        "tables of the platform's Glue database, tasks of the platform's ECS cluster, revisions "
        "of one task or job definition, jobs of AWS Batch): the resource itself is fixed."
    ),
    "no-resource-level": (
        "These API actions (read-only ones such as ecs:DescribeTaskDefinition, "
        "ec2:DescribeNetworkInterfaces, batch:DescribeJobs, ecr:GetAuthorizationToken, and the "
        "ssmmessages channels of ECS Exec) do not support resource-level permissions; '*' is "
        "the only resource IAM accepts for them."
    ),
}


def acknowledge(scope: IConstruct, rule_id: str, reason: str) -> None:
    """Acknowledge one cdk-nag finding on `scope` (and everything below it) with its reason."""
    if len(reason.strip()) < 20:
        raise ValueError(f"acknowledging {rule_id} needs a real reason, got {reason!r}")
    cdk.Validations.of(scope).acknowledge(cdk.Acknowledgment(id=rule_id, reason=reason))


def flatten_cfn_reference(value: Any) -> str:
    """Render a resolved CloudFormation value the way cdk-nag names IAM5 findings."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value.replace("${", "<").replace("}", ">")
    if isinstance(value, dict):
        if "Fn::Join" in value:
            delimiter, items = value["Fn::Join"]
            return delimiter.join(flatten_cfn_reference(item) for item in items)
        if "Fn::Sub" in value:
            return flatten_cfn_reference(value["Fn::Sub"])
        if "Fn::GetAtt" in value:
            resource, attribute = value["Fn::GetAtt"]
            return f"<{flatten_cfn_reference(resource)}.{flatten_cfn_reference(attribute)}>"
        if "Fn::ImportValue" in value:
            return flatten_cfn_reference(value["Fn::ImportValue"])
        if "Ref" in value:
            return f"<{flatten_cfn_reference(value['Ref'])}>"
    return json.dumps(value, separators=(",", ":"))


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _review_statement(statement: dict[str, Any], where: str) -> dict[str, str]:
    """Map each wildcard finding of one statement to the reviewed kind it belongs to."""
    if statement.get("Effect") != "Allow":
        return {}
    actions = [str(a) for a in _as_list(statement.get("Action", []))]
    findings: dict[str, str] = {}
    for action in actions:
        if "*" not in action:
            continue
        if action == "*" or action.endswith(":*"):
            raise ValueError(f"{where}: unreviewed service-wide action {action!r}")
        if action not in CDK_GRANT_ACTION_WILDCARDS:
            raise ValueError(f"{where}: unreviewed action wildcard {action!r}")
        findings[f"AwsSolutions-IAM5[Action::{action}]"] = "cdk-grant-action"
    for resource in _as_list(statement.get("Resource", [])):
        flat = flatten_cfn_reference(resource)
        if "*" not in flat:
            continue
        if flat == "*":
            unsupported = sorted(set(actions) - NO_RESOURCE_LEVEL_ACTIONS)
            if unsupported:
                raise ValueError(f"{where}: Resource '*' for actions {unsupported}")
            findings[f"AwsSolutions-IAM5[Resource::{flat}]"] = "no-resource-level"
        elif re.search(r"[/:]\*$", flat) and flat.count("*") == 1:
            findings[f"AwsSolutions-IAM5[Resource::{flat}]"] = "object-keys"
        else:
            raise ValueError(f"{where}: unreviewed resource wildcard {flat!r}")
    return findings


def _policies(scope: IConstruct, skip: Sequence[IConstruct]) -> Iterable[tuple[IConstruct, Any]]:
    skipped = {s.node.path for s in skip}
    for child in scope.node.find_all():
        if any(child.node.path == p or child.node.path.startswith(p + "/") for p in skipped):
            continue
        if isinstance(child, (iam.CfnPolicy, iam.CfnManagedPolicy)):
            yield child, child.policy_document
        elif isinstance(child, iam.CfnRole) and child.policies:
            for policy in _as_list(child.policies):
                yield child, policy


def acknowledge_reviewed_iam_wildcards(stack: cdk.Stack, *, skip: Sequence[IConstruct] = ()) -> int:
    """Acknowledge AwsSolutions-IAM5 findings of reviewed kinds on every policy in `stack`.

    `skip` names constructs owned by aws-cdk-lib (custom-resource handlers) whose policies the
    caller acknowledges separately.

    Returns the number of acknowledged findings. Raises ValueError naming the policy when a
    statement holds a wildcard of no reviewed kind (including any `*` action).
    """
    count = 0
    for node, document in _policies(stack, skip):
        resolved = stack.resolve(document)
        if "PolicyDocument" in resolved:
            resolved = resolved["PolicyDocument"]
        findings: dict[str, str] = {}
        for statement in resolved.get("Statement", []):
            findings.update(_review_statement(statement, node.node.path))
        for finding, kind in sorted(findings.items()):
            acknowledge(node, finding, _REVIEWED_WILDCARDS[kind])
            count += 1
    return count
