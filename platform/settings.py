"""Run-time settings of the embedded default: where its folders live when nothing is configured.

Local resources accept explicit config, else read their `PLATFORM_*` variable when they are used
(never while definitions load), else fall back to a folder under the data directory:
`PLATFORM_DATA_DIR`, default `.data` in the working directory (the repo root under `make dev`).
Dagster's `EnvVar` cannot express a default, and the embedded default must start with no
variables set, so these reads happen here instead.
"""

from __future__ import annotations

import os
from pathlib import Path


def data_dir() -> Path:
    """Return the folder that holds the embedded default's raw, lake, catalog and scratch."""
    return Path(os.environ.get("PLATFORM_DATA_DIR") or ".data").resolve()


def setting(explicit: str | None, env_var: str, default_subpath: str) -> str:
    """Return `explicit`, else the environment variable, else a path under `data_dir()`."""
    if explicit:
        return explicit
    value = os.environ.get(env_var)
    if value:
        return value
    return str(data_dir() / default_subpath)


def local_path(url: str) -> Path:
    """Turn a plain path or `file://` URL into an absolute Path; reject other schemes."""
    if url.startswith("file://"):
        url = url[len("file://"):]
    elif "://" in url:
        raise ValueError(f"{url!r} is not a local path; use the aws resource set for s3:// URLs")
    return Path(url).expanduser().resolve()
