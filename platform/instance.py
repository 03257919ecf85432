"""The local Dagster instance: a run launcher that knows when a run worker died, and the
`dagster.yaml` that `make dev` puts in DAGSTER_HOME.

Dagster's default launcher starts each run in a subprocess of the code server but cannot tell
whether that process is still alive, so a run whose worker was killed (laptop closed, `make dev`
killed, out of memory) stays STARTED forever and nothing retries it. `LocalRunLauncher` is that
launcher plus a health check: the run worker's pid (from the run's own "Started process for run"
event) must still be a live process created before that event (a recycled pid is not). With it,
the instance's run monitoring marks a dead run failed within one poll interval and run retries
launch it again.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from dagster._core.events import DagsterEventType
from dagster._core.launcher import CheckRunHealthResult, WorkerStatus
from dagster._core.launcher.default_run_launcher import DefaultRunLauncher
from dagster._core.storage.dagster_run import DagsterRun

MANAGED = "# Managed by data-platform:"

INSTANCE_YAML = MANAGED + """ `make dev` rewrites this file while this line is here.
# Delete the line to keep your own edits.
telemetry:
  enabled: false

# Runs wait in a queue; at most this many run at once on this machine.
run_coordinator:
  module: dagster
  class: QueuedRunCoordinator
  config:
    max_concurrent_runs: 4

# Dagster's default launcher plus a health check of the run worker process.
run_launcher:
  module: data_platform.instance
  class: LocalRunLauncher

# A run whose worker is gone (killed, machine slept through an OOM kill, `make dev` killed) is
# marked failed within poll_interval_seconds; one that never started within start_timeout.
run_monitoring:
  enabled: true
  start_timeout_seconds: 60
  cancel_timeout_seconds: 60
  max_resume_run_attempts: 0
  poll_interval_seconds: 5

# ... and run retries launch it again, from the steps that did not finish. A step that failed
# by raising is not retried here: the raw-upload sensor requests its files again with a growing
# delay, and gives up (the file shows as failed with the reason) after a few attempts.
run_retries:
  enabled: true
  max_retries: 3
  retry_on_asset_or_op_failure: false

# The raw-upload sensor ticks every few seconds (~17,000 ticks a day): skipped ticks are purged
# after a day so that .data/ stays small; ticks that did something are kept, and so is the run
# history (it holds the materializations the UI's lineage and partition status are made of).
retention:
  schedule:
    purge_after_days: 30
  sensor:
    purge_after_days:
      skipped: 1
      failure: 30
      success: -1

# Step output in files for the UI (the same files and folder as Dagster's default), copied to
# the terminal by a thread instead of four `tail` processes per run (data_platform/compute_logs.py).
compute_logs:
  module: data_platform.compute_logs
  class: MirroredComputeLogManager
  config:
    base_dir: {storage}

# Dagster's SQLite storage (the same files under storage/) with its connections kept open:
# ~0.9 s less per ingest run than `storage: sqlite`, which opens and closes a database per event
# (see data_platform/local_storage.py). Replacing this block by `storage: {{sqlite: {{base_dir:
# ...}}}}` with the same folder goes back to Dagster's own; the history stays.
storage:
  custom:
    module: data_platform.local_storage
    class: PooledSqliteStorage
    config:
      base_dir: {storage}
"""


def instance_yaml(home: str | Path) -> str:
    """The dagster.yaml `make dev` writes into DAGSTER_HOME `home` (its storage under it)."""
    return INSTANCE_YAML.format(storage=json.dumps(str(Path(home).resolve() / "storage")))


def write_instance_yaml(home: str | Path) -> str:
    """Write DAGSTER_HOME/dagster.yaml unless a person took it over; return what was done."""
    home = Path(home)
    home.mkdir(parents=True, exist_ok=True)
    path = home / "dagster.yaml"
    if path.exists():
        text = path.read_text()
        if not text.startswith(MANAGED):
            return f"{path}: kept (edited by hand: its first line is not the managed marker)"
        if text == instance_yaml(home):
            return f"{path}: up to date"
    tmp = path.with_name(".dagster.yaml.tmp")
    tmp.write_text(instance_yaml(home))
    os.replace(tmp, path)
    return f"{path}: written"


def _process_start_time(pid: int) -> float | None:
    """When process `pid` started (epoch seconds), None if no such process is running.

    Linux reads /proc; elsewhere psutil when installed, else only whether the pid exists.
    """
    stat = Path(f"/proc/{pid}/stat")
    if Path("/proc/self/stat").exists():
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            return None
        if fields[0] in ("Z", "X"):  # exited, not yet reaped by its parent
            return None
        ticks = os.sysconf("SC_CLK_TCK")
        boot = next(float(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines()
                    if line.startswith("btime "))
        return boot + int(fields[19]) / ticks
    try:
        import psutil  # noqa: PLC0415 (optional)
    except ImportError:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            pass
        return 0.0
    try:
        p = psutil.Process(pid)
        return None if p.status() == psutil.STATUS_ZOMBIE else p.create_time()
    except psutil.NoSuchProcess:
        return None


class LocalRunLauncher(DefaultRunLauncher):
    """DefaultRunLauncher whose run workers the instance's run monitoring can check."""

    @property
    def supports_check_run_worker_health(self) -> bool:
        return True

    def check_run_worker_health(self, run: DagsterRun) -> CheckRunHealthResult:
        records = self._instance.get_records_for_run(
            run.run_id, of_type=DagsterEventType.ENGINE_EVENT, ascending=False, limit=1000,
        ).records
        for rec in records:
            entry = rec.event_log_entry
            event = entry.dagster_event
            data = event.engine_event_data if event else None
            if data is None or data.metadata.get("pid") is None:
                continue
            if not (event.message or entry.user_message or "").startswith(
                    "Started process for run"):
                continue
            pid = int(data.metadata["pid"].value)
            started = _process_start_time(pid)
            if started is None:
                return CheckRunHealthResult(WorkerStatus.FAILED,
                                            f"run worker process {pid} is gone")
            if started > entry.timestamp + 2:
                return CheckRunHealthResult(WorkerStatus.FAILED,
                                            f"run worker process {pid} is gone (pid reused)")
            return CheckRunHealthResult(WorkerStatus.RUNNING)
        # No worker pid recorded: an in-process run (`dagster asset materialize`, a test)
        # outside any code server. Nothing to judge by; monitoring must not fail it.
        return CheckRunHealthResult(WorkerStatus.RUNNING, "no run worker pid recorded")


def main(argv: list[str] | None = None) -> int:
    """`python -m data_platform.instance [DAGSTER_HOME]`: write the local instance config."""
    argv = sys.argv[1:] if argv is None else argv
    home = argv[0] if argv else os.environ.get("DAGSTER_HOME")
    if not home:
        print("usage: python -m data_platform.instance DAGSTER_HOME", file=sys.stderr)
        return 2
    print(write_instance_yaml(home))
    return 0


if __name__ == "__main__":
    sys.exit(main())
