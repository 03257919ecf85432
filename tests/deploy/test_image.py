"""deploy/Dockerfile, tested without Docker: its shape, the wheel it installs, and the code-location
command it runs, started from that wheel installed outside the repository."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

from ..helpers import free_port
from .conftest import DEPLOY, REPO

pytestmark = pytest.mark.deploy

DOCKERFILE = DEPLOY / "Dockerfile"
VENV_BIN = Path(sys.executable).parent

# Imported by every Python process started with this folder on PYTHONPATH: records where
# data_platform.definitions was loaded from, so the test sees what the server really imported.
IMPORT_RECORDER = """
import importlib.abc, os, sys

class _Recorder(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name != "data_platform.definitions":
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(name, path, target)
            if spec is not None:
                with open(os.environ["DEPLOY_TEST_IMPORT_LOG"], "a") as log:
                    log.write(f"{spec.origin}\\n")
                return spec
        return None

if os.environ.get("DEPLOY_TEST_IMPORT_LOG"):
    sys.meta_path.insert(0, _Recorder())
"""


def instructions() -> list[tuple[int, str, str]]:
    """(stage index, instruction, arguments) of the Dockerfile, continuation lines joined."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    stage = -1
    found = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        keyword, _, rest = line.partition(" ")
        if keyword.upper() == "FROM":
            stage += 1
        found.append((stage, keyword.upper(), rest.strip()))
    return found


def image_command() -> list[str]:
    (cmd,) = [args for _, keyword, args in instructions() if keyword == "CMD"]
    return json.loads(cmd)


def with_option(command: list[str], option: str, value: str) -> list[str]:
    """`command` with the value after `option` replaced (the option must be present)."""
    i = command.index(option)
    return [*command[: i + 1], value, *command[i + 2 :]]


# --- the Dockerfile ---------------------------------------------------------------------------


def test_multi_stage_pinned_slim_base_non_root():
    found = instructions()
    args = {a.split("=", 1)[0]: a.split("=", 1)[1] for s, k, a in found if k == "ARG" and "=" in a}
    froms = [a for _, k, a in found if k == "FROM"]
    assert len(froms) >= 2, "builder and runtime stages"
    final_stage = len(froms) - 1
    base = froms[-1].split()[0]
    base = args.get(base.strip("${}"), base)
    assert re.fullmatch(r"python:3\.11\.\d+-slim-(bookworm|trixie)(@sha256:[0-9a-f]{64})?", base)
    final = [(k, a) for s, k, a in found if s == final_stage]
    users = [a for k, a in final if k == "USER"]
    assert users and users[-1] not in ("root", "0")
    run_lines = " ".join(a for k, a in final if k == "RUN")
    assert "pip install" not in run_lines and "apt-get install" not in run_lines
    assert "DAGSTER_HOME=/opt/dagster/dagster_home" in " ".join(a for k, a in final if k == "ENV")
    copies = " ".join(a for k, a in final if k == "COPY")
    assert "deploy/dagster.yaml" in copies and "deploy/workspace.yaml" in copies
    assert "/opt/dagster/dagster_home/" in copies
    assert "--from=builder /opt/venv /opt/venv" in copies, "only the built venv is copied"
    exposed = {p for k, a in final if k == "EXPOSE" for p in a.split()}
    assert exposed == {"3000", "4000"}


def test_builder_removes_pip_from_the_runtime_venv():
    builder = " ".join(a for s, k, a in instructions() if s == 0 and k == "RUN")
    assert "--no-deps" in builder and "pip wheel" in builder
    assert "pip uninstall --yes pip" in builder
    assert "PIP_NO_CACHE_DIR=1" in " ".join(
        a for s, k, a in instructions() if s == 0 and k == "ENV"
    )


def test_image_command_is_the_code_location_of_the_task_definition(deploy_modules):
    settings = deploy_modules["stacks.settings"]
    assert image_command() == settings.CODE_SERVER_COMMAND


# --- the wheel and the code location ----------------------------------------------------------


def copy_builder_sources(workdir: Path) -> None:
    """Reproduce the builder stage's COPY instructions (build context = repository root)."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for stage, keyword, args in instructions():
        if stage != 0 or keyword != "COPY":
            continue
        *sources, target = args.split()
        assert not any(s.startswith("--") for s in sources), args
        for source in sources:
            path = REPO / source
            assert path.exists(), f"docker build would fail: {source} is not in the build context"
            if len(sources) == 1 and not target.endswith("/") and target not in (".", "./"):
                destination = workdir / target
            else:
                destination = workdir / target / path.name
            if path.is_dir():
                shutil.copytree(path, destination, ignore=ignore)
            else:
                destination.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(path, destination)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The wheel the Dockerfile's builder stage installs: `pip wheel --no-deps` of exactly the
    files it copies (so a file the image build lacks fails here too)."""
    sources = tmp_path_factory.mktemp("image-build-context")
    copy_builder_sources(sources)
    out = tmp_path_factory.mktemp("image-wheel")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "--quiet",
            "--wheel-dir",
            str(out),
            str(sources),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (whl,) = out.glob("data_platform-*.whl")
    return whl


def test_wheel_holds_the_definitions_and_every_dataset_contract(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "data_platform/definitions.py" in names
    contracts = {
        f"data_platform/datasets/{p.name}" for p in (REPO / "platform/datasets").glob("*.yaml")
    }
    assert contracts and contracts <= names


@pytest.fixture(scope="module")
def installed(wheel, tmp_path_factory) -> Path:
    """The wheel installed with --no-deps into its own folder, as the image's venv holds it."""
    target = tmp_path_factory.mktemp("image-site")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--no-deps",
            "--quiet",
            "--target",
            str(target),
            str(wheel),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    assert (target / "data_platform" / "definitions.py").exists()
    return target


def test_code_location_command_serves_the_installed_wheel(installed, tmp_path, deploy_modules):
    settings = deploy_modules["stacks.settings"]
    port = str(free_port())
    # The command of the image and the task definition, bound to loopback on a free port.
    command = with_option(with_option(image_command(), "-p", port), "-h", "127.0.0.1")
    health = with_option(settings.CODE_SERVER_HEALTH_CHECK, "-p", port)

    recorder = tmp_path / "recorder"
    recorder.mkdir()
    (recorder / "sitecustomize.py").write_text(IMPORT_RECORDER)
    import_log = tmp_path / "imports.log"
    workdir = tmp_path / "cwd"
    (workdir / "dagster_home").mkdir(parents=True)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("PLATFORM_", "DAGSTER_"))},
        "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "PYTHONPATH": os.pathsep.join([str(installed), str(recorder)]),
        # The services run with the aws resource set; it must load without reaching AWS.
        "PLATFORM_ENV": "aws",
        "PLATFORM_DATA_DIR": str(workdir / "data"),
        "DAGSTER_HOME": str(workdir / "dagster_home"),
        "DEPLOY_TEST_IMPORT_LOG": str(import_log),
    }
    server_log = tmp_path / "code-server.log"
    # Its own process group: the code server starts a gRPC child that must stop with it, and
    # output goes to a file so a child holding it open can never block the test.
    server = subprocess.Popen(
        command, cwd=workdir, env=env, stdout=server_log.open("wb"), stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            probe = subprocess.run(
                health, cwd=workdir, env=env, capture_output=True, text=True, timeout=60
            )
            if probe.returncode == 0:
                break
            if server.poll() is not None or time.monotonic() > deadline:
                _stop(server)
                output = server_log.read_text(errors="replace")
                pytest.fail(f"{shlex.join(command)} did not become healthy:\n{output[-4000:]}")
            time.sleep(1)

        from dagster._grpc.client import DagsterGrpcClient

        client = DagsterGrpcClient(port=int(port), host="127.0.0.1")
        assert client.ping("deploy-test")["echo"] == "deploy-test"
        repositories = client.list_repositories()
        assert "data_platform.definitions" in repositories, repositories[:2000]
    finally:
        _stop(server)

    origins = [Path(line) for line in import_log.read_text().splitlines()]
    # Once in the code-server proxy's process, once in the gRPC server it runs the code in.
    assert origins, "the server processes imported data_platform.definitions"
    for origin in origins:
        assert origin.is_relative_to(installed), origin
        assert not origin.is_relative_to(REPO), origin


def _stop(server: subprocess.Popen) -> None:
    """Stop the server and every process it started (its whole process group)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(server.pid, signal.SIGTERM)
    try:
        server.wait(timeout=30)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.pid, signal.SIGKILL)
        server.wait(timeout=10)
    # The gRPC child may outlive the parent by a moment; make sure nothing is left behind.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(server.pid, signal.SIGKILL)
