"""Run sizing and run cost on Fargate, from the bytes a run will process. No Dagster here.

The sensor sizes each run it requests with `size_for(input_bytes, RunSizing.from_env())` and puts
`ecs_tags(size)` on the run: the EcsRunLauncher turns the `ecs/cpu`, `ecs/memory` and
`ecs/ephemeral_storage` tags into task overrides, so a 2 KB file gets the smallest task and a
30 GB file a large one, always a CPU/memory pair Fargate accepts and within configured bounds.
An input too large for the task's local disk is not copied: `TaskSize.stream_from` says to read
it through the EFS scratch mount or with S3 ranged reads instead.

`estimate_run_cost` prices a finished (or planned) run from its size and duration with
`FargatePrices` (us-east-1 on-demand list prices by default, overridable from the environment),
plus Athena's price per TB scanned where a run queries through Athena.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any, Literal

MIB = 1024**2
GIB = 1024**3
TIB = 1024**4

# Every CPU/memory (MiB) pair Fargate accepts for a Linux task.
FARGATE_SIZES: dict[int, tuple[int, ...]] = {
    256: (512, 1024, 2048),
    512: tuple(range(1024, 4096 + 1, 1024)),
    1024: tuple(range(2048, 8192 + 1, 1024)),
    2048: tuple(range(4096, 16384 + 1, 1024)),
    4096: tuple(range(8192, 30720 + 1, 1024)),
    8192: tuple(range(16384, 61440 + 1, 4096)),
    16384: tuple(range(32768, 122880 + 1, 8192)),
}
# Fargate gives every task 20 GiB of ephemeral storage; up to 200 GiB may be requested.
DEFAULT_EPHEMERAL_GIB = 20
MAX_EPHEMERAL_GIB = 200
# Fargate bills per second with a one-minute minimum.
MINIMUM_BILLED_SECONDS = 60

StreamFrom = Literal["local", "scratch", "s3"]


def fargate_pairs() -> list[tuple[int, int]]:
    """Return every valid (cpu units, memory MiB) pair, ordered by CPU then memory."""
    return [(cpu, memory) for cpu, memories in FARGATE_SIZES.items() for memory in memories]


def env_values(cls: type, prefix: str, environ: Mapping[str, str]) -> dict[str, Any]:
    """Field values of dataclass `cls` found in `environ` as PREFIX + FIELD_NAME (upper case),
    converted to the type of the field's default. Raises ValueError naming a malformed variable."""
    values: dict[str, Any] = {}
    for field in fields(cls):
        name = prefix + field.name.upper()
        if name not in environ or environ[name].strip() == "":
            continue
        raw = environ[name].strip()
        kind = type(field.default)
        try:
            values[field.name] = raw if kind is str else kind(raw)
        except ValueError:
            what = "an integer" if kind is int else "a number"
            raise ValueError(f"{name} must be {what}, got {raw!r}") from None
    return values


@dataclass(frozen=True)
class RunSizing:
    """How to size a run from its input (env `PLATFORM_RUN_<FIELD>`, e.g. PLATFORM_RUN_MAX_CPU).

    CPU: one vCPU per `bytes_per_vcpu` of input (CSV to Parquet is CPU-bound at roughly
    100-200 MB/s per core, so the default gives a 30 GB file about 8 vCPU). Memory:
    `base_memory_mib` plus `memory_per_input_byte` times the input (the cleaning engines stream,
    so memory grows far slower than input). Local disk: `disk_per_input_byte` times the input
    (the copy plus its outputs); above `ephemeral_limit_gib` the input is streamed via
    `stream_via` instead.
    """

    min_cpu: int = 256
    max_cpu: int = 8192
    # A run process loads Dagster and the definitions (~0.4 GB measured): 1 GB at least.
    min_memory_mib: int = 1024
    max_memory_mib: int = 61440
    bytes_per_vcpu: int = 4 * GIB
    base_memory_mib: int = 1024
    memory_per_input_byte: float = 0.25
    disk_per_input_byte: float = 2.0
    ephemeral_limit_gib: int = 100
    stream_via: str = "s3"

    def __post_init__(self) -> None:
        if not DEFAULT_EPHEMERAL_GIB <= self.ephemeral_limit_gib <= MAX_EPHEMERAL_GIB:
            raise ValueError(
                f"ephemeral_limit_gib must be within {DEFAULT_EPHEMERAL_GIB}-{MAX_EPHEMERAL_GIB}, "
                f"got {self.ephemeral_limit_gib}"
            )
        if self.stream_via not in ("scratch", "s3"):
            raise ValueError(f"stream_via must be 'scratch' or 's3', got {self.stream_via!r}")
        if self.min_cpu > self.max_cpu or self.min_memory_mib > self.max_memory_mib:
            raise ValueError("the minimum CPU and memory must not exceed the maximum")
        factors = (self.memory_per_input_byte, self.disk_per_input_byte)
        if self.bytes_per_vcpu <= 0 or min(factors) < 0:
            raise ValueError("bytes_per_vcpu must be positive and the per-byte factors >= 0")
        if not self.allowed_pairs():
            raise ValueError(
                f"no Fargate size has {self.min_cpu}-{self.max_cpu} CPU units and "
                f"{self.min_memory_mib}-{self.max_memory_mib} MiB"
            )

    def allowed_pairs(self) -> list[tuple[int, int]]:
        """Return the valid Fargate pairs inside the bounds, ordered by CPU then memory."""
        return [
            (cpu, memory)
            for cpu, memory in fargate_pairs()
            if self.min_cpu <= cpu <= self.max_cpu
            and self.min_memory_mib <= memory <= self.max_memory_mib
        ]

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> RunSizing:
        """Return the settings from `PLATFORM_RUN_*` variables (defaults for those unset).

        Raises ValueError for a malformed number or bounds no Fargate size fits."""
        return cls(**env_values(cls, "PLATFORM_RUN_", os.environ if environ is None else environ))


@dataclass(frozen=True)
class TaskSize:
    """The task a run gets: Fargate CPU units and memory (MiB) as the strings the ECS tags take,
    ephemeral storage in GiB when above Fargate's 20 GiB default (else None), and where the
    run reads its input from: a local copy, the EFS scratch mount, or S3 ranged reads."""

    cpu: str
    memory: str
    ephemeral_gib: int | None
    stream_from: StreamFrom
    # True when the input wanted more than the configured maximum and got the largest size.
    capped: bool = False


def size_for(input_bytes: int, settings: RunSizing | None = None) -> TaskSize:
    """Return the smallest valid Fargate size within the bounds that gives `input_bytes` its
    wanted CPU and memory (the largest allowed size when none does), and its disk plan.

    Both CPU and memory grow monotonically with the input. Raises ValueError for negative sizes.
    """
    if input_bytes < 0:
        raise ValueError(f"input_bytes must be >= 0, got {input_bytes}")
    settings = settings or RunSizing()
    want_cpu = math.ceil(input_bytes / settings.bytes_per_vcpu * 1024)
    # Whole MiB: a few KB of input must not push a run past its base memory.
    grown = int(input_bytes * settings.memory_per_input_byte // MIB)
    want_memory = settings.base_memory_mib + grown
    pairs = settings.allowed_pairs()
    # Pairs are ordered by CPU then memory, and a larger CPU never allows less memory, so the
    # first pair meeting both wants is also the cheapest.
    fitting = [(c, m) for c, m in pairs if c >= want_cpu and m >= want_memory]
    cpu, memory = fitting[0] if fitting else pairs[-1]

    disk_gib = math.ceil(input_bytes * settings.disk_per_input_byte / GIB)
    stream_from: StreamFrom = "local"
    ephemeral: int | None = None
    if disk_gib > settings.ephemeral_limit_gib:
        stream_from = "scratch" if settings.stream_via == "scratch" else "s3"
    elif disk_gib > DEFAULT_EPHEMERAL_GIB:
        ephemeral = disk_gib
    return TaskSize(str(cpu), str(memory), ephemeral, stream_from, capped=not fitting)


def ecs_tags(size: TaskSize) -> dict[str, str]:
    """Return the run tags the EcsRunLauncher turns into task overrides: `ecs/cpu`,
    `ecs/memory`, and `ecs/ephemeral_storage` only when more than the 20 GiB default."""
    tags = {"ecs/cpu": size.cpu, "ecs/memory": size.memory}
    if size.ephemeral_gib is not None and size.ephemeral_gib > DEFAULT_EPHEMERAL_GIB:
        tags["ecs/ephemeral_storage"] = str(size.ephemeral_gib)
    return tags


@dataclass(frozen=True)
class FargatePrices:
    """Fargate Linux prices in USD (env `PLATFORM_FARGATE_<FIELD>`: PLATFORM_FARGATE_VCPU_HOUR...).

    Defaults: us-east-1 on-demand list prices (x86 $0.04048 per vCPU-hour and $0.004445 per
    GB-hour; ARM $0.03238 and $0.00356; ephemeral storage above 20 GB $0.000111 per GB-hour).
    Fargate Spot has no list price; `spot_discount` (0.7) is its usual discount, re-check it.
    """

    vcpu_hour: float = 0.04048
    gb_hour: float = 0.004445
    arm_vcpu_hour: float = 0.03238
    arm_gb_hour: float = 0.00356
    ephemeral_gb_hour: float = 0.000111
    spot_discount: float = 0.7

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> FargatePrices:
        """Return prices from `PLATFORM_FARGATE_*` variables (defaults for those unset).

        Raises ValueError for a malformed number."""
        env = os.environ if environ is None else environ
        return cls(**env_values(cls, "PLATFORM_FARGATE_", env))


def estimate_run_cost(
    cpu: int | str,
    memory: int | str,
    seconds: float,
    prices: FargatePrices | None = None,
    athena_bytes: int = 0,
    athena_price_per_tb: float = 5.0,
    *,
    ephemeral_gib: int | None = None,
    arm: bool = False,
    spot: bool = False,
) -> dict[str, Any]:
    """Return the estimated USD cost of one run task (and its Athena scans) with its inputs.

    Fargate bills vCPU and GB per second with a one-minute minimum; ephemeral storage above
    20 GiB is billed too; Spot takes `spot_discount` off compute. Athena bills per TB (2**40
    bytes) scanned. Keys: cpu, memory_mib, vcpu, memory_gb, seconds, billed_seconds,
    ephemeral_gib, architecture, spot, fargate_usd, athena_bytes, athena_usd, total_usd, and
    the unit prices used. Raises ValueError for a negative duration or byte count.
    """
    if seconds < 0 or athena_bytes < 0:
        raise ValueError("seconds and athena_bytes must be >= 0")
    prices = prices or FargatePrices()
    vcpu = int(cpu) / 1024
    memory_gb = int(memory) / 1024
    billed_seconds = max(MINIMUM_BILLED_SECONDS, math.ceil(seconds))
    hours = billed_seconds / 3600
    vcpu_price = prices.arm_vcpu_hour if arm else prices.vcpu_hour
    gb_price = prices.arm_gb_hour if arm else prices.gb_hour
    compute = (vcpu * vcpu_price + memory_gb * gb_price) * hours
    if spot:
        compute *= 1 - prices.spot_discount
    extra_disk = max(0, (ephemeral_gib or DEFAULT_EPHEMERAL_GIB) - DEFAULT_EPHEMERAL_GIB)
    storage = extra_disk * prices.ephemeral_gb_hour * hours
    athena = athena_bytes / TIB * athena_price_per_tb
    fargate = compute + storage
    return {
        "cpu": int(cpu),
        "memory_mib": int(memory),
        "vcpu": vcpu,
        "memory_gb": memory_gb,
        "seconds": seconds,
        "billed_seconds": billed_seconds,
        "ephemeral_gib": ephemeral_gib or DEFAULT_EPHEMERAL_GIB,
        "architecture": "arm64" if arm else "x86_64",
        "spot": spot,
        "vcpu_hour_usd": vcpu_price,
        "gb_hour_usd": gb_price,
        "fargate_usd": fargate,
        "athena_bytes": athena_bytes,
        "athena_price_per_tb_usd": athena_price_per_tb,
        "athena_usd": athena,
        "total_usd": fargate + athena,
    }
