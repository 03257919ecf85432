"""The Arrow memory pool of the platform's processes: jemalloc (the system's allocator where
pyarrow is built without it), not pyarrow's default mimalloc.

The Linux wheels' mimalloc maps its memory as transparent huge pages: the first write to each
2 MB of it makes the kernel zero all 2 MB. In the ingest job's last half second (the profile's
sample, the commit's manifests) that zeroing was 10-30% of the CPU samples (`perf`), and the
job's time outside the cleaning engine was 0.43 s with mimalloc against 0.35 s with jemalloc
and 0.37 s with the system's allocator (medians of 6 new processes each, 1.1 GB file).

`configure()` is called when the cleaning engine, the definitions or the command line are
imported. An operator's own `ARROW_DEFAULT_MEMORY_POOL` is kept.
"""

from __future__ import annotations

import os

import pyarrow as pa

_DONE = False


def configure() -> str:
    """Make the platform's pool pyarrow's default (once per process); returns its name."""
    global _DONE
    if not _DONE and not os.environ.get("ARROW_DEFAULT_MEMORY_POOL"):
        try:
            pool = pa.jemalloc_memory_pool()
        except NotImplementedError:  # a pyarrow built without jemalloc (some platforms)
            pool = pa.system_memory_pool()
        pa.set_memory_pool(pool)
    _DONE = True
    return pa.default_memory_pool().backend_name
