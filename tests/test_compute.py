"""The compute resources end to end: an asset runs a step through Dagster Pipes (a real
subprocess of the entry point, or in the run's own process) and what the step reports reaches the
Dagster event log; a failing step fails the asset with the step's own error."""


import subprocess
import sys

import dagster as dg
import pytest
from data_platform.compute import resolve_step
from data_platform.resources import InProcessCompute, LocalCompute, SubprocessCompute
from data_platform.resources.compute import ComputeResource

from . import compute_steps

CHECK = dg.AssetCheckSpec("rows_positive", asset="measured")


def _asset(step: str, params: dict, checks: bool = True):
    @dg.asset(name="measured", check_specs=[CHECK] if checks else None)
    def measured(context: dg.AssetExecutionContext, compute: ComputeResource):
        return compute.run(context, step=step, params=params)

    return measured


def _materialize(compute: ComputeResource, step: str, params: dict,
                 checks: bool = True) -> dg.ExecuteInProcessResult:
    return dg.materialize([_asset(step, params, checks)], resources={"compute": compute},
                          raise_on_error=False)


def _failure_message(result: dg.ExecuteInProcessResult) -> str:
    (failure,) = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    error = failure.step_failure_data.error
    return error.message + "".join(c.message for c in _chain(error))


def _chain(error):
    while error is not None:
        yield error
        error = error.cause


LAUNCHERS = [SubprocessCompute(), InProcessCompute()]
IDS = ["subprocess", "in_process"]


@pytest.mark.parametrize("compute", LAUNCHERS, ids=IDS)
def test_step_reports_reach_the_event_log(compute, tmp_path):
    result = _materialize(compute, "tests.compute_steps:report", {"rows": 3, "source": "a.csv"})
    assert result.success
    (mat,) = result.asset_materializations_for_node("measured")
    assert mat.metadata["rows"] == dg.IntMetadataValue(3)
    assert mat.metadata["source"] == dg.TextMetadataValue("a.csv")
    (check,) = result.get_asset_check_evaluations()
    assert check.check_name == "rows_positive" and check.passed
    assert check.metadata["rows"] == dg.IntMetadataValue(3)


@pytest.mark.parametrize("compute", LAUNCHERS, ids=IDS)
def test_failed_check_is_reported_not_raised(compute):
    result = _materialize(compute, "tests.compute_steps:report", {"rows": 0})
    assert result.success
    (check,) = result.get_asset_check_evaluations()
    assert not check.passed


@pytest.mark.parametrize("compute", LAUNCHERS, ids=IDS)
def test_failing_step_fails_the_asset_with_its_error(compute):
    result = _materialize(compute, "tests.compute_steps:explode", {"key": "cat.jpg"})
    assert not result.success
    message = _failure_message(result)
    assert ("step tests.compute_steps:explode failed: ValueError: cannot decode cat.jpg: "
            "not an image") in message


@pytest.mark.parametrize("compute", LAUNCHERS, ids=IDS)
def test_unknown_step_fails_with_the_lookup_error(compute):
    result = _materialize(compute, "tests.compute_steps:missing", {})
    assert not result.success
    assert "has no 'missing'" in _failure_message(result)


def test_registered_name_in_a_module_is_reached_by_dotted_path():
    result = _materialize(SubprocessCompute(), "tests.compute_steps:tests.registered", {},
                          checks=False)
    assert result.success
    (mat,) = result.asset_materializations_for_node("measured")
    assert mat.metadata["registered"] == dg.BoolMetadataValue(True)


def test_resolve_step_by_name_and_path():
    assert resolve_step("tests.compute_steps:report") is compute_steps.report
    assert resolve_step("tests.registered") is compute_steps.registered
    assert resolve_step("probe").__name__ == "probe"
    with pytest.raises(LookupError, match="unknown step 'nope'"):
        resolve_step("nope")
    with pytest.raises(LookupError, match="cannot import"):
        resolve_step("tests.no_such_module:x")


def test_local_compute_picks_the_launcher_at_run_time(monkeypatch):
    monkeypatch.delenv("PLATFORM_COMPUTE", raising=False)
    assert isinstance(LocalCompute().selected(), SubprocessCompute)
    monkeypatch.setenv("PLATFORM_COMPUTE", "in_process")
    assert isinstance(LocalCompute().selected(), InProcessCompute)
    assert isinstance(LocalCompute(launcher="subprocess").selected(), SubprocessCompute)
    monkeypatch.setenv("PLATFORM_COMPUTE", "batch")
    with pytest.raises(ValueError, match="not a local one"):
        LocalCompute().selected()


def test_local_compute_runs_the_selected_launcher(monkeypatch):
    monkeypatch.setenv("PLATFORM_COMPUTE", "in_process")
    result = _materialize(LocalCompute(), "tests.compute_steps:report", {"rows": 2})
    assert result.success
    (mat,) = result.asset_materializations_for_node("measured")
    assert mat.metadata["rows"] == dg.IntMetadataValue(2)


def test_entry_point_outside_pipes_exits_non_zero():
    done = subprocess.run([sys.executable, "-m", "data_platform.compute.entry"],
                          capture_output=True, text=True, timeout=120,
                          env={k: v for k, v in __import__("os").environ.items()
                               if not k.startswith("DAGSTER_PIPES")})
    assert done.returncode == 1
    assert "not launched through Dagster Pipes" in done.stderr
