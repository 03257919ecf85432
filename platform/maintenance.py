"""The daily maintenance job: expire snapshots, compact small files, sweep orphans, per table,
and sweep the leftovers of killed steps from scratch.

Locally the platform compacts by rewriting small files and swapping them in one commit; on AWS
Athena's `OPTIMIZE ... REWRITE DATA USING BIN_PACK` and `VACUUM` do it (see the catalog
resources), and the op records the bytes those statements scanned and their estimated cost
as metadata. Snapshot expiry and the sweep of orphaned staged files run the same way everywhere.
"""

import dagster as dg
from pydantic import Field

from .contracts import Contract
from .resources.catalog import CatalogResource
from .resources.scratch import ScratchResource
from .resources.storage import StorageResource
from .tables import maintenance as mt
from .tables.store import load_table, rejected_name


class MaintenanceConfig(dg.Config):
    """How much history to keep and how to compact."""

    keep_days: float = Field(default=7.0, description="Time-travel window: snapshots younger "
                                                      "than this are kept")
    keep_last: int = Field(default=5, description="Newest snapshots always kept")
    orphan_age_hours: float = Field(default=24.0, description="Unreferenced files younger than "
                                                              "this are kept (runs in flight)")
    target_file_mb: float = Field(default=128.0, description="Compaction target file size")
    min_files: int = Field(default=4, description="Small files a partition needs to compact")


def maintain_dataset(contract: Contract, config: MaintenanceConfig, storage: StorageResource,
                     catalog: CatalogResource, log) -> list[mt.MaintenanceReport]:
    """Run every maintenance step on both tables of one dataset; returns one report each."""
    lake, ice, ns, ds = storage.lake(), catalog.iceberg(), catalog.namespace, contract.name
    data = load_table(ice, ns, ds)
    if data is None:
        return []
    protected = mt.protected_files(data, lake, ds)
    reports = []
    for name in (ds, rejected_name(ds)):
        table = load_table(ice, ns, name)
        if table is None:
            continue
        rep = mt.MaintenanceReport(table=name)
        # Compact first, so the files it replaces leave with the snapshots that expire next.
        statements = catalog.compaction_sql(name)
        if statements:
            for sql in statements:
                result = catalog.execute(sql)
                if result is not None:  # Athena: billed by data scanned, so record it
                    rep.athena_queries += 1
                    rep.athena_bytes_scanned += result.bytes_scanned
                    rep.athena_cost_usd += result.estimated_cost_usd()
            rep.compaction = "query engine: " + "; ".join(statements)
        else:
            rep.files_compacted, rep.files_written, rep.compaction = mt.compact(
                table, config.target_file_mb, config.min_files)
        table = load_table(ice, ns, name)
        rep.snapshots_expired = len(mt.expire_snapshots(table, config.keep_days,
                                                        config.keep_last))
        table = load_table(ice, ns, name)
        rep.files_deleted, rep.bytes_deleted = mt.remove_orphans(
            table, lake, ns, name, protected, config.orphan_age_hours)
        reports.append(rep)
        log.info(f"{name}: {rep}")
    reports[0].records_deleted = mt.prune_records(lake, ds, config.orphan_age_hours)
    catalog.expose([ds, rejected_name(ds)])
    return reports


def build_maintenance(contracts: dict[str, Contract]) -> tuple[dg.JobDefinition,
                                                               dg.ScheduleDefinition]:
    """The maintenance job over every dataset, and its daily schedule."""

    @dg.op(description="Expire old snapshots, compact small files and delete orphaned files "
                       "of every dataset table.")
    def maintain_tables(context: dg.OpExecutionContext, config: MaintenanceConfig,
                        storage: StorageResource, catalog: CatalogResource,
                        scratch: ScratchResource) -> None:
        totals = {"snapshots_expired": 0, "files_compacted": 0, "files_written": 0,
                  "files_deleted": 0, "bytes_deleted": 0, "records_deleted": 0}
        per_table = {}
        athena = {"athena_queries": 0, "athena_bytes_scanned": 0, "athena_cost_usd": 0.0}
        for contract in contracts.values():
            for rep in maintain_dataset(contract, config, storage, catalog, context.log):
                per_table[rep.table] = rep.__dict__
                for k in totals:
                    totals[k] += getattr(rep, k)
                for k in athena:
                    athena[k] += getattr(rep, k)
        if athena["athena_queries"]:  # only where the catalog ran Athena statements
            totals.update(athena_queries=athena["athena_queries"],
                          athena_bytes_scanned=athena["athena_bytes_scanned"],
                          athena_estimated_cost_usd=athena["athena_cost_usd"])
        swept = scratch.sweep(config.orphan_age_hours)  # what killed steps left in scratch
        context.add_output_metadata({**totals, "tables": dg.MetadataValue.json(per_table),
                                     "scratch_swept": dg.MetadataValue.json(swept)})

    @dg.job(name="maintain_tables_job",
            description="Daily table maintenance: snapshot expiry (time-travel window), "
                        "compaction, orphaned staged files.")
    def maintain_tables_job():
        maintain_tables()

    schedule = dg.ScheduleDefinition(
        name="maintain_tables_schedule", job=maintain_tables_job, cron_schedule="30 3 * * *",
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description="Runs table maintenance every night at 03:30 (the instance's time zone).",
    )
    return maintain_tables_job, schedule
