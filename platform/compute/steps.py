"""The registry of external steps: heavy work that a compute resource runs through Dagster Pipes.

A step is a function `step(params: dict, pipes: PipesContext) -> None`. It does its work, reports
materializations and asset check results with `pipes.report_asset_materialization` and
`pipes.report_asset_check`, and logs through `pipes.log`. Raising fails the step; the error travels
back to the run through Pipes.

A step is named either by a registered name (`register_step("tensors")(fn)`) or by a dotted path
`package.module:function`. A dotted path imports its module, so a step defined anywhere on the
image (the tensor step, a test's step) runs without this module knowing about it; a module that
registers names can be reached as `package.module:registered_name` too.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

Step = Callable[[dict, Any], None]

_STEPS: dict[str, Step] = {}


def register_step(name: str) -> Callable[[Step], Step]:
    """Return a decorator registering the function as step `name` (the function is unchanged).

    Raises ValueError when another function is already registered under `name`.
    """

    def decorate(fn: Step) -> Step:
        existing = _STEPS.get(name)
        if existing is not None and existing is not fn:
            raise ValueError(f"step {name!r} is already registered ({_describe(existing)})")
        _STEPS[name] = fn
        return fn

    return decorate


def registered_steps() -> dict[str, Step]:
    """Return a copy of the registered steps by name."""
    return dict(_STEPS)


def resolve_step(ref: str) -> Step:
    """Return the step function named by `ref` (a registered name or `module:function`).

    Raises LookupError when the name is not registered, the module cannot be imported or has no
    such attribute, and TypeError when what was found is not callable.
    """
    if ref in _STEPS:
        return _STEPS[ref]
    module_name, sep, attr = ref.partition(":")
    if not sep or not module_name or not attr:
        known = ", ".join(sorted(_STEPS)) or "none"
        raise LookupError(
            f"unknown step {ref!r}: use a registered name (registered: {known}) or 'module:function'"
        )
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise LookupError(f"step {ref!r}: cannot import {module_name!r}: {error}") from error
    # The module's attribute first, else a name that importing the module registered.
    fn = _STEPS.get(attr) if getattr(module, attr, None) is None else getattr(module, attr)
    if fn is None:
        raise LookupError(f"step {ref!r}: module {module_name!r} has no {attr!r}")
    if not callable(fn):
        raise TypeError(f"step {ref!r} is a {type(fn).__name__}, not a function")
    return fn


def _describe(fn: Step) -> str:
    return f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', repr(fn))}"


@register_step("probe")
def probe(params: dict, pipes: Any) -> None:
    """Report the params back as materialization metadata: a smoke test of a launcher's wiring
    (image, command, IAM for the message bucket) that does no work."""
    pipes.log.info(f"probe step received params {sorted(params)}")
    pipes.report_asset_materialization(
        metadata={"params": {"raw_value": params, "type": "json"}}
    )
