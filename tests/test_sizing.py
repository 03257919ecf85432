"""Run sizing and cost (data_platform.sizing): valid Fargate pairs only, bounds, monotonic growth
with the input, the streaming decision, the ECS tags, and cost arithmetic checked against values
computed by hand from the documented us-east-1 prices."""

from __future__ import annotations

import pytest

from data_platform.sizing import (
    GIB,
    FargatePrices,
    RunSizing,
    TaskSize,
    ecs_tags,
    estimate_run_cost,
    fargate_pairs,
    size_for,
)

# Input sizes from empty to far beyond any task: every power of two and its neighbours.
SWEEP = sorted({0, 1, 2048} | {n for k in range(10, 46) for n in (2**k - 1, 2**k, 3 * 2**k)})

# The pairs Fargate's documentation lists, written out independently of the module's table.
DOCUMENTED = (
    {(256, m) for m in (512, 1024, 2048)}
    | {(512, m) for m in range(1024, 4097, 1024)}
    | {(1024, m) for m in range(2048, 8193, 1024)}
    | {(2048, m) for m in range(4096, 16385, 1024)}
    | {(4096, m) for m in range(8192, 30721, 1024)}
    | {(8192, m) for m in range(16 * 1024, 60 * 1024 + 1, 4 * 1024)}
    | {(16384, m) for m in range(32 * 1024, 120 * 1024 + 1, 8 * 1024)}
)


def pair(size: TaskSize) -> tuple[int, int]:
    return int(size.cpu), int(size.memory)


def test_the_table_is_exactly_fargates_documented_pairs():
    assert set(fargate_pairs()) == DOCUMENTED
    assert len(fargate_pairs()) == len(DOCUMENTED)


@pytest.mark.parametrize(
    "settings",
    [
        RunSizing(),
        RunSizing(min_cpu=512, max_cpu=4096, min_memory_mib=2048, max_memory_mib=16384),
        RunSizing(max_cpu=16384, max_memory_mib=122880, bytes_per_vcpu=GIB),
        RunSizing(min_cpu=1024, max_cpu=1024, max_memory_mib=6000, memory_per_input_byte=2.0),
    ],
    ids=["defaults", "bounded", "whole-range", "one-cpu"],
)
def test_every_size_is_a_valid_pair_within_bounds_and_grows_with_the_input(settings):
    previous = (0, 0)
    for n in SWEEP:
        size = size_for(n, settings)
        got = pair(size)
        assert got in DOCUMENTED, (n, got)
        assert settings.min_cpu <= got[0] <= settings.max_cpu, (n, got)
        assert settings.min_memory_mib <= got[1] <= settings.max_memory_mib, (n, got)
        assert got[0] >= previous[0] and got[1] >= previous[1], (n, previous, got)
        previous = got


def test_a_tiny_file_gets_the_smallest_pair_and_a_huge_one_a_large_task():
    settings = RunSizing()
    assert pair(size_for(2 * 1024, settings)) == settings.allowed_pairs()[0] == (256, 1024)
    big = size_for(30 * 10**9, settings)
    # 30 GB at 4 GiB per vCPU wants ~7 vCPU: 8 vCPU, whose smallest memory is 16 GiB.
    assert pair(big) == (8192, 16384)
    assert not big.capped


def test_memory_follows_the_input_and_pushes_cpu_up_when_one_cpu_cannot_hold_it():
    settings = RunSizing(memory_per_input_byte=1.0, bytes_per_vcpu=1024 * GIB)
    # 10 GiB input: 1 GiB base + 10 GiB; 0.25 and 0.5 vCPU cannot have 11 GiB, 1 vCPU can
    # have at most 8 GiB, so 2 vCPU with 11 GiB.
    assert pair(size_for(10 * GIB, settings)) == (2048, 11264)


def test_an_input_beyond_the_bounds_gets_the_largest_allowed_size_and_says_so():
    settings = RunSizing(max_cpu=2048, max_memory_mib=8192)
    size = size_for(500 * GIB, settings)
    assert pair(size) == (2048, 8192)
    assert size.capped


def test_disk_local_then_more_ephemeral_storage_then_streaming():
    settings = RunSizing(disk_per_input_byte=2.0, ephemeral_limit_gib=100)
    small = size_for(5 * GIB, settings)  # 10 GiB on disk fits the 20 GiB default
    assert (small.ephemeral_gib, small.stream_from) == (None, "local")
    medium = size_for(30 * GIB, settings)  # 60 GiB: ask for it
    assert (medium.ephemeral_gib, medium.stream_from) == (60, "local")
    large = size_for(51 * GIB, settings)  # 102 GiB > 100: stream, do not copy
    assert (large.ephemeral_gib, large.stream_from) == (None, "s3")
    scratch = size_for(51 * GIB, RunSizing(ephemeral_limit_gib=100, stream_via="scratch"))
    assert scratch.stream_from == "scratch"


def test_ecs_tags_carry_ephemeral_storage_only_above_the_default():
    assert ecs_tags(TaskSize("256", "1024", None, "local")) == {
        "ecs/cpu": "256",
        "ecs/memory": "1024",
    }
    assert ecs_tags(TaskSize("4096", "16384", 64, "local")) == {
        "ecs/cpu": "4096",
        "ecs/memory": "16384",
        "ecs/ephemeral_storage": "64",
    }
    tags = ecs_tags(size_for(30 * GIB))
    assert tags["ecs/ephemeral_storage"] == "60" and tags["ecs/cpu"] == "8192"


def test_settings_from_the_environment_and_their_checks():
    env = {
        "PLATFORM_RUN_MAX_CPU": "4096",
        "PLATFORM_RUN_MAX_MEMORY_MIB": "30720",
        "PLATFORM_RUN_MEMORY_PER_INPUT_BYTE": "0.5",
        "PLATFORM_RUN_EPHEMERAL_LIMIT_GIB": "200",
        "PLATFORM_RUN_STREAM_VIA": "scratch",
        "PLATFORM_RUN_MIN_CPU": "",
    }
    settings = RunSizing.from_env(env)
    assert (settings.max_cpu, settings.max_memory_mib, settings.min_cpu) == (4096, 30720, 256)
    assert (settings.memory_per_input_byte, settings.ephemeral_limit_gib) == (0.5, 200)
    assert settings.stream_via == "scratch"
    with pytest.raises(ValueError, match="PLATFORM_RUN_MAX_CPU must be an integer"):
        RunSizing.from_env({"PLATFORM_RUN_MAX_CPU": "lots"})
    with pytest.raises(ValueError, match="ephemeral_limit_gib must be within 20-200"):
        RunSizing.from_env({"PLATFORM_RUN_EPHEMERAL_LIMIT_GIB": "500"})
    with pytest.raises(ValueError, match="no Fargate size"):
        RunSizing(min_cpu=300, max_cpu=400)
    with pytest.raises(ValueError, match="input_bytes"):
        size_for(-1)


def test_cost_of_a_run_by_hand_from_the_documented_prices():
    prices = FargatePrices()
    # 1 vCPU, 4 GB for 15 minutes: (1 x 0.04048 + 4 x 0.004445) x 0.25 h = 0.014565
    cost = estimate_run_cost("1024", "4096", 900, prices)
    assert cost["fargate_usd"] == pytest.approx(0.014565)
    assert cost["total_usd"] == pytest.approx(0.014565)
    assert (cost["vcpu"], cost["memory_gb"], cost["billed_seconds"]) == (1.0, 4.0, 900)
    # 8 vCPU, 16 GB, 1 hour, 60 GiB disk (40 above the default), plus 2 TiB through Athena:
    # 8 x 0.04048 + 16 x 0.004445 = 0.39496; disk 40 x 0.000111 = 0.00444; Athena 2 x 5 = 10.
    big = estimate_run_cost(8192, 16384, 3600, prices, athena_bytes=2 * 1024**4, ephemeral_gib=60)
    assert big["fargate_usd"] == pytest.approx(0.39496 + 0.00444)
    assert big["athena_usd"] == pytest.approx(10.0)
    assert big["total_usd"] == pytest.approx(10.3994)


def test_cost_minimum_billing_arm_and_spot():
    prices = FargatePrices()
    # A 5-second run is billed a full minute: 0.25 x 0.04048 + 1 x 0.004445 = 0.014565 per hour.
    short = estimate_run_cost(256, 1024, 5, prices)
    assert short["billed_seconds"] == 60
    assert short["fargate_usd"] == pytest.approx(0.014565 / 60)
    # ARM: 2 x 0.03238 + 8 x 0.00356 = 0.09324 per hour; Spot takes 70 % off.
    assert estimate_run_cost(2048, 8192, 3600, prices, arm=True)["fargate_usd"] == pytest.approx(
        0.09324
    )
    spot = estimate_run_cost(2048, 8192, 3600, prices, spot=True)
    assert spot["fargate_usd"] == pytest.approx((2 * 0.04048 + 8 * 0.004445) * 0.3)
    with pytest.raises(ValueError):
        estimate_run_cost(256, 512, -1, prices)


def test_prices_from_the_environment():
    prices = FargatePrices.from_env(
        {"PLATFORM_FARGATE_VCPU_HOUR": "0.05", "PLATFORM_FARGATE_SPOT_DISCOUNT": "0.5"}
    )
    assert (prices.vcpu_hour, prices.spot_discount, prices.gb_hour) == (0.05, 0.5, 0.004445)
    cost = estimate_run_cost(1024, 2048, 3600, prices, spot=True)
    assert cost["fargate_usd"] == pytest.approx((0.05 + 2 * 0.004445) * 0.5)


def test_sensor_settings_read_the_environment_like_the_run_sizing():
    """One reader of PLATFORM_* numbers: a malformed sensor variable is named, not a bare
    ValueError deep in the tick."""
    from data_platform.sensors.planning import SensorSettings

    s = SensorSettings.from_env({"PLATFORM_SENSOR_MAX_FILES_PER_RUN": "7",
                                 "PLATFORM_SENSOR_SETTLE_SECONDS": "0.5",
                                 "PLATFORM_SENSOR_MAX_FILES_PER_TICK": " "})
    assert (s.max_files_per_run, s.settle_seconds, s.max_files_per_tick) == (7, 0.5, 1000)
    with pytest.raises(ValueError, match="PLATFORM_SENSOR_MAX_FILES_PER_TICK must be an integer"):
        SensorSettings.from_env({"PLATFORM_SENSOR_MAX_FILES_PER_TICK": "lots"})
