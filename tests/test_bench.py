"""The benchmark scripts still run end to end (every side, a few MB or a few hundred objects)
and report correctness.

Asserts the output format and the correctness fields only, never timings.
"""

import re
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "bench" / "clean_csv.py"
LAST = re.compile(r"typed_speedup=(\S+) best_peer_ratio=(\S+) publish_ratio=(\S+) "
                  r"peak_rss_mb=(\d+)")


def test_bench_quick_small(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(BENCH), "--quick", "--size-mb", "3", "--bad-every", "1000",
         "--workdir", str(tmp_path)],
        capture_output=True, text=True, timeout=120)
    out = proc.stdout
    assert proc.returncode == 0, out[-3000:] + proc.stderr[-3000:]
    lines = out.strip().splitlines()
    m = LAST.fullmatch(lines[-1])
    assert m, lines[-1]
    assert all(v != "nan" for v in m.groups()), lines[-1]
    # polars is an optional extra (`.[bench]`): without it its side fails, nothing else may.
    warnings = [w for w in lines if w.startswith("WARNING") and "polars" not in w]
    assert not warnings, out
    rows = {line[:37].strip(): line for line in lines}
    assert "exact:" in rows["4 ours: clean_file"]
    assert "exact:" in rows["5 ours: ingest job + Iceberg commit"]
    # The peers' correctness column says what they did with the injected rows.
    assert "drops" in rows["1 naive pandas read_csv+to_parquet"]
    assert "untyped" in rows["1 naive pandas read_csv+to_parquet"]
    assert "rejects" in rows["3a bare DuckDB COPY read_csv"]
    assert "keeps" in rows["3b polars scan_csv -> sink_parquet"] \
        or "FAILED" in rows["3b polars scan_csv -> sink_parquet"]
    assert "phases of the ingest job run" in out
    assert re.fullmatch(r"per round \(paired\): best_peer_ratio \d+\.\d+ \(median \d+\.\d+\); "
                        r"publish_ratio \d+\.\d+ \(median \d+\.\d+\)", lines[-4]), lines[-4]
    assert re.fullmatch(r"job run split \(medians of 1 runs\): clean_file alone \d+\.\d+s, "
                        r"clean_file in the job \d+\.\d+s, the rest of the job \d+\.\d+s "
                        r"\(\d+\.\d+-\d+\.\d+\)", lines[-3]), lines[-3]


def test_paired_rounds_divide_within_each_round(monkeypatch):
    """Each round's ratios use that round's own runs: the fastest peer of the round, a failed
    side leaves a gap, and the median skips it."""
    monkeypatch.syspath_prepend(str(BENCH.parent))
    from report import paired_rounds

    results = {"duckdb_bare": [{"seconds": 8.0}, {"seconds": 12.0}, {"seconds": 9.0}],
               "polars": [{"seconds": 9.0}, {"seconds": 10.0}, {"error": "x", "seconds": 1}],
               "ours": [{"seconds": 10.0}, {"seconds": 10.0}, {"seconds": 10.0}],
               "ours_commit": [{"seconds": 12.5}, {"error": "x", "seconds": 1.0},
                               {"seconds": 10.0}]}
    assert paired_rounds(results) == (
        "per round (paired): best_peer_ratio 0.80, 1.00, 0.90 (median 0.90); "
        "publish_ratio 0.80, nan, 1.00 (median 0.90)")


def test_publish_split_times_the_rest_of_each_job_run(monkeypatch):
    """The rest of a job run is its own seconds less its own clean_file phase; failed runs
    and runs without phases are left out."""
    monkeypatch.syspath_prepend(str(BENCH.parent))
    from report import publish_split

    results = {"ours": [{"seconds": 10.0}, {"seconds": 9.0}, {"error": "x", "seconds": 1.0}],
               "ours_commit": [{"seconds": 11.0, "phases": {"clean_file": 10.4}},
                               {"seconds": 10.0, "phases": {"clean_file": 9.2}},
                               {"seconds": 12.0, "phases": {"clean_file": 11.5}},
                               {"error": "x", "seconds": 1.0, "phases": {"clean_file": 0.5}}]}
    assert publish_split(results) == (
        "job run split (medians of 3 runs): clean_file alone 9.50s, clean_file in the job "
        "10.40s, the rest of the job 0.60s (0.50-0.80)")
    assert publish_split({"ours": [{"seconds": 1.0}]}) == ""


SCALE = Path(__file__).resolve().parents[1] / "bench" / "sensor_scale.py"
SCALE_LAST = re.compile(r"queue_tick_s=(\d+\.\d+) queue_growth=(\d+\.\d+) "
                        r"listing_tick_s=(\d+\.\d+)")


def test_sensor_scale_bench_tiny(tmp_path):
    """The sensor-scale bench completes on tiny prefixes in both modes, lands the sample CSV
    in the table through queue mode, and ends with its summary line (numbers not judged)."""
    proc = subprocess.run(
        [sys.executable, str(SCALE), "--sizes", "50,200", "--new", "0,3", "--repeat", "1",
         "--workdir", str(tmp_path)],
        capture_output=True, text=True, timeout=600)
    out = proc.stdout
    assert proc.returncode == 0, out[-3000:] + proc.stderr[-3000:]
    lines = out.strip().splitlines()
    assert SCALE_LAST.fullmatch(lines[-1]), lines[-1]
    assert not [w for w in lines if w.startswith("WARNING")], out
    assert "listing mode" in out and "queue mode" in out
    landed = next(line for line in lines if line.startswith("land:"))
    assert "run succeeded" in landed, landed
    assert int(re.search(r"(\d+) rows in the table", landed).group(1)) > 0, landed


def test_instance_storage_bench_runs(tmp_path):
    """bench/instance_storage.py end to end on a few events and files (format only)."""
    proc = subprocess.run(
        [sys.executable, str(BENCH.with_name("instance_storage.py")), "--events", "10",
         "--partitions", "3", "--rounds", "1"],
        capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    last = proc.stdout.strip().splitlines()[-1]
    assert re.fullmatch(r"event_speedup=\d+\.\d create_run_speedup=\d+\.\d", last), last
