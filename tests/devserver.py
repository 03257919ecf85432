"""`dagster dev` as `make dev` runs it (same workspace, the local instance's dagster.yaml), in
its own process group so that a test can stop it gently or kill all of it at once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from data_platform.instance import write_instance_yaml

from .helpers import free_port

REPO = Path(__file__).resolve().parents[1]


class DevServer:
    def __init__(self, data_dir: Path, home: Path, log: Path, env: dict[str, str] | None = None):
        self.data_dir, self.home, self.log = data_dir, home, log
        self.env = {**os.environ, "DAGSTER_HOME": str(home), "PLATFORM_DATA_DIR": str(data_dir),
                    "PLATFORM_SENSOR_SETTLE_SECONDS": "1", **(env or {})}
        self.proc: subprocess.Popen | None = None
        self.port = 0
        write_instance_yaml(home)

    def start(self, wait: bool = True) -> DevServer:
        self.port = free_port()
        dagster = Path(sys.executable).with_name("dagster")
        with open(self.log, "ab") as out:
            out.write(f"\n===== start {time.strftime('%H:%M:%S')} =====\n".encode())
            self.proc = subprocess.Popen(
                [str(dagster), "dev", "-h", "127.0.0.1", "-p", str(self.port),
                 "-w", "workspace.yaml"],
                cwd=REPO, env=self.env, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        if wait:
            self.wait_for(lambda: urllib.request.urlopen(
                f"http://127.0.0.1:{self.port}/server_info", timeout=5).status == 200,
                120, "the webserver")
        return self

    def kill(self) -> None:
        """SIGKILL the whole process group: webserver, daemon, code server and run workers."""
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.kill()

    def tail(self, n: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-n:]

    def wait_for(self, predicate, timeout: float, what: str, interval: float = 1.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"dagster dev exited ({self.proc.returncode}):\n{self.tail()}")
            try:
                value = predicate()
                if value:
                    return value
            except Exception:
                pass
            time.sleep(interval)
        pytest.fail(f"timed out waiting for {what}:\n{self.tail()}")
