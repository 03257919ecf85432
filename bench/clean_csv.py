"""Benchmark: the cleaning core and the publish path against pandas and bare engines.

Run by hand, not by pytest:

    make bench                                   # = .venv/bin/python bench/clean_csv.py
    .venv/bin/python bench/clean_csv.py --quick                 # ~50 MB smoke run
    .venv/bin/python bench/clean_csv.py --size-mb 2000 --repeat 2 --workdir /some/scratch
    pip install -e '.[bench]'                    # adds polars as a peer (reported FAILED without)

What it does, in ONE run
------------------------
1. Generates (or reuses) a CSV of `--size-mb` MiB (default 1100) with about one malformed row
   in `--bad-every` (default 100k; 10k with --quick): bad int, bad float, impossible date, too
   many / too few fields, a null id (generate.py). The file is read once so every side runs with
   a warm cache.
2. Runs each side in its own child process (`--side ...`), so memory never mixes; peak RSS is
   the child's `ru_maxrss` from `os.wait4`; seconds are the work's wall time (imports
   excluded), CPU s user+system of all its threads. The engine sides (3a, 3b, 4, 5) run
   `--repeat` rounds (default 7; 1 with --quick), each round in a rotated order (so no side
   always follows the same one), and the fastest run of each counts: on a shared host two runs
   of one side often differ by 20% (the progress lines give each run's CPU seconds: identical
   clean_file runs took 16.7 s to 21.7 s of CPU within one bench, so the host's speed moved, not
   the work). With 5 rounds one side's lucky run decided a ratio (publish_ratio 0.81 from a
   clean_file run at 16.7 s of CPU); bench/work.py counts the work itself. The pandas sides
   (1, 2: ~140 s each at 1.1 GB, far from their target) run `--pandas-repeat` times (default
   1), in the first rounds.
   1  baseline: naive pandas read_csv -> to_parquet (timestamps stay text): context only.
   2  baseline_typed: pandas producing the same typed columns (bad values coerced to NULL).
   3a duckdb_bare: DuckDB's own `COPY (SELECT * FROM read_csv(<contract types>,
      store_rejects))` (peers.py).
   3b polars: `scan_csv(schema) -> sink_parquet` (peers.py).
   4  ours: `clean_file` as the platform calls it (a real table's field ids, lineage columns).
   5  ours_commit: the dataset's real ingest job into a local Iceberg table (copy + hash,
      clean, stage, audits, one commit, views), rows read back through the views (ours.py),
      on a Dagster instance as `make dev` configures it, kept across rounds.
3. Correctness per side: ours must reject exactly the injected rows at their line numbers and
   the job must commit exactly the good rows and the rejects; for the others the table says
   what they did with the bad rows (rejected, dropped silently, kept as NULLs or as text),
   from their row counts and the null counts and types in their Parquet footers (report.py).
4. Times the phases inside clean_file and of the job run (copy/hash, clean, record count,
   upload, audits, commit, ...), to show where ours spends time that bare DuckDB does not.

Targets: ours >= 8x typed pandas (typed_speedup); ours clean_file MB/s >= 0.9x the fastest
bare engine (best_peer_ratio); clean_file seconds / job seconds >= 0.9 (publish_ratio); peak
RSS of ours (max of clean_file and the job) < 1 GiB. MB means MiB. The machine may be shared:
the ratios come from one run. With --repeat N, the line before the total also gives both speed
ratios round by round and their medians (each round runs every side within a few minutes, so a
slow spell of the host slows both sides of a ratio), and the next one splits the job's seconds:
its own clean_file against clean_file alone, and the rest of the run, timed inside each run so
the host's speed from run to run hardly moves it (medians). `--results FILE` keeps every run's
result, phases included. The last line is always (nan for a side that failed):
    typed_speedup=<x> best_peer_ratio=<x> publish_ratio=<x> peak_rss_mb=<n>
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from generate import MIB, contract_dict, generate, get_input

SIDES = ("baseline", "baseline_typed", "duckdb_bare", "polars", "ours", "ours_commit")
PANDAS = ("baseline", "baseline_typed")  # ~140 s each at 1.1 GB: --pandas-repeat


def run_child(side: str, path: Path, out: Path, partitioned: bool, args) -> dict:
    """Run one side in a fresh interpreter; return its result plus peak RSS from wait4."""
    if out.exists():
        shutil.rmtree(out)
    cmd = [sys.executable, str(Path(__file__).resolve()), "--side", side, "--input", str(path),
           "--out", str(out), "--ours-module", args.ours_module]
    cmd += ["--partitioned"] if partitioned else []
    cmd += ["--memory-limit", args.memory_limit] if args.memory_limit else []
    cmd += ["--dagster-home", str(args.dagster_home)] if args.dagster_home else []
    with tempfile.TemporaryFile() as buf:
        wall = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=buf, stderr=subprocess.STDOUT)
        _, status, ru = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        wall = time.perf_counter() - wall
        buf.seek(0)
        text = buf.read().decode("utf-8", "replace")
    shutil.rmtree(out, ignore_errors=True)
    result = None
    for line in text.splitlines():
        if line.startswith("RESULT "):
            result = json.loads(line[len("RESULT "):])
    if proc.returncode != 0 or result is None:
        sys.stdout.write(text[-5000:])
        return {"error": f"child exited with {proc.returncode}", "seconds": wall,
                "cpu_seconds": ru.ru_utime + ru.ru_stime, "peak_rss_mb": ru.ru_maxrss / 1024}
    result["peak_rss_mb"] = ru.ru_maxrss / 1024  # Linux: KiB
    result["process_seconds"] = wall
    return result


def warm_cache(path: Path) -> float:
    t = time.perf_counter()
    with open(path, "rb", buffering=0) as f:
        while f.read(16 * MIB):
            pass
    return time.perf_counter() - t


def child(args) -> None:
    import resource

    contract = contract_dict(args.partitioned)
    if args.side in ("ours", "ours_commit"):
        import ours

        if args.side == "ours":
            res = ours.side_ours(args.input, args.out, contract, args.ours_module,
                                 args.memory_limit)
        else:
            res = ours.side_ours_commit(args.input, args.out, contract, args.dagster_home)
    else:
        import peers

        res = getattr(peers, f"side_{args.side}")(args.input, args.out, contract)
    res["self_maxrss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print("RESULT " + json.dumps(res), flush=True)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size-mb", type=int, default=None,
                    help="CSV size in MiB (default 1100; 50 with --quick)")
    ap.add_argument("--quick", action="store_true", help="a ~50 MB smoke run")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--bad-every", type=int, default=None,
                    help="about one malformed row per this many rows (default 100000; 10000 "
                         "with --quick, so every kind of bad row occurs)")
    ap.add_argument("--workdir", type=Path, default=None,
                    help="where the CSV is generated/reused and outputs are staged "
                         "(default: clean_csv_bench in the system temp dir)")
    ap.add_argument("--repeat", type=int, default=None,
                    help="rounds of the engine sides (bare DuckDB, polars, ours, the job); the "
                         "fastest run of each counts (default 7; 1 with --quick)")
    ap.add_argument("--pandas-repeat", type=int, default=1,
                    help="runs of the pandas sides, in the first rounds (default 1)")
    ap.add_argument("--sides", default=",".join(SIDES),
                    help=f"comma-separated sides to run (default all: {','.join(SIDES)})")
    ap.add_argument("--partitioned", action="store_true",
                    help="also time ours with partition_column=event_date (31 partitions)")
    ap.add_argument("--memory-limit", default=None,
                    help="pass memory_limit to clean_file (default: clean_file's own default)")
    ap.add_argument("--ours-module", default="data_platform.cleaning",
                    help="module whose clean_file is timed as ours, to compare a candidate "
                         "implementation (default data_platform.cleaning)")
    ap.add_argument("--results", type=Path, default=None,
                    help="also write every run's result (phases included) to this JSON file, "
                         "{side: [run, ...]} in the order they ran")
    ap.add_argument("--side", choices=SIDES, help=argparse.SUPPRESS)
    ap.add_argument("--input", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--generate", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--dagster-home", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.size_mb is None:
        args.size_mb = 50 if args.quick else 1100
    if args.repeat is None:
        args.repeat = 1 if args.quick else 7
    if args.bad_every is None:
        args.bad_every = 10_000 if args.quick else 100_000

    if args.generate:  # child process
        generate(args.generate, args.generate.with_suffix(".json"), args.size_mb, args.seed,
                 args.bad_every)
        return
    if args.side:  # child process
        child(args)
        return

    from report import paired_rounds, publish_split, report

    unknown = set(args.sides.split(",")) - set(SIDES)
    if unknown:
        ap.error(f"unknown sides {sorted(unknown)}; choose from {','.join(SIDES)}")
    t_start = time.perf_counter()
    workdir = args.workdir or Path(tempfile.gettempdir()) / "clean_csv_bench"
    path, meta = get_input(workdir, args.size_mb, args.seed, args.bad_every)
    size_mb = meta["bytes"] / MIB
    print(f"warming the page cache: read {size_mb:.0f} MB in {warm_cache(path):.1f}s "
          "(every side runs with the file cached)", flush=True)
    runs = workdir / "runs"
    # The job's Dagster instance lives on across rounds, as `make dev`'s .data/dagster_home
    # does across runs (new for each bench).
    args.dagster_home = runs / "dagster_home"
    shutil.rmtree(args.dagster_home, ignore_errors=True)
    sides = [(s, s, False) for s in SIDES if s in args.sides.split(",")]
    if args.partitioned:
        sides.append(("ours_partitioned", "ours", True))
    results: dict[str, list[dict]] = {label: [] for label, _, _ in sides}
    pandas = [s for s in sides if s[1] in PANDAS]
    engines = [s for s in sides if s[1] not in PANDAS]
    for i in range(max(args.repeat, args.pandas_repeat if pandas else 0)):
        turn = engines[i % len(engines):] + engines[:i % len(engines)] if engines else []
        todo = (pandas if i < args.pandas_repeat else []) + (turn if i < args.repeat else [])
        for label, side, partitioned in todo:
            print(f"round {i + 1}: {label} ...", flush=True)
            r = run_child(side, path, runs / label, partitioned, args)
            state = f"FAILED after {r['seconds']:.1f}s: {r['error'][:300]}" if "error" in r \
                else f"{r['seconds']:.1f}s, {r['cpu_seconds']:.1f}s CPU"
            print(f"  {state}, peak RSS {r['peak_rss_mb']:.0f} MB", flush=True)
            results[label].append(r)

    if args.results:
        args.results.write_text(json.dumps(results, indent=1, default=str))
    best = {}
    for label, rs in results.items():
        ok = [r for r in rs if "error" not in r]
        b = dict(min(ok or rs, key=lambda r: r["seconds"]))
        b["peak_rss_mb"] = max(r["peak_rss_mb"] for r in rs)
        best[label] = b
    how = (f"fastest of {args.repeat} rotated rounds"
           + (f" (pandas sides: of {args.pandas_repeat})" if pandas else ""))
    last = report(best, meta, [c["name"] for c in contract_dict(False)["columns"]], how)
    print(paired_rounds(results))
    if split := publish_split(results):
        print(split)
    print(f"total bench time {time.perf_counter() - t_start:.0f}s")
    print(last)


if __name__ == "__main__":
    main()
