"""Scheduled checks of what is committed: asset checks on `table/<dataset>`, their jobs and
schedules.

Per dataset: the table-level checks of `operating/checks.py` on the current snapshot
(`committed_primary_key`, `committed_schema`, `committed_rejected_share`,
`committed_rows_reconcile`: named apart from the checks the table asset reports at commit
time), evaluated without materializing anything, and `freshness` when the contract sets a
max_age. `table_checks_job` runs the committed checks daily (`table_checks_schedule`),
`freshness_checks_job` the freshness checks hourly (`freshness_checks_schedule`); both are on
by default. Their crons come from PLATFORM_CHECKS_CRON and PLATFORM_FRESHNESS_CRON, read when
the definitions load (a schedule's cron is part of its definition).
"""

import os

import dagster as dg

from ..contracts import Contract
from ..operating import checks as oc
from ..resources.catalog import CatalogResource
from ..resources.storage import StorageResource
from ..tables.store import load_table, rejected_name
from .freshness import check_freshness

CHECKS_CRON, FRESHNESS_CRON = "0 6 * * *", "0 * * * *"
# scheduled check name -> (result name in operating/checks.py, description)
COMMITTED = {
    "committed_primary_key": ("primary_key_unique", "The primary key is unique and non-null "
                              "over the whole current snapshot."),
    "committed_schema": ("schema_matches_contract", "The table's columns and types are the "
                         "contract's (a change the next run applies: WARN)."),
    "committed_rejected_share": ("rejected_share", "Rejected share of all committed records "
                                 "against the contract's thresholds."),
    "committed_rows_reconcile": ("rows_reconcile", "Each committed file's rows + rejected rows "
                                 "= the records its staging record counted in the raw file."),
}


def _result(key: dg.AssetKey, name: str, r) -> dg.AssetCheckResult:
    meta = {k: dg.MetadataValue.json(v) if isinstance(v, (dict, list)) else v
            for k, v in r.metadata.items() if v is not None}
    return dg.AssetCheckResult(
        asset_key=key, check_name=name, passed=r.passed,
        severity=dg.AssetCheckSeverity(r.severity), description=r.reason or None,
        metadata=meta)


def committed_results(contract: Contract, storage: StorageResource, catalog: CatalogResource,
                      names: list[str]) -> dict[str, oc.AuditResult]:
    """Run the table-level checks `names` (keys of COMMITTED) on the current snapshot; without
    a table each is the failed WARN `table_exists` result."""
    from ..assets.clean import effective_contract
    from ..cleaning import CleanError

    lake, ice, ns, ds = storage.lake(), catalog.iceberg(), catalog.namespace, contract.name
    data = load_table(ice, ns, ds)
    if data is None:
        return {n: oc.committed_checks(contract, None, None, lake)[0] for n in names}
    rejected = load_table(ice, ns, rejected_name(ds))
    try:
        contract = effective_contract(contract, lake)
    except CleanError:
        pass  # no schema recorded: the schema check compares with what the contract declares
    run = {"primary_key_unique": lambda: oc.check_primary_key(data, contract),
           "schema_matches_contract": lambda: oc.check_schema(data, contract),
           "rejected_share": lambda: oc.check_rejected_share(data, rejected, contract),
           "rows_reconcile": lambda: oc.check_rows_reconcile(data, rejected, lake, contract)}
    return {n: run[COMMITTED[n][0]]() for n in names}


def build_dataset_checks(contract: Contract) -> tuple[dg.AssetChecksDefinition,
                                                      dg.AssetChecksDefinition | None]:
    """The committed checks of one dataset's table, and its freshness check (None without a
    max_age)."""
    ds = contract.name
    key = dg.AssetKey(["table", ds])
    names = [n for n in COMMITTED if n != "committed_primary_key" or contract.primary_key]

    @dg.multi_asset_check(
        name=f"committed_checks_{ds}", can_subset=True,
        specs=[dg.AssetCheckSpec(n, asset=key, description=COMMITTED[n][1]) for n in names],
        description=f"Table-level checks of {ds}'s current snapshot, run on a schedule "
                    "without materializing anything.")
    def committed(context: dg.AssetCheckExecutionContext, storage: StorageResource,
                  catalog: CatalogResource):
        selected = [k.name for k in context.selected_asset_check_keys]
        for name, r in committed_results(contract, storage, catalog, selected).items():
            yield _result(key, name, r)

    if contract.checks.max_age_seconds is None:
        return committed, None

    @dg.asset_check(
        asset=key, name="freshness",
        description=f"WARN when {ds} has had no upload for longer than the contract's max_age "
                    "(the newest raw file an ingest run took).")
    def freshness(storage: StorageResource, catalog: CatalogResource) -> dg.AssetCheckResult:
        data = load_table(catalog.iceberg(), catalog.namespace, ds)
        return _result(key, "freshness", check_freshness(contract, storage.lake(), data))

    return committed, freshness


def _schedule(name: str, job, variable: str, default: str, what: str) -> dg.ScheduleDefinition:
    cron = os.environ.get(variable) or default
    try:
        return dg.ScheduleDefinition(
            name=name, job=job, cron_schedule=cron, execution_timezone="UTC",
            default_status=dg.DefaultScheduleStatus.RUNNING,
            description=f"Runs {what} at `{cron}` (UTC; {variable}, default `{default}`).")
    except dg.DagsterInvalidDefinitionError as e:
        raise ValueError(f"{variable}={cron!r} is not a valid cron schedule: {e}") from None


def build_monitoring(contracts: dict[str, Contract]) -> tuple[list, list, list]:
    """(asset checks, jobs, schedules) of the scheduled checks of every dataset."""
    committed, fresh = [], []
    for contract in contracts.values():
        c, f = build_dataset_checks(contract)
        committed.append(c)
        if f is not None:
            fresh.append(f)
    jobs, schedules = [], []
    if committed:
        job = dg.define_asset_job(
            "table_checks_job", selection=dg.AssetSelection.checks(*committed),
            executor_def=dg.in_process_executor,
            description="The table-level checks of every dataset's current snapshot (primary "
                        "key, schema, rejected share, rows reconcile); nothing is "
                        "materialized.")
        jobs.append(job)
        schedules.append(_schedule("table_checks_schedule", job, "PLATFORM_CHECKS_CRON",
                                   CHECKS_CRON, "the committed table checks"))
    if fresh:
        job = dg.define_asset_job(
            "freshness_checks_job", selection=dg.AssetSelection.checks(*fresh),
            executor_def=dg.in_process_executor,
            description="Freshness of every dataset with a max_age: WARN when its last upload "
                        "is older.")
        jobs.append(job)
        schedules.append(_schedule("freshness_checks_schedule", job, "PLATFORM_FRESHNESS_CRON",
                                   FRESHNESS_CRON, "the freshness checks"))
    return committed + fresh, jobs, schedules
