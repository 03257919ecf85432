"""Reading the synthesized templates: containers, their variables, services, policy statements.
Helpers for the deploy tests; nothing here synthesizes."""

from __future__ import annotations

import json
from typing import Any

from .conftest import DEPLOY, Synthesized

PLATFORM_VARIABLES = {
    "PLATFORM_ENV",
    "PLATFORM_RAW_URL",
    "PLATFORM_LAKE_URL",
    "PLATFORM_GLUE_DATABASE",
    "PLATFORM_ATHENA_WORKGROUP",
    "PLATFORM_ATHENA_OUTPUT_URL",
    "PLATFORM_SCRATCH_DIR",
    "AWS_REGION",
}
# What runs need to launch heavy steps (resources.compute_aws through definitions.py).
COMPUTE_VARIABLES = {
    "PLATFORM_COMPUTE",
    "PLATFORM_PIPES_BUCKET",
    "PLATFORM_PIPES_PREFIX",
    "PLATFORM_BATCH_JOB_QUEUE",
    "PLATFORM_BATCH_JOB_DEFINITION",
    "PLATFORM_ECS_CLUSTER",
    "PLATFORM_ECS_TASK_DEFINITION",
    "PLATFORM_ECS_CONTAINER",
    "PLATFORM_ECS_SUBNETS",
    "PLATFORM_ECS_SECURITY_GROUPS",
}


INSTANCE_VARIABLES = {
    "DAGSTER_PG_HOST",
    "DAGSTER_PG_PORT",
    "DAGSTER_PG_DB",
    "DAGSTER_PG_USERNAME",
    "DAGSTER_PG_PASSWORD",
}


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


def endpoint_services(synth: Synthesized) -> dict[str, str]:
    """VPC endpoints by type: the service names as one string."""
    found: dict[str, list] = {}
    for e in synth.resources("AWS::EC2::VPCEndpoint").values():
        kind = e["Properties"].get("VpcEndpointType", "Gateway")
        found.setdefault(kind, []).append(e["Properties"]["ServiceName"])
    return {kind: json.dumps(names) for kind, names in found.items()}


def listeners(synth: Synthesized) -> list[dict[str, Any]]:
    return [
        listener["Properties"]
        for listener in synth.resources("AWS::ElasticLoadBalancingV2::Listener").values()
    ]


class ContextNode:
    """A stand-in for a CDK construct node: `try_get_context` over a dict (what `cdk synth -c
    key=value` gives the app), for parsing settings without synthesizing."""

    def __init__(self, values: dict[str, str]):
        self.values = values

    def try_get_context(self, key: str):
        return self.values.get(key)
