"""Table maintenance: expire old snapshots, remove orphaned files, compact small files, roll back.

Commit cost and storage stay flat only if history is trimmed: snapshots older than the
time-travel window expire (the current one and the newest few always stay), files no retained
snapshot references are deleted once they are old enough that no run can still be staging them
(a failed file's staged rows are kept for inspection until a newer version of it commits), and
small data files are merged per partition in one commit that replaces them (readers see the same
rows before and after). All of it is safe to run while ingest runs commit: a compaction that
loses a race changes nothing.
"""

from __future__ import annotations

import dataclasses
import time
import uuid
from collections import defaultdict

import pyarrow as pa
import pyarrow.parquet as pq
from pyiceberg.exceptions import CommitFailedException
from pyiceberg.io.pyarrow import parquet_file_to_data_file, schema_to_pyarrow
from pyiceberg.table import Table

from .. import staging as st
from ..resources.storage import ObjectStore
from .commit import committed_files
from .store import table_prefix


@dataclasses.dataclass
class MaintenanceReport:
    table: str
    snapshots_expired: int = 0
    files_deleted: int = 0
    bytes_deleted: int = 0
    records_deleted: int = 0
    files_compacted: int = 0
    files_written: int = 0
    compaction: str = ""
    athena_queries: int = 0  # statements the query engine ran (compaction on AWS)
    athena_bytes_scanned: int = 0
    athena_cost_usd: float = 0.0  # estimated: bytes scanned x price (see athena.QueryResult)


def expire_snapshots(table: Table, keep_days: float, keep_last: int) -> list[int]:
    """Expire snapshots older than `keep_days`, always keeping the current one and the newest
    `keep_last`; returns the expired ids."""
    snaps = sorted(table.snapshots(), key=lambda s: s.timestamp_ms)
    if not snaps:
        return []
    keep = {s.snapshot_id for s in snaps[-max(keep_last, 1):]}
    current = table.current_snapshot()
    if current:
        keep.add(current.snapshot_id)
    cutoff = (time.time() - keep_days * 86400) * 1000
    expire = [s.snapshot_id for s in snaps if s.timestamp_ms < cutoff and s.snapshot_id not in keep]
    if expire:
        table.maintenance.expire_snapshots().by_ids(expire).commit()
    return expire


def referenced_files(table: Table) -> set[str]:
    """Every data, manifest and metadata file that the table's retained history references."""
    refs = {table.metadata_location}
    refs.update(entry.metadata_file for entry in table.metadata.metadata_log)
    seen_manifests = set()
    for snap in table.snapshots():
        refs.add(snap.manifest_list)
        for manifest in snap.manifests(table.io):
            if manifest.manifest_path in seen_manifests:
                continue
            seen_manifests.add(manifest.manifest_path)
            refs.add(manifest.manifest_path)
            for entry in manifest.fetch_manifest_entry(table.io, discard_deleted=True):
                refs.add(entry.data_file.file_path)
    return refs


def protected_files(table: Table, lake: ObjectStore, dataset: str) -> set[str]:
    """Staged files of failed files that stay inspectable: their key has no newer commit."""
    failed = [r for r in st.records(lake, dataset) if r.status == st.FAILED]
    if not failed:
        return set()
    committed = committed_files(table, {r.key for r in failed}).versions \
        if table.current_snapshot() else {}
    keep = set()
    for r in failed:
        if committed.get(r.key, -1) < r.version:
            keep.update(r.data_files)
            keep.update(r.rejected_files)
    return keep


def remove_orphans(table: Table, lake: ObjectStore, namespace: str, name: str,
                   protected: set[str], older_than_hours: float) -> tuple[int, int]:
    """Delete files under the table's folder that nothing references; (files, bytes) deleted.

    Only files older than `older_than_hours` go: a run may be staging or committing right now.
    """
    refs = referenced_files(table) | protected
    cutoff_ns = (time.time() - older_than_hours * 3600) * 1e9
    n = size = 0
    for o in lake.list(table_prefix(namespace, name) + "/"):
        if o.mtime_ns > cutoff_ns or o.key.rsplit("/", 1)[-1].startswith(".tmp-"):
            continue
        uri = lake.uri(o.key)
        if uri in refs or f"file://{uri}" in refs:
            continue
        lake.delete(o.key)
        n, size = n + 1, size + o.size
    return n, size


def prune_records(lake: ObjectStore, dataset: str, older_than_hours: float) -> int:
    """Delete staging records nobody needs: all but the newest per key, once old enough."""
    cutoff = time.time() - older_than_hours * 3600
    by_key: dict[str, list[st.StagingRecord]] = defaultdict(list)
    for r in st.records(lake, dataset):
        by_key[r.key].append(r)
    n = 0
    for recs in by_key.values():
        recs.sort(key=lambda r: r.version)
        for r in recs[:-1]:
            if r.updated_at < cutoff and r.status != st.FAILED:
                lake.delete(r.record_key)
                n += 1
    return n


def compact(table: Table, target_file_mb: float = 128, min_files: int = 4) -> tuple[int, int,
                                                                                    str]:
    """Merge small data files per partition into files near the target size, in one commit.

    Returns (files replaced, files written, note). Every row and column (lineage included)
    is kept with the table's field ids. On a conflicting concurrent commit nothing changes
    (the written files become orphans for the next sweep).
    """
    if table.current_snapshot() is None:
        return 0, 0, "empty table"
    target = int(target_file_mb * 1024 * 1024)
    groups: dict[str, list] = defaultdict(list)
    for task in table.scan().plan_files():
        if task.delete_files:
            return 0, 0, "table has delete files: compaction left to an engine that applies them"
        f = task.file
        if f.file_size_in_bytes < target * 0.75:
            groups[repr((f.spec_id, f.partition))].append(f)
    plans = [files for files in groups.values() if len(files) >= min_files]
    if not plans:
        return 0, 0, "no partition has enough small files"
    schema = schema_to_pyarrow(table.schema(), include_field_ids=True)
    removed, written = [], []
    for files in plans:
        folder = files[0].file_path.rsplit("/", 1)[0]
        batch, size = [], 0
        for f in sorted(files, key=lambda f: f.file_path):
            batch.append(f)
            size += f.file_size_in_bytes
            if size >= target:
                written.append(_merge(table, batch, schema, folder))
                removed += batch
                batch, size = [], 0
        if len(batch) > 1:
            written.append(_merge(table, batch, schema, folder))
            removed += batch
    if not removed:
        return 0, 0, "nothing to merge"
    added = [parquet_file_to_data_file(table.io, table.metadata, p) for p in written]
    try:
        txn = table.transaction()
        with txn.update_snapshot(snapshot_properties={"platform.operation": "compact"}) \
                .overwrite() as op:
            for f in removed:
                op.delete_data_file(f)
            for f in added:
                op.append_data_file(f)
        txn.commit_transaction()
    except CommitFailedException as e:
        return 0, 0, f"a concurrent commit won ({e}); nothing changed, next round retries"
    return len(removed), len(added), "compacted"


def _merge(table: Table, files: list, schema, folder: str) -> str:
    """Stream `files` into one new Parquet file with the table's schema; returns its path."""
    path = f"{folder}/compact-{uuid.uuid4().hex}.parquet"
    with table.io.new_output(path).create() as out:
        with pq.ParquetWriter(out, schema, compression="snappy") as writer:
            for f in files:
                with table.io.new_input(f.file_path).open() as stream:
                    part = pq.read_table(stream)
                # Older files lack columns added since: they are written as NULL.
                cols = [part[n] if n in part.column_names else None for n in schema.names]
                arrays = [c.cast(schema.field(n).type) if c is not None
                          else pa.nulls(part.num_rows, schema.field(n).type)
                          for n, c in zip(schema.names, cols)]
                writer.write_table(pa.Table.from_arrays(arrays, schema=schema))
    return path


def rollback(table: Table, snapshot_id: int) -> tuple[int | None, int]:
    """Make `snapshot_id` the current snapshot (back or forward); returns (previous, new)."""
    if table.snapshot_by_id(snapshot_id) is None:
        raise ValueError(f"{table.name()} has no snapshot {snapshot_id} (expired, or a typo); "
                         "`data-platform history` lists them")
    current = table.current_snapshot()
    table.manage_snapshots().set_current_snapshot(snapshot_id).commit()
    return (current.snapshot_id if current else None), snapshot_id
