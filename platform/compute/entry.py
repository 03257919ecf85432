"""The one entry point of external steps: `python -m data_platform.compute.entry`.

Every launcher starts this (a subprocess here, an ECS task or a Batch job on AWS); the in-process
launcher calls `run_step` with the same parameters. It opens the Dagster Pipes context, reads the
step reference (`step`) and its parameters (`params`) from the Pipes extras, runs the step, and
closes the context. A failing step is reported through Pipes (the `closed` message carries the
exception) and the process exits with status 1.

Messages go where the launching side's message reader asked: to S3 when its params name a bucket
(Batch and ECS jobs), else to a file or stdout (Dagster's default writer).
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import traceback
from collections.abc import Mapping
from typing import NoReturn

from dagster_pipes import (
    PipesContext,
    PipesDefaultContextLoader,
    PipesDefaultMessageWriter,
    PipesEnvVarParamsLoader,
    PipesMappingParamsLoader,
    PipesMessageWriter,
    PipesParamsLoader,
    PipesS3MessageWriter,
)

from .steps import resolve_step

# Extras keys the compute resources set.
STEP_KEY = "step"
PARAMS_KEY = "params"
# A messages-params key of our S3 reader: how often the writer uploads a chunk, in seconds.
INTERVAL_KEY = "platform_interval"


def message_writer(messages_params: Mapping) -> PipesMessageWriter:
    """Return the writer matching the reader's params: S3 when they name a bucket, else default."""
    if "bucket" in messages_params:
        from .aws import aws_client

        return PipesS3MessageWriter(
            aws_client("s3"), interval=float(messages_params.get(INTERVAL_KEY, 10))
        )
    return PipesDefaultMessageWriter()


def run_step(params_loader: PipesParamsLoader, *, set_global: bool = True) -> None:
    """Run the step the Pipes context names; raise what the step raised (after reporting it).

    `set_global` makes the context `PipesContext.get()` for code the step calls; the in-process
    launcher passes False so the run's own process keeps no stale global context.

    Raises DagsterPipesError when the process was not launched through Pipes, LookupError when the
    step cannot be found, and whatever the step raises.
    """
    from dagster_pipes import DagsterPipesError

    if not params_loader.is_dagster_pipes_process():
        raise DagsterPipesError(
            "not launched through Dagster Pipes (no DAGSTER_PIPES_CONTEXT); "
            "run steps through a compute resource"
        )
    writer = message_writer(params_loader.load_messages_params())
    context = PipesContext(params_loader, PipesDefaultContextLoader(), writer)
    if set_global:
        PipesContext.set(context)
    # The context as a `with` block: an exception is reported in the `closed` message, then
    # re-raised here.
    with context:
        ref = context.get_extra(STEP_KEY)
        params = context.extras.get(PARAMS_KEY) or {}
        step = resolve_step(ref)
        context.log.info(f"running step {ref}")
        step(dict(params), context)


def run_in_process(env: Mapping[str, str]) -> None:
    """Run the step named by the Pipes bootstrap variables `env` in this process (see run_step)."""
    run_step(PipesMappingParamsLoader(dict(env)), set_global=False)


def main() -> int:
    """Run the step of this process's Pipes context; return the process exit status."""
    try:
        run_step(PipesEnvVarParamsLoader())
    except Exception:  # reported through Pipes already; the log and the status say it failed
        traceback.print_exc()
        return 1
    return 0


def exit_now(status: int) -> NoReturn:
    """Leave the process with `status` without the interpreter's teardown. The step is over:
    its files are closed and fsync'd by its own code, its Pipes messages written and closed.
    Native thread pools torn down during that teardown (Arrow's, DuckDB's) abort a process now
    and then, with SIGABRT and "terminate called without an active exception" (apache/arrow
    #34314); a tensor step's process died so in CI with exit code -6, failing its run."""
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(status)


if __name__ == "__main__":
    exit_now(main())
