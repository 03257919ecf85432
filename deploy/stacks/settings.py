"""Deployment settings read from CDK context, and the names the image, the instance config and the
stacks must agree on (ports, paths, commands, service discovery name).

Every context value has a default, so `cdk synth` works with no `-c` flags; `DeploySettings`
validates combinations (a public webserver needs a certificate, a domain and an identity provider)
and raises `ValueError` with the flag to set. Sizes that cost money while idle come from the deploy
profile (`-c profile=default|lean`, stacks.profiles); a few of them may be overridden one by one.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal, cast

from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_logs as logs
from constructs import Node

from stacks.profiles import LOG_RETENTION_DAYS, PROFILES, Profile

# Values a `-c key=value` flag may override in the chosen profile.
PROFILE_OVERRIDES = (
    "nat_gateways",
    "webserver_load_balancer",
    "db_instance_class",
    "db_multi_az",
    "db_backup_retention_days",
    "log_retention_days",
)

# Paths and ports baked into the image (deploy/Dockerfile) and the ECS workspace (workspace.yaml).
DAGSTER_HOME = "/opt/dagster/dagster_home"
WORKSPACE_FILE = f"{DAGSTER_HOME}/workspace.yaml"
WEBSERVER_PORT = 3000
CODE_SERVER_PORT = 4000
SCRATCH_MOUNT_PATH = "/mnt/scratch"
# The image's non-root user; the EFS access point writes files as this user.
IMAGE_UID = 1000
IMAGE_GID = 1000

# The code location is found as <service>.<namespace> (Cloud Map private DNS).
CODE_LOCATION_SERVICE_NAME = "code-location"
SERVICE_DISCOVERY_NAMESPACE = "dagster.internal"
CODE_LOCATION_HOST = f"{CODE_LOCATION_SERVICE_NAME}.{SERVICE_DISCOVERY_NAMESPACE}"
CODE_LOCATION_MODULE = "data_platform.definitions"

# What each service runs. The code-server command is also the image's default CMD.
WEBSERVER_COMMAND = [
    "dagster-webserver",
    "-h",
    "0.0.0.0",
    "-p",
    str(WEBSERVER_PORT),
    "-w",
    WORKSPACE_FILE,
]
DAEMON_COMMAND = ["dagster-daemon", "run", "-w", WORKSPACE_FILE]
CODE_SERVER_COMMAND = [
    "dagster",
    "code-server",
    "start",
    "-h",
    "0.0.0.0",
    "-p",
    str(CODE_SERVER_PORT),
    "-m",
    CODE_LOCATION_MODULE,
]
CODE_SERVER_HEALTH_CHECK = ["dagster", "api", "grpc-health-check", "-p", str(CODE_SERVER_PORT)]

# The EcsRunLauncher overrides this container of the run task definition (dagster.yaml).
RUN_CONTAINER_NAME = "run"

# Heavy steps: every launcher starts this one entry point (data_platform.compute.entry), as a
# Batch job or as a task of the step task definition, whose container has this name.
STEP_COMMAND = ["python", "-m", "data_platform.compute.entry"]
STEP_CONTAINER_NAME = "step"
# The tag every submitted Batch job carries (value: the queue name); IAM lets runs terminate only
# jobs with it. data_platform.resources.compute_aws.JOB_QUEUE_TAG is the same string (tested).
BATCH_JOB_TAG = "data-platform:job-queue"
ComputeLauncher = Literal["batch", "ecs"]
COMPUTE_LAUNCHERS: tuple[ComputeLauncher, ...] = ("batch", "ecs")

WebserverAccess = Literal["internal", "cognito", "oidc"]
WEBSERVER_ACCESS_MODES: tuple[WebserverAccess, ...] = ("internal", "cognito", "oidc")


@dataclass(frozen=True)
class OidcSettings:
    """The identity provider an internet-facing ALB authenticates webserver users against."""

    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    user_info_endpoint: str
    client_id: str
    # Name of a Secrets Manager secret (created by you) holding the client secret as plain text.
    client_secret_name: str


@dataclass(frozen=True)
class DeploySettings:
    """Everything that may differ between two deployments of the platform."""

    name: str = "data-platform"
    image_tag: str | None = None
    webserver_access: WebserverAccess = "internal"
    certificate_arn: str | None = None
    webserver_domain: str | None = None
    allowed_cidr: str = "0.0.0.0/0"
    cognito_domain_prefix: str | None = None
    oidc: OidcSettings | None = None
    vpc_cidr: str = "10.40.0.0/16"
    max_azs: int = 2
    interface_endpoints: bool = False
    db_deletion_protection: bool = True
    batch_max_vcpus: int = 32
    athena_bytes_scanned_cutoff_gb: int = 100
    glue_database: str = "data_platform"
    # Where runs send heavy steps (PLATFORM_COMPUTE): the Batch queue or ECS tasks.
    compute_launcher: ComputeLauncher = "batch"
    # Sizes of everything that costs money while idle (stacks.profiles); the fields after it
    # override single values of it (None: the profile's value) and hold the resolved value.
    profile: Profile = PROFILES["default"]
    nat_gateways: int | None = None
    webserver_load_balancer: bool | None = None
    db_instance_class: str | None = None
    db_multi_az: bool | None = None
    db_backup_retention_days: int | None = None
    log_retention_days: int | None = None

    def __post_init__(self) -> None:
        overrides = {k: getattr(self, k) for k in PROFILE_OVERRIDES if getattr(self, k) is not None}
        profile = replace(self.profile, **overrides)  # Profile checks the combination
        object.__setattr__(self, "profile", profile)
        for key in PROFILE_OVERRIDES:
            object.__setattr__(self, key, getattr(profile, key))
        if self.compute_launcher not in COMPUTE_LAUNCHERS:
            raise ValueError(
                f"compute_launcher must be one of {', '.join(COMPUTE_LAUNCHERS)}, "
                f"got {self.compute_launcher!r}"
            )
        if self.webserver_access not in WEBSERVER_ACCESS_MODES:
            raise ValueError(
                f"webserver_access must be one of {', '.join(WEBSERVER_ACCESS_MODES)}, "
                f"got {self.webserver_access!r}"
            )
        if self.public_webserver:
            missing = [
                flag
                for flag, value in (
                    ("certificate_arn", self.certificate_arn),
                    ("webserver_domain", self.webserver_domain),
                )
                if not value
            ]
            if self.webserver_access == "cognito" and not self.cognito_domain_prefix:
                missing.append("cognito_domain_prefix")
            if self.webserver_access == "oidc" and self.oidc is None:
                missing.extend(f"oidc_{field}" for field in OidcSettings.__dataclass_fields__)
            if missing:
                raise ValueError(
                    f"webserver_access={self.webserver_access} puts the webserver on the internet "
                    f"behind an authenticating load balancer; set "
                    + ", ".join(f"-c {flag}=..." for flag in missing)
                )
        if profile.public_tasks and self.compute_launcher == "ecs":
            # ECS step tasks are started by data_platform.resources.compute_aws without a public
            # IP, which a task in a subnet without NAT needs to pull its image.
            raise ValueError(
                f"profile {profile.name} runs tasks without NAT: use -c compute_launcher=batch "
                "(Batch jobs get a public IP), or a profile with a NAT gateway"
            )
        if self.public_webserver and not profile.webserver_load_balancer:
            raise ValueError(
                f"webserver_access={self.webserver_access} needs the load balancer; "
                "set -c webserver_load_balancer=true"
            )

    @property
    def public_webserver(self) -> bool:
        """True when the load balancer is internet-facing (and then always authenticating)."""
        return self.webserver_access != "internal"

    @property
    def log_retention(self) -> logs.RetentionDays:
        """The CloudWatch Logs retention of every log group the app creates."""
        return logs.RetentionDays[LOG_RETENTION_DAYS[self.profile.log_retention_days]]

    @property
    def task_subnets(self) -> ec2.SubnetSelection:
        """Where tasks and Batch jobs run: public subnets (public IP, no NAT) or private ones."""
        if self.profile.public_tasks:
            return ec2.SubnetSelection(subnet_type=ec2.SubnetType.PUBLIC)
        return ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS)

    @property
    def private_subnet_type(self) -> ec2.SubnetType:
        """The subnets of the database, file system and endpoints: with egress through NAT, or
        isolated when tasks have public IPs and nothing needs a NAT."""
        if self.profile.public_tasks:
            return ec2.SubnetType.PRIVATE_ISOLATED
        return ec2.SubnetType.PRIVATE_WITH_EGRESS

    @property
    def services_running(self) -> bool:
        """Services run only once an image tag is given; before that they are created at zero."""
        return bool(self.image_tag)

    @classmethod
    def from_context(cls, node: Node) -> DeploySettings:
        """Read settings from `cdk.json` and `-c key=value` flags (strings on the command line).

        Raises ValueError for unknown access modes, malformed numbers or booleans, and missing
        values a chosen mode needs.
        """
        defaults = cls.__dataclass_fields__

        def text(key: str) -> str | None:
            value = node.try_get_context(key)
            return None if value in (None, "") else str(value)

        def number(key: str) -> int | None:
            value = text(key)
            if value is None:
                return cast("int | None", defaults[key].default)
            try:
                return int(value)
            except ValueError:
                raise ValueError(f"context {key} must be an integer, got {value!r}") from None

        def flag(key: str) -> bool | None:
            value = node.try_get_context(key)
            if value is None or value == "":
                return cast("bool | None", defaults[key].default)
            if isinstance(value, bool):
                return value
            lowered = str(value).strip().lower()
            if lowered in ("true", "1", "yes"):
                return True
            if lowered in ("false", "0", "no"):
                return False
            raise ValueError(f"context {key} must be true or false, got {value!r}")

        profile_name = text("profile") or "default"
        if profile_name not in PROFILES:
            raise ValueError(f"profile must be one of {', '.join(PROFILES)}, got {profile_name!r}")
        oidc_values = {f: text(f"oidc_{f}") for f in OidcSettings.__dataclass_fields__}
        oidc = OidcSettings(**oidc_values) if all(oidc_values.values()) else None  # type: ignore[arg-type]
        return cls(
            name=text("name") or cls.name,
            image_tag=text("image_tag"),
            webserver_access=cast(WebserverAccess, text("webserver_access") or "internal"),
            certificate_arn=text("certificate_arn"),
            webserver_domain=text("webserver_domain"),
            allowed_cidr=text("allowed_cidr") or cls.allowed_cidr,
            cognito_domain_prefix=text("cognito_domain_prefix"),
            oidc=oidc,
            vpc_cidr=text("vpc_cidr") or cls.vpc_cidr,
            max_azs=cast(int, number("max_azs")),
            interface_endpoints=cast(bool, flag("interface_endpoints")),
            db_deletion_protection=cast(bool, flag("db_deletion_protection")),
            batch_max_vcpus=cast(int, number("batch_max_vcpus")),
            athena_bytes_scanned_cutoff_gb=cast(int, number("athena_bytes_scanned_cutoff_gb")),
            glue_database=text("glue_database") or cls.glue_database,
            compute_launcher=cast(ComputeLauncher, text("compute_launcher") or "batch"),
            profile=PROFILES[profile_name],
            nat_gateways=number("nat_gateways"),
            webserver_load_balancer=flag("webserver_load_balancer"),
            db_instance_class=text("db_instance_class"),
            db_multi_az=flag("db_multi_az"),
            db_backup_retention_days=number("db_backup_retention_days"),
            log_retention_days=number("log_retention_days"),
        )
