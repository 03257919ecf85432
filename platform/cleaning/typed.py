"""The JSON Lines and Parquet paths: values read loosely, then typed with try_cast."""

from __future__ import annotations

from pathlib import Path

import duckdb

from ..contracts import Column, Contract, normalize_names
from ..sql import quote_ident as _q
from ..sql import quote_literal as _lit
from .base import (
    PARQUET_CODEC,
    PARTITION_ALIAS,
    CleanError,
    CleanResult,
    OutputSpec,
    _collect_ok,
    _line_options,
    _short,
    _sniff_text,
    _wide_decimal,
    _write_rejected,
)


def _clean_typed_cast(con, path: Path, contract: Contract, staging: Path, source_key: str,
                      compression: str, spec: OutputSpec) -> CleanResult:
    """JSON Lines and Parquet: read values loosely, then type each with try_cast.

    A value that does not convert rejects its row with the column and the value; an
    unparsable JSON line or a non-object line rejects that line. Rows are staged in a temporary
    DuckDB table (spilling to scratch, not memory) and split into good and rejected files.
    """
    fmt = contract.format
    if fmt.type == "jsonl":
        _sniff_text(path, compression, contract)
    if fmt.type == "jsonl":
        src = (
            f"(SELECT row_number() OVER () AS _line, j AS _raw FROM read_csv({_lit(str(path))}, "
            f"columns={{'j': 'VARCHAR'}}, header=false, delim=E'\\x1e', quote='', escape='', "
            f"auto_detect=false, compression={_lit(compression)}, encoding={_lit(fmt.encoding)}, "
            f"{_line_options(fmt.max_line_bytes)}, strict_mode=false, store_rejects=true))"
        )

        def value(c: Column) -> str:
            key = "$." + '"' + (c.source or c.name).replace('"', '\\"') + '"'
            return f"json_extract_string(_json, {_lit(key)})"

        # DuckDB evaluates every CASE branch, so invalid lines are swapped for '{}' first.
        valid = "(CASE WHEN json_valid(_raw) THEN json_type(_raw) = 'OBJECT' ELSE false END)"
        base = (f"(SELECT *, {valid} AS _valid, CASE WHEN {valid} THEN _raw ELSE '{{}}' END "
                f"AS _json FROM {src} WHERE _raw IS NOT NULL)")
        structural = ("CASE WHEN NOT _valid THEN 'line is not a JSON object' END")
    else:
        try:
            names = [r[0] for r in con.execute(
                f"DESCRIBE SELECT * FROM read_parquet({_lit(str(path))})").fetchall()]
        except duckdb.Error as e:
            raise CleanError(f"cannot read the file as Parquet: {_short(e)}") from None
        norm = dict(zip(normalize_names(names), names))
        # The raw text of a rejected Parquet row is its source values, before any cast.
        base = (f"(SELECT *, file_row_number + 1 AS _line, true AS _valid, "
                f"CAST(to_json(struct_pack({', '.join(_q(n) for n in names)})) AS VARCHAR) "
                f"AS _raw FROM read_parquet({_lit(str(path))}, file_row_number=true))")
        structural = "NULL"

        def value(c: Column) -> str:
            src_name = c.source if c.source in names else norm.get(c.name)
            return _q(src_name) if src_name else "NULL"

    casts, reasons, bad_columns = [], [structural], []
    for c in contract.columns:
        v = value(c)
        casts.append(f"TRY_CAST({v} AS {c.sql_type}) AS {_q(c.name)}")
        cast_fails = f"_valid AND ({v}) IS NOT NULL AND TRY_CAST({v} AS {c.sql_type}) IS NULL"
        if c.sql_type.startswith("DECIMAL"):  # reject, do not round, extra decimal places
            exact, wide = f"TRY_CAST({v} AS {c.sql_type})", f"TRY_CAST({v} AS {_wide_decimal(c)})"
            cast_fails = f"_valid AND ({v}) IS NOT NULL AND ({exact} IS NULL OR {exact} <> {wide})"
        reasons.append(
            f"CASE WHEN {cast_fails} THEN 'column {c.name}: cannot convert ' || "
            f"CAST({v} AS VARCHAR) || ' to {c.type}' END"
        )
        fails = cast_fails
        if not c.nullable:
            reasons.append(f"CASE WHEN _valid AND ({v}) IS NULL THEN "
                           f"'column {c.name}: null in a non-nullable column' END")
            fails = f"({cast_fails}) OR (_valid AND ({v}) IS NULL)"
        bad_columns.append(f"CASE WHEN {fails} THEN {_lit(c.name)} END")
    reason = f"NULLIF(concat_ws('; ', {', '.join(reasons)}), '')"
    bad = f"NULLIF(concat_ws(', ', {', '.join(bad_columns)}), '')"
    try:
        con.execute(
            f"CREATE TEMP TABLE staged AS SELECT _line, _raw, _valid, {reason} AS _reason, "
            f"{bad} AS _bad_columns, "
            f"{', '.join(casts)} FROM {base}"
        )
    except duckdb.Error as e:
        raise CleanError(f"cannot read the file as {fmt.type}: {_short(e)}") from None
    col_list = ", ".join(_q(c.name) for c in contract.columns)
    pass_dir = staging / "pass1"
    partition = f", PARTITION_BY ({_q(PARTITION_ALIAS)}), OVERWRITE_OR_IGNORE" \
        if contract.partition_column else ""
    alias = f", {_q(contract.partition_column)} AS {_q(PARTITION_ALIAS)}" \
        if contract.partition_column else ""
    ids = spec.ids_option([c.name for c in contract.columns])
    target = pass_dir / "_ok=true"
    target.mkdir(parents=True, exist_ok=True)
    good = con.execute("SELECT count(*) FROM staged WHERE _reason IS NULL").fetchone()[0]
    if good:
        dest = target if contract.partition_column else target / "part_0.parquet"
        con.execute(
            f"COPY (SELECT {col_list}{alias}{spec.constant_sql()} FROM staged "
            f"WHERE _reason IS NULL) TO {_lit(str(dest))} "
            f"(FORMAT parquet, COMPRESSION {PARQUET_CODEC}{partition}{ids})"
        )
    con.execute(
        "CREATE TEMP TABLE rejected AS SELECT "
        f"{_lit(source_key)} AS source_key, _line AS line, "
        "CASE WHEN NOT _valid THEN 'PARSE' ELSE 'CAST' END AS error_type, "
        "_bad_columns AS column_name, _reason AS reason, "
        f"coalesce(_raw, CAST(to_json(struct_pack({col_list})) AS VARCHAR)) AS raw "
        "FROM staged WHERE _reason IS NOT NULL"
    )
    # Lines DuckDB's line reader itself refused (oversized, bad encoding) are rejects too.
    if fmt.type == "jsonl":
        con.execute(
            f"INSERT INTO rejected SELECT {_lit(source_key)}, line, "
            "CAST(error_type AS VARCHAR), NULL, error_message, csv_line FROM reject_errors"
        )
    files = _collect_ok(pass_dir, contract.partition_column)
    spec.written(files)
    n_rejected = con.execute("SELECT count(*) FROM rejected").fetchone()[0]
    rejected_file = _write_rejected(con, staging, spec)
    rows_written = sum(f.rows for f in files)
    return CleanResult(
        rows_in=rows_written + n_rejected, rows_written=rows_written, rows_rejected=n_rejected,
        parse_rejects=n_rejected, contract_rejects=0, files=files, rejected_file=rejected_file,
        columns=contract.columns,
        column_mapping={(c.source or c.name): c.name for c in contract.columns},
        extra_columns=[], missing_columns=[], bytes_in=0, seconds=0.0,
    )
