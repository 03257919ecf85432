"""The load balancer in front of the Dagster webserver.

The webserver has no authentication of its own, so it is never reachable from the internet
without one in front: `access="internal"` (the default) puts an internal ALB in the private
subnets, reachable only from inside the VPC (VPN, peering, SSM port forwarding). `"cognito"` and
`"oidc"` put an internet-facing ALB in the public subnets whose HTTPS listener authenticates every
request (Cognito user pool or an external OIDC provider) before forwarding it.
"""

from __future__ import annotations

from typing import Any, Literal

import aws_cdk as cdk
from aws_cdk import aws_certificatemanager as acm
from aws_cdk import aws_cognito as cognito
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_elasticloadbalancingv2 as elbv2
from aws_cdk import aws_elasticloadbalancingv2_actions as elbv2_actions
from aws_cdk import aws_s3 as s3
from constructs import Construct

from components.nag import acknowledge


class WebserverLoadBalancer(Construct):
    """An ALB forwarding to `service` on `port`, internal or internet-facing with authentication."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        vpc: ec2.IVpc,
        vpc_cidr: str,
        service: ecs.FargateService,
        container_name: str,
        port: int,
        access: Literal["internal", "cognito", "oidc"],
        access_logs_bucket: s3.IBucket,
        certificate_arn: str | None = None,
        domain_name: str | None = None,
        allowed_cidr: str = "0.0.0.0/0",
        cognito_domain_prefix: str | None = None,
        oidc_issuer: str | None = None,
        oidc_authorization_endpoint: str | None = None,
        oidc_token_endpoint: str | None = None,
        oidc_user_info_endpoint: str | None = None,
        oidc_client_id: str | None = None,
        oidc_client_secret_name: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(scope, construct_id)
        public = access != "internal"
        if public and not (certificate_arn and domain_name):
            raise ValueError("an internet-facing webserver needs certificate_arn and domain_name")
        https = certificate_arn is not None

        self.security_group = ec2.SecurityGroup(
            self,
            "SecurityGroup",
            vpc=vpc,
            description="Webserver load balancer",
            allow_all_outbound=False,
        )
        listener_port = 443 if https else 80
        if public:
            self.security_group.add_ingress_rule(
                ec2.Peer.ipv4(allowed_cidr),
                ec2.Port.tcp(443),
                "HTTPS from users; every request is authenticated by the listener",
            )
            self.security_group.add_ingress_rule(
                ec2.Peer.ipv4(allowed_cidr), ec2.Port.tcp(80), "Redirected to HTTPS"
            )
            if allowed_cidr == "0.0.0.0/0":
                acknowledge(
                    self.security_group,
                    "AwsSolutions-EC23",
                    "The internet-facing mode was chosen explicitly (webserver_access); the "
                    "listener authenticates every request through the identity provider before "
                    "it reaches the webserver. Narrow it with -c allowed_cidr=...",
                )
        else:
            self.security_group.add_ingress_rule(
                ec2.Peer.ipv4(vpc_cidr),
                ec2.Port.tcp(listener_port),
                "Webserver UI from inside the VPC",
            )

        self.load_balancer = elbv2.ApplicationLoadBalancer(
            self,
            "LoadBalancer",
            vpc=vpc,
            internet_facing=public,
            vpc_subnets=ec2.SubnetSelection(
                subnet_type=ec2.SubnetType.PUBLIC if public else ec2.SubnetType.PRIVATE_WITH_EGRESS
            ),
            security_group=self.security_group,
            drop_invalid_header_fields=True,
            idle_timeout=cdk.Duration.seconds(120),
            **kwargs,
        )
        self.load_balancer.log_access_logs(access_logs_bucket, prefix="alb/webserver")

        self.target_group = elbv2.ApplicationTargetGroup(
            self,
            "Webserver",
            vpc=vpc,
            port=port,
            protocol=elbv2.ApplicationProtocol.HTTP,
            target_type=elbv2.TargetType.IP,
            targets=[
                service.load_balancer_target(container_name=container_name, container_port=port)
            ],
            health_check=elbv2.HealthCheck(path="/server_info", healthy_http_codes="200"),
            deregistration_delay=cdk.Duration.seconds(30),
        )
        forward = elbv2.ListenerAction.forward([self.target_group])

        if https:
            listener = self.load_balancer.add_listener(
                "Https",
                port=443,
                protocol=elbv2.ApplicationProtocol.HTTPS,
                certificates=[
                    elbv2.ListenerCertificate.from_certificate_manager(
                        acm.Certificate.from_certificate_arn(self, "Certificate", certificate_arn)
                    )
                ],
                ssl_policy=elbv2.SslPolicy.RECOMMENDED_TLS,
                open=False,
                default_action=self._authenticate(
                    access=access,
                    forward=forward,
                    domain_name=domain_name,
                    cognito_domain_prefix=cognito_domain_prefix,
                    oidc={
                        "issuer": oidc_issuer,
                        "authorization_endpoint": oidc_authorization_endpoint,
                        "token_endpoint": oidc_token_endpoint,
                        "user_info_endpoint": oidc_user_info_endpoint,
                        "client_id": oidc_client_id,
                        "client_secret_name": oidc_client_secret_name,
                    },
                ),
            )
            self.load_balancer.add_listener(
                "HttpRedirect",
                port=80,
                open=False,
                default_action=elbv2.ListenerAction.redirect(
                    protocol="HTTPS", port="443", permanent=True
                ),
            )
        else:
            listener = self.load_balancer.add_listener(
                "Http",
                port=80,
                protocol=elbv2.ApplicationProtocol.HTTP,
                open=False,
                default_action=forward,
            )
        self.listener = listener
        service.connections.allow_from(self.security_group, ec2.Port.tcp(port), "From the ALB")
        if public:
            # Authenticate actions call the identity provider's token and user-info endpoints.
            self.security_group.add_egress_rule(
                ec2.Peer.any_ipv4(), ec2.Port.tcp(443), "To the identity provider"
            )

    def _authenticate(
        self,
        *,
        access: str,
        forward: elbv2.ListenerAction,
        domain_name: str | None,
        cognito_domain_prefix: str | None,
        oidc: dict[str, str | None],
    ) -> elbv2.ListenerAction:
        """Return the listener's default action: authenticate first in public modes."""
        if access == "internal":
            return forward
        if access == "oidc":
            missing = [key for key, value in oidc.items() if not value]
            if missing:
                raise ValueError(f"webserver access oidc needs {', '.join(missing)}")
            return elbv2.ListenerAction.authenticate_oidc(
                issuer=str(oidc["issuer"]),
                authorization_endpoint=str(oidc["authorization_endpoint"]),
                token_endpoint=str(oidc["token_endpoint"]),
                user_info_endpoint=str(oidc["user_info_endpoint"]),
                client_id=str(oidc["client_id"]),
                client_secret=cdk.SecretValue.secrets_manager(str(oidc["client_secret_name"])),
                scope="openid email profile",
                session_timeout=cdk.Duration.hours(12),
                next=forward,
            )
        if not cognito_domain_prefix:
            raise ValueError("webserver access cognito needs cognito_domain_prefix")
        user_pool = cognito.UserPool(
            self,
            "Users",
            self_sign_up_enabled=False,
            sign_in_aliases=cognito.SignInAliases(email=True),
            mfa=cognito.Mfa.REQUIRED,
            mfa_second_factor=cognito.MfaSecondFactor(otp=True, sms=False),
            password_policy=cognito.PasswordPolicy(
                min_length=12,
                require_digits=True,
                require_lowercase=True,
                require_uppercase=True,
                require_symbols=True,
            ),
            feature_plan=cognito.FeaturePlan.PLUS,
            standard_threat_protection_mode=cognito.StandardThreatProtectionMode.FULL_FUNCTION,
            account_recovery=cognito.AccountRecovery.EMAIL_ONLY,
            removal_policy=cdk.RemovalPolicy.RETAIN,
        )
        client = user_pool.add_client(
            "Webserver",
            generate_secret=True,
            o_auth=cognito.OAuthSettings(
                flows=cognito.OAuthFlows(authorization_code_grant=True),
                scopes=[cognito.OAuthScope.OPENID, cognito.OAuthScope.EMAIL],
                callback_urls=[f"https://{domain_name}/oauth2/idpresponse"],
            ),
            prevent_user_existence_errors=True,
        )
        domain = user_pool.add_domain(
            "Domain",
            cognito_domain=cognito.CognitoDomainOptions(domain_prefix=cognito_domain_prefix),
        )
        return elbv2_actions.AuthenticateCognitoAction(
            user_pool=user_pool,
            user_pool_client=client,
            user_pool_domain=domain,
            session_timeout=cdk.Duration.hours(12),
            next=forward,
        )
