"""Compute logs of local runs (data_platform/compute_logs.py): a real run on the `make dev`
instance, in a process whose stdout and stderr are pipes the test reads as the terminal."""

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).with_name("compute_log_run.py")
OUT = ("printed by the op", "written to fd 1", "the op's last line")


def run(tmp_path, *extra) -> tuple[dict, subprocess.CompletedProcess]:
    result = tmp_path / "result.json"
    proc = subprocess.run([sys.executable, str(SCRIPT), str(tmp_path / "home"), str(result),
                           *extra], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return json.loads(result.read_text()), proc


def test_step_output_goes_to_the_files_and_to_the_terminal_without_processes(tmp_path):
    got, proc = run(tmp_path)
    assert got["success"]
    # What the UI shows: every line, from Python and from the file descriptors alike.
    for line in OUT:
        assert line in got["stdout"]
    assert "written to fd 2" in got["stderr"] and "logged by the op" in got["stderr"]
    assert got["complete"]  # the UI knows the capture ended
    # The terminal got all of it too, the last line included (a tail stopped at the end of the
    # run can miss it), in the order written.
    assert [proc.stdout.find(line) for line in OUT] == sorted(
        proc.stdout.find(line) for line in OUT) and all(line in proc.stdout for line in OUT)
    assert "written to fd 2" in proc.stderr and "logged by the op" in proc.stderr
    # No tail, no watcher: Dagster's own manager starts four processes for this run.
    assert got["processes_started"] == []


def test_a_terminal_that_went_away_loses_nothing_in_the_files(tmp_path):
    got, _ = run(tmp_path, "closed")
    assert got["success"] and got["complete"]
    for line in OUT:
        assert line in got["stdout"]
