"""Audits of staged files: what must hold before a raw file's rows may be committed.

Each audit reads what was actually staged (Parquet footers: row counts, schemas with field ids,
null counts) and compares it with something computed independently of the cleaning engine: the
raw file's own record count, the table's schema, the contract. None of them reads data pages, so
their cost grows with the change, not the table. The primary-key audit runs at commit time,
against the exact snapshot being committed on (see assets/table.py). `check_results` turns the
audits kept in a run's staging records into the cleaned asset's Dagster check results.
"""

from __future__ import annotations

import dataclasses

import dagster as dg
import pyarrow as pa
import pyarrow.parquet as pq
from pyiceberg.io import FileIO

from .. import staging as st
from ..contracts import Contract

ERROR, WARN = "ERROR", "WARN"


@dataclasses.dataclass
class AuditResult:
    """One audit of one staged file: passed, or failed with a severity and a reason."""

    name: str
    passed: bool
    severity: str = ERROR
    reason: str = ""
    metadata: dict = dataclasses.field(default_factory=dict)

    def blocks(self) -> bool:
        return not self.passed and self.severity == ERROR

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def footer(io: FileIO, uri: str) -> pq.FileMetaData:
    """The Parquet footer of a staged file, read with ranged reads (no data pages)."""
    with io.new_input(uri).open() as stream:
        return pq.read_metadata(stream)


def _norm(t: pa.DataType) -> pa.DataType:
    return pa.string() if pa.types.is_large_string(t) else t


def _field_id(field: pa.Field) -> str | None:
    meta = field.metadata or {}
    return (meta.get(b"PARQUET:field_id") or b"").decode() or None


def audit_reconcile(source_records: int | None, data: list[pq.FileMetaData],
                    rejected: list[pq.FileMetaData]) -> AuditResult:
    """Records counted in the raw file == rows in the staged files + rows in the rejected file."""
    return reconcile_counts(source_records, sum(m.num_rows for m in data),
                            sum(m.num_rows for m in rejected))


def reconcile_counts(source_records: int | None, written: int, rejected_rows: int) -> AuditResult:
    """`rows_reconcile` from counts: records in == rows written + rows rejected."""
    meta = {"source_records": source_records, "rows_written": written,
            "rows_rejected": rejected_rows}
    if source_records is None:
        return AuditResult("rows_reconcile", False, ERROR, "the raw file's records were not "
                           "counted", meta)
    if source_records != written + rejected_rows:
        return AuditResult(
            "rows_reconcile", False, ERROR,
            f"the raw file has {source_records} records but {written} were staged and "
            f"{rejected_rows} rejected ({source_records - written - rejected_rows:+d} lost)", meta)
    return AuditResult("rows_reconcile", True, metadata=meta)


def audit_schema(expected: pa.Schema, data: list[pq.FileMetaData],
                 uris: list[str]) -> AuditResult:
    """Every staged file has exactly the table's columns, types and Parquet field ids."""
    want = {f.name: (_norm(f.type), _field_id(f)) for f in expected}
    problems = {}
    for uri, m in zip(uris, data):
        schema = m.schema.to_arrow_schema()
        have = {f.name: (_norm(f.type), _field_id(f)) for f in schema}
        if have != want:
            problems[uri.rsplit("/", 1)[-1]] = {
                n: f"expected {want.get(n)}, found {have.get(n)}"
                for n in sorted(set(want) | set(have)) if want.get(n) != have.get(n)
            }
    if problems:
        return AuditResult("schema_matches_contract", False, ERROR,
                           f"{len(problems)} staged file(s) do not match the table schema",
                           {"problems": problems})
    return AuditResult("schema_matches_contract", True)


def audit_not_null(contract: Contract, data: list[pq.FileMetaData]) -> AuditResult:
    """Non-nullable columns hold no null, per the staged files' column statistics."""
    required = {c.name for c in contract.columns if not c.nullable}
    nulls: dict[str, int] = {}
    unknown = set()
    for m in data:
        for rg in range(m.num_row_groups):
            group = m.row_group(rg)
            for i in range(group.num_columns):
                col = group.column(i)
                name = col.path_in_schema
                if name not in required:
                    continue
                stats = col.statistics
                if stats is None or not stats.has_null_count:
                    unknown.add(name)
                elif stats.null_count:
                    nulls[name] = nulls.get(name, 0) + stats.null_count
    if nulls or unknown:
        return AuditResult("not_null", False, ERROR,
                           f"nulls in non-nullable columns: {nulls}" if nulls
                           else f"no null statistics for {sorted(unknown)}",
                           {"nulls": nulls, "unverified": sorted(unknown)})
    return AuditResult("not_null", True, metadata={"columns": sorted(required)})


def audit_rejected_share(contract: Contract, source_records: int | None,
                         rejected: list[pq.FileMetaData]) -> AuditResult:
    """Share of rejected records: WARN above the contract's warn threshold, ERROR above error."""
    return rejected_share(contract, sum(m.num_rows for m in rejected), source_records)


def rejected_share(contract: Contract, rejected_rows: int, records: int | None) -> AuditResult:
    """`rejected_share` from counts: `rejected_rows` of `records` against the contract."""
    n = rejected_rows
    share = n / records if records else 0.0
    meta = {"rows_rejected": n, "share": round(share, 6)}
    if share > contract.rejected_share_error:
        return AuditResult("rejected_share", False, ERROR,
                           f"{share:.1%} of records rejected (error above "
                           f"{contract.rejected_share_error:.0%})", meta)
    if share > contract.rejected_share_warn:
        return AuditResult("rejected_share", False, WARN,
                           f"{share:.1%} of records rejected (warn above "
                           f"{contract.rejected_share_warn:.0%})", meta)
    return AuditResult("rejected_share", True, metadata=meta)


AUDITS = ("rows_reconcile", "schema_matches_contract", "not_null", "rejected_share")
READABLE = "file_readable"  # the check of the files that could not be read at all
CHECKS = (READABLE,) + AUDITS  # the cleaned asset's checks, in order


def audit_staged(io: FileIO, contract: Contract, expected: pa.Schema, source_records: int | None,
                 data_uris: list[str], rejected_uris: list[str]) -> list[AuditResult]:
    """Run every per-file audit on one staged raw file; returns one result per audit."""
    data = [footer(io, u) for u in data_uris]
    rejected = [footer(io, u) for u in rejected_uris]
    return [
        audit_reconcile(source_records, data, rejected),
        audit_schema(expected, data, data_uris),
        audit_not_null(contract, data),
        audit_rejected_share(contract, source_records, rejected),
    ]


def check_results(asset_key: dg.AssetKey, recs: list[st.StagingRecord]) -> list:
    """One AssetCheckResult per check of the cleaned asset over the run's files (their records'
    audits), naming every file that failed."""
    out = []
    for name in CHECKS:
        failed, warned, detail = {}, {}, {}
        for r in recs:
            if name == READABLE:
                if r.status == st.UNREADABLE:
                    failed[r.key] = r.reason
                continue
            a = r.audit.get(name)
            if a is None:
                continue
            detail[r.key] = a["metadata"]
            if not a["passed"]:
                (failed if a["severity"] == "ERROR" else warned)[r.key] = a["reason"]
        severity = dg.AssetCheckSeverity.ERROR if failed else dg.AssetCheckSeverity.WARN
        out.append(dg.AssetCheckResult(
            asset_key=asset_key, check_name=name, passed=not failed and not warned,
            severity=severity,
            metadata={"failed": dg.MetadataValue.json(failed),
                      "warned": dg.MetadataValue.json(warned),
                      "files": len(recs), "detail": dg.MetadataValue.json(detail)},
        ))
    return out
