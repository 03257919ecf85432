"""The lean deploy profile (`-c profile=lean`) next to the default one: no NAT gateway (tasks in
public subnets with public IPs and no inbound rule from the internet), no load balancer, a single
small database, the smallest service sizes, short log retention; the daemon can still launch runs
of any size; and the idle cost priced from the synthesized templates stays within $60 a month.
Synthesized in-process with cdk-nag, like the other deploy tests; no logical IDs are pinned."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from aws_cdk.assertions import Match, Template

from data_platform.sizing import fargate_pairs, size_for

from .conftest import DEPLOY, Synthesized
from .templates import ContextNode, as_list, service_containers, statements_of

pytestmark = pytest.mark.deploy

LEAN_BUDGET_USD = 60


def template(synth: Synthesized, stack: str) -> Template:
    return Template.from_json(synth.template(stack))


def service_sizes(synth: Synthesized) -> dict[str, tuple[str, str]]:
    """CPU units and memory of the task each service runs, by service name."""
    tasks = synth.resources("AWS::ECS::TaskDefinition")
    return {
        name: (
            tasks[c["_service"]["Properties"]["TaskDefinition"]["Ref"]]["Properties"]["Cpu"],
            tasks[c["_service"]["Properties"]["TaskDefinition"]["Ref"]]["Properties"]["Memory"],
        )
        for name, c in service_containers(synth).items()
    }


def ingress_rules(synth: Synthesized) -> list[dict[str, Any]]:
    """Every ingress rule in the app: inline on security groups and standalone ones."""
    rules = [
        rule
        for group in synth.resources("AWS::EC2::SecurityGroup").values()
        for rule in group["Properties"].get("SecurityGroupIngress", [])
    ]
    rules += [r["Properties"] for r in synth.resources("AWS::EC2::SecurityGroupIngress").values()]
    return rules


def test_lean_passes_cdk_nag(synthesized_lean: Synthesized):
    assert synthesized_lean.validation_error is None, synthesized_lean.validation_error


def test_no_nat_gateway_and_the_private_subnets_are_isolated(synthesized_lean: Synthesized):
    network = template(synthesized_lean, "Network")
    network.resource_count_is("AWS::EC2::NatGateway", 0)
    network.resource_count_is("AWS::EC2::EIP", 0)
    # The only default routes lead to the internet gateway, from the public subnets.
    routes = synthesized_lean.resources("AWS::EC2::Route", "Network").values()
    assert routes and all("GatewayId" in r["Properties"] for r in routes)
    assert all("public" in r["Properties"]["RouteTableId"]["Ref"] for r in routes)
    # S3 stays on the free gateway endpoint; no interface endpoint is bought.
    endpoints = synthesized_lean.resources("AWS::EC2::VPCEndpoint").values()
    assert [e["Properties"].get("VpcEndpointType", "Gateway") for e in endpoints] == ["Gateway"]
    # Database and file system sit in the isolated subnets, never the public ones.
    (subnet_group,) = synthesized_lean.resources("AWS::RDS::DBSubnetGroup").values()
    assert "privateSubnet" in json.dumps(subnet_group["Properties"]["SubnetIds"])
    assert "public" not in json.dumps(subnet_group["Properties"]["SubnetIds"])
    for mount in synthesized_lean.resources("AWS::EFS::MountTarget").values():
        assert "privateSubnet" in json.dumps(mount["Properties"]["SubnetId"])


def test_tasks_that_need_the_internet_get_public_ips_in_public_subnets(
    synthesized_lean: Synthesized,
):
    services = service_containers(synthesized_lean)
    assert len(services) == 3
    for name, container in services.items():
        network = container["_service"]["Properties"]["NetworkConfiguration"]
        config = network["AwsvpcConfiguration"]
        assert config["AssignPublicIp"] == "ENABLED", name
        assert "publicSubnet" in json.dumps(config["Subnets"]), name
    # Batch jobs (tensors) too: in the public subnets, with a public IP, on Fargate Spot with
    # no standing capacity.
    (environment,) = synthesized_lean.resources("AWS::Batch::ComputeEnvironment").values()
    resources = environment["Properties"]["ComputeResources"]
    assert resources["Type"] == "FARGATE_SPOT"
    assert resources.get("MinvCpus", 0) == 0
    assert "publicSubnet" in json.dumps(resources["Subnets"])
    template(synthesized_lean, "Services").has_resource_properties(
        "AWS::Batch::JobDefinition",
        {"ContainerProperties": {"NetworkConfiguration": {"AssignPublicIp": "ENABLED"}}},
    )


def test_nothing_admits_traffic_from_the_internet(synthesized_lean: Synthesized):
    rules = ingress_rules(synthesized_lean)
    assert rules, "the services still talk to each other and to the database"
    for rule in rules:
        assert rule.get("CidrIp") != "0.0.0.0/0" and rule.get("CidrIpv6") != "::/0", rule
        # Every rule admits another security group of the app, not an address range.
        assert "SourceSecurityGroupId" in rule, rule
    services = template(synthesized_lean, "Services")
    services.resource_count_is("AWS::ElasticLoadBalancingV2::LoadBalancer", 0)
    webserver = service_containers(synthesized_lean)["data-platform-webserver"]["_service"]
    (group,) = webserver["Properties"]["NetworkConfiguration"]["AwsvpcConfiguration"][
        "SecurityGroups"
    ]
    group_id = group["Fn::GetAtt"][0]
    assert not synthesized_lean.resources("AWS::EC2::SecurityGroup")[group_id]["Properties"].get(
        "SecurityGroupIngress"
    )
    assert not [r for r in rules if json.dumps(r.get("GroupId")).count(group_id)]
    # The UI is reached by ECS Exec port forwarding instead (see deploy/README.md).
    assert webserver["Properties"]["EnableExecuteCommand"] is True
    assert "WebserverServiceName" in synthesized_lean.template("Services")["Outputs"]


def test_database_is_a_single_small_instance_still_protected(synthesized_lean: Synthesized):
    template(synthesized_lean, "Data").has_resource_properties(
        "AWS::RDS::DBInstance",
        {
            "DBInstanceClass": "db.t4g.micro",
            "MultiAZ": False,
            "AllocatedStorage": "20",
            "StorageType": "gp3",
            "BackupRetentionPeriod": 1,
            "DeletionProtection": True,
            "StorageEncrypted": True,
        },
    )


def test_services_run_at_the_lean_sizes(synthesized_lean: Synthesized, deploy_modules):
    assert service_sizes(synthesized_lean) == {
        "data-platform-webserver": ("256", "1024"),
        "data-platform-daemon": ("256", "1024"),
        "data-platform-code-location": ("256", "1024"),
    }
    strategies = {
        name: c["_service"]["Properties"].get("CapacityProviderStrategy")
        for name, c in service_containers(synthesized_lean).items()
    }
    # Only the webserver is on Spot: the daemon and code location drive runs.
    assert strategies["data-platform-webserver"] == [
        {"CapacityProvider": "FARGATE_SPOT", "Weight": 1}
    ]
    assert strategies["data-platform-daemon"] is None
    assert strategies["data-platform-code-location"] is None
    lean = deploy_modules["stacks.settings"].PROFILES["lean"]
    assert (lean.webserver.cpu, lean.webserver.memory_mib) == (256, 1024)
    template(synthesized_lean, "Services").has_resource_properties(
        "AWS::ECS::Cluster",
        {"ClusterSettings": [{"Name": "containerInsights", "Value": "disabled"}]},
    )


def test_logs_are_kept_a_week(synthesized_lean: Synthesized):
    groups = synthesized_lean.resources("AWS::Logs::LogGroup")
    assert groups
    assert {g["Properties"].get("RetentionInDays") for g in groups.values()} == {7}


def test_the_daemon_still_launches_runs_of_any_size(synthesized_lean: Synthesized):
    """The EcsRunLauncher runs the run task definition with cpu/memory overrides from the
    `ecs/cpu` and `ecs/memory` tags (data_platform.sizing), copies the daemon's network
    configuration (so runs get a public IP too), passes the run roles and tags the task."""
    statements = statements_of(synthesized_lean, "DaemonRole")
    (run_task,) = [s for s in statements if "ecs:RunTask" in as_list(s["Action"])]
    assert "task-definition/data-platform-run:*" in json.dumps(run_task["Resource"])
    # Overrides need no permission of their own; only the cluster is constrained.
    assert set(run_task["Condition"]) == {"ArnEquals"}
    assert list(run_task["Condition"]["ArnEquals"]) == ["ecs:cluster"]
    (pass_role,) = [s for s in statements if "iam:PassRole" in as_list(s["Action"])]
    passed = json.dumps(pass_role["Resource"])
    assert "RunRole" in passed and "RunExecutionRole" in passed
    assert len(as_list(pass_role["Resource"])) == 2
    assert pass_role["Condition"] == {
        "StringEquals": {"iam:PassedToService": "ecs-tasks.amazonaws.com"}
    }
    (tag,) = [s for s in statements if "ecs:TagResource" in as_list(s["Action"])]
    assert tag["Condition"] == {"StringEquals": {"ecs:CreateAction": "RunTask"}}
    actions = {a for s in statements for a in as_list(s["Action"])}
    assert {"ec2:DescribeNetworkInterfaces", "ecs:DescribeTasks", "ecs:StopTask"} <= actions
    daemon = service_containers(synthesized_lean)["data-platform-daemon"]["_service"]
    assert (
        daemon["Properties"]["NetworkConfiguration"]["AwsvpcConfiguration"]["AssignPublicIp"]
        == "ENABLED"
    )
    # Sizes the sensor will ask for are Fargate sizes a task-level override accepts.
    run = [
        t["Properties"]
        for t in synthesized_lean.resources("AWS::ECS::TaskDefinition").values()
        if t["Properties"]["Family"] == "data-platform-run"
    ][0]
    assert run["RequiresCompatibilities"] == ["FARGATE"] and run["NetworkMode"] == "awsvpc"
    assert (int(run["Cpu"]), int(run["Memory"])) in fargate_pairs()
    for size in (size_for(2 * 1024), size_for(30 * 10**9)):
        assert (int(size.cpu), int(size.memory)) in fargate_pairs()


def test_lean_idles_within_budget_priced_from_the_template(
    synthesized_lean: Synthesized, synthesized: Synthesized, deploy_modules
):
    idle_cost = deploy_modules["idle_cost"]
    lines = idle_cost.idle_cost(synthesized_lean.templates)
    lean_total = idle_cost.total(lines)
    assert lean_total <= LEAN_BUDGET_USD, idle_cost.markdown(lines)
    assert not [x for x in lines if x.item.startswith(("NAT", "Load balancer", "Interface"))]
    # The same pricing finds the default profile's NAT gateway and load balancer expensive.
    default_lines = idle_cost.idle_cost(synthesized.templates)
    items = {x.item for x in default_lines}
    assert {"NAT gateway", "Load balancer"} <= items
    assert idle_cost.total(default_lines) > 2 * lean_total

    # A NAT gateway or a bigger database added to the lean templates breaks the budget.
    with_nat = copy.deepcopy(synthesized_lean.templates)
    network = next(t for name, t in with_nat.items() if name.endswith("Network"))
    network["Resources"]["AddedNat"] = {"Type": "AWS::EC2::NatGateway", "Properties": {}}
    assert idle_cost.total(idle_cost.idle_cost(with_nat)) > LEAN_BUDGET_USD
    bigger_db = copy.deepcopy(synthesized_lean.templates)
    for t in bigger_db.values():
        for resource in t["Resources"].values():
            if resource["Type"] == "AWS::RDS::DBInstance":
                resource["Properties"]["DBInstanceClass"] = "db.t4g.medium"
    assert idle_cost.total(idle_cost.idle_cost(bigger_db)) > LEAN_BUDGET_USD
    # A kind of resource nobody priced yet fails rather than counting as free.
    unpriced = copy.deepcopy(synthesized_lean.templates)
    network = next(t for name, t in unpriced.items() if name.endswith("Network"))
    network["Resources"]["NatInstance"] = {"Type": "AWS::EC2::Instance", "Properties": {}}
    with pytest.raises(ValueError, match="AWS::EC2::Instance"):
        idle_cost.idle_cost(unpriced)


def test_default_profile_is_unchanged(synthesized: Synthesized):
    template(synthesized, "Network").resource_count_is("AWS::EC2::NatGateway", 1)
    services = service_containers(synthesized)
    for container in services.values():
        config = container["_service"]["Properties"]["NetworkConfiguration"]
        assert config["AwsvpcConfiguration"]["AssignPublicIp"] == "DISABLED"
        assert "privateSubnet" in json.dumps(config["AwsvpcConfiguration"]["Subnets"])
        assert "CapacityProviderStrategy" not in container["_service"]["Properties"]
    assert service_sizes(synthesized) == {
        "data-platform-webserver": ("1024", "2048"),
        "data-platform-daemon": ("512", "2048"),
        "data-platform-code-location": ("1024", "2048"),
    }
    template(synthesized, "Data").has_resource_properties(
        "AWS::RDS::DBInstance",
        {"DBInstanceClass": "db.t4g.small", "BackupRetentionPeriod": 7, "MultiAZ": False},
    )
    template(synthesized, "Services").resource_count_is(
        "AWS::ElasticLoadBalancingV2::LoadBalancer", 1
    )
    template(synthesized, "Services").has_resource_properties(
        "AWS::ECS::Cluster",
        {"ClusterSettings": Match.array_with([{"Name": "containerInsights", "Value": "enabled"}])},
    )
    assert {g["Properties"].get("RetentionInDays") for g in
            synthesized.resources("AWS::Logs::LogGroup").values()} == {30}
    assert "WebserverUrl" in synthesized.template("Services")["Outputs"]
    context = json.loads((DEPLOY / "cdk.json").read_text())["context"]
    assert context["profile"] == "default"


def test_profile_choices_and_overrides_are_checked(deploy_modules):
    settings = deploy_modules["stacks.settings"]

    lean = settings.DeploySettings.from_context(ContextNode({"profile": "lean"}))
    assert (lean.profile.name, lean.nat_gateways) == ("lean", 0)
    assert lean.db_instance_class == lean.profile.db_instance_class == "t4g.micro"
    # Single values of a profile can be overridden from the command line.
    bigger = settings.DeploySettings.from_context(
        ContextNode({"profile": "lean", "db_instance_class": "t4g.small", "log_retention_days": "30"})
    )
    assert bigger.profile.db_instance_class == "t4g.small"
    assert bigger.profile.log_retention_days == 30
    assert bigger.profile.webserver == lean.profile.webserver
    with pytest.raises(ValueError, match="profile must be one of"):
        settings.DeploySettings.from_context(ContextNode({"profile": "tiny"}))
    with pytest.raises(ValueError, match="nat_gateways must be 0"):
        settings.DeploySettings.from_context(ContextNode({"profile": "lean", "nat_gateways": "1"}))
    with pytest.raises(ValueError, match="compute_launcher=batch"):
        settings.DeploySettings.from_context(
            ContextNode({"profile": "lean", "compute_launcher": "ecs"})
        )
    with pytest.raises(ValueError, match="webserver_load_balancer=true"):
        settings.DeploySettings(profile=settings.PROFILES["lean"], webserver_access="cognito",
                                certificate_arn="arn:x", webserver_domain="d.example.com",
                                cognito_domain_prefix="d")
    with pytest.raises(ValueError, match="no Fargate size"):
        deploy_modules["stacks.settings"].PROFILES["lean"].webserver.__class__(256, 4096)
