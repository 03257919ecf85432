"""Network stack: the VPC every other resource lives in.

In the default profile public subnets hold only the NAT gateway(s) and, when the webserver is
internet-facing, the load balancer; every task, database and file system sits in private subnets.
In the lean profile there is no NAT gateway: tasks run in the public subnets with a public IP (their
security groups admit nothing from the internet) and the private subnets, holding the database and
the file system, are isolated. The bulk of the traffic
(raw and lake objects, and ECR image layers, which ECR serves from S3) goes through the free S3
gateway endpoint. Interface endpoints for the ECR API, CloudWatch Logs and Secrets Manager are
optional (`-c interface_endpoints=true`): they keep those calls off the NAT gateway, but at about
$16 a month each they only pay for themselves at hundreds of GB a month (see README.md).
"""

from __future__ import annotations

from typing import Any

import aws_cdk as cdk
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_logs as logs
from constructs import Construct

from stacks.settings import DeploySettings

# The AWS APIs every task start and every container uses: image manifests and auth (ECR API and
# registry), log shipping, and the DB secret.
INTERFACE_ENDPOINTS = {
    "EcrApi": ec2.InterfaceVpcEndpointAwsService.ECR,
    "EcrDocker": ec2.InterfaceVpcEndpointAwsService.ECR_DOCKER,
    "Logs": ec2.InterfaceVpcEndpointAwsService.CLOUDWATCH_LOGS,
    "SecretsManager": ec2.InterfaceVpcEndpointAwsService.SECRETS_MANAGER,
}


class NetworkStack(cdk.Stack):
    """VPC with public and private subnets, NAT, S3 gateway endpoint and flow logs."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        settings: DeploySettings,
        **kwargs: Any,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)

        # A literal CIDR (not the VPC's CidrBlock attribute) lets security group rules that
        # admit "the VPC" be checked at synth time.
        self.vpc_cidr = settings.vpc_cidr
        profile = settings.profile
        self.vpc = ec2.Vpc(
            self,
            "Vpc",
            ip_addresses=ec2.IpAddresses.cidr(settings.vpc_cidr),
            max_azs=settings.max_azs,
            nat_gateways=profile.nat_gateways,
            subnet_configuration=[
                ec2.SubnetConfiguration(
                    name="public", subnet_type=ec2.SubnetType.PUBLIC, cidr_mask=24
                ),
                ec2.SubnetConfiguration(
                    name="private", subnet_type=settings.private_subnet_type, cidr_mask=20
                ),
            ],
            restrict_default_security_group=True,
            gateway_endpoints={
                "S3": ec2.GatewayVpcEndpointOptions(service=ec2.GatewayVpcEndpointAwsService.S3)
            },
        )

        flow_log_group = logs.LogGroup(
            self,
            "FlowLogs",
            retention=settings.log_retention,
            removal_policy=cdk.RemovalPolicy.DESTROY,
        )
        self.vpc.add_flow_log(
            "FlowLog",
            destination=ec2.FlowLogDestination.to_cloud_watch_logs(flow_log_group),
            traffic_type=ec2.FlowLogTrafficType.REJECT,
        )

        if settings.interface_endpoints:
            for endpoint_id, service in INTERFACE_ENDPOINTS.items():
                endpoint = self.vpc.add_interface_endpoint(
                    endpoint_id,
                    service=service,
                    private_dns_enabled=True,
                    open=False,
                    subnets=ec2.SubnetSelection(subnet_type=settings.private_subnet_type),
                )
                endpoint.connections.allow_default_port_from(
                    ec2.Peer.ipv4(settings.vpc_cidr), "HTTPS from the VPC"
                )
