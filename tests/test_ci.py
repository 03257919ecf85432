"""What CI runs after the tests (`make ci`: `data-platform materialize`, then `data-platform
check`) on a real instance in DAGSTER_HOME and real local tables: green for the shipped
samples, red for a change that breaks data quality (a contract the committed rows no longer
satisfy, a new file that fails its audits), and the same sequence in .ci/run and the GitHub
workflow.
"""

import json
import shutil
from pathlib import Path

import pytest
import yaml
from data_platform.cli import main
from data_platform.contracts import CONTRACTS_DIR
from data_platform.instance import write_instance_yaml
from data_platform.operating.materialize import contiguous_groups
from data_platform.resources import DuckDBCatalog

from .conftest import SAMPLES, write_raw

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def ci_env(data_dir, tmp_path, monkeypatch):
    """A data folder with the orders samples, an instance, and an editable copy of the
    contracts; returns the contracts folder."""
    shutil.copytree(SAMPLES / "orders", data_dir / "raw" / "orders")
    write_instance_yaml(tmp_path / "home")
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home"))
    contracts = tmp_path / "contracts"
    shutil.copytree(CONTRACTS_DIR, contracts)
    monkeypatch.setenv("PLATFORM_CONTRACTS_DIR", str(contracts))
    return contracts


def test_samples_pass_then_a_stricter_contract_and_a_bad_file_fail(data_dir, ci_env, capsys):
    assert main(["materialize", "orders"]) == 0
    assert "orders: 2 file(s) in 1 run(s): ok" in capsys.readouterr().out
    assert main(["check", "orders"]) == 0
    catalog = DuckDBCatalog(path=str(data_dir / "catalog.duckdb"))
    (rows,) = catalog.query("SELECT count(*) FROM orders")[0]
    assert rows > 0

    # Twice is a no-op: the content is committed already.
    assert main(["materialize", "orders"]) == 0
    assert catalog.query("SELECT count(*) FROM orders")[0] == (rows,)

    # A contract change the committed rows break: the samples reject 1.6% of their records.
    orders = ci_env / "orders.yaml"
    original = orders.read_text()
    orders.write_text(original.replace("rejected_share_error: 0.10", "rejected_share_error: 0.01"))
    capsys.readouterr()
    assert main(["check", "orders", "--json"]) == 1
    failing = [(r["check"], r["source"]) for r in json.loads(capsys.readouterr().out)
               if not r["passed"] and r["severity"] == "ERROR"]
    assert ("rejected_share", "committed snapshot") in failing
    orders.write_text(original)

    # A new file whose keys collide with committed rows: its run fails and CI with it; the
    # table keeps its rows.
    write_raw(data_dir, "orders/2026-11-22.csv",
              (SAMPLES / "orders" / "2026-11-20.csv").read_text().replace("Customer ", "Other "))
    assert main(["materialize", "orders"]) == 1
    out = capsys.readouterr().out
    assert "orders: 3 file(s) in 1 run(s): 1 run(s) failed" in out
    assert "2026-11-22.csv: primary key" in out
    assert catalog.query("SELECT count(*) FROM orders")[0] == (rows,)
    assert main(["check", "orders"]) == 1  # the instance remembers the failed file


def test_unknown_dataset_and_ignored_names(data_dir, ci_env, capsys):
    assert main(["materialize", "nope"]) == 2
    assert "unknown dataset(s) 'nope'" in capsys.readouterr().err
    write_raw(data_dir, "orders/.partial.csv", "half")
    assert main(["materialize", "orders"]) == 0
    assert "ignored '.partial.csv': hidden or temporary" in capsys.readouterr().out


def test_ranged_runs_cover_only_the_files_asked_for():
    order = ["a", "b", "c", "d", "e"]
    assert contiguous_groups(["e", "a", "b", "d"], order, 10) == [["a", "b"], ["d", "e"]]
    assert contiguous_groups(["a", "b", "c"], order, 2) == [["a", "b"], ["c"]]


def test_ci_and_the_workflow_run_the_same_sequence():
    workflow = yaml.safe_load((REPO / ".github" / "workflows" / "ci.yml").read_text())
    steps = [s.get("run", "") for job in workflow["jobs"].values() for s in job["steps"]]
    assert "make ci" in steps
    assert "make ci" in (REPO / ".ci" / "run").read_text().splitlines()
    makefile = (REPO / "Makefile").read_text()
    assert "ci: test check-samples" in makefile
    assert "data-platform materialize" in makefile and "data-platform check" in makefile
