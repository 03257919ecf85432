"""Packaging: the `platform/` folder installs as `data_platform` without shadowing stdlib `platform`."""

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SOURCE = REPO / "platform"


def test_stdlib_platform_is_not_shadowed_from_repo_root():
    out = subprocess.run(
        [sys.executable, "-c",
         "import platform, data_platform.definitions as d; print(platform.system()); "
         "print(platform.__file__); print(len(d.defs.resolve_all_job_defs()))"],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )
    assert out.returncode == 0, out.stderr
    system, path, jobs = out.stdout.split()
    assert system == "Linux" and "site-packages" not in path and not path.startswith(str(REPO))
    assert int(jobs) >= 2


def test_python_m_pytest_runs_from_repo_root():
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
         "tests/test_packaging.py::test_stdlib_platform_is_not_shadowed_from_repo_root"],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "1 passed" in out.stdout


@pytest.fixture(scope="session")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
         "--quiet", "-w", str(out), str(REPO)],
        check=True, timeout=300, capture_output=True,
    )
    (whl,) = out.glob("data_platform-*.whl")
    return whl


def test_wheel_contains_every_module_and_contract(wheel):
    """A subpackage missing from pyproject's packages list would still import in a lax
    editable install but be absent here."""
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = {
        "data_platform/" + p.relative_to(SOURCE).as_posix()
        for p in SOURCE.rglob("*")
        if p.suffix in (".py", ".yaml") and "__pycache__" not in p.parts
    }
    assert expected and expected <= names, sorted(expected - names)
    assert "data_platform/__init__.py" not in names  # namespace root, by design
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "data-platform = data_platform.cli:main" in zipfile.ZipFile(wheel).read(
        entry_points).decode()
