"""`cleaned/<dataset>`: one raw file per partition, streamed into typed Parquet plus rejects."""


import json
from typing import Any

import dagster as dg

from ..cleaning import CleanError, clean_file, infer_columns
from ..contracts import Contract
from ..lake import Manifest, columns_from_dicts, inferred_contract_key, publish
from ..resources.scratch import ScratchResource
from ..resources.storage import ObjectStore, StorageResource


def raw_key(contract: Contract, partition_key: str) -> str:
    return f"{contract.name}/{partition_key}"


def effective_contract(contract: Contract, lake: ObjectStore, *, sample=None, scratch=None,
                       log=None) -> Contract:
    """Return the contract with columns: declared, recorded from the first file, or inferred now.

    An inferred schema is recorded in the lake the first time, so later files are held to it
    (a bad value in a later file is rejected, not silently re-typed).
    """
    if contract.columns:
        return contract
    recorded = lake.get_bytes(inferred_contract_key(contract.name))
    if recorded:
        return contract.with_columns(columns_from_dicts(json.loads(recorded)["columns"]))
    if sample is None:
        raise CleanError(f"dataset {contract.name} has no declared or recorded schema yet")
    columns = infer_columns(sample, contract, scratch)
    stored = lake.put_bytes_if_absent(
        json.dumps({"columns": [c.to_dict() for c in columns]}, indent=1).encode(),
        inferred_contract_key(contract.name),
    )
    if not stored:  # a concurrent run recorded the schema first: every file follows that one
        return effective_contract(contract, lake)
    if log:
        log.info(f"inferred and recorded the schema of {contract.name}: "
                 f"{[(c.name, c.type) for c in columns]}")
    return contract.with_columns(columns)


def _partition_metadata(m: Manifest, result_meta: dict[str, Any]) -> dict[str, Any]:
    return {
        "source_key": m.source_key,
        "content_hash": m.content_hash,
        "rows_in": m.rows_in,
        "rows_written": m.rows_written,
        "rows_rejected": m.rows_rejected,
        "bytes_in": result_meta["bytes_in"],
        "duration_s": result_meta["seconds"],
        "files": dg.MetadataValue.json(m.files),
        "rejected_file": m.rejected_file or "",
        "column_mapping": dg.MetadataValue.json(result_meta["column_mapping"]),
        "extra_columns_dropped": dg.MetadataValue.json(result_meta["extra_columns"]),
        "dagster/column_schema": dg.TableSchema(
            columns=[dg.TableColumn(c["name"], c["type"], description=c.get("description"))
                     for c in m.columns]
        ),
        "dagster/row_count": m.rows_written,
    }


def build_cleaned_asset(contract: Contract, partitions: dg.PartitionsDefinition,
                        raw_asset_key: dg.AssetKey) -> dg.AssetsDefinition:
    ds = contract.name

    @dg.asset(
        key=["cleaned", ds],
        deps=[raw_asset_key],
        partitions_def=partitions,
        backfill_policy=dg.BackfillPolicy.single_run(),
        group_name=ds,
        kinds={"duckdb", "parquet"},
        description=(
            f"Typed Parquet of {ds}: one partition per raw file, rows that break the contract "
            f"in rejected/{ds}/ with reason and line."
        ),
        metadata={"contract": dg.MetadataValue.json(contract.to_dict())},
    )
    def cleaned(context: dg.AssetExecutionContext, storage: StorageResource,
                scratch: ScratchResource) -> dg.MaterializeResult:
        raw, lake = storage.raw(), storage.lake()
        keys = list(context.partition_keys)
        done: dict[str, dict[str, Any]] = {}
        failed: dict[str, str] = {}
        for key in keys:
            rk = raw_key(contract, key)
            try:
                with scratch.tempdir(prefix=f"clean-{ds}-") as work, raw.local_copy(rk) as path:
                    content_hash = raw.content_hash(rk)
                    eff = effective_contract(contract, lake, sample=path, scratch=work,
                                             log=context.log)
                    result = clean_file(path, eff, work / "out", source_key=rk)
                    manifest = publish(lake, eff, key, result, content_hash=content_hash,
                                       run_id=context.run.run_id)
                done[key] = _partition_metadata(manifest, result.metadata())
                context.log.info(
                    f"{rk}: {manifest.rows_in} rows in, {manifest.rows_written} written, "
                    f"{manifest.rows_rejected} rejected, {result.seconds:.2f}s"
                )
            except (CleanError, FileNotFoundError, UnicodeError) as e:
                failed[key] = f"{type(e).__name__}: {e}"
                context.log.error(f"{rk} cannot be processed and stays in raw/: {e}")

        if failed:
            # The run fails, but the files that did succeed keep their own partition status.
            for key, meta in done.items():
                context.log_event(dg.AssetMaterialization(
                    asset_key=context.asset_key, partition=key, metadata=meta))
            raise dg.Failure(
                description=f"{len(failed)} of {len(keys)} file(s) of {ds} cannot be processed: "
                + "; ".join(f"{k}: {v}" for k, v in sorted(failed.items())),
                metadata={"failed_files": dg.MetadataValue.json(failed)},
            )
        if len(keys) == 1:
            return dg.MaterializeResult(metadata=done[keys[0]])
        totals = {
            f: sum(m[f] for m in done.values())
            for f in ("rows_in", "rows_written", "rows_rejected", "bytes_in")
        }
        return dg.MaterializeResult(metadata={
            **totals,
            "files_processed": len(done),
            "duration_s": round(sum(m["duration_s"] for m in done.values()), 3),
            "per_file": dg.MetadataValue.json({
                k: {f: m[f] for f in ("rows_in", "rows_written", "rows_rejected")}
                for k, m in done.items()
            }),
            "dagster/column_schema": next(iter(done.values()))["dagster/column_schema"],
        })

    return cleaned
