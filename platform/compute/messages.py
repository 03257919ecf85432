"""Pipes message readers that also keep the error a failed step reported.

A step that raises closes its Pipes context with the exception; Dagster logs that as an engine
event, but the launcher only raises "process failed with code 1" (or the ECS/Batch equivalent).
These readers note the exception of the `closed` message so the compute resource can fail the
asset with the step's own error (`StepFailed`), the launcher's error chained to it.
"""

from __future__ import annotations

import random
import string
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import dagster as dg
from dagster._core.pipes.utils import PipesTempFileMessageReader
from dagster_aws.pipes import PipesCloudWatchMessageReader, PipesS3MessageReader
from dagster_pipes import PipesBlobStoreMessageWriter

from .entry import INTERVAL_KEY


class StepFailed(dg.Failure):
    """An external step failed; the description holds the step's own error."""


class _RecordingHandler:
    """Passes every message on to Dagster's handler, noting the exception a `closed` carries."""

    def __init__(self, handler: Any, reader: StepErrorCapture):
        self._handler = handler
        self._reader = reader

    def handle_message(self, message: Mapping[str, Any]) -> None:
        params = message.get("params") or {}
        if message.get("method") == "closed" and params.get("exception"):
            self._reader.step_error = dict(params["exception"])
        self._handler.handle_message(message)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._handler, name)


class StepErrorCapture:
    """Mixin for a Pipes message reader: `step_error` is the step's reported exception, or None."""

    step_error: dict | None = None

    @contextmanager
    def read_messages(self, handler: Any) -> Iterator[Mapping[str, Any]]:
        self.step_error = None
        with super().read_messages(_RecordingHandler(handler, self)) as params:  # type: ignore[misc]
            yield params

    def failure(self, step: str, launcher_error: BaseException) -> BaseException:
        """Return the error to raise for a failed launch: StepFailed with the step's reported
        error when there is one, else the launcher's error unchanged."""
        if not self.step_error:
            return launcher_error
        name = self.step_error.get("name") or "Error"
        # Pipes formats the message as Python prints the exception's last line ("Name: text").
        message = (self.step_error.get("message") or "").strip()
        if not message.startswith(name):
            message = f"{name}: {message}" if message else name
        return StepFailed(
            description=f"step {step} failed: {message}",
            metadata={
                "step": step,
                "launcher error": str(launcher_error),
                "step traceback": "".join(self.step_error.get("stack") or []),
            },
        )


class StepTempFileMessageReader(StepErrorCapture, PipesTempFileMessageReader):
    """Messages through a temporary file (subprocess and in-process launchers)."""


class StepCloudWatchMessageReader(StepErrorCapture, PipesCloudWatchMessageReader):
    """Messages read from the job's CloudWatch log stream (stdout of the step)."""


class StepS3MessageReader(StepErrorCapture, PipesS3MessageReader):
    """Messages as chunks under `s3://bucket/<prefix>/<random>/`, so the job's IAM policy and a
    lifecycle rule can be scoped to the prefix. `interval` is also handed to the writer."""

    def __init__(self, *, bucket: str, prefix: str, client: Any, interval: float = 10, **kwargs):
        super().__init__(bucket=bucket, client=client, interval=interval, **kwargs)
        self.prefix = prefix.strip("/")

    @contextmanager
    def get_params(self) -> Iterator[dict[str, Any]]:
        name = "".join(random.choices(string.ascii_letters, k=30))
        yield {
            "bucket": self.bucket,
            "key_prefix": f"{self.prefix}/{name}" if self.prefix else name,
            PipesBlobStoreMessageWriter.INCLUDE_STDIO_IN_MESSAGES_KEY: (
                self.include_stdio_in_messages
            ),
            INTERVAL_KEY: self.interval,
        }
