"""End to end: `dagster dev` (webserver + daemon) on a free port picks up a dropped file on its
own, and the table answers a query. Real processes, real SQLite instance, no mocks."""

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from data_platform.resources import DuckDBCatalog

from .conftest import write_raw
from .helpers import free_port

REPO = Path(__file__).resolve().parents[1]
HEADER = "Order ID,Customer,Amount,Currency,Ordered At,Order Date,Gift?\n"


def wait_for(predicate, timeout: float, what: str, proc: subprocess.Popen, log: Path):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"dagster dev exited ({proc.returncode}):\n{log.read_text()[-4000:]}")
        try:
            value = predicate()
            if value:
                return value
        except Exception:
            pass
        time.sleep(1)
    pytest.fail(f"timed out waiting for {what}:\n{log.read_text()[-4000:]}")


@pytest.mark.e2e
def test_dagster_dev_processes_a_dropped_file(data_dir, tmp_path):
    port = free_port()
    home = tmp_path / "dagster_home"
    home.mkdir()
    log = tmp_path / "dagster_dev.log"
    env = {**os.environ, "DAGSTER_HOME": str(home), "PLATFORM_DATA_DIR": str(data_dir),
           "PLATFORM_SENSOR_SETTLE_SECONDS": "1"}
    dagster = Path(sys.executable).with_name("dagster")
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [str(dagster), "dev", "-h", "127.0.0.1", "-p", str(port), "-w", "workspace.yaml"],
            cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )
    try:
        wait_for(lambda: urllib.request.urlopen(
            f"http://127.0.0.1:{port}/server_info", timeout=5).status == 200,
            120, "the webserver", proc, log)
        body = "".join(
            f"{i},c{i},{i}.25,EUR,2026-11-20T10:00:00+00:00,2026-11-20,false\n"
            for i in range(1, 51)
        )
        write_raw(data_dir, "orders/dropped.csv", HEADER + body + "51,bad,12x,EUR\n")
        catalog = DuckDBCatalog(path=str(data_dir / "catalog.duckdb"))
        count = wait_for(lambda: catalog.query("SELECT count(*), sum(amount) FROM orders")[0],
                         180, "the orders table", proc, log)
        assert count == (50, sum(i + 0.25 for i in range(1, 51)))
        assert catalog.query("SELECT line FROM orders_rejected") == [(52,)]

        # A name with glob characters, and the first file overwritten with an old mtime (as
        # `cp -p` does): both are picked up by the running daemon, each row exactly once.
        write_raw(data_dir, "orders/r[1].csv",
                  HEADER + "1000,c,1.00,EUR,2026-11-20T10:00:00+00:00,2026-11-20,false\n")
        old = time.time() - 30 * 86400
        write_raw(data_dir, "orders/dropped.csv", HEADER + "".join(body.splitlines(True)[:10]),
                  mtime=old)
        expected = [("dropped.csv", 10), ("r[1].csv", 1)]
        wait_for(lambda: catalog.query(
            "SELECT _source_key, count(*) FROM orders GROUP BY 1 ORDER BY 1") == expected,
            180, "the overwrite and the new file", proc, log)
        assert catalog.query("SELECT count(*) FROM orders_rejected") == [(0,)]
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
