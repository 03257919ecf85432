"""Benchmark: the local instance's storage (data_platform.local_storage) against Dagster's own
SQLite storage, on the same machine in the same run.

What every local run pays to Dagster's storage, measured in fresh DAGSTER_HOMEs:
- events: `--events` engine events written one by one into one run (ms per event);
- run creation: a run of the orders ingest job over `--partitions` files, as the sensor's
  requests make the daemon create them (Dagster logs planned events per partition and check).
Alternating, `--rounds` times; the median of each is reported.
Last line: `event_speedup=<stock/pooled> create_run_speedup=<stock/pooled>`.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time


def _instance(kind: str, home: str):
    import dagster as dg

    if kind == "dagster_sqlite":
        return dg.DagsterInstance.local_temp(home)
    from data_platform.instance import write_instance_yaml

    write_instance_yaml(home)
    return dg.DagsterInstance.from_config(home)


def measure(kind: str, events: int, partitions: int) -> tuple[float, float]:
    """(ms per event, seconds per run creation) on a new instance of `kind`."""
    from dagster._core.storage.tags import (
        ASSET_PARTITION_RANGE_END_TAG,
        ASSET_PARTITION_RANGE_START_TAG,
    )
    from data_platform.definitions import build_definitions

    with tempfile.TemporaryDirectory() as home, _instance(kind, home) as instance:
        job = build_definitions().resolve_job_def("ingest_orders_job")
        keys = [f"{i:05d}.csv" for i in range(partitions)]
        instance.add_dynamic_partitions("raw_orders", keys)
        tags = {ASSET_PARTITION_RANGE_START_TAG: keys[0], ASSET_PARTITION_RANGE_END_TAG: keys[-1]}
        instance.create_run_for_job(job, run_config={}, tags=tags)  # first-use costs aside
        t = time.perf_counter()
        run = instance.create_run_for_job(job, run_config={}, tags=tags)
        created = time.perf_counter() - t
        planned = len(instance.all_logs(run.run_id))
        assert planned >= partitions, f"{kind}: {planned} planned events for {partitions} files"
        t = time.perf_counter()
        for i in range(events):
            instance.report_engine_event(f"event {i}", run)
        per_event = (time.perf_counter() - t) / events * 1000
        assert len(instance.all_logs(run.run_id)) == planned + events
        return per_event, created


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--events", type=int, default=200)
    ap.add_argument("--partitions", type=int, default=100)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args(argv)
    results: dict[str, list[tuple[float, float]]] = {"dagster_sqlite": [], "platform": []}
    with tempfile.TemporaryDirectory(prefix="instance-bench-") as data:
        os.environ["PLATFORM_DATA_DIR"] = data  # the definitions' resources; nothing is run
        for i in range(args.rounds):
            for kind in (list(results) if i % 2 == 0 else list(results)[::-1]):
                results[kind].append(measure(kind, args.events, args.partitions))
                ms, created = results[kind][-1]
                print(f"round {i + 1}: {kind:<15} {ms:6.2f} ms per event, run creation "
                      f"({args.partitions} files) {created:5.2f} s", flush=True)
    med = {k: (statistics.median(r[0] for r in v), statistics.median(r[1] for r in v))
           for k, v in results.items()}
    for k, (ms, created) in med.items():
        print(f"median {k:<15} {ms:6.2f} ms per event, run creation {created:5.2f} s")
    stock, ours = med["dagster_sqlite"], med["platform"]
    print(f"event_speedup={stock[0] / ours[0]:.1f} create_run_speedup={stock[1] / ours[1]:.1f}")


if __name__ == "__main__":
    main()
