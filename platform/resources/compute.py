"""Compute: where heavy steps run. One interface, launchers chosen by configuration.

An asset calls `compute.run(context, step=..., params=...)` and returns (or yields from) what the
step reported through Dagster Pipes. The step runs the same code however it is launched: through
the single entry point `python -m data_platform.compute.entry`, or in the run's own process with a
Pipes context of its own. Locally: a subprocess (default) or in-process; on AWS an ECS task or a
Batch job (`resources.compute_aws`).
"""

from __future__ import annotations

import abc
import os
import sys
from collections.abc import Mapping, Sequence
from typing import Any

import dagster as dg
from dagster._core.pipes.client import PipesClientCompletedInvocation, PipesExecutionResult
from dagster._core.pipes.utils import PipesEnvContextInjector, open_pipes_session
from pydantic import Field

from ..compute.entry import PARAMS_KEY, STEP_KEY, run_in_process
from ..compute.messages import StepErrorCapture, StepTempFileMessageReader

ENTRY_MODULE = "data_platform.compute.entry"
ENTRY_COMMAND = ["python", "-m", ENTRY_MODULE]
# The variable that picks a launcher at run time (never read while definitions load).
LAUNCHER_VAR = "PLATFORM_COMPUTE"
LOCAL_LAUNCHERS = ("subprocess", "in_process")

Context = dg.OpExecutionContext | dg.AssetExecutionContext


class ComputeResource(dg.ConfigurableResource, abc.ABC):
    """Runs a registered external step through Dagster Pipes and returns what it reported."""

    def run(
        self,
        context: Context,
        *,
        step: str,
        params: Mapping[str, Any] | None = None,
        extras: Mapping[str, Any] | None = None,
    ) -> Sequence[PipesExecutionResult]:
        """Run `step` (a registered name or `module:function`) with JSON-serializable `params`.

        Returns the MaterializeResults and AssetCheckResults the step reported (an asset returns
        or yields them). Raises StepFailed with the step's own error when the step raised, and
        the launcher's error when the launch itself failed (job FAILED before the step ran,
        timeout, missing permissions).
        """
        payload = {**(extras or {}), STEP_KEY: step, PARAMS_KEY: dict(params or {})}
        reader = self.message_reader()
        try:
            invocation = self.launch(context, payload, reader)
        except Exception as error:
            failure = reader.failure(step, error)
            if failure is error:
                raise
            raise failure from error
        return invocation.get_results()

    @abc.abstractmethod
    def message_reader(self) -> StepErrorCapture:
        """Return a fresh message reader for one launch."""

    @abc.abstractmethod
    def launch(
        self, context: Context, extras: dict[str, Any], reader: StepErrorCapture
    ) -> PipesClientCompletedInvocation:
        """Start the entry point with `extras` in its Pipes context and wait for it to finish."""


class SubprocessCompute(ComputeResource):
    """The step in a child process of the run (`python -m data_platform.compute.entry`)."""

    python: str | None = Field(
        default=None, description="Interpreter to start; default the run's own (sys.executable)"
    )
    forward_stdio: bool = Field(
        default=True, description="Show the step's stdout/stderr in the run's compute logs"
    )

    def message_reader(self) -> StepErrorCapture:
        return StepTempFileMessageReader()

    def launch(self, context, extras, reader) -> PipesClientCompletedInvocation:
        client = dg.PipesSubprocessClient(
            message_reader=reader,  # type: ignore[arg-type]
            forward_stdio=self.forward_stdio,
        )
        command = [self.python or sys.executable, "-m", ENTRY_MODULE]
        return client.run(context=context, command=command, extras=extras)


class InProcessCompute(ComputeResource):
    """The step in the run's own process, through a Pipes context of its own (so the step reports
    exactly as it does when launched): no process start-up, but no isolation either: a crash or a
    leak of the step is the run's."""

    def message_reader(self) -> StepErrorCapture:
        return StepTempFileMessageReader()

    def launch(self, context, extras, reader) -> PipesClientCompletedInvocation:
        with open_pipes_session(
            context=context,
            context_injector=PipesEnvContextInjector(),
            message_reader=reader,  # type: ignore[arg-type]
            extras=extras,
        ) as session:
            run_in_process(session.get_bootstrap_env_vars())
        return PipesClientCompletedInvocation(session)


class SelectingCompute(ComputeResource):
    """A compute resource that hands every launch to the launcher `selected()` names."""

    @abc.abstractmethod
    def selected(self) -> ComputeResource:
        """Return the launcher to use; raises ValueError for an unknown name."""

    def run(self, context, *, step, params=None, extras=None):
        return self.selected().run(context, step=step, params=params, extras=extras)

    def message_reader(self) -> StepErrorCapture:
        return self.selected().message_reader()

    def launch(self, context, extras, reader) -> PipesClientCompletedInvocation:
        return self.selected().launch(context, extras, reader)


class LocalCompute(SelectingCompute):
    """Subprocess (default) or in-process, picked by `launcher` or $PLATFORM_COMPUTE at run time."""

    launcher: str | None = Field(
        default=None,
        description="'subprocess' or 'in_process'; default $PLATFORM_COMPUTE, else subprocess",
    )

    def selected(self) -> ComputeResource:
        """Return the launcher to use; raises ValueError for an unknown name."""
        name = self.launcher or os.environ.get(LAUNCHER_VAR) or "subprocess"
        if name == "subprocess":
            return SubprocessCompute()
        if name in ("in_process", "in-process"):
            return InProcessCompute()
        raise ValueError(
            f"compute launcher {name!r} is not a local one; expected one of {LOCAL_LAUNCHERS}"
        )
