"""`cleaned/<dataset>`: stage and audit each raw file's version; nothing here is visible to readers.

Per partition (one raw key), the run pins exactly the version the sensor saw (a copy, or the
local file itself verified unchanged after the last read; a key that changed again is skipped as
superseded), hashes those bytes, cleans them into typed Parquet that carries
the table's field ids and the lineage columns, uploads the files into the table's data folder
(unreferenced, so invisible), audits them, and writes a staging record. `table/<dataset>`
commits what passed. Per-file problems never fail this step: they are recorded, reported by the
checks, and fail the file's partition at commit.
"""


import concurrent.futures
import json
import time
import uuid
from typing import Any

import dagster as dg

from .. import staging as st
from ..cleaning import CleanError, _compression, clean_file, infer_columns
from ..contracts import EXTENSIONS, Column, Contract
from ..crashpoints import crash_point
from ..monitor.uploads import record_upload
from ..monitor.profile import profile_files
from ..records import scan_source
from ..resources.catalog import CatalogResource
from ..resources.scratch import ScratchResource
from ..resources.storage import ObjectStore, StorageResource, VersionChanged
from ..tables.commit import committed_files
from ..tables.schema import SOURCE_KEY, SOURCE_VERSION, arrow_schema, field_ids
from ..tables.store import ensure_dataset_tables, load_table, rejected_name, staging_prefix
from ..versions import IngestConfig
from . import reads
from .audit import READABLE, audit_staged, check_results
from .key_facts import key_facts


def raw_key(contract: Contract, partition_key: str) -> str:
    return f"{contract.name}/{partition_key}"


def effective_contract(contract: Contract, lake: ObjectStore, *, sample=None, scratch=None,
                       log=None) -> Contract:
    """Return the contract with columns: declared, recorded from the first file, or inferred now.

    An inferred schema is recorded in the lake the first time (first writer wins), so later
    files are held to it: a bad value in a later file is rejected, not silently re-typed.
    """
    if contract.columns:
        return contract
    recorded = lake.get_bytes(st.inferred_contract_key(contract.name))
    if recorded:
        return contract.with_columns(
            tuple(Column(**c) for c in json.loads(recorded)["columns"]))
    if sample is None:
        raise CleanError(f"dataset {contract.name} has no declared or recorded schema yet")
    columns = infer_columns(sample, contract, scratch)
    stored = lake.put_bytes_if_absent(
        json.dumps({"columns": [c.to_dict() for c in columns]}, indent=1).encode(),
        st.inferred_contract_key(contract.name),
    )
    if not stored:  # a concurrent run recorded the schema first: every file follows that one
        return effective_contract(contract, lake)
    if log:
        log.info(f"inferred and recorded the schema of {contract.name}: "
                 f"{[(c.name, c.type) for c in columns]}")
    return contract.with_columns(columns)


def local_name(contract: Contract, key: str) -> str | None:
    """A safe local file name with the key's extension (None if the extension is wrong).

    The raw key never becomes a local path or SQL text: `*`, `?`, `[...]` stay in the key.
    """
    lower = key.lower()
    for ext in sorted(EXTENSIONS[contract.format.type], key=len, reverse=True):
        if lower.endswith(ext):
            return f"source{ext}"
    # An image dataset describes whatever it is given: a file that is no image is an invalid
    # row of its manifest, not an unreadable partition.
    return "source" if contract.kind == "images" else None


class Stager:
    """Stages the raw files of one run of one dataset."""

    def __init__(self, context, contract: Contract, storage: StorageResource,
                 catalog: CatalogResource, scratch: ScratchResource, config: IngestConfig):
        self.context, self.contract, self.config = context, contract, config
        self.raw, self.lake = storage.raw(), storage.lake()
        self.catalog, self.scratch = catalog, scratch
        self.ice = catalog.iceberg()
        self.tables = None
        self._snapshot_table = None
        self._algorithm: str | None = None
        self.run_id = context.run.run_id
        self.newest_upload: tuple[float, str] | None = None  # (changed time, key): freshness
        self.fallback_version = int(context.instance.get_run_record_by_id(
            self.run_id).create_timestamp.timestamp() * 1e9) if context.instance else time.time_ns()

    def _tables(self, eff: Contract):
        if self.tables is None:
            self.tables = ensure_dataset_tables(self.ice, self.catalog.namespace, eff, self.lake)
            for part, (t, evo) in self.tables.items():
                if evo:
                    self.context.log.info(f"table {t.name()} evolved: {evo.describe()}")
        return self.tables["data"][0], self.tables["rejected"][0]

    def stage(self, key: str) -> st.StagingRecord:
        ds, rk = self.contract.name, raw_key(self.contract, key)
        wanted = self.config.versions.get(key)
        version = wanted.seq if wanted else self.fallback_version
        record = st.StagingRecord(dataset=ds, key=key, version=version, status=st.UNREADABLE,
                                  run_id=self.run_id)
        name = local_name(self.contract, key)
        if name is None:
            record.reason = (f"{key!r} does not have a {self.contract.format.type} extension "
                             f"(expected one of {', '.join(EXTENSIONS[self.contract.format.type])})")
            return self._save(record)
        committed = self._committed_version(key)
        if committed is not None and committed >= version:
            same = st.read_record(self.lake, ds, key, version)
            if committed == version and same and same.status in (st.STAGED, st.COMMITTED):
                # Committed by an earlier attempt that died before its bookkeeping: keep the
                # record so the commit step finishes it (rejected rows, ledger).
                self.context.log.info(f"{rk}: version {version} is already committed")
                return same
            record.status = st.SUPERSEDED
            record.reason = f"version {committed} is already committed (this run has {version})"
            return self._save(record)
        # The pool flushes the cleaned files while they are local (and reads them when the
        # reads cannot be handed to the table step: see reads.py); it is done with them
        # before the folder goes.
        with self.scratch.tempdir(prefix=f"stage-{ds}-") as work, \
                concurrent.futures.ThreadPoolExecutor(3) as pool:
            try:
                with self.raw.pinned(rk, work / name, signature=wanted.signature
                                     if wanted else None) as pinned:
                    changed = pinned.info.changed_ns / 1e9
                    if self.newest_upload is None or changed > self.newest_upload[0]:
                        self.newest_upload = (changed, key)
                    result = self._clean(key, rk, pinned, record, work, pool)
                    pinned.verify()  # the bytes hashed and cleaned were this version's
                    if result is None:
                        return self._save(record)
            except VersionChanged as e:  # nothing read of a version that changed is kept
                record.status, record.reason, record.content_hash = st.SUPERSEDED, str(e), None
                return self._save(record)
            except FileNotFoundError:
                record.reason = f"raw/{rk} no longer exists"
                return self._save(record)
            eff, data_table = result.eff, result.data_table
            moving = [f.path for f in result.files] + [p for p in [result.rejected_file] if p]
            # Flush the staged files to disk while they are local (the move into the lake then
            # waits for nothing), beside the reads begun when they were written.
            flushed = pool.submit(self.lake.prepare_move, moving)
            pending, deferred = result.early.get("reads", (None, False))
            if pending is not None and not deferred:
                record.key_facts = pending.key_facts()
                record.profile = pending.column_profile(self.context.log, f"{ds}/{key}")
            flushed.result()
            crash_point("stage")
            tag = f"{st.slug(key)}-v{version}-{uuid.uuid4().hex[:8]}"
            for i, f in enumerate(result.files):
                k = f"{staging_prefix(self.catalog.namespace, ds, f.subdir)}/{tag}-{i}.parquet"
                self.lake.put_file(f.path, k, move=True)
                record.data_files.append(self.lake.uri(k))
            if result.rejected_file:
                k = f"{staging_prefix(self.catalog.namespace, rejected_name(ds))}/{tag}.parquet"
                self.lake.put_file(result.rejected_file, k, move=True)
                record.rejected_files.append(self.lake.uri(k))
            record.source_records = result.source_records
            record.rows_written, record.rows_rejected = result.rows_written, result.rows_rejected
            audits = self._audits(eff, data_table, result, record)
            record.audit = {a.name: a.to_dict() for a in audits}
            failed = [a for a in audits if a.blocks()]
            record.status = st.FAILED if failed else st.STAGED
            record.reason = "; ".join(f"{a.name}: {a.reason}" for a in failed)
            if deferred and record.status == st.STAGED:
                reads.hand_over(record, pending)  # the table step takes them in this process
            elif deferred:
                pending.cancel()  # not committed: nothing needs them
            self.context.log.info(
                f"{rk}: {result.source_records} records, {result.rows_written} staged, "
                f"{result.rows_rejected} rejected, {result.seconds:.2f}s: {record.status}"
                + (f" ({record.reason})" if record.reason else ""))
            return self._save(record)

    def keep_reads(self, recs: list[st.StagingRecord]) -> None:
        """Wait for the reads handed over with `recs` and save them in the records: for a run
        without the table step, so a later commit (in another process) still finds them."""
        for r in recs:
            pending = reads.take(r) if r.status == st.STAGED else None
            if pending is not None:
                r.key_facts = pending.key_facts()
                r.profile = pending.column_profile(self.context.log, f"{r.dataset}/{r.key}")
                r.save(self.lake)

    def _read_staged(self, pool, paths: list, eff: Contract
                     ) -> tuple[reads.Pending | None, bool]:
        """Start the reads of the cleaned files kept in the staging record: the primary-key
        facts (the commit's check then reads no key again) and the column profile (drift).
        Returns (their reads, whether they were handed to the table step: see reads.py); the
        reads run in `pool` when they cannot be handed over."""
        pk = eff.primary_key
        facts = (lambda files: key_facts(files, pk)) if pk else None
        profile = (lambda files: profile_files(files, eff)) if self.contract.kind == "table" \
            else None
        if facts is None and profile is None:
            return None, False
        pending = reads.start(paths, self.scratch.root(), facts, profile)
        if pending is not None:
            return pending, True
        return reads.Pending(*(pool.submit(fn, paths) if fn else None
                               for fn in (facts, profile))), False

    def _audits(self, eff: Contract, data_table, result, record: st.StagingRecord) -> list:
        """The per-file audits of the staged files (see assets/audit.py)."""
        return audit_staged(data_table.io, eff, arrow_schema(data_table.schema()),
                            result.source_records, record.data_files, record.rejected_files)

    def _clean(self, key: str, rk: str, pinned, record: st.StagingRecord, work, pool):
        """Hash and clean the pinned file into `work`; returns the CleanResult (with the
        effective contract and data table as `eff`, `data_table`, and the reads of the cleaned
        files begun in `pool` as soon as they were written as `early`), or None with `record`
        saying why there is nothing to stage (same content as committed, or unreadable).

        The hash and the independent record count are of exactly the bytes cleaned (the
        pinned version, verified unchanged after the last read). A key committed before is
        hashed first (with the count, in one read), so an identical re-upload is skipped
        before any cleaning; a new key is hashed while the engine cleans it.
        """
        local, algorithm = pinned.path, self._hash_algorithm()
        hasher = st.new_hasher(algorithm)
        record.signature = pinned.info.signature
        counted = index = None
        if st.read_ledger(self.lake, self.contract.name, key) is not None:
            counted, index = scan_source(local, self.contract, _compression(local, self.contract),
                                         hasher=hasher)
            record.content_hash = f"{algorithm}:{hasher.hexdigest()}"
            if self._unchanged(key, record.content_hash):
                record.status = st.UNCHANGED
                record.reason = "same content as the committed version"
                return None
        early: dict = {}
        reads.prepare(bool(self.contract.primary_key), self.contract.kind == "table",
                      self.catalog.expose_database())
        try:
            eff = effective_contract(self.contract, self.lake, sample=local, scratch=work,
                                     log=self.context.log)
            data_table, rejected_table = self._tables(eff)

            def written(files) -> None:  # final: read them while the engine maps its rejects
                early["reads"] = self._read_staged(pool, [f.path for f in files], eff)
            result = clean_file(local, eff, work / "out", source_key=rk,
                                field_ids=field_ids(data_table.schema()),
                                rejected_field_ids=field_ids(rejected_table.schema()),
                                constants={SOURCE_KEY: ("VARCHAR", key),
                                           SOURCE_VERSION: ("BIGINT", record.version)},
                                source_records=counted, line_index=index,
                                hasher=hasher if counted is None else None,
                                flush_behind=self.lake.keeps_moved_files,
                                on_written=written)
        except (CleanError, UnicodeError) as e:
            if counted is None:  # clean_file finished hashing before it raised
                record.content_hash = f"{algorithm}:{hasher.hexdigest()}"
            record.reason = f"{type(e).__name__}: {e}"
            return None
        record.content_hash = f"{algorithm}:{hasher.hexdigest()}"
        result.eff, result.data_table, result.early = eff, data_table, early
        return result

    def _hash_algorithm(self) -> str:
        """The dataset's content-hash algorithm (see staging.hash_algorithm), once per run."""
        if self._algorithm is None:
            self._algorithm = st.hash_algorithm(self.lake, self.contract.name)
        return self._algorithm

    def _committed_version(self, key: str) -> int | None:
        """The committed version of `key` as of this run's start (the commit re-checks)."""
        if self._snapshot_table is None:
            self._snapshot_table = load_table(self.ice, self.catalog.namespace,
                                              self.contract.name) or False
        if self._snapshot_table is False:
            return None
        return committed_files(self._snapshot_table, [key]).versions.get(key)

    def _unchanged(self, key: str, content_hash: str) -> bool:
        """Same content as the committed version (ledger, confirmed by the table)."""
        led = st.read_ledger(self.lake, self.contract.name, key)
        if not led or led.get("content_hash") != content_hash:
            return False
        return self._committed_version(key) == led["version"]

    def _save(self, record: st.StagingRecord) -> st.StagingRecord:
        if record.status in (st.UNREADABLE, st.SUPERSEDED):
            self.context.log.warning(f"{record.dataset}/{record.key}: {record.status}: "
                                     f"{record.reason}")
        record.save(self.lake)
        return record


def _summary(recs: list[st.StagingRecord]) -> dict[str, Any]:
    by_status: dict[str, list[str]] = {}
    for r in recs:
        by_status.setdefault(r.status, []).append(r.key)
    return {
        "files": len(recs),
        "source_records": sum(r.source_records or 0 for r in recs),
        "rows_staged": sum(r.rows_written for r in recs),
        "rows_rejected": sum(r.rows_rejected for r in recs),
        "by_status": dg.MetadataValue.json(by_status),
        "per_file": dg.MetadataValue.json({r.key: {
            "status": r.status, "version": r.version, "reason": r.reason,
            "source_records": r.source_records, "rows_staged": r.rows_written,
            "rows_rejected": r.rows_rejected, "content_hash": r.content_hash,
        } for r in recs}),
    }


def _runs_step(run, asset: dg.AssetKey) -> bool:
    """Whether `run` executes the step of `asset` (a run of the whole job, or a selection or
    re-execution that includes it; a run of the whole job may carry an empty selection)."""
    if run.asset_selection and asset not in run.asset_selection:
        return False
    steps = run.step_keys_to_execute
    return steps is None or asset.to_python_identifier() in steps


def build_cleaned_asset(contract: Contract, partitions: dg.PartitionsDefinition,
                        raw_asset_key: dg.AssetKey) -> dg.AssetsDefinition:
    ds = contract.name
    key = dg.AssetKey(["cleaned", ds])
    if contract.kind == "images":
        from .manifest import ImageStager as stager_cls

        what = (f"The manifest of {ds}: one row per image of each upload (an image or an "
                "archive), invalid ones with the reason; staged and audited")
    else:
        stager_cls = Stager
        what = f"Typed Parquet of {ds}, staged and audited"
    specs = [dg.AssetCheckSpec(name, asset=key, description=desc) for name, desc in (
        (READABLE, "The raw file can be read at all (not empty, binary, wrong header or "
                   "extension)."),
        ("rows_reconcile", "Records counted in the raw file = rows staged + rows rejected."),
        ("schema_matches_contract", "Staged files have exactly the table's columns, types and "
                                    "field ids."),
        ("not_null", "Non-nullable columns hold no null (staged column statistics)."),
        ("rejected_share", f"Rejected share per file: WARN above "
                           f"{contract.rejected_share_warn:.0%}, ERROR above "
                           f"{contract.rejected_share_error:.0%} (ERROR: not committed)."),
    )]

    @dg.asset(
        key=key,
        deps=[raw_asset_key],
        partitions_def=partitions,
        backfill_policy=dg.BackfillPolicy.single_run(),
        group_name=ds,
        kinds={"duckdb", "parquet"} if contract.kind == "table" else {"pillow", "parquet"},
        check_specs=specs,
        description=(
            f"{what}: one partition per raw file. Staged files are invisible to readers until "
            f"table/{ds} commits the ones that passed."
        ),
        metadata={"contract": dg.MetadataValue.json(contract.to_dict())},
    )
    def cleaned(context: dg.AssetExecutionContext, config: IngestConfig,
                storage: StorageResource, catalog: CatalogResource, scratch: ScratchResource):
        stager = stager_cls(context, contract, storage, catalog, scratch, config)
        recs = [stager.stage(k) for k in context.partition_keys]
        if stager.newest_upload is not None:
            record_upload(stager.lake, ds, *stager.newest_upload)
        yield dg.MaterializeResult(metadata=_summary(recs))
        yield from check_results(key, recs)
        if not _runs_step(context.run, dg.AssetKey(["table", ds])):
            stager.keep_reads(recs)  # no table step in this run takes them over

    return cleaned
