"""Reads of a raw file's staged Parquet that the table step needs and the cleaned step need not
wait for: the primary-key facts (for the commit's key check) and the column profile (for drift).

They start as soon as the engine has written the files, on hard links in a folder of their own
(the staged files move into the lake meanwhile; the folder goes when both reads end). The
cleaned step saves its record without them; the table step of the same run, in the same process
(the ingest job runs its steps in process), takes them when it needs them and saves them in the
staging record with its commit. They run while Dagster records the cleaned step's events and the
table step prepares its commit: single-threaded Python that leaves a core idle. The facts, needed
first, have a worker of their own; the profile, needed last (drift), runs beside them at
background priority (PROFILE_NICE), so it takes what the facts leave.

Measured on the 1.1 GB bench file (job timelines, 2 cores): from the end of clean_file to the
end of the run 0.99 s when the cleaned step waited for both reads, 0.77-0.86 s with the reads
handed over but run one after the other (the commit waited 0.07-0.16 s for the facts, drift
0.08-0.11 s for the profile), 0.51-0.76 s as here (the commit waited 0-0.13 s for the facts,
drift never for the profile).

Nothing depends on them for correctness. A table step in another process (a retry after a
crash) finds none: the commit then reads the new keys from the staged files itself, and drift
scores no profile for that file (as for a file staged before drift checks). A run without the
table step (cleaned/<ds> materialized alone) waits for them and saves them in the records. Where
hard links cannot be made, the cleaned step reads the files and waits, as before.
"""

from __future__ import annotations

import concurrent.futures
import os
import shutil
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from .. import duckdb_pool
from .. import staging as st
from ..cleaning import lower_priority

PROFILE_NICE = 10  # the profile yields to the key facts (and to the job's own thread)
_FACTS = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="staged-facts")
_PROFILES = concurrent.futures.ThreadPoolExecutor(
    1, thread_name_prefix="staged-profiles", initializer=lower_priority,
    initargs=(PROFILE_NICE,))
_link = os.link  # a seam for tests: a file system without hard links
_LOCK = threading.Lock()
_PENDING: dict[tuple, "Pending"] = {}


@dataclass
class Pending:
    """The reads of one file's staged files (futures; None for a read the dataset lacks)."""

    facts: concurrent.futures.Future | None
    profile: concurrent.futures.Future | None
    dropped: threading.Event = field(default_factory=threading.Event)

    def key_facts(self) -> dict | None:
        """The key facts, waited for (None when there are none: the commit reads the keys)."""
        if self.facts is None:
            return None
        try:
            return self.facts.result()
        except Exception:  # noqa: BLE001 - only a shortcut: the commit checks by itself
            return None

    def column_profile(self, log, name: str) -> dict | None:
        """The column profile, waited for; one that could not be computed is logged and left
        out (drift then scores no profile for the file), never failing the file."""
        if self.profile is None:
            return None
        try:
            return self.profile.result()
        except Exception as e:  # noqa: BLE001 - monitoring only: the rows are fine
            log.warning(f"{name}: no column profile: {e}")
            return None

    def cancel(self) -> None:
        """Drop the reads not begun yet (a file that will not be committed); the folder of
        links still goes."""
        self.dropped.set()
        if self.facts is not None:
            self.facts.cancel()


def prepare(facts: bool, profile: bool, views: str | None = None) -> None:
    """Make the DuckDB databases of the reads to come on the threads they will run on, and the
    one the views are changed in (`views`, see CatalogResource.expose_database; at normal
    priority, as its threads inherit it), while the engine cleans the file (see duckdb_pool;
    the queued reads wait for them). The first change of the views in a new process took 78 ms,
    56 ms with its database made ahead (medians of 10)."""
    if facts or views:
        _FACTS.submit(_prepare_all, ["keys"] * facts + [views] * bool(views))
    if profile:
        _PROFILES.submit(duckdb_pool.prepare, "profile")


def _prepare_all(names: list[str]) -> None:
    for name in names:
        duckdb_pool.prepare(name)


def start(paths: list[Path], scratch_root: Path, facts: Callable | None,
          profile: Callable | None) -> Pending | None:
    """Start `facts(links)` and `profile(links)` on hard links of `paths` made in a new folder
    under `scratch_root` (removed after both); None when the links cannot be made (another
    file system, or one without links): the caller then reads `paths` itself."""
    folder = Path(tempfile.mkdtemp(prefix="reads-", dir=scratch_root))
    links = []
    try:
        for i, path in enumerate(paths):
            links.append(folder / f"{i}-{path.name}")
            _link(path, links[-1])
    except OSError:
        shutil.rmtree(folder, ignore_errors=True)
        return None
    pending = Pending(_FACTS.submit(facts, links) if facts else None, None)

    def profile_then_clean_up():
        try:
            return profile(links) if profile and not pending.dropped.is_set() else None
        finally:
            if pending.facts is not None:
                concurrent.futures.wait([pending.facts])
            shutil.rmtree(folder, ignore_errors=True)

    pending.profile = _PROFILES.submit(profile_then_clean_up)
    return pending


def _ident(record: st.StagingRecord) -> tuple:
    # The staged files' names are unique per attempt: a retried step's reads never stand in.
    return (record.run_id, record.dataset, record.key, record.version,
            tuple(record.data_files))


def hand_over(record: st.StagingRecord, pending: Pending) -> None:
    """Keep `pending` for the table step that commits `record` (saved without them)."""
    with _LOCK:
        _PENDING[_ident(record)] = pending


def take(record: st.StagingRecord) -> Pending | None:
    """The reads handed over with `record` in this process (once), or None."""
    with _LOCK:
        return _PENDING.pop(_ident(record), None)
