"""Work per side, counted in instructions: the part of the cleaning bench no noise can move.

Run by hand, not by pytest (needs valgrind, Debian's package of that name):

    .venv/bin/python bench/work.py                  # ~4 minutes on 2 cores
    .venv/bin/python bench/work.py --size-mb 220

clean_csv.py times the sides on the host as it is; on a shared host one side's run differs by
up to 20% from round to round, so its wall-time ratios move by more than the gap they measure.
This script counts the instructions each side executes with valgrind's callgrind, DuckDB on
one thread (with two, its threads' waiting loops made the count vary fivefold between runs):
the same code and input give the same count within 0.1% (two runs here: work_ratio 0.946 and
0.947), whatever else the machine does. It measures CPU work,
not time. A cache miss or a wait costs no instruction, a copy by `rep movsb` counts as one, and
valgrind runs no AVX-512 (numpy and DuckDB take narrower paths under it). So it complements
clean_csv.py's wall-time ratio: it tells whether a change added work, and how much of ours is
the independent record count, not whether the host ran it fast.

Sides, each in its own process under callgrind, two at a time, on a CSV made by generate.py
(`--size-mb`, default 110, the same rows and bad-row rate as clean_csv.py's file):
- imports: the imports and setup every side does, and nothing else (subtracted from the others)
- duckdb_bare: the bare DuckDB COPY of clean_csv.py (peers.bare_copy_sql)
- ours: clean_file as the platform calls it (ours.ours_call), its record count included
- count: the independent record count alone (records.scan_source)

The last line is:
    work_ratio=<bare / ours> count_share=<count / ours>
work_ratio is the best_peer_ratio clean_csv.py would print if wall time followed CPU work on a
saturated, quiet host.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from generate import MIB, contract_dict, get_input

SIDES = ("imports", "duckdb_bare", "ours", "count")


def child(side: str, path: Path, out: Path) -> None:
    """One side's work (the imports and setup first, for every side alike)."""
    import importlib

    import duckdb
    from ours import ours_call
    from peers import bare_copy_sql

    from data_platform.cleaning import clean_file
    from data_platform.records import scan_source

    importlib.import_module("pandas")  # ours' reject writer imports it on first use
    contract_d = contract_dict(False)
    contract, kwargs = ours_call(path, contract_d)
    out.mkdir(parents=True, exist_ok=True)
    if side == "duckdb_bare":
        con = duckdb.connect()
        con.execute("SET threads=1")
        con.execute("SET preserve_insertion_order=false")
        con.execute(bare_copy_sql(path, out / "out.parquet", contract_d))
        con.close()
    elif side == "ours":
        clean_file(path, contract, out, source_key=f"raw/bench_orders/{path.name}", threads=1,
                   **kwargs)
    elif side == "count":
        scan_source(path, contract)
    print("OK", flush=True)


def count(side: str, path: Path, out: Path, tmp: Path) -> int:
    """Instructions of one side's process under callgrind; raises on a failed child."""
    cmd = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={tmp / side}.out",
           sys.executable, str(Path(__file__).resolve()), "--side", side, "--input", str(path),
           "--out", str(out / side)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    found = re.search(r"Collected : (\d+)", proc.stderr)
    if proc.returncode != 0 or "OK" not in proc.stdout or not found:
        raise RuntimeError(f"{side} failed (exit {proc.returncode}):\n{proc.stdout[-2000:]}"
                           f"{proc.stderr[-3000:]}")
    return int(found.group(1))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size-mb", type=int, default=110)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--bad-every", type=int, default=100_000)
    ap.add_argument("--workdir", type=Path, default=None,
                    help="where the CSV is generated/reused (default: clean_csv.py's)")
    ap.add_argument("--side", choices=SIDES, help=argparse.SUPPRESS)
    ap.add_argument("--input", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.side:
        child(args.side, args.input, args.out)
        return
    if shutil.which("valgrind") is None:
        sys.exit("valgrind is not installed (Debian: apt-get install valgrind)")
    workdir = args.workdir or Path(tempfile.gettempdir()) / "clean_csv_bench"
    path, meta = get_input(workdir, args.size_mb, args.seed, args.bad_every)
    with tempfile.TemporaryDirectory(dir=workdir) as t:
        tmp = Path(t)
        print(f"counting instructions of {', '.join(SIDES)} under callgrind, two at a time ...",
              flush=True)
        with ThreadPoolExecutor(max_workers=2) as pool:
            futures = {s: pool.submit(count, s, path, tmp, tmp) for s in SIDES}
            total = {s: f.result() for s, f in futures.items()}
    base = total["imports"]
    work = {s: total[s] - base for s in SIDES if s != "imports"}
    mb = meta["bytes"] / MIB
    print(f"\ninput: {mb:.0f} MB, {meta['rows']:,} data rows, "
          f"{sum(meta['malformed'].values())} malformed; instructions counted by callgrind, "
          f"DuckDB on one thread; imports and setup ({base / 1e9:.2f} G) subtracted")
    print(f"{'side':34s}{'G instructions':>16s}{'per byte':>10s}{'vs bare':>9s}")
    for side, label in (("duckdb_bare", "3a bare DuckDB COPY read_csv"),
                        ("ours", "4 ours: clean_file"),
                        ("count", "   of which the record count")):
        vs = f"{work[side] / work['duckdb_bare'] - 1:+.1%}" if side == "ours" else ""
        print(f"{label:34s}{work[side] / 1e9:16.3f}{work[side] / meta['bytes']:10.1f}{vs:>9s}")
    print(f"work_ratio={work['duckdb_bare'] / work['ours']:.3f} "
          f"count_share={work['count'] / work['ours']:.3f}")


if __name__ == "__main__":
    main()
