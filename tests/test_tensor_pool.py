"""The decode pool's start method: fork only when the process has no other thread at all, native
ones included. A Pipes step process that had read Parquet (Arrow starts its thread pool then,
invisible to `threading`) and forked its decode workers aborted with SIGABRT ("terminate called
without an active exception") now and then; each case runs in a fresh interpreter here."""

import subprocess
import sys


PROBE = """
import tempfile, threading
import pyarrow as pa, pyarrow.parquet as pq
path = tempfile.mktemp(suffix=".parquet")
pq.write_table(pa.table({"a": list(range(100_000))}), path)
pq.read_table(path)  # as the step reads its manifest: Arrow's threads run from here on
from data_platform.tensors.pool import _context, _os_threads
print(threading.active_count(), _os_threads(), _context().get_start_method())
"""


def test_no_fork_once_arrow_threads_run():
    """`threading` sees one thread; the kernel sees Arrow's too, and the pool does not fork."""
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True,
                         timeout=120, check=True).stdout.split()
    python_threads, os_threads, method = int(out[-3]), int(out[-2]), out[-1]
    assert python_threads == 1 and os_threads > 1 and method == "forkserver"
