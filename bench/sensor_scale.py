"""Benchmark: the raw-upload sensor's tick cost over a large raw prefix, listing vs queue mode.

Runs moto's server in this process (127.0.0.1, a free port) as the deploy's AWS stands in:
raw and lake buckets, an SQS queue with a dead-letter queue, the raw bucket's notifications to
it, a Glue database. For each prefix size and each mode it starts from an empty account:

1. populates `raw/orders/` with N objects (and `raw/penguins/` with a few) as old history:
   written straight into moto's in-process S3 backend with notifications off and
   LastModified spread over the past 30 days (boto3 `put_object` is measured on a sample and
   would take minutes at 100,000);
2. brings the sensor to steady state, measured: in listing mode the first tick sees every
   object (all waiting to settle) and a drain tick, with the budget raised to the prefix size,
   launches them all (runs not submitted); the bench then records those versions as finished
   (drops them from the state's `inflight`, as healing would once their runs committed). In
   queue mode the keys are registered as partitions and handled rows (what the sensor writes
   once their runs are requested) and the first tick runs the reconciliation listing;
3. uploads 0, 10, 1,000 new objects with boto3 (queue mode gets real notifications) and times
   the ticks that handle them: listing mode needs two (one sees, one launches once settled;
   PLATFORM_SENSOR_SETTLE_SECONDS=0), queue mode launches at once (over more ticks when a
   tick's 20 s receive budget runs out first: moto's ReceiveMessage takes about a second per
   call with 1,000 messages queued, real SQS tens of milliseconds) and acknowledges the
   messages at the next tick. Queue-mode scenarios of up to 10 objects run `--repeat` times
   (median); listing mode's ticks are long and run once.

Ticks are evaluated as the daemon does (tests/helpers.tick: partitions added, run keys
deduplicated, runs recorded) on an on-disk SQLite instance in a temp DAGSTER_HOME. S3 and SQS
calls are counted per tick by operation (around botocore's `_make_api_call`); instance queries
are not. The server shares this process (and its GIL) with the sensor, so its work is in the
tick seconds, as a real S3's latency would be. `--land` uploads a sample orders CSV into the
largest prefix (queue mode), ticks, runs the requested job in process and reads the rows back
through pyiceberg's Glue catalog: seconds from upload to rows queryable.

Last line, exactly: `queue_tick_s=<largest prefix, 10 new> queue_growth=<largest/smallest
prefix> listing_tick_s=<largest prefix, 10 new>` (the launching tick in both modes; without
10 in --new, the smallest non-zero count).
Usage: python bench/sensor_scale.py [--quick] [--sizes 1000,100000] [--new 0,10,1000]
       [--repeat 3] [--land | --no-land] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import dagster as dg

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # tests/helpers: the daemon's way of applying a tick

from data_platform.definitions import build_definitions  # noqa: E402
from data_platform.sensors import state as ss  # noqa: E402
from scale_stack import Calls, Stack, csv_body, put_rate  # noqa: E402
from tests.helpers import tick  # noqa: E402

SAMPLE = REPO / "samples" / "raw" / "orders" / "2026-11-20.csv"


class Scenario:
    """One prefix size in one mode: its instance, cursor and the rows measured."""

    def __init__(self, stack: Stack, mode: str, size: int, history: dict,
                 instance: dg.DagsterInstance):
        self.stack, self.mode, self.size, self.history = stack, mode, size, history
        self.instance = instance
        self.defs = build_definitions("aws")
        self.cursor = None
        self.rows: list[dict] = []

    def tick(self, calls: Calls, label: str, new: int | str = "", submit: bool = True) -> dict:
        with calls.measure() as m:
            requests, _, cursor = tick(self.defs, self.instance, self.cursor, submit=submit)
        self.cursor = cursor
        m.update(label=label, size=self.size, new=new, runs=len(requests),
                 files=sum(int(r.tags.get("platform/files", 1)) for r in requests),
                 requests=requests)
        self.rows.append(m)
        return m

    def steady(self, calls: Calls) -> None:
        """Bring the sensor to steady state over the populated history (measured)."""
        total = sum(len(v) for v in self.history.values())
        if self.mode == "listing":
            self.tick(calls, "first tick: all seen")
            os.environ["PLATFORM_SENSOR_MAX_FILES_PER_TICK"] = str(total + 1)
            try:
                self.tick(calls, "drain tick: all launched", submit=False)
            finally:
                del os.environ["PLATFORM_SENSOR_MAX_FILES_PER_TICK"]
            self.cursor = finished(self.instance, self.cursor)
        else:
            t0 = time.perf_counter()
            for ds, rows in self.history.items():
                self.instance.add_dynamic_partitions(f"raw_{ds}", sorted(rows))
            ss.write_handled(self.instance, self.history)
            print(f"  registered {total} partitions and handled rows in "
                  f"{time.perf_counter() - t0:.1f} s")
            # The pass is spread over ticks (PLATFORM_SENSOR_RECONCILE_OBJECTS_PER_TICK): tick
            # until it is done, so that the scenarios measure ticks with no listing at all.
            launched = self.tick(calls, "first tick: reconciliation")["files"]
            for _ in range(1000):
                if "after" not in ss.load_state(self.instance, ss.parse_cursor(self.cursor)[0]
                                                ).get("reconcile", {}):
                    break
                launched += self.tick(calls, "reconciliation (continued)")["files"]
            if launched:
                print(f"WARNING: reconciliation launched {launched} history file(s)")

    def scenario(self, calls: Calls, new: int, tag: str) -> None:
        """Upload `new` objects with boto3 and tick: listing mode sees them, then launches
        them; queue mode launches them (over more ticks when a tick's receive budget runs
        out first), then acknowledges their messages."""
        for i in range(new):
            self.stack.s3.put_object(Bucket="raw-bucket", Key=f"raw/orders/new/{tag}-{i:05d}.csv",
                                     Body=csv_body(i))
        if self.mode == "listing":
            got = {label: self.tick(calls, label, new)["files"] for label in ("seen", "launched")}
            ok = got == {"seen": 0, "launched": new}
        else:
            got = {"launched": self.tick(calls, "launched", new)["files"]}
            for _ in range(30):
                if got["launched"] >= new:
                    break
                got["launched"] += self.tick(calls, "launched (continued)", new)["files"]
            got["acknowledged"] = self.tick(calls, "acknowledged", new)["files"]
            ok = got == {"launched": new, "acknowledged": 0}
        if not ok:
            print(f"WARNING: {self.mode}, {self.size} objects, {new} new: files launched {got}")


def finished(instance: dg.DagsterInstance, cursor: str) -> str:
    """The state as it is once every requested version's run committed: nothing in flight.
    (Healing drops a version from `inflight` when it reads its committed staging record; the
    bench executes none of the drained runs.) Returns the new cursor."""
    gen, t = ss.parse_cursor(cursor)
    committed = ss.load_state(instance, gen)
    state = json.loads(json.dumps(committed))
    for ds in state.get("datasets", {}).values():
        ds["inflight"] = {}
    return ss.make_cursor(ss.save_state(instance, gen, committed, state), t)


def land(scenario: Scenario, calls: Calls) -> dict:
    """Upload one sample CSV and measure upload -> rows queryable through the Glue catalog."""
    from data_platform.resources import GlueCatalog

    key = f"raw/orders/land/{int(time.time())}.csv"
    t0 = time.perf_counter()
    scenario.stack.s3.put_object(Bucket="raw-bucket", Key=key, Body=SAMPLE.read_bytes())
    request = None
    for _ in range(10):
        m = scenario.tick(calls, "land: tick", 1)
        mine = [r for r in m["requests"] if any(
            key.endswith(k) for k in r.run_config["ops"]["cleaned__orders"]["config"]["versions"])]
        if mine:
            request = mine[0]
            break
    if request is None:
        raise RuntimeError(f"no tick launched {key}")
    t_tick = time.perf_counter()
    job = scenario.defs.resolve_job_def(request.job_name)
    tags = {k: v for k, v in request.tags.items() if k.startswith("dagster/asset_partition")}
    result = job.execute_in_process(instance=scenario.instance, run_config=request.run_config,
                                    tags=tags, partition_key=request.partition_key,
                                    raise_on_error=False)
    t_run = time.perf_counter()
    table = GlueCatalog(database="platform", workgroup="platform").iceberg().load_table(
        ("platform", "orders"))
    rows = table.scan().to_arrow().num_rows
    t_end = time.perf_counter()
    return {"ok": result.success, "rows": rows, "total": t_end - t0, "tick": t_tick - t0,
            "run": t_run - t_tick, "read": t_end - t_run}


def fmt_calls(calls: dict, service: str, ops: dict[str, str]) -> str:
    mine = {op: n for (svc, op), n in calls.items() if svc == service}
    parts = [f"{mine.pop(op, 0)}" for op in ops]
    other = sum(mine.values())
    return "/".join(parts) + (f" +{other}" if other else "")


S3_OPS = {"ListObjectsV2": "LIST", "HeadObject": "HEAD", "GetObject": "GET"}
SQS_OPS = {"ReceiveMessage": "recv", "DeleteMessageBatch": "del"}


def print_table(mode: str, rows: list[dict]) -> None:
    """One line per (prefix, new, tick): the median over its ticks (calls of the median one)."""
    print(f"\n{mode} mode{' (PLATFORM_RAW_EVENTS_QUEUE_URL set)' if mode == 'queue' else ''}"
          ": tick = sensor evaluation + the daemon's part (partitions, run-key dedup, runs);"
          " S3 s, SQS s = inside those calls (server included)")
    head = (f"{'prefix':>7} {'new':>5} {'tick':<27} {'n':>2} {'tick s':>7} {'sensor s':>8} "
            f"{'S3 s':>6} {'SQS s':>6} {'S3 LIST/HEAD/GET':>17} {'SQS recv/del':>13} "
            f"{'runs':>5} {'files':>6}")
    print(head)
    print("-" * len(head))
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["size"], r["new"], r["label"]), []).append(r)
    for (size, new, label), group in groups.items():
        r = sorted(group, key=lambda r: r["s"])[len(group) // 2]
        print(f"{size:>7} {new!s:>5} {label:<27} {len(group):>2} {r['s']:>7.2f} "
              f"{r['eval']:>8.2f} {r['s3_s']:>6.2f} {r['sqs_s']:>6.2f} "
              f"{fmt_calls(r['calls'], 's3', S3_OPS):>17} "
              f"{fmt_calls(r['calls'], 'sqs', SQS_OPS):>13} {r['runs']:>5} {r['files']:>6}")


def pick(rows: list[dict], size: int, new: int, label: str, field: str = "s") -> float:
    """The median seconds (`s`: whole tick, `eval`: the sensor's evaluation) of one scenario's
    tick (nan if it did not run)."""
    found = [r[field] for r in rows
             if r["size"] == size and r["new"] == new and r["label"] == label]
    return statistics.median(found) if found else float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="1000,100000", help="prefix sizes, comma-separated")
    ap.add_argument("--new", default="0,10,1000", help="new objects per scenario")
    ap.add_argument("--quick", action="store_true", help="sizes 1,000 and 10,000")
    ap.add_argument("--modes", default="listing,queue")
    ap.add_argument("--land", action="store_true", help="only the upload-to-table demo")
    ap.add_argument("--no-land", action="store_true", help="skip the upload-to-table demo")
    ap.add_argument("--repeat", type=int, default=3,
                    help="runs of each queue-mode scenario of at most 10 new objects (short, "
                         "noisy ticks; the median is reported); the others run once")
    ap.add_argument("--workdir", type=Path, default=None)
    args = ap.parse_args()
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's server logs every request
    for category in (dg.BetaWarning, dg.PreviewWarning):  # once per definitions load
        warnings.filterwarnings("ignore", category=category)
    sizes = sorted(int(s) for s in ("1000,10000" if args.quick else args.sizes).split(","))
    news = [int(n) for n in args.new.split(",")]
    modes = ["queue"] if args.land else args.modes.split(",")
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="sensor_scale_"))
    workdir.mkdir(parents=True, exist_ok=True)
    print(f"sensor tick cost: prefix sizes {sizes}, new objects {news}, modes {modes}; "
          f"moto's server in process; workdir {workdir}")
    calls = Calls()
    stack = Stack(workdir)
    rows: dict[str, list[dict]] = {m: [] for m in modes}
    landed = None
    try:
        for size in sizes if not args.land else sizes[-1:]:
            for mode in modes:
                t0 = time.perf_counter()
                sc = Scenario(stack, mode, size, *stack.fresh(mode, size))
                print(f"\n[{mode}, {size} objects] populated in {time.perf_counter() - t0:.1f} s "
                      f"(moto's backend, no notifications)")
                if size == sizes[0] and mode == modes[0]:
                    rate = put_rate(stack.s3)
                    print(f"  boto3 put_object: {rate:.0f} objects/s: {sizes[-1]} objects "
                          f"would take {sizes[-1] / rate:.0f} s")
                sc.steady(calls)
                if not args.land:
                    for new in news:
                        repeat = max(1, args.repeat) if mode == "queue" and new <= 10 else 1
                        for rep in range(repeat):
                            before = len(sc.rows)
                            sc.scenario(calls, new, f"n{new}r{rep}")
                            print(f"  {new} new: " + ", ".join(
                                f"{r['label']} {r['s']:.2f} s" for r in sc.rows[before:]))
                if mode == "queue" and size == sizes[-1] and (args.land or not args.no_land):
                    landed = land(sc, calls)
                rows[mode].extend(r for r in sc.rows if not r["label"].startswith("land"))
                sc.instance.dispose()
    finally:
        stack.stop()
        if not args.workdir:
            shutil.rmtree(workdir, ignore_errors=True)
    for mode in modes:
        print_table(mode, rows[mode])
    if landed:
        print(f"\nland: a sample orders CSV uploaded with boto3 into {sizes[-1]} objects is "
              f"queryable after {landed['total']:.1f} s (tick {landed['tick']:.1f} s, run "
              f"{landed['run']:.1f} s, read {landed['read']:.1f} s); run "
              f"{'succeeded' if landed['ok'] else 'FAILED'}, {landed['rows']} rows in the table"
              f"{'' if landed['total'] < 60 else ' (over a minute)'}")
    if args.land:
        return
    ref = 10 if 10 in news else min([n for n in news if n] or [0])
    big, small = sizes[-1], sizes[0]
    queue, listing = rows.get("queue", []), rows.get("listing", [])
    q = {(size, f): pick(queue, size, ref, "launched", f) for size in (small, big)
         for f in ("s", "eval")}
    listing_s = pick(listing, big, ref, "launched")
    print(f"\nqueue tick launching {ref} new: {q[small, 's']:.2f} s at {small} objects, "
          f"{q[big, 's']:.2f} s at {big} (sensor evaluation alone {q[small, 'eval']:.2f} s and "
          f"{q[big, 'eval']:.2f} s: x{q[big, 'eval'] / q[small, 'eval']:.2f}); listing tick "
          f"launching {ref} new at {big} objects: {listing_s:.2f} s")
    print(f"queue_tick_s={q[big, 's']:.3f} queue_growth={q[big, 's'] / q[small, 's']:.2f} "
          f"listing_tick_s={listing_s:.3f}")


if __name__ == "__main__":
    main()
