"""One iteration of Dagster's own sensor daemon loop over workspace.yaml, in this process.

`python -m tests.sensor_daemon DAGSTER_HOME [CRASH_POINT]`: with a crash point (one of Dagster's
debug crash flags, e.g. RUN_CREATED), the daemon SIGKILLs itself there, as Dagster's own
crash-recovery tests do.
"""

import logging
import signal
import sys

import dagster as dg
from dagster._core.test_utils import create_test_daemon_workspace_context
from dagster._core.workspace.load_target import WorkspaceFileTarget
from dagster._daemon.sensor import execute_sensor_iteration


def main(home: str, crash: str | None = None) -> None:
    flags = {"raw_uploads_sensor": {crash: signal.SIGKILL}} if crash else None
    with dg.DagsterInstance.from_config(home) as instance:
        with create_test_daemon_workspace_context(
                WorkspaceFileTarget(paths=["workspace.yaml"]), instance) as ctx:
            list(execute_sensor_iteration(ctx, logging.getLogger("sensor_daemon"), None, None,
                                          debug_crash_flags=flags))


if __name__ == "__main__":
    main(*sys.argv[1:])
