"""Monthly cost of a deployment while it idles, priced from its synthesized CloudFormation
templates, so the figure follows what the templates really create (a NAT gateway or a larger
database added to a profile shows up here, and in the test that keeps the lean profile under
its budget).

Prices: us-east-1 on-demand list prices as published in 2026 (Fargate, RDS, VPC, ELB, Secrets
Manager, Route 53, CloudWatch, ECR pricing pages), 730 hours a month, no free tier, no taxes.
Usage a template cannot show (log volume, image size, Container Insights metrics, data at rest) is
an assumption named in `ASSUMED`. Re-check with the AWS Pricing Calculator before relying on it.

    python idle_cost.py lean      # prints the table of the lean profile (from the deploy folder)
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

HOURS = 730
PRICES = {
    "fargate_vcpu_hour": 0.04048,  # Linux/x86
    "fargate_gb_hour": 0.004445,
    "fargate_spot_discount": 0.70,  # Spot has no list price; its usual discount
    "public_ipv4_hour": 0.005,
    "nat_gateway_hour": 0.045,  # plus $0.045 per GB processed (usage, not idle)
    "alb_hour": 0.0225,  # plus $0.008 per LCU-hour (usage)
    "interface_endpoint_hour": 0.01,  # per AZ, plus $0.01 per GB
    "rds_gp3_gb_month": 0.115,
    "secret_month": 0.40,
    "private_hosted_zone_month": 0.50,  # what a Cloud Map private DNS namespace creates
    "cloud_map_instance_month": 0.10,
    "logs_ingest_gb": 0.50,
    "logs_stored_gb_month": 0.03,
    "ecr_gb_month": 0.10,
    "s3_gb_month": 0.023,
}
RDS_HOURLY = {  # PostgreSQL, single-AZ; Multi-AZ doubles instance and storage
    "db.t4g.micro": 0.016,
    "db.t4g.small": 0.032,
    "db.t4g.medium": 0.065,
    "db.t4g.large": 0.129,
}
ASSUMED = {
    "service_logs_gb_month": 0.3,  # an idle webserver, daemon or code location
    "flow_logs_gb_month": 1.0,  # rejected traffic only; scanners hit public IPs
    "db_logs_gb_month": 0.2,
    "image_gb": 0.5,  # compressed size of one platform image in ECR
    "container_insights_month": 5.0,  # standard Container Insights, three services
    "data_at_rest_gb": 20,  # raw and lake objects of a platform that has just started
}
# Resource types with no charge of their own while idle (billed per use, or free).
FREE_WHILE_IDLE = {
    "AWS::Athena::WorkGroup",
    "AWS::Batch::ComputeEnvironment",  # Fargate: no instances, no minimum vCPU
    "AWS::Batch::JobDefinition",
    "AWS::Batch::JobQueue",
    "AWS::CDK::Metadata",
    "AWS::Cognito::UserPool",  # per monthly active user
    "AWS::Cognito::UserPoolClient",
    "AWS::Cognito::UserPoolDomain",
    "AWS::EC2::FlowLog",
    "AWS::EC2::InternetGateway",
    "AWS::EC2::Route",
    "AWS::EC2::RouteTable",
    "AWS::EC2::SecurityGroup",
    "AWS::EC2::SecurityGroupEgress",
    "AWS::EC2::SecurityGroupIngress",
    "AWS::EC2::Subnet",
    "AWS::EC2::SubnetRouteTableAssociation",
    "AWS::EC2::VPC",
    "AWS::EC2::VPCGatewayAttachment",
    "AWS::ECS::ClusterCapacityProviderAssociations",
    "AWS::ECS::TaskDefinition",  # priced through the services that run it
    "AWS::EFS::AccessPoint",
    "AWS::EFS::FileSystem",  # per GB stored; scratch is swept, empty while idle
    "AWS::EFS::FileSystemPolicy",
    "AWS::EFS::MountTarget",
    "AWS::ElasticLoadBalancingV2::Listener",
    "AWS::ElasticLoadBalancingV2::ListenerRule",
    "AWS::ElasticLoadBalancingV2::TargetGroup",
    "AWS::Glue::Database",
    "AWS::IAM::Policy",
    "AWS::IAM::Role",
    "AWS::Lambda::Function",  # custom-resource handlers, run at deploy time
    "AWS::Lambda::Permission",
    "AWS::Logs::LogGroup",  # priced by the volume that flows in (ASSUMED)
    "AWS::RDS::DBSubnetGroup",
    "AWS::S3::Bucket",  # priced by data at rest (ASSUMED)
    "AWS::S3::BucketPolicy",
    "AWS::SQS::Queue",
    "AWS::SQS::QueuePolicy",
    "AWS::SecretsManager::SecretTargetAttachment",
    "Custom::S3BucketNotifications",
    "Custom::VpcRestrictDefaultSG",
}


@dataclass(frozen=True)
class CostLine:
    """One priced item: what, how it is sized, and USD per month."""

    item: str
    sizing: str
    usd: float


def _resources(templates: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for template in templates.values():
        found.update(template.get("Resources", {}))
    return found


def _of_type(resources: Mapping[str, dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [r.get("Properties", {}) for r in resources.values() if r["Type"] == kind]


def idle_cost(templates: Mapping[str, Mapping[str, Any]]) -> list[CostLine]:
    """Return the monthly cost lines of the deployment the templates describe, while idle.

    Raises ValueError for a resource type this module cannot price (so that a new kind of
    resource is priced before a budget test passes) and for an unknown database class."""
    resources = _resources(templates)
    priced = {
        "AWS::ECS::Service", "AWS::ECS::Cluster", "AWS::EC2::NatGateway", "AWS::EC2::EIP",
        "AWS::ElasticLoadBalancingV2::LoadBalancer", "AWS::EC2::VPCEndpoint",
        "AWS::RDS::DBInstance", "AWS::SecretsManager::Secret", "AWS::ECR::Repository",
        "AWS::ServiceDiscovery::PrivateDnsNamespace", "AWS::ServiceDiscovery::Service",
    }  # fmt: skip
    unknown = sorted({r["Type"] for r in resources.values()} - priced - FREE_WHILE_IDLE)
    if unknown:
        raise ValueError(f"no idle price for resource types {unknown}")
    p, lines = PRICES, []
    tasks = {
        k: r["Properties"]
        for k, r in resources.items()
        if r["Type"] == "AWS::ECS::TaskDefinition"
    }
    running = 0
    for service in _of_type(resources, "AWS::ECS::Service"):
        count = int(service.get("DesiredCount", 1))
        task = tasks[service["TaskDefinition"]["Ref"]]
        vcpu, gb = int(task["Cpu"]) / 1024, int(task["Memory"]) / 1024
        spot = any(
            s["CapacityProvider"] == "FARGATE_SPOT" and s.get("Weight", 0) > 0
            for s in service.get("CapacityProviderStrategy", [])
        )
        hourly = vcpu * p["fargate_vcpu_hour"] + gb * p["fargate_gb_hour"]
        usd = count * hourly * HOURS * ((1 - p["fargate_spot_discount"]) if spot else 1)
        sizing = f"{count} x {vcpu:g} vCPU, {gb:g} GB" + (", Fargate Spot" if spot else "")
        lines.append(CostLine(f"Service {service['ServiceName']}", sizing, usd))
        network = service.get("NetworkConfiguration", {}).get("AwsvpcConfiguration", {})
        if network.get("AssignPublicIp") == "ENABLED" and count:
            lines.append(CostLine(f"Public IPv4 of {service['ServiceName']}", f"{count} address",
                                  count * p["public_ipv4_hour"] * HOURS))
        running += count
    nat = len(_of_type(resources, "AWS::EC2::NatGateway"))
    if nat:
        lines.append(CostLine("NAT gateway", f"{nat} (data processed extra)",
                              nat * p["nat_gateway_hour"] * HOURS))
    eips = len(_of_type(resources, "AWS::EC2::EIP"))
    if eips:
        lines.append(
            CostLine("Elastic IPs", f"{eips} address", eips * p["public_ipv4_hour"] * HOURS)
        )
    for alb in _of_type(resources, "AWS::ElasticLoadBalancingV2::LoadBalancer"):
        public = alb.get("Scheme") == "internet-facing"
        ips = len(alb.get("Subnets", [])) if public else 0
        usd = (p["alb_hour"] + ips * p["public_ipv4_hour"]) * HOURS
        lines.append(CostLine("Load balancer", ("internet-facing" if public else "internal")
                              + (f", {ips} public IPv4" if ips else ""), usd))
    for endpoint in _of_type(resources, "AWS::EC2::VPCEndpoint"):
        if endpoint.get("VpcEndpointType") == "Interface":
            azs = len(endpoint.get("SubnetIds", []))
            lines.append(CostLine("Interface endpoint", f"{azs} AZ",
                                  azs * p["interface_endpoint_hour"] * HOURS))
    for db in _of_type(resources, "AWS::RDS::DBInstance"):
        klass = db["DBInstanceClass"]
        if klass not in RDS_HOURLY:
            raise ValueError(f"no price for database class {klass}")
        copies = 2 if db.get("MultiAZ") else 1
        storage = int(db.get("AllocatedStorage", 20))
        usd = copies * (RDS_HOURLY[klass] * HOURS + storage * p["rds_gp3_gb_month"])
        sizing = f"{klass}, {'Multi-AZ' if copies == 2 else 'single-AZ'}, {storage} GB gp3"
        lines.append(CostLine("RDS PostgreSQL", sizing, usd))
    secrets = len(_of_type(resources, "AWS::SecretsManager::Secret"))
    zones = len(_of_type(resources, "AWS::ServiceDiscovery::PrivateDnsNamespace"))
    registered = len(_of_type(resources, "AWS::ServiceDiscovery::Service"))
    lines.append(CostLine("Secrets Manager, Cloud Map", f"{secrets} secret, {zones} namespace",
                          secrets * p["secret_month"] + zones * p["private_hosted_zone_month"]
                          + registered * p["cloud_map_instance_month"]))
    enabled = {"Name": "containerInsights", "Value": "enabled"}
    insights = [
        c for c in _of_type(resources, "AWS::ECS::Cluster")
        if enabled in c.get("ClusterSettings", [])
    ]
    if insights:
        lines.append(CostLine("Container Insights", "estimate",
                              len(insights) * ASSUMED["container_insights_month"]))
    lines.append(_logs(resources, running))
    images = sum(_kept_images(r) for r in _of_type(resources, "AWS::ECR::Repository"))
    lines.append(CostLine("ECR images", f"{images} kept x {ASSUMED['image_gb']} GB",
                          images * ASSUMED["image_gb"] * p["ecr_gb_month"]))
    lines.append(CostLine("S3 data at rest", f"{ASSUMED['data_at_rest_gb']} GB assumed",
                          ASSUMED["data_at_rest_gb"] * p["s3_gb_month"]))
    return lines


def _logs(resources: Mapping[str, dict[str, Any]], running_services: int) -> CostLine:
    """CloudWatch Logs: assumed idle volume in, kept for the longest retention of the app."""
    ingest = running_services * ASSUMED["service_logs_gb_month"]
    ingest += len(_of_type(resources, "AWS::EC2::FlowLog")) * ASSUMED["flow_logs_gb_month"]
    ingest += sum(
        ASSUMED["db_logs_gb_month"]
        for db in _of_type(resources, "AWS::RDS::DBInstance")
        if db.get("EnableCloudwatchLogsExports")
    )
    retention = max(
        (int(g.get("RetentionInDays", 30)) for g in _of_type(resources, "AWS::Logs::LogGroup")),
        default=30,
    )
    stored = ingest * retention / 30
    usd = ingest * PRICES["logs_ingest_gb"] + stored * PRICES["logs_stored_gb_month"]
    return CostLine("CloudWatch Logs", f"{ingest:.1f} GB/month in, {retention} days kept", usd)


def _kept_images(repository: Mapping[str, Any]) -> int:
    policy = repository.get("LifecyclePolicy", {}).get("LifecyclePolicyText")
    if not policy:
        return 100  # no lifecycle rule: assume a long history
    counts = [r["selection"]["countNumber"] for r in json.loads(policy)["rules"]
              if r["selection"].get("countType") == "imageCountMoreThan"]
    return min(counts) if counts else 100


def total(lines: Iterable[CostLine]) -> float:
    """Return the sum of the lines in USD per month."""
    return sum(line.usd for line in lines)


def markdown(lines: list[CostLine]) -> str:
    """Return the lines as a Markdown table with the total."""
    rows = ["| Item | Sizing | $/month |", "|---|---|---|"]
    rows += [f"| {x.item} | {x.sizing} | {x.usd:.2f} |" for x in lines]
    rows.append(f"| **Total** | | **{total(lines):.2f}** |")
    return "\n".join(rows)


if __name__ == "__main__":
    import sys
    import tempfile
    from pathlib import Path

    from app import build_app

    profile = sys.argv[1] if len(sys.argv) > 1 else "default"
    with tempfile.TemporaryDirectory() as out:
        build_app({"profile": profile, "image_tag": "priced"}, outdir=out).synth()
        found = {p.name: json.loads(p.read_text()) for p in Path(out).glob("*.template.json")}
    print(markdown(idle_cost(found)))
