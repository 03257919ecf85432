"""The platform's processes allocate Arrow buffers from jemalloc (or the system's allocator),
not pyarrow's default mimalloc, whose transparent huge pages the kernel zeroes 2 MB at a time
(see data_platform.arrow_memory); an operator's ARROW_DEFAULT_MEMORY_POOL is kept."""

import os
import subprocess
import sys

import pytest

PROBE = "import {module}, pyarrow as pa; print(pa.default_memory_pool().backend_name)"


def _pool(module: str, **env) -> str:
    clean = {k: v for k, v in os.environ.items() if k != "ARROW_DEFAULT_MEMORY_POOL"}
    done = subprocess.run([sys.executable, "-c", PROBE.format(module=module)],
                          env={**clean, **env}, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.strip()


@pytest.mark.parametrize("module", ["data_platform.cleaning", "data_platform.definitions",
                                    "data_platform.cli"])
def test_the_platform_allocates_arrow_buffers_outside_mimalloc(module):
    assert _pool(module) in ("jemalloc", "system")


def test_an_operators_choice_of_pool_is_kept():
    assert _pool("data_platform.definitions", ARROW_DEFAULT_MEMORY_POOL="mimalloc") == "mimalloc"
