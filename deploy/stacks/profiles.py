"""Deploy profiles: one object per profile holding every size that costs money while the platform
idles (network egress, database, service tasks, load balancer, logs, image retention).

`default` is the profile deployed so far (private tasks behind a NAT gateway, an ALB, a
db.t4g.small); `lean` (`-c profile=lean`) is the cheapest setup that still runs Dagster on ECS
(no NAT gateway: tasks in public subnets with public IPs and no inbound rules from the internet,
no load balancer, a db.t4g.micro, the smallest Fargate sizes). deploy/README.md prices both and
states the trade-offs. Stacks read sizes from `DeploySettings.profile`, never from the name.
"""

from __future__ import annotations

from dataclasses import dataclass

# Retention periods CloudWatch Logs accepts, in days, by their aws-cdk-lib names.
LOG_RETENTION_DAYS = {
    1: "ONE_DAY",
    3: "THREE_DAYS",
    5: "FIVE_DAYS",
    7: "ONE_WEEK",
    14: "TWO_WEEKS",
    30: "ONE_MONTH",
    60: "TWO_MONTHS",
    90: "THREE_MONTHS",
    120: "FOUR_MONTHS",
    150: "FIVE_MONTHS",
    180: "SIX_MONTHS",
    365: "ONE_YEAR",
    400: "THIRTEEN_MONTHS",
    545: "EIGHTEEN_MONTHS",
    731: "TWO_YEARS",
    1827: "FIVE_YEARS",
    3653: "TEN_YEARS",
}

# Memory (MiB) Fargate accepts for the small CPU sizes services use; larger sizes are the run
# sizer's business (data_platform.sizing).
FARGATE_SERVICE_MEMORY = {
    256: (512, 1024, 2048),
    512: tuple(range(1024, 4096 + 1, 1024)),
    1024: tuple(range(2048, 8192 + 1, 1024)),
    2048: tuple(range(4096, 16384 + 1, 1024)),
}


@dataclass(frozen=True)
class TaskSize:
    """CPU units and memory of one always-on service task; `spot` puts it on Fargate Spot."""

    cpu: int
    memory_mib: int
    spot: bool = False

    def __post_init__(self) -> None:
        if self.memory_mib not in FARGATE_SERVICE_MEMORY.get(self.cpu, ()):
            raise ValueError(f"{self.cpu} CPU units with {self.memory_mib} MiB is no Fargate size")


@dataclass(frozen=True)
class Profile:
    """Everything that differs in size or price between two deployments of the same platform."""

    name: str
    # Egress: NAT gateways for tasks in private subnets, or none and tasks in public subnets
    # with a public IP (security groups admit nothing from the internet).
    nat_gateways: int
    public_tasks: bool
    # The ALB in front of the webserver; without it the UI is reached by port forwarding.
    webserver_load_balancer: bool
    container_insights: bool
    db_instance_class: str
    db_multi_az: bool
    db_storage_gib: int
    db_backup_retention_days: int
    log_retention_days: int
    # Images kept in the ECR repository (storage is billed per GB-month).
    image_count: int
    # Batch jobs on Fargate Spot: they are retried when their capacity is reclaimed.
    batch_spot: bool
    webserver: TaskSize
    daemon: TaskSize
    code_location: TaskSize

    def __post_init__(self) -> None:
        if self.log_retention_days not in LOG_RETENTION_DAYS:
            raise ValueError(
                f"log_retention_days must be one of {sorted(LOG_RETENTION_DAYS)}, "
                f"got {self.log_retention_days}"
            )
        if self.public_tasks and self.nat_gateways:
            raise ValueError(
                "nat_gateways must be 0 when tasks run in public subnets (they need no NAT)"
            )
        if not self.public_tasks and self.nat_gateways < 1:
            raise ValueError("nat_gateways must be at least 1: tasks reach AWS APIs through it")
        if self.db_backup_retention_days < 1:
            raise ValueError("db_backup_retention_days must be at least 1 (point-in-time restore)")


PROFILES: dict[str, Profile] = {
    "default": Profile(
        name="default",
        nat_gateways=1,
        public_tasks=False,
        webserver_load_balancer=True,
        container_insights=True,
        db_instance_class="t4g.small",
        db_multi_az=False,
        db_storage_gib=20,
        db_backup_retention_days=7,
        log_retention_days=30,
        image_count=50,
        batch_spot=False,
        webserver=TaskSize(1024, 2048),
        daemon=TaskSize(512, 2048),
        code_location=TaskSize(1024, 2048),
    ),
    "lean": Profile(
        name="lean",
        nat_gateways=0,
        public_tasks=True,
        webserver_load_balancer=False,
        container_insights=False,
        db_instance_class="t4g.micro",
        db_multi_az=False,
        db_storage_gib=20,
        db_backup_retention_days=1,
        log_retention_days=7,
        image_count=10,
        batch_spot=True,
        # Only the webserver is on Spot: a reclaimed webserver costs people a minute of UI;
        # the daemon and code location launch, monitor and feed runs, so they stay on demand.
        webserver=TaskSize(256, 1024, spot=True),
        daemon=TaskSize(256, 1024),
        code_location=TaskSize(256, 1024),
    ),
}
