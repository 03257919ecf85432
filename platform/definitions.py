"""The Definitions: every dataset's assets, checks and job, the sensor, and one resource set.

PLATFORM_ENV (default `local`) picks the resource set; it is the only variable read here. Nothing
touches storage or the network while this module loads.
"""

from __future__ import annotations

import os

import dagster as dg

from data_platform.assets import build_dataset
from data_platform.contracts import load_contracts
from data_platform.resources import DuckDBCatalog, LocalScratch, LocalStorage
from data_platform.sensors import build_raw_uploads_sensor


def resources_for(env: str) -> dict:
    """Return the resource set for `env`; raises ValueError for an unknown environment."""
    if env == "local":
        return {"storage": LocalStorage(), "catalog": DuckDBCatalog(), "scratch": LocalScratch()}
    raise ValueError(
        f"PLATFORM_ENV={env!r} is not supported by this build; expected 'local'"
    )


def build_definitions(env: str = "local") -> dg.Definitions:
    datasets = {name: build_dataset(c) for name, c in load_contracts().items()}
    return dg.Definitions(
        assets=[d.raw for d in datasets.values()]
        + [a for d in datasets.values() for a in d.assets],
        asset_checks=[c for d in datasets.values() for c in d.checks],
        jobs=[d.job for d in datasets.values()],
        sensors=[build_raw_uploads_sensor(datasets)],
        resources=resources_for(env),
    )


defs = build_definitions(os.environ.get("PLATFORM_ENV", "local"))
