"""One Iceberg commit per run: replace exactly the rows of re-processed raw files, add new ones.

A run stages its Parquet files where the table keeps data (no snapshot references them, so no
reader sees them), audits them, then calls `commit_versions`. That builds one snapshot which
removes every data file holding rows of the keys being replaced and adds the staged files; a
reader sees the snapshot before or after it, never a mix. Files that hold rows of several keys
(after compaction) are rewritten without the replaced keys' rows in the same snapshot.

Versions are guarded per key: the committed version of a key is read from the data files'
`_source_version` bounds, and a staged version that is not newer is skipped (an older file never
replaces a newer one, and a retried run after a crash mid-commit changes nothing twice).
Concurrent commits are optimistic: on a conflict the table is reloaded and the plan rebuilt.
"""

from __future__ import annotations

import dataclasses
import random
import time
import uuid
from collections.abc import Callable, Iterable

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from pyiceberg.conversions import from_bytes
from pyiceberg.exceptions import CommitFailedException
from pyiceberg.expressions import In
from pyiceberg.io.pyarrow import parquet_file_to_data_file, schema_to_pyarrow
from pyiceberg.manifest import DataFile
from pyiceberg.table import Table, Transaction
from pyiceberg.table.update import update_table_metadata
from pyiceberg.types import LongType, StringType

from .schema import SOURCE_KEY, SOURCE_VERSION

COMMIT_ATTEMPTS = 10

try:  # the SQL catalog's SQLite file is locked for a moment while another process commits
    from sqlalchemy.exc import OperationalError as _Busy
except ImportError:  # pragma: no cover - the Glue catalog does not need sqlalchemy
    _Busy = CommitFailedException
RETRYABLE = (CommitFailedException, _Busy)


class MemoTransaction(Transaction):
    """pyiceberg's transaction, with its pending metadata worked out once per change of its
    updates. pyiceberg works it out at every read (30 in one run's commits), each a deep copy
    of the whole metadata with every retained snapshot: 0.1 ms with 1 snapshot, 5.5 ms with
    1,000, 135 ms with 10,000 (a day of commits a minute is 1,440). The metadata models are frozen
    and pyiceberg changes them only by copying, so the readers may share one copy."""

    _memo: tuple | None = None

    @property
    def table_metadata(self):
        base, updates, memo = self._table.metadata, self._updates, self._memo
        if memo is None or memo[0] is not base or memo[1] is not updates:
            memo = self._memo = (base, updates, update_table_metadata(base, updates))
        return memo[2]


@dataclasses.dataclass
class StagedVersion:
    """One raw file's version, staged as data files (URIs as the table's FileIO reads them)."""

    key: str
    version: int
    files: list[str]


@dataclasses.dataclass
class CommitOutcome:
    """What one commit did; `snapshot_id` is None when there was nothing to commit."""

    snapshot_id: int | None
    committed: dict[str, int]
    skipped: dict[str, str]
    rejected: dict[str, str]
    files_added: int = 0
    files_removed: int = 0
    files_rewritten: int = 0
    rows_added: int = 0
    rows_removed: int = 0
    attempts: int = 1


@dataclasses.dataclass
class KeyFiles:
    """The committed data files of some keys, and the committed version of each key."""

    versions: dict[str, int]
    whole: dict[str, list[DataFile]]  # files holding rows of exactly one key
    mixed: list[DataFile]  # files holding rows of several keys


class CommitConflict(RuntimeError):
    """The commit kept conflicting with concurrent commits and gave up; nothing changed."""


def _bound(data_file: DataFile, field_id: int, itype, upper: bool):
    bounds = data_file.upper_bounds if upper else data_file.lower_bounds
    raw = (bounds or {}).get(field_id)
    return None if raw is None else from_bytes(itype, raw)


def committed_files(table: Table, keys: Iterable[str]) -> KeyFiles:
    """Find the committed data files holding rows of `keys` (pruned by column bounds)."""
    keys = sorted(set(keys))
    out = KeyFiles(versions={}, whole={}, mixed=[])
    if not keys or table.current_snapshot() is None:
        return out
    schema = table.schema()
    kid = schema.find_field(SOURCE_KEY).field_id
    vid = schema.find_field(SOURCE_VERSION).field_id
    wanted = set(keys)
    for task in table.scan(row_filter=In(SOURCE_KEY, keys)).plan_files():
        f = task.file
        lo, hi = _bound(f, kid, StringType(), False), _bound(f, kid, StringType(), True)
        if lo is not None and lo == hi:
            if lo in wanted:
                out.whole.setdefault(lo, []).append(f)
                v = _bound(f, vid, LongType(), True)
                out.versions[lo] = max(out.versions.get(lo, v), v)
            continue
        # Several keys in one file: read its two lineage columns to know which and how new.
        with table.io.new_input(f.file_path).open() as stream:
            lineage = pq.read_table(stream, columns=[SOURCE_KEY, SOURCE_VERSION])
        present = False
        for row in lineage.group_by(SOURCE_KEY).aggregate([(SOURCE_VERSION, "max")]).to_pylist():
            k = row[SOURCE_KEY]
            if k in wanted:
                present = True
                v = row[f"{SOURCE_VERSION}_max"]
                out.versions[k] = max(out.versions.get(k, v), v)
        if present:
            out.mixed.append(f)
    return out


def _rewrite_without(table: Table, data_file: DataFile, drop_keys: set[str]) -> tuple[str | None,
                                                                                       int]:
    """Write a copy of a mixed file without the rows of `drop_keys`; (new path or None, rows)."""
    with table.io.new_input(data_file.file_path).open() as stream:
        data = pq.read_table(stream)
    keep = data.filter(pc.invert(pc.is_in(data[SOURCE_KEY], pa.array(sorted(drop_keys)))))
    if keep.num_rows == 0:
        return None, 0
    target = schema_to_pyarrow(table.schema(), include_field_ids=True)
    keep = keep.select([n for n in target.names if n in keep.column_names])
    keep = keep.cast(pa.schema([target.field(n) for n in keep.column_names]))
    folder = data_file.file_path.rsplit("/", 1)[0]
    path = f"{folder}/rewrite-{uuid.uuid4().hex}.parquet"
    with table.io.new_output(path).create() as out:
        pq.write_table(keep, out, compression="snappy")
    return path, keep.num_rows


def commit_versions(
    load_table: Callable[[], Table],
    staged: list[StagedVersion],
    *,
    remove_keys: Iterable[str] = (),
    validate: Callable[[Table, list[StagedVersion], KeyFiles], dict[str, str]] | None = None,
    properties: dict[str, str] | None = None,
    attempts: int = COMMIT_ATTEMPTS,
) -> CommitOutcome:
    """Commit `staged` versions in one snapshot, replacing each key's committed rows.

    `remove_keys` lose their rows in the same snapshot (a renamed file's old key). `validate`
    may refuse keys (returns {key: reason}) after the version guard, against the exact snapshot
    being committed on. Retries on conflicting concurrent commits with backoff; raises
    CommitConflict when they never stop. Returns a CommitOutcome.
    """
    remove_keys = set(remove_keys)
    for attempt in range(1, attempts + 1):
        table = load_table()
        keys = {s.key for s in staged} | remove_keys
        existing = committed_files(table, keys)
        skipped: dict[str, str] = {}
        go: list[StagedVersion] = []
        for s in staged:
            have = existing.versions.get(s.key)
            if have is not None and have >= s.version:
                skipped[s.key] = ("already committed" if have == s.version
                                  else f"superseded: version {have} is committed")
            else:
                go.append(s)
        described = _describe([p for s in go for p in s.files], table)
        rejected = validate(table, go, existing) if validate and go else {}
        go = [s for s in go if s.key not in rejected]
        replace = {s.key for s in go} | (remove_keys & set(existing.versions))
        if not go and not replace:
            return CommitOutcome(None, {}, skipped, rejected, attempts=attempt)
        outcome = CommitOutcome(None, {s.key: s.version for s in go}, skipped, rejected,
                                attempts=attempt)
        try:
            outcome.snapshot_id = _commit_once(table, go, replace, existing, outcome,
                                               properties or {}, described)
            return outcome
        except RETRYABLE:
            if attempt == attempts:
                break
            time.sleep(min(5.0, 0.05 * 2 ** attempt) * (0.5 + random.random()))
    raise CommitConflict(f"gave up after {attempts} conflicting commit attempts; nothing was "
                         "committed by this run (rerun it)")


def _describe(paths: list[str], table: Table) -> dict[str, DataFile]:
    """The new files' statistics (their footers), read before the validation: a validate that
    waits (the key check waits for key facts read in another thread) then waits less. A file
    that cannot be read here is left out: the commit reads it again, and fails as it would."""
    out = {}
    for p in paths:
        try:
            out[p] = parquet_file_to_data_file(table.io, table.metadata, p)
        except Exception:  # noqa: BLE001 - only read ahead; _commit_once raises it
            pass
    return out


def _commit_once(table: Table, go: list[StagedVersion], replace: set[str], existing: KeyFiles,
                 outcome: CommitOutcome, properties: dict[str, str],
                 described: dict[str, DataFile] | None = None) -> int:
    remove = [f for k in sorted(replace) for f in existing.whole.get(k, [])]
    rewrites: list[str] = []
    for f in existing.mixed:
        path, _ = _rewrite_without(table, f, replace)
        remove.append(f)
        if path:
            rewrites.append(path)
    new_paths = [p for s in go for p in s.files] + rewrites
    described = described or {}
    added = [described[p] if p in described
             else parquet_file_to_data_file(table.io, table.metadata, p) for p in new_paths]
    if not remove and not added:
        return None  # e.g. a new file whose every row was rejected: no data snapshot
    props = {**properties, "platform.keys": str(len(go)), "platform.removed-keys":
             str(len(replace - {s.key for s in go}))}
    txn = MemoTransaction(table)
    if remove:
        with txn.update_snapshot(snapshot_properties=props).overwrite() as op:
            for f in remove:
                op.delete_data_file(f)
            for f in added:
                op.append_data_file(f)
    else:
        with txn._append_snapshot_producer(props) as op:
            for f in added:
                op.append_data_file(f)
    txn.commit_transaction()
    outcome.files_added = len(added)
    outcome.files_removed = len(remove)
    outcome.files_rewritten = len(rewrites)
    outcome.rows_added = sum(f.record_count for f in added)
    outcome.rows_removed = sum(f.record_count for f in remove)
    snapshot = table.current_snapshot()
    return snapshot.snapshot_id if snapshot else None
