"""The CSV path: DuckDB's parallel reader with store_rejects, row rules split in the same COPY."""

from __future__ import annotations

import csv
import gzip
import io
import itertools
from pathlib import Path

import duckdb

from ..contracts import Contract, normalize_names
from ..sql import quote_ident as _q
from ..sql import quote_literal as _lit
from .base import (
    PARQUET_CODEC,
    PARTITION_ALIAS,
    CleanError,
    CleanResult,
    OutputSpec,
    _collect_ok,
    _csv_reader,
    _footer_rows,
    _line_options,
    _list,
    _short,
    _sniff_text,
    _wide_decimal,
    _write_rejected,
)
from .lines import (
    RejectWriter,
    _batches,
    record_start_lines,
    reject_lines,
    write_parse_rejects,
)


def _read_header(path: Path, contract: Contract, compression: str) -> list[str]:
    """Return the raw header fields of a CSV file (already sniffed); raises CleanError.

    Only the header's own bytes are decoded, so a bad byte further down the file rejects that
    row later instead of failing the whole file here.
    """
    fmt = contract.format
    opener = gzip.open if compression == "gzip" else open
    raw_lines: list[bytes] = []
    try:
        with opener(path, "rb") as raw:
            # A header may span lines only inside quotes; read on while a quote is open.
            while len(raw_lines) < 100:
                line = raw.readline(fmt.max_line_bytes)
                if not line:
                    break
                raw_lines.append(line)
                if b"".join(raw_lines).count(fmt.quote.encode()) % 2 == 0:
                    break
        text = b"".join(raw_lines).decode(fmt.encoding)
        header = next(_csv_reader(io.StringIO(text, newline=""), fmt), None)
    except UnicodeDecodeError as e:
        raise CleanError(f"the header is not valid {fmt.encoding}: {e}") from None
    except (csv.Error, OSError, EOFError) as e:
        raise CleanError(f"cannot parse the header line: {e}") from None
    if not header or all(not h.strip() for h in header):
        raise CleanError("the first line (header) is empty")
    return header


def _match_header(header: list[str], contract: Contract) -> tuple[list[str | None], dict[str, str]]:
    """Map each header field to a contract column name (None = extra column)."""
    normalized = normalize_names(header)
    by_source = {c.source: c.name for c in contract.columns if c.source}
    names = {c.name for c in contract.columns}
    mapping: list[str | None] = []
    used: set[str] = set()
    for raw, norm in zip(header, normalized):
        target = by_source.get(raw) or by_source.get(raw.strip())
        if target is None and norm in names:
            target = norm
        if target in used:
            target = None
        if target:
            used.add(target)
        mapping.append(target)
    return mapping, {raw: m for raw, m in zip(header, mapping) if m}


def _row_rules(contract: Contract, not_null_in: set[str],
               decimals_in: set[str]) -> list[tuple[str, str, str, str]]:
    """(column, violated SQL, reason SQL, error type) for row-level contract rules.

    Not-null rules for the non-nullable columns in `not_null_in`; decimal-fit rules for the
    decimal columns in `decimals_in`. The SQL refers to the columns as read (decimals wide).
    """
    rules = []
    for c in contract.columns:
        col = _q(c.name)
        if not c.nullable and c.name in not_null_in:
            rules.append((c.name, f"{col} IS NULL",
                          _lit(f"column {c.name}: null in a non-nullable column"), "NOT NULL"))
        if c.sql_type.startswith("DECIMAL") and c.name in decimals_in:
            exact = f"TRY_CAST({col} AS {c.sql_type})"
            rules.append((
                c.name, f"({col} IS NOT NULL AND ({exact} IS NULL OR {exact} <> {col}))",
                f"'column {c.name}: ' || CAST({col} AS VARCHAR) || ' does not fit {c.type}'",
                "DECIMAL",
            ))
    return rules


def _ok_expr(rules) -> str:
    return "NOT (" + " OR ".join(v for _, v, _, _ in rules) + ")" if rules else "true"


def _concat_when(rules, pick) -> str:
    parts = [f"CASE WHEN {v} THEN {pick(c, r, t)} END" for c, v, r, t in rules]
    return f"concat_ws('; ', {', '.join(parts)})" if parts else "NULL"


def _clean_csv(con, path: Path, contract: Contract, staging: Path, source_key: str,
               compression: str, spec: OutputSpec, line_index=lambda: None) -> CleanResult:
    fmt = contract.format
    head = _sniff_text(path, compression, contract)
    if fmt.header:
        header = _read_header(path, contract, compression)
        mapping, column_mapping = _match_header(header, contract)
        if not any(mapping):
            hint = ""
            sample = head.split(b"\n", 1)[0].decode(fmt.encoding, "replace")
            for cand in (";", "\t", "|", ","):
                if cand != fmt.delimiter and cand in sample:
                    hint = f" The header contains {cand!r}: is the delimiter {cand!r}?"
                    break
            raise CleanError(
                f"the header matches none of the contract columns "
                f"({', '.join(c.name for c in contract.columns)}); found {header[:10]!r}.{hint}"
            )
    else:
        # Without a header the file's columns are the contract's, in order.
        header = [c.name for c in contract.columns]
        mapping = list(header)
        column_mapping = {h: h for h in header}
    extra = [h for h, m in zip(header, mapping) if m is None]
    missing = [c.name for c in contract.columns if c.name not in set(filter(None, mapping))]
    missing_required = [m for m in missing if not contract.column(m).nullable]
    if missing_required:
        raise CleanError(
            f"required columns missing from the header: {missing_required}; found {header!r}"
        )

    duck_cols = {}
    for i, target in enumerate(mapping):
        if target is None:
            duck_cols[f"__extra_{i}"] = "VARCHAR"
        else:
            col = contract.column(target)
            duck_cols[target] = (_wide_decimal(col) if col.sql_type.startswith("DECIMAL")
                                 else col.sql_type)
    columns_sql = "{" + ", ".join(f"{_lit(k)}: {_lit(v)}" for k, v in duck_cols.items()) + "}"
    present = {c.name for c in contract.columns if c.name not in missing}
    # Non-nullable typed columns are enforced by the reader itself: with force_not_null a null
    # marker stays text and fails its conversion, so DuckDB rejects the line in its parallel
    # scan, with exact position and raw text. Strings (where "" is a value) and floats (where
    # NaN parses) cannot be, and stay row rules checked after parsing.
    enforced = [c.name for c in contract.columns if c.name in present and not c.nullable
                and c.type not in ("string", "float")]
    force_not_null = f"force_not_null={_list(enforced)}, " if enforced else ""
    reader = (
        f"read_csv({_lit(str(path))}, columns={columns_sql}, header={str(fmt.header).lower()}, "
        f"auto_detect=false, delim={_lit(fmt.delimiter)}, quote={_lit(fmt.quote)}, "
        f"escape={_lit(fmt.escape)}, nullstr={_list(fmt.null_markers)}, {force_not_null}"
        f"compression={_lit(compression)}, encoding={_lit(fmt.encoding)}, "
        f"{_line_options(fmt.max_line_bytes)}, store_rejects=true, "
        f"rejects_table='reject_errors', rejects_scan='reject_scans', "
        f"timestampformat='ISO', dateformat='%Y-%m-%d')"
    )
    select_cols = ", ".join(
        f"CAST(NULL AS {c.sql_type}) AS {_q(c.name)}" if c.name in missing
        else f"TRY_CAST({_q(c.name)} AS {c.sql_type}) AS {_q(c.name)}"
        if c.sql_type.startswith("DECIMAL") else _q(c.name)
        for c in contract.columns
    )
    rules = _row_rules(contract, not_null_in=present - set(enforced), decimals_in=present)
    raw_cols = ", ".join(
        f"{_q(c.name)} := {'NULL' if c.name in missing else _q(c.name)}"
        for c in contract.columns
    )
    pass_dir = staging / "pass1"
    # Partitioned by a copy of the partition column, so the column itself stays in the files
    # (an Iceberg table reads it from them) and the split column _ok never does.
    pcol = _q(PARTITION_ALIAS) if contract.partition_column else None
    if pcol:
        select_cols += f", {_q(contract.partition_column)} AS {pcol}"
    ids = spec.ids_option([c.name for c in contract.columns])
    select_cols += spec.constant_sql()
    con.execute("SET preserve_insertion_order=false")
    # Partitioned writes buffer rows per partition; flushing often keeps memory flat.
    con.execute("SET partitioned_write_flush_threshold=100000")
    if rules:
        # Good rows and rows breaking a row rule leave in one scan, split by an _ok partition.
        query = f"SELECT {select_cols}, ({_ok_expr(rules)}) AS _ok FROM {reader}"
        target, options = pass_dir, f"PARTITION_BY (_ok{', ' + pcol if pcol else ''}), "
    elif pcol:
        query = f"SELECT {select_cols} FROM {reader}"
        target, options = pass_dir / "_ok=true", f"PARTITION_BY ({pcol}), "
        pass_dir.mkdir(parents=True, exist_ok=True)
    else:
        query = f"SELECT {select_cols} FROM {reader}"
        target, options = pass_dir / "_ok=true" / "part_0.parquet", ""
        target.parent.mkdir(parents=True, exist_ok=True)
    if options:
        options += "FILENAME_PATTERN 'part_{i}', OVERWRITE_OR_IGNORE, "
    try:
        con.execute(
            f"COPY ({query}) TO {_lit(str(target))} "
            f"({options}FORMAT parquet, COMPRESSION {PARQUET_CODEC}{ids})"
        )
    except duckdb.Error as e:
        raise CleanError(f"cannot parse the file as CSV: {_short(e)}") from None
    files = _collect_ok(pass_dir, contract.partition_column)
    spec.written(files)
    bad_root = pass_dir / "_ok=false"
    contract_rejects = sum(_footer_rows(p) for p in bad_root.rglob("*.parquet")) \
        if bad_root.exists() else 0

    # Rejected rows stream from DuckDB to Parquet in batches: the platform holds no more
    # than a batch of them in memory, however many a file has.
    parse_file = write_parse_rejects(con, path, compression, contract, source_key,
                                     list(duck_cols), set(enforced),
                                     staging / "parse_rejects.parquet", line_index)
    parse_rejects = _footer_rows(parse_file) if parse_file else 0
    parts = [parse_file] if parse_file else []

    # Rows breaking a row rule are located by a second scan that numbers the parsed records and
    # a walk of the file that maps record numbers to lines; both run only when there are any.
    if contract_rejects:
        con.execute("SET preserve_insertion_order=true")
        reader2 = reader.replace("rejects_table='reject_errors', rejects_scan='reject_scans'",
                                 "rejects_table='reject_errors2', rejects_scan='reject_scans2'")
        rows = (row for batch in _batches(con, (
            f"SELECT _record, _types, _columns, _reason, _raw FROM (SELECT "
            f"row_number() OVER () AS _record, ({_ok_expr(rules)}) AS _ok, "
            f"{_concat_when(rules, lambda c, r, t: _lit(t))} AS _types, "
            f"{_concat_when(rules, lambda c, r, t: _lit(c))} AS _columns, "
            f"{_concat_when(rules, lambda c, r, t: r)} AS _reason, "
            f"CAST(to_json(struct_pack({raw_cols})) AS VARCHAR) AS _raw "
            f"FROM {reader2}) WHERE NOT _ok ORDER BY _record")) for row in batch)
        for_lines, for_data = itertools.tee(rows)
        starts = record_start_lines(path, compression, contract, (r[0] for r in for_lines),
                                    reject_lines(parse_file))
        writer = RejectWriter(staging / "contract_rejects.parquet")
        for (_, start), (_, types, columns, reason, raw) in zip(starts, for_data):
            writer.add((source_key, start, ", ".join(dict.fromkeys(types.split("; "))),
                        ", ".join(dict.fromkeys(columns.split("; "))), reason, raw))
        contract_file = writer.close()
        if contract_file:
            parts.append(contract_file)

    rejected_file = _write_rejected(con, staging, spec, parts=parts)
    rows_written = sum(f.rows for f in files)
    rows_rejected = parse_rejects + contract_rejects
    return CleanResult(
        rows_in=rows_written + rows_rejected, rows_written=rows_written,
        rows_rejected=rows_rejected, parse_rejects=parse_rejects,
        contract_rejects=contract_rejects, files=files, rejected_file=rejected_file,
        columns=contract.columns, column_mapping=column_mapping, extra_columns=extra,
        missing_columns=missing, bytes_in=0, seconds=0.0,
    )
