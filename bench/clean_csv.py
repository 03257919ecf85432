"""Benchmark: the cleaning core and the publish path against pandas and bare engines.

Run by hand, not by pytest:

    make bench                                   # = .venv/bin/python bench/clean_csv.py
    .venv/bin/python bench/clean_csv.py --quick                 # 50 MB smoke run
    .venv/bin/python bench/clean_csv.py --partitioned --repeat 2 --workdir /some/scratch
    pip install -e '.[bench]'                    # adds polars as a peer (skipped without it)

What it does
------------
1. Generates (or reuses) a CSV of `--size-mb` MiB (default 1100) with about one malformed row
   in `--bad-every` (100k): bad int, bad float, impossible date, too many / too few fields, a
   null id (see generate.py). The file is read once so every side runs with a warm cache.
2. Runs each side in its own child process (`--side ...`), so memory never mixes; peak RSS is
   the child's `ru_maxrss` from `os.wait4`; seconds are the work's wall time (imports
   excluded), CPU s user+system of all its threads; with `--repeat N` the fastest run counts.
   - ours: `clean_file` as the platform calls it (the table's field ids, lineage columns).
   - ours_commit: the real ingest job into a local Iceberg table (copy + hash of the raw bytes,
     clean, stage, audits, one commit), rows read back from the committed snapshot (peers.py).
   - duckdb_bare: DuckDB's own `COPY (SELECT * FROM read_csv(<contract types>,
     store_rejects))`: no line numbers, no row rules, no lineage or field ids.
   - polars: `scan_csv(schema) -> sink_parquet`; bad values become NULL, rows are kept.
   - baseline: naive pandas read_csv -> to_parquet (keeps timestamps as strings: context only).
   - baseline_typed: pandas producing the same typed columns as ours.
3. Checks correctness: ours' rows_in, rejected count and rejected line numbers must match the
   injected rows exactly; ours_commit must commit exactly the good rows and the rejects.

Targets: ours >= 8x typed pandas; ours >= 0.9x the fastest bare engine; ours with staging and
commit >= 0.9x clean_file alone; peak RSS of ours < 1 GiB. MB means MiB. The machine is shared:
compare ratios from one run, or use --repeat. The last line is always (nan for a side that did
not run):
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

from generate import CONTRACT_KINDS, MIB, contract_dict, generate, get_input

# --------------------------------------------------------------------------- child sides


def _dir_bytes(p: Path) -> int:
    if p.is_file():
        return p.stat().st_size
    return sum(f.stat().st_size for f in p.rglob("*") if f.is_file())


def _cpu() -> float:
    import resource

    ru = resource.getrusage(resource.RUSAGE_SELF)  # all threads of this process
    return ru.ru_utime + ru.ru_stime


def side_ours(path: Path, out: Path, partitioned: bool, module: str,
              memory_limit: str | None) -> dict:
    import importlib

    from data_platform.contracts import parse_contract

    from data_platform.tables.schema import (
        field_ids,
        new_schema,
        rejected_columns,
        table_columns,
    )

    clean_file = importlib.import_module(module).clean_file
    contract = parse_contract(contract_dict(partitioned), where="bench")
    kwargs = {"memory_limit": memory_limit} if memory_limit else {}
    # As the platform calls it: the table's field ids and the lineage columns in every file.
    kwargs.update(field_ids=field_ids(new_schema(table_columns(contract))),
                  rejected_field_ids=field_ids(new_schema(rejected_columns())),
                  constants={"_source_key": ("VARCHAR", path.name),
                             "_source_version": ("BIGINT", time.time_ns())})
    t, cpu = time.perf_counter(), _cpu()
    try:
        res = clean_file(path, contract, out, source_key=f"raw/bench_orders/{path.name}",
                         **kwargs)
    except Exception as e:  # a failure is a result too (e.g. DuckDB out of memory)
        return {"error": f"{type(e).__name__}: {e}", "seconds": time.perf_counter() - t,
                "cpu_seconds": _cpu() - cpu}
    seconds, cpu = time.perf_counter() - t, _cpu() - cpu
    rejected_lines: list = []
    if res.rejected_file is not None:
        import pyarrow.parquet as pq

        tbl = pq.read_table(res.rejected_file, columns=["line", "error_type"])
        rejected_lines = [[a, b] for a, b in zip(tbl["line"].to_pylist(),
                                                 tbl["error_type"].to_pylist())]
    return {"seconds": seconds, "cpu_seconds": cpu, "rows_in": res.rows_in,
            "rows_written": res.rows_written,
            "rows_rejected": res.rows_rejected, "parse_rejects": res.parse_rejects,
            "contract_rejects": res.contract_rejects, "files": len(res.files),
            "out_bytes": _dir_bytes(out), "rejected_lines": rejected_lines}


def _time_pandas(out: Path, script) -> dict:
    """Run a pandas script writing into `out`, timing it; a failure is a result too."""
    out.mkdir(parents=True, exist_ok=True)
    t, cpu = time.perf_counter(), _cpu()
    try:
        rows = script()
    except Exception as e:
        return {"error": f"{type(e).__name__}: {e}", "seconds": time.perf_counter() - t,
                "cpu_seconds": _cpu() - cpu}
    seconds, cpu = time.perf_counter() - t, _cpu() - cpu
    return {"seconds": seconds, "cpu_seconds": cpu, "rows_in": None, "rows_written": rows,
            "rows_rejected": None, "out_bytes": _dir_bytes(out)}


def side_baseline(path: Path, out: Path) -> dict:
    import pandas as pd

    # What a naive script ends up as. Without on_bad_lines="skip" read_csv raises on the rows
    # with too many fields ("Expected 9 fields in line ..., saw 10"). Without low_memory=False
    # (which the DtypeWarning suggests) the chunk-wise typing leaves floats and strings mixed in
    # the columns holding `12x`/`12.3.4`, and to_parquet raises ArrowTypeError.
    def script() -> int:
        df = pd.read_csv(path, on_bad_lines="skip", low_memory=False)
        df.to_parquet(out / "out.parquet")
        return len(df)

    return _time_pandas(out, script)


def side_baseline_typed(path: Path, out: Path) -> dict:
    """The hand-built script that must produce the same typed Parquet as ours (ints, floats,
    UTC timestamps, dates), coercing what does not parse, as such scripts do (silently)."""
    import pandas as pd

    def script() -> int:
        df = pd.read_csv(path, on_bad_lines="skip", low_memory=False, dtype="string")
        for col in ("id", "customer_id", "quantity"):
            df[col] = pd.to_numeric(df[col], errors="coerce").astype("Int64")
        for col in ("amount", "score"):
            df[col] = pd.to_numeric(df[col], errors="coerce")
        df["created_at"] = pd.to_datetime(df["created_at"], utc=True, errors="coerce",
                                          format="ISO8601")
        df["event_date"] = pd.to_datetime(df["event_date"], errors="coerce", format="%Y-%m-%d")
        df.to_parquet(out / "out.parquet")
        return len(df)

    return _time_pandas(out, script)


def run_child(side: str, path: Path, out: Path, partitioned: bool, args) -> dict:
    """Run one side in a fresh interpreter; return its result plus peak RSS from wait4."""
    if out.exists():
        shutil.rmtree(out)
    cmd = [sys.executable, str(Path(__file__).resolve()), "--side", side, "--input", str(path),
           "--out", str(out), "--ours-module", args.ours_module]
    cmd += ["--partitioned"] if partitioned else []
    cmd += ["--memory-limit", args.memory_limit] if args.memory_limit else []
    with tempfile.TemporaryFile() as buf:
        wall = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=buf)
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
        sys.stdout.write(text)
        raise SystemExit(f"side {side} failed with exit code {proc.returncode}")
    result["peak_rss_mb"] = ru.ru_maxrss / 1024  # Linux: KiB
    result["process_seconds"] = wall
    return result


# --------------------------------------------------------------------------- parent


def warm_cache(path: Path) -> float:
    t = time.perf_counter()
    with open(path, "rb", buffering=0) as f:
        while f.read(16 * MIB):
            pass
    return time.perf_counter() - t


def check(label: str, res: dict, meta: dict) -> list[str]:
    warnings = []
    expected_rows = meta["rows"]
    expected_bad = sum(meta["malformed"].values())
    expected_contract = sum(meta["malformed"][k] for k in CONTRACT_KINDS)
    if res["rows_in"] != expected_rows:
        warnings.append(f"{label}: rows_in={res['rows_in']:,} but the file has "
                        f"{expected_rows:,} data rows")
    if res["rows_rejected"] != expected_bad:
        warnings.append(f"{label}: rows_rejected={res['rows_rejected']} but {expected_bad} "
                        f"malformed rows were injected ({meta['malformed']})")
    # Null ids may be refused by the reader or by a row rule; either way they are NOT NULL.
    not_null = sum(1 for _, kind in res["rejected_lines"] if kind == "NOT NULL")
    if not_null != expected_contract:
        warnings.append(f"{label}: {not_null} NOT NULL rejects, expected {expected_contract}")
    if res["rows_written"] != expected_rows - expected_bad:
        warnings.append(f"{label}: rows_written={res['rows_written']:,}, expected "
                        f"{expected_rows - expected_bad:,}")
    got = sorted(line for line, _ in res["rejected_lines"])
    want = sorted(line for line, _ in meta["bad_lines"])
    if got != want:
        missing = sorted(set(want) - set(got))
        extra = sorted(set(got) - set(want))
        kinds = dict((line, kind) for line, kind in meta["bad_lines"])
        warnings.append(
            f"{label}: rejected file lines differ from the injected lines: "
            f"missing {[(m, kinds[m]) for m in missing[:10]]}, unexpected {extra[:10]}"
            + (f", {len(got)} listed vs {len(want)} injected" if len(got) != len(want) else ""))
    return warnings


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size-mb", type=int, default=1100, help="CSV size in MiB (default 1100)")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--bad-every", type=int, default=100_000,
                    help="about one malformed row per this many rows (default 100000)")
    ap.add_argument("--workdir", type=Path, default=None,
                    help="where the CSV is generated/reused and outputs are staged "
                         "(default: clean_csv_bench in the system temp dir)")
    ap.add_argument("--repeat", type=int, default=1, help="runs per side; the fastest counts")
    ap.add_argument("--partitioned", action="store_true",
                    help="also time ours with partition_column=event_date (31 partitions)")
    ap.add_argument("--memory-limit", default=None,
                    help="pass memory_limit to clean_file (default: clean_file's own default)")
    ap.add_argument("--ours-module", default="data_platform.cleaning",
                    help="module whose clean_file is timed as ours, to compare a candidate "
                         "implementation (default data_platform.cleaning)")
    ap.add_argument("--typed-baseline", action="store_true",
                    help="also time pandas producing the same typed columns as ours "
                         "(context only: the target is against the naive baseline)")
    ap.add_argument("--skip-baseline", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--side", choices=["ours", "baseline", "baseline_typed", "duckdb_bare",
                                       "polars", "ours_commit"], help=argparse.SUPPRESS)
    ap.add_argument("--quick", action="store_true", help="a ~50 MB smoke run")
    ap.add_argument("--input", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--generate", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.generate:  # child process
        generate(args.generate, args.generate.with_suffix(".json"), args.size_mb, args.seed,
                 args.bad_every)
        return

    if args.side:  # child process
        import resource

        if args.side == "ours":
            res = side_ours(args.input, args.out, args.partitioned, args.ours_module,
                            args.memory_limit)
        elif args.side in ("duckdb_bare", "polars", "ours_commit"):
            import peers

            res = getattr(peers, f"side_{args.side}")(args.input, args.out,
                                                      contract_dict(args.partitioned))
        elif args.side == "baseline_typed":
            res = side_baseline_typed(args.input, args.out)
        else:
            res = side_baseline(args.input, args.out)
        res["self_maxrss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print("RESULT " + json.dumps(res), flush=True)
        return

    if args.quick:
        args.size_mb = 50
    t_start = time.perf_counter()
    workdir = args.workdir or Path(tempfile.gettempdir()) / "clean_csv_bench"
    path, meta = get_input(workdir, args.size_mb, args.seed, args.bad_every)
    size_mb = meta["bytes"] / MIB
    print(f"warming the page cache: read {size_mb:.0f} MB in {warm_cache(path):.1f}s "
          "(both sides run with the file cached)", flush=True)
    runs = workdir / "runs"
    sides = [("ours", "ours", False), ("ours_commit", "ours_commit", False),
             ("duckdb_bare", "duckdb_bare", False), ("polars", "polars", False)]
    if args.partitioned:
        sides.append(("ours_partitioned", "ours", True))
    if not args.skip_baseline:
        sides.append(("baseline", "baseline", False))
        sides.append(("baseline_typed", "baseline_typed", False))
    results: dict[str, list[dict]] = {label: [] for label, _, _ in sides}
    for i in range(args.repeat):
        for label, side, partitioned in sides:
            print(f"run {i + 1}/{args.repeat}: {label} ...", flush=True)
            r = run_child(side, path, runs / label, partitioned, args)
            state = f"FAILED after {r['seconds']:.1f}s: {r['error'][:300]}" if "error" in r \
                else f"{r['seconds']:.1f}s"
            print(f"  {state}, peak RSS {r['peak_rss_mb']:.0f} MB", flush=True)
            results[label].append(r)

    best = {}
    for label, rs in results.items():
        ok = [r for r in rs if "error" not in r]
        b = dict(min(ok or rs, key=lambda r: r["seconds"]))
        b["peak_rss_mb"] = max(r["peak_rss_mb"] for r in rs)
        best[label] = b

    warnings: list[str] = []
    for label in best:
        for r in results[label]:
            if "error" in r:
                w = f"{label} failed: {r['error'][:300]}"
            elif label in ("ours", "ours_partitioned"):
                w = None
                for w2 in check(label, r, meta):
                    if w2 not in warnings:
                        warnings.append(w2)
            else:
                continue
            if w and w not in warnings:
                warnings.append(w)

    names = {"ours": "ours: clean_file", "ours_partitioned": "ours: clean_file, partitioned",
             "ours_commit": "ours: stage + audit + Iceberg commit",
             "duckdb_bare": "bare DuckDB COPY read_csv",
             "polars": "polars scan_csv -> sink_parquet",
             "baseline": "naive pandas read_csv+to_parquet",
             "baseline_typed": "pandas, same typed columns as ours"}
    print()
    print(f"input: {size_mb:.0f} MB, {meta['rows']:,} data rows, "
          f"{sum(meta['malformed'].values())} malformed ({meta['malformed']}); warm page cache; "
          f"{os.cpu_count()} CPUs; best of {args.repeat}")
    head = f"{'side':<38} {'seconds':>8} {'MB/s':>7} {'CPU s':>6} {'peak RSS MB':>12} " \
           f"{'rows written':>13} {'rejected':>9} {'out MB':>7}"
    print(head)
    print("-" * len(head))
    for label, b in best.items():
        if "error" in b:
            print(f"{names[label]:<38} {'FAILED':>8} {'':>7} {b['cpu_seconds']:>6.1f} "
                  f"{b['peak_rss_mb']:>12.0f}  ({b['error'][:60]}...)")
            continue
        rej = "" if b["rows_rejected"] is None else f"{b['rows_rejected']:,}"
        print(f"{names[label]:<38} {b['seconds']:>8.1f} {size_mb / b['seconds']:>7.1f} "
              f"{b['cpu_seconds']:>6.1f} {b['peak_rss_mb']:>12.0f} {b['rows_written']:>13,} "
              f"{rej:>9} {b['out_bytes'] / MIB:>7.0f}")
    print("(seconds: wall time of the work; CPU s: user+system time of all its threads)")
    if "baseline" in best and "error" not in best["baseline"]:
        lost = meta["rows"] - best["baseline"]["rows_written"]
        print(f"(baseline silently dropped {lost} rows with too many fields and kept the other "
              f"{sum(meta['malformed'].values()) - lost} malformed rows as data)")
    for label in ("duckdb_bare", "polars", "ours_commit"):
        b = best.get(label, {})
        if "note" in b:
            print(f"({names[label]}: {b['note']})")
        if label == "ours_commit" and "error" not in b:
            expected = meta["rows"] - sum(meta["malformed"].values())
            ok = (b["rows_written"], b["rows_rejected"]) == (expected,
                                                            sum(meta["malformed"].values()))
            print(f"(ours_commit: run {'succeeded' if b['run_success'] else 'FAILED'}, "
                  f"committed {b['rows_written']:,} rows and {b['rows_rejected']} rejects: "
                  f"{'as injected' if ok else 'MISMATCH'}; checks {b['checks']})")
            if not ok or not b["run_success"]:
                warnings.append("ours_commit did not commit exactly the expected rows")
    for w in warnings:
        print("WARNING: " + w)
    if not warnings:
        print("correctness: rows_in, rejected counts and rejected line numbers match the "
              "injected rows")

    def rate(label):
        b = best.get(label)
        return size_mb / b["seconds"] if b and "error" not in b else float("nan")

    ours = best["ours"]
    typed_speedup = rate("ours") / rate("baseline_typed")
    peers_ok = [rate(p) for p in ("duckdb_bare", "polars") if rate(p) == rate(p)]
    best_peer_ratio = rate("ours") / max(peers_ok) if peers_ok else float("nan")
    publish_ratio = ours["seconds"] / best["ours_commit"]["seconds"] \
        if "error" not in best.get("ours_commit", {"error": 1}) else float("nan")
    peak = max(best[k]["peak_rss_mb"] for k in ("ours", "ours_commit") if k in best)
    print(f"targets: typed_speedup >= 8: {typed_speedup:.2f}; best_peer_ratio >= 0.9: "
          f"{best_peer_ratio:.2f}; publish_ratio >= 0.9: {publish_ratio:.2f}; "
          f"peak RSS < 1024 MB: {peak:.0f}")
    print(f"total bench time {time.perf_counter() - t_start:.0f}s")
    print(f"typed_speedup={typed_speedup:.2f} best_peer_ratio={best_peer_ratio:.2f} "
          f"publish_ratio={publish_ratio:.2f} peak_rss_mb={round(peak)}")


if __name__ == "__main__":
    main()
