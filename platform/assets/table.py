"""`table/<dataset>`: one Iceberg commit per run of the staged files that passed their audits.

The step reads the newest staging record of each partition in the run, refuses what failed,
checks primary keys against the exact snapshot it commits on, and commits the rest in one
snapshot of the data table (then the rejected rows, in one snapshot of the rejected table). It
also removes the rows of a renamed file's old key in that snapshot. Readers see before or after.
Files that are not committed fail their partitions with the reason; the table keeps its last
good snapshot and the staged files stay inspectable.
"""

import concurrent.futures
import time

import dagster as dg

from .. import staging as st
from ..contracts import Contract
from ..crashpoints import crash_point
from ..monitor.drift import drift_outcome
from ..resources.catalog import CatalogResource
from ..resources.storage import StorageResource
from ..sizing import FargatePrices, estimate_run_cost
from ..tables.commit import CommitOutcome, StagedVersion, commit_versions, committed_files
from ..tables.store import load_table, rejected_name
from . import reads
from .keys import primary_key_conflicts

_EXPOSE = concurrent.futures.ThreadPoolExecutor(2, thread_name_prefix="expose")


def _refusals(recs: dict[str, st.StagingRecord | None]) -> tuple[list[st.StagingRecord],
                                                               dict[str, str]]:
    ready, failed = [], {}
    for key, r in recs.items():
        if r is None:
            failed[key] = "not staged: cleaned/<dataset> has no record of this file (rerun it)"
        elif r.status in (st.STAGED, st.COMMITTED):
            ready.append(r)
        elif r.status in (st.FAILED, st.UNREADABLE):
            failed[key] = r.reason or r.status
    return ready, failed


def _renamed_from(storage: StorageResource, lake, ds: str, ready, run_keys: set[str]) -> set[str]:
    """Old keys whose committed content is a file of this run and whose raw object is gone."""
    raw, gone = storage.raw(), set()
    for r in ready:
        for other in st.keys_with_content(lake, ds, r.content_hash):
            if other not in run_keys and raw.stat(f"{ds}/{other}") is None:
                gone.add(other)
    return gone


def verify_commit(table, out: CommitOutcome, ready: dict[str, st.StagingRecord],
                  removed: set[str]) -> tuple[bool, dict]:
    """After commit: each committed key holds exactly its staged files; removed keys hold none;
    the snapshot's row totals add up."""
    problems = {}
    keys = set(out.committed) | removed
    found = committed_files(table, keys)
    for k, version in out.committed.items():
        have = found.versions.get(k)
        if have is not None and have > version:
            continue  # a concurrent run committed a newer version since: not ours to check
        files = sorted(f.file_path for f in found.whole.get(k, []))
        expected = version if ready[k].data_files else None  # all rows rejected: no files
        if have != expected or files != sorted(ready[k].data_files):
            problems[k] = {"expected_version": version, "found_version": have,
                           "expected_files": len(ready[k].data_files), "found_files": len(files)}
    if found.mixed:
        problems["_mixed"] = f"{len(found.mixed)} compacted file(s) still hold rows of these keys"
    for k in removed:
        if k in found.versions:
            problems[k] = "rows of a removed key are still committed"
    meta: dict = {"keys_committed": len(out.committed), "keys_removed": len(removed)}
    if out.snapshot_id is not None:
        snap = table.snapshot_by_id(out.snapshot_id)
        parent = table.snapshot_by_id(snap.parent_snapshot_id) if snap.parent_snapshot_id else None
        total = int(snap.summary.get("total-records") or 0)
        before = int(parent.summary.get("total-records") or 0) if parent else 0
        expected = before + out.rows_added - out.rows_removed
        meta.update(snapshot_id=str(out.snapshot_id), total_records=total,
                    expected_total=expected)
        if total != expected:
            problems["_snapshot"] = f"total-records {total} != {before} + {out.rows_added} - " \
                                    f"{out.rows_removed}"
    meta["problems"] = dg.MetadataValue.json(problems)
    return not problems, meta


def _drift_result(context, contract: Contract, lake, ready: dict[str, st.StagingRecord],
                  out: CommitOutcome) -> dg.AssetCheckResult:
    """The `drift` check of the files this run committed (WARN; it comes after the commit). A
    failure to evaluate it is reported as a WARN with the error, never as a failed commit."""
    files = [{"key": k, "version": v, "profile": ready[k].profile}
             for k, v in out.committed.items()]
    try:
        passed, reason, meta = drift_outcome(contract, lake, files, context.run.run_id)
    except Exception as e:  # noqa: BLE001 - the rows are committed; say why drift is unknown
        context.log.exception("drift check failed")
        passed, reason, meta = False, f"drift not evaluated: {type(e).__name__}: {e}", {}
    return dg.AssetCheckResult(
        check_name="drift", passed=passed, severity=dg.AssetCheckSeverity.WARN,
        description=reason or None,
        metadata={k: dg.MetadataValue.json(v) if isinstance(v, (dict, list)) else v
                  for k, v in meta.items()})


def run_cost(context: dg.AssetExecutionContext) -> dict:
    """The run's estimated cost up to its commit, for runs sized by the sensor (`ecs/cpu` and
    `ecs/memory` tags, PLATFORM_ENV=aws): task vCPU and GB x seconds x the Fargate prices
    (`PLATFORM_FARGATE_*`). Empty for runs without a task size (local runs)."""
    tags = context.run.tags
    if "ecs/cpu" not in tags or "ecs/memory" not in tags:
        return {}
    stats = context.instance.get_run_stats(context.run.run_id)
    started = stats.start_time or stats.launch_time or time.time()
    cost = estimate_run_cost(tags["ecs/cpu"], tags["ecs/memory"], time.time() - started,
                             FargatePrices.from_env(),
                             ephemeral_gib=int(tags.get("ecs/ephemeral_storage") or 0) or None)
    return {"estimated_cost_usd": dg.MetadataValue.float(round(cost["total_usd"], 6)),
            "task_size": f"{tags['ecs/cpu']} CPU units, {tags['ecs/memory']} MiB",
            "billed_seconds": cost["billed_seconds"]}


def build_table_asset(contract: Contract, partitions: dg.PartitionsDefinition,
                      cleaned_key: dg.AssetKey) -> dg.AssetsDefinition:
    ds = contract.name
    key = dg.AssetKey(["table", ds])
    specs = [dg.AssetCheckSpec(
        "commit_matches_plan", asset=key,
        description="After the commit, each committed file's rows are exactly its staged files "
                    "(older versions gone) and the snapshot's row total adds up.")]
    if contract.primary_key:
        specs.append(dg.AssetCheckSpec(
            "primary_key_unique", asset=key,
            description=f"Primary key ({', '.join(contract.primary_key)}) unique and non-null: "
                        "new rows against each other and against the committed rows they do "
                        "not replace. Files that would break it are not committed."))

    if contract.kind == "table":
        specs.append(dg.AssetCheckSpec(
            "drift", asset=key,
            description=f"Each newly committed file's column profile (null share, numbers' "
                        f"mean/stddev/quantiles, strings' top values) against the last "
                        f"{contract.checks.drift_history} committed files: WARN when a "
                        f"column's score is above {contract.checks.drift_threshold:g}. Never "
                        "blocks a commit."))

    @dg.asset(
        key=key,
        deps=[cleaned_key],
        partitions_def=partitions,
        backfill_policy=dg.BackfillPolicy.single_run(),
        group_name=ds,
        kinds={"iceberg", "sql"},
        check_specs=specs,
        description=(f"Iceberg table `{ds}` (and `{ds}_rejected`): one commit per run of the "
                     "staged files that passed their audits; readers see only committed "
                     "snapshots."),
    )
    def table(context: dg.AssetExecutionContext, storage: StorageResource,
              catalog: CatalogResource):
        crash_point("before-commit")
        lake, ns = storage.lake(), catalog.namespace
        ice = catalog.iceberg()
        run_keys = set(context.partition_keys)
        recs = {k: st.latest_record(lake, ds, k) for k in context.partition_keys}
        ready_list, failed = _refusals(recs)
        ready = {r.key: r for r in ready_list}
        # The key facts and profiles the cleaned step left reading (reads.py), kept in the
        # records as they are saved below.
        pending = {k: p for k, r in ready.items() if (p := reads.take(r)) is not None}
        removed = _renamed_from(storage, lake, ds, ready_list, run_keys)
        pk_meta: dict = {}

        def validate(table, go, existing):
            if not contract.primary_key:
                return {}
            for k, p in pending.items():
                if ready[k].key_facts is None:
                    ready[k].key_facts = p.key_facts()
            refused, pk_meta["last"] = primary_key_conflicts(
                table, go, replaced={s.key for s in go} | removed, pk=contract.primary_key,
                facts={k: r.key_facts for k, r in ready.items()})
            return refused

        if ready or removed:
            data_out = commit_versions(
                lambda: ice.load_table((ns, ds)),
                [StagedVersion(r.key, r.version, r.data_files) for r in ready_list],
                remove_keys=removed, validate=validate,
                properties={"platform.run-id": context.run.run_id},
            )
        else:
            data_out = CommitOutcome(None, {}, {}, {})
        if data_out.committed:
            crash_point("commit")
        done = {k: ready[k].version for k in data_out.committed} | {
            k: ready[k].version for k, why in data_out.skipped.items()
            if why == "already committed"}
        if done or removed:
            commit_versions(
                lambda: ice.load_table((ns, rejected_name(ds))),
                [StagedVersion(k, v, ready[k].rejected_files) for k, v in done.items()],
                remove_keys=removed, properties={"platform.run-id": context.run.run_id},
            )
        failed.update({k: f"primary key: {why}" for k, why in data_out.rejected.items()})
        for k, why in data_out.rejected.items():
            ready[k].status, ready[k].reason = st.FAILED, f"primary key: {why}"
            ready[k].save(lake)
        for k, v in done.items():
            st.write_ledger(lake, ds, k, v, ready[k].content_hash, data_out.snapshot_id)
            if ready[k].status != st.COMMITTED:
                ready[k].status, ready[k].snapshot_id = st.COMMITTED, data_out.snapshot_id
                ready[k].save(lake)
        for k in removed:
            st.forget_ledger(lake, ds, k)
        # The views follow the new snapshots while the checks below are evaluated and
        # reported (I/O and DuckDB beside Dagster's Python); the step ends only after them.
        exposed = _EXPOSE.submit(catalog.expose, [ds, rejected_name(ds)])

        data_table = load_table(ice, ns, ds)
        if data_table is not None:
            ok, meta = verify_commit(data_table, data_out, ready, removed)
        else:
            ok, meta = True, {"note": "no table yet: nothing was staged"}
        yield dg.AssetCheckResult(check_name="commit_matches_plan", passed=ok, metadata=meta)
        if contract.primary_key:
            yield dg.AssetCheckResult(
                check_name="primary_key_unique", passed=not data_out.rejected,
                metadata={"refused": dg.MetadataValue.json(data_out.rejected),
                          **pk_meta.get("last", {})})
        summary = {
            "snapshot_id": str(data_out.snapshot_id) if data_out.snapshot_id else "",
            "committed": dg.MetadataValue.json(data_out.committed),
            "skipped": dg.MetadataValue.json(data_out.skipped),
            "removed_renamed_keys": dg.MetadataValue.json(sorted(removed)),
            "rows_added": data_out.rows_added, "rows_removed": data_out.rows_removed,
            "files_added": data_out.files_added, "files_removed": data_out.files_removed,
            "commit_attempts": data_out.attempts,
            "table_rows": int(data_table.current_snapshot().summary.get("total-records") or 0)
            if data_table is not None and data_table.current_snapshot() else 0,
            "query": f"SELECT * FROM {ds} LIMIT 10",
            **run_cost(context),
        }
        if contract.kind == "table":
            for k, p in pending.items():
                r = ready[k]
                if r.profile is None and k in data_out.committed:
                    r.profile = p.column_profile(context.log, f"{ds}/{k}")
                    if r.profile is not None:
                        r.save(lake)  # the drift history can be rebuilt from the records
            yield _drift_result(context, contract, lake, ready, data_out)
        exposed.result()
        if failed:
            for k in run_keys - set(failed):
                context.log_event(dg.AssetMaterialization(asset_key=key, partition=k,
                                                          metadata=summary))
            raise dg.Failure(
                description=f"{len(failed)} of {len(run_keys)} file(s) of {ds} were not "
                            "committed: " + "; ".join(f"{k}: {v}" for k, v in sorted(
                                failed.items())),
                metadata={"failed_files": dg.MetadataValue.json(failed), **summary},
            )
        yield dg.MaterializeResult(metadata=summary)

    return table
