"""The cleaning engine: one raw file in, typed Parquet plus rejected rows out, on local disk.

DuckDB does the work. For CSV its reader parses and types in parallel and streams, so memory
stays bounded whatever the file size (~690 MB peak on 1.1 GB, see bench/), and `store_rejects`
keeps every row it cannot parse (wrong field count, bad value, bad encoding, oversized line, a
null in a non-nullable typed column) with its position and raw text, where pyarrow would stop at
the first bad value and pandas would pad silently. Rules the reader cannot enforce (nulls in
non-nullable string or float columns, decimals with more digits than the contract allows) are
checked after parsing; when a contract has any, one COPY splits good and breaking rows into
separate files in the same pass. Every rejected row gets its physical line number.
JSON Lines and Parquet inputs are typed with `try_cast`, so one bad value rejects a row, never
the file.

Nothing here knows about Dagster or object storage: `clean_file` reads a local file and writes
into a local staging folder; the asset publishes the staged files. Raises `CleanError` when the
file cannot be read at all (empty, not text, wrong header, undecodable); row-level problems never
raise.
"""

from __future__ import annotations

import concurrent.futures
import csv
import dataclasses
import gzip
import io
import os
import time
from pathlib import Path
from typing import Any

import duckdb
import pyarrow.parquet as pq

from .contracts import (
    EXTENSIONS,
    Column,
    Contract,
    contract_type_from_duckdb,
    normalize_names,
)
from .records import source_records
from .sql import quote_ident as _q
from .sql import quote_literal as _lit

# Snappy: the lake's usual codec; zstd saves ~25% of space but costs ~10% more CPU per row here.
PARQUET_CODEC = "snappy"

REJECTED_SCHEMA = (
    ("source_key", "VARCHAR"),
    ("line", "BIGINT"),
    ("error_type", "VARCHAR"),
    ("column_name", "VARCHAR"),
    ("reason", "VARCHAR"),
    ("raw", "VARCHAR"),
)


PARTITION_ALIAS = "__partition"


@dataclasses.dataclass
class OutputSpec:
    """What every written Parquet file carries besides the contract's columns: constant columns
    (lineage) and Parquet field ids (cleaned and rejected files have their own)."""

    field_ids: dict[str, int] | None = None
    rejected_field_ids: dict[str, int] | None = None
    constants: dict[str, tuple[str, Any]] = dataclasses.field(default_factory=dict)

    def constant_sql(self) -> str:
        """`, CAST(<value> AS <type>) AS <name>...` for the SELECT list ('' without any)."""
        return "".join(
            f", CAST({'NULL' if v is None else _lit(str(v))} AS {t}) AS {_q(n)}"
            for n, (t, v) in self.constants.items())

    def ids_option(self, columns: list[str], rejected: bool = False) -> str:
        """`, FIELD_IDS {...}` for a COPY writing `columns` (+ constants); '' without ids.

        Raises ValueError when a written column has no id: never a file with partial ids."""
        ids = self.rejected_field_ids if rejected else self.field_ids
        if ids is None:
            return ""
        written = list(columns) + list(self.constants)
        missing = [c for c in written if c not in ids]
        if missing:
            raise ValueError(f"no Parquet field id for written column(s) {missing}")
        return ", FIELD_IDS {" + ", ".join(f"{_q(c)}: {int(ids[c])}" for c in written) + "}"


class CleanError(Exception):
    """The raw file cannot be processed at all; the message says why, for a person."""


@dataclasses.dataclass
class StagedFile:
    """A staged Parquet file and the hive sub-folder (`"" ` or `col=value`) it belongs in."""

    path: Path
    subdir: str
    rows: int


@dataclasses.dataclass
class CleanResult:
    rows_in: int
    rows_written: int
    rows_rejected: int
    parse_rejects: int
    contract_rejects: int
    files: list[StagedFile]
    rejected_file: Path | None
    columns: tuple[Column, ...]
    column_mapping: dict[str, str]  # source header -> cleaned column name
    extra_columns: list[str]
    missing_columns: list[str]
    bytes_in: int
    seconds: float
    source_records: int | None = None

    def metadata(self) -> dict[str, Any]:
        return {
            "rows_in": self.rows_in,
            "rows_written": self.rows_written,
            "rows_rejected": self.rows_rejected,
            "parse_rejects": self.parse_rejects,
            "contract_rejects": self.contract_rejects,
            "bytes_in": self.bytes_in,
            "seconds": round(self.seconds, 3),
            "column_mapping": self.column_mapping,
            "extra_columns": self.extra_columns,
            "missing_columns": self.missing_columns,
        }


def _compression(path: Path, contract: Contract) -> str:
    comp = contract.format.compression
    if comp == "auto":
        return "gzip" if path.name.lower().endswith(".gz") else "none"
    return comp


def _connect(scratch: Path, *, memory_limit: str, threads: int | None) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect(":memory:")
    con.execute(f"SET memory_limit={_lit(memory_limit)}")
    con.execute(f"SET temp_directory={_lit(str(scratch / 'duckdb_tmp'))}")
    con.execute("SET TimeZone='UTC'")
    if threads:
        con.execute(f"SET threads={int(threads)}")
    return con


def _sniff_text(path: Path, compression: str, contract: Contract) -> bytes:
    """Return the first bytes of the file (decompressed); raise CleanError if empty or binary."""
    if path.stat().st_size == 0:
        raise CleanError("the file is empty (0 bytes)")
    try:
        if compression == "gzip":
            with gzip.open(path, "rb") as f:
                head = f.read(65536)
        else:
            with open(path, "rb") as f:
                head = f.read(65536)
    except (OSError, EOFError, gzip.BadGzipFile) as e:
        raise CleanError(f"cannot read the file as {compression}: {e}") from None
    if not head:
        raise CleanError("the file is empty after decompression")
    if b"\x00" in head and contract.format.encoding.lower().replace("-", "") not in ("utf16",):
        raise CleanError(
            f"the file is not {contract.format.type.upper()} text: it contains NUL bytes "
            "(a binary file with the wrong extension?)"
        )
    return head


def _csv_reader(lines, fmt):
    return csv.reader(lines, delimiter=fmt.delimiter, quotechar=fmt.quote,
                      doublequote=fmt.escape == fmt.quote,
                      escapechar=None if fmt.escape == fmt.quote else fmt.escape)


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


def _physical_lines(path: Path, compression: str, offsets: list[int]) -> dict[int, int]:
    """Map byte offsets (in the decompressed stream) to 1-based physical line numbers."""
    opener = gzip.open if compression == "gzip" else open
    result, lines, pos = {}, 1, 0
    pending = sorted(set(offsets))
    with opener(path, "rb") as f:
        while pending:
            chunk = f.read(1 << 22)
            if not chunk:
                break
            end = pos + len(chunk)
            while pending and pending[0] < end:
                off = pending.pop(0)
                result[off] = lines + chunk.count(b"\n", 0, off - pos)
            lines += chunk.count(b"\n")
            pos = end
    for off in pending:
        result[off] = lines
    return result


def _record_start_lines(path: Path, compression: str, contract: Contract, wanted: set[int],
                        skip_lines: set[int]) -> dict[int, int]:
    """Map record ordinals (1-based, over records DuckDB parsed) to their first physical line.

    Walks the file with Python's csv reader, which tracks physical lines through quoted
    newlines; blank lines and records DuckDB rejected (`skip_lines`) are not counted.
    """
    fmt = contract.format
    opener = gzip.open if compression == "gzip" else open
    found: dict[int, int] = {}
    if not wanted:
        return found
    last = max(wanted)
    limit = csv.field_size_limit()
    csv.field_size_limit(max(limit, fmt.max_line_bytes))
    try:
        with opener(path, "rb") as raw:
            text = io.TextIOWrapper(raw, encoding=fmt.encoding, errors="replace", newline="")
            reader = _csv_reader(text, fmt)
            prev_end, ordinal = 0, 0
            if fmt.header:
                next(reader, None)
                prev_end = reader.line_num
            for row in reader:
                start, prev_end = prev_end + 1, reader.line_num
                if not row or start in skip_lines:
                    continue
                ordinal += 1
                if ordinal in wanted:
                    found[ordinal] = start
                    if ordinal >= last:
                        break
    except csv.Error:
        pass  # records the Python reader cannot follow keep no line number
    finally:
        csv.field_size_limit(limit)
    return found


def infer_columns(path: Path, contract: Contract, scratch: Path) -> tuple[Column, ...]:
    """Infer typed, normalized columns from a sample file (what a Glue crawler would do).

    Every inferred column is nullable; `source` keeps the original header name.
    """
    fmt = contract.format
    compression = _compression(path, contract)
    _sniff_text(path, compression, contract)
    scratch.mkdir(parents=True, exist_ok=True)
    con = _connect(scratch, memory_limit="512MB", threads=None)
    try:
        if fmt.type == "csv":
            src = (
                f"read_csv({_lit(str(path))}, auto_detect=true, header={str(fmt.header).lower()}, "
                f"delim={_lit(fmt.delimiter)}, quote={_lit(fmt.quote)}, escape={_lit(fmt.escape)}, "
                f"nullstr={_list(fmt.null_markers)}, compression={_lit(compression)}, "
                f"encoding={_lit(fmt.encoding)}, sample_size=20480, ignore_errors=true, "
                f"max_line_size={fmt.max_line_bytes})"
            )
        elif fmt.type == "jsonl":
            src = (f"read_json({_lit(str(path))}, format='newline_delimited', "
                   f"compression={_lit(compression)}, ignore_errors=true)")
        else:
            src = f"read_parquet({_lit(str(path))})"
        rows = con.execute(f"DESCRIBE SELECT * FROM {src}").fetchall()
    except duckdb.Error as e:
        raise CleanError(f"cannot infer a schema from the file: {e}") from None
    finally:
        con.close()
    sources = [r[0] for r in rows]
    names = normalize_names(sources)
    return tuple(
        Column(name=n, type=contract_type_from_duckdb(str(r[1])), nullable=True, source=s)
        for n, s, r in zip(names, sources, rows)
    )


def _list(values: tuple[str, ...] | list[str]) -> str:
    return "[" + ", ".join(_lit(v) for v in values) + "]"


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


def _wide_decimal(column: Column) -> str:
    """A wider DECIMAL to read a decimal column with, so extra digits can be detected.

    DuckDB rounds `12.345` into DECIMAL(12,2) without a word; reading with more scale and
    comparing against the exact cast turns that into a contract reject instead.
    """
    p, s = (int(x) for x in column.sql_type[len("DECIMAL("):-1].split(","))
    scale = max(s, min(s + 8, 38 - (p - s)))
    return f"DECIMAL(38,{scale})"


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


def _footer_rows(path: Path) -> int:
    return pq.ParquetFile(path).metadata.num_rows


def clean_file(
    path: Path,
    contract: Contract,
    staging: Path,
    *,
    source_key: str,
    memory_limit: str | None = None,
    threads: int | None = None,
    field_ids: dict[str, int] | None = None,
    rejected_field_ids: dict[str, int] | None = None,
    constants: dict[str, tuple[str, Any]] | None = None,
) -> CleanResult:
    """Parse `path` per `contract` into staged Parquet under `staging`.

    Returns a CleanResult listing the staged cleaned files (with their hive sub-folder), the
    staged rejected file (or None) and the row counts. Raises CleanError when the file cannot be
    processed at all. The contract must have columns (infer them first for inferred datasets).
    """
    if not contract.columns:
        raise ValueError("clean_file needs a contract with columns; call infer_columns first")
    t0 = time.perf_counter()
    staging.mkdir(parents=True, exist_ok=True)
    fmt = contract.format
    if not fmt.accepts(path.name):
        raise CleanError(
            f"{path.name!r} does not have a {fmt.type} extension "
            f"(expected one of {', '.join(EXTENSIONS[fmt.type])})"
        )
    compression = _compression(path, contract)
    bytes_in = path.stat().st_size
    if memory_limit is None:
        # Each DuckDB thread buffers a row group while writing Parquet: 768 MB holds two
        # threads with room to spare (measured: ~690 MB peak RSS on 1.1 GB, flat with size).
        memory_limit = f"{max(768, 384 * (threads or os.cpu_count() or 2))}MB"
    # The raw file's records are counted by an independent scan, concurrently with the parse.
    counter = concurrent.futures.ThreadPoolExecutor(max_workers=1)
    counted = counter.submit(source_records, path, contract, compression)
    con = _connect(staging, memory_limit=memory_limit, threads=threads)
    try:
        # Timestamps written without an offset are read in the contract's zone.
        con.execute(f"SET TimeZone={_lit(fmt.timezone)}")
        spec = OutputSpec(field_ids, rejected_field_ids, dict(constants or {}))
        if fmt.type == "csv":
            result = _clean_csv(con, path, contract, staging, source_key, compression, spec)
        else:
            result = _clean_typed_cast(con, path, contract, staging, source_key, compression,
                                       spec)
    finally:
        con.close()
        counter.shutdown(wait=True)
    result.bytes_in = bytes_in
    try:
        result.source_records = counted.result()
    except Exception:  # noqa: BLE001 - uncounted fails the reconciliation audit, loudly
        result.source_records = None
    result.seconds = time.perf_counter() - t0
    return result


def _collect_ok(pass_dir: Path, partition_column: str | None) -> list[StagedFile]:
    ok_root = pass_dir / "_ok=true"
    files = []
    for p in sorted(ok_root.rglob("*.parquet")) if ok_root.exists() else []:
        rows = _footer_rows(p)
        if rows == 0:
            continue  # a single-file COPY of no rows still writes a file; publish none
        sub = p.parent.relative_to(ok_root).as_posix()
        if partition_column and sub.startswith(PARTITION_ALIAS + "="):
            sub = partition_column + sub[len(PARTITION_ALIAS):]
        files.append(StagedFile(path=p, subdir="" if sub == "." else sub, rows=rows))
    return files


def _parse_rejects(con, path: Path, compression: str, contract: Contract, source_key: str,
                   columns: list[str], enforced: set[str]) -> list[tuple]:
    """One rejected row per line DuckDB's reader refused, with its physical line number.

    DuckDB numbers lines counting a multi-line record as one, so the byte position of each
    rejected line is mapped to its physical line. A conversion failure of a null marker in a
    reader-enforced column is reported as what it is: a null in a non-nullable column.
    """
    errors = con.execute(
        "SELECT line, line_byte_position, column_name, CAST(error_type AS VARCHAR), "
        "error_message, csv_line FROM reject_errors ORDER BY line, column_idx"
    ).fetchall()
    if not errors:
        return []
    fmt = contract.format
    physical = _physical_lines(path, compression, [e[1] for e in errors])
    markers = set(fmt.null_markers)
    by_line: dict[int, dict] = {}
    for line, pos, column, etype, message, raw in errors:
        entry = by_line.setdefault(line, {"pos": pos, "types": [], "columns": [], "reasons": [],
                                          "raw": (raw or "").lstrip("\r\n")})
        entry["pos"] = min(entry["pos"], pos)
        if etype == "CAST" and column in enforced:
            fields = next(_csv_reader(io.StringIO(entry["raw"], newline=""), fmt), [])
            idx = columns.index(column)
            if idx < len(fields) and fields[idx] in markers:
                etype, message = "NOT NULL", f"column {column}: null in a non-nullable column"
        if etype == "MISSING COLUMNS" and entry["reasons"]:
            continue  # DuckDB reports one per missing field; the first says it all
        entry["types"].append(etype)
        if etype not in ("MISSING COLUMNS", "TOO MANY COLUMNS") and column:
            entry["columns"].append(column)
        entry["reasons"].append(message)
    return [
        (source_key, physical[e["pos"]], ", ".join(dict.fromkeys(e["types"])),
         ", ".join(dict.fromkeys(e["columns"])) or None, "; ".join(dict.fromkeys(e["reasons"])),
         e["raw"])
        for _, e in sorted(by_line.items())
    ]


def _clean_csv(con, path: Path, contract: Contract, staging: Path, source_key: str,
               compression: str, spec: OutputSpec) -> CleanResult:
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
        f"max_line_size={fmt.max_line_bytes}, store_rejects=true, "
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
    bad_root = pass_dir / "_ok=false"
    contract_rejects = sum(_footer_rows(p) for p in bad_root.rglob("*.parquet")) \
        if bad_root.exists() else 0

    con.execute(
        "CREATE TEMP TABLE rejected (source_key VARCHAR, line BIGINT, error_type VARCHAR, "
        "column_name VARCHAR, reason VARCHAR, raw VARCHAR)"
    )
    parse_rows = _parse_rejects(con, path, compression, contract, source_key,
                                list(duck_cols), set(enforced))
    if parse_rows:
        con.executemany("INSERT INTO rejected VALUES (?, ?, ?, ?, ?, ?)", parse_rows)
    parse_reject_lines = {r[1] for r in parse_rows}
    parse_rejects = len(parse_rows)

    # Rows breaking a row rule are located by a second scan that numbers the parsed records and
    # a walk of the file that maps record numbers to lines; both run only when there are any.
    if contract_rejects:
        con.execute("SET preserve_insertion_order=true")
        reader2 = reader.replace("rejects_table='reject_errors', rejects_scan='reject_scans'",
                                 "rejects_table='reject_errors2', rejects_scan='reject_scans2'")
        rows = con.execute(
            f"SELECT _record, _types, _columns, _reason, _raw FROM (SELECT "
            f"row_number() OVER () AS _record, ({_ok_expr(rules)}) AS _ok, "
            f"{_concat_when(rules, lambda c, r, t: _lit(t))} AS _types, "
            f"{_concat_when(rules, lambda c, r, t: _lit(c))} AS _columns, "
            f"{_concat_when(rules, lambda c, r, t: r)} AS _reason, "
            f"CAST(to_json(struct_pack({raw_cols})) AS VARCHAR) AS _raw "
            f"FROM {reader2}) WHERE NOT _ok"
        ).fetchall()
        starts = _record_start_lines(path, compression, contract, {r[0] for r in rows},
                                     parse_reject_lines)
        out = [
            (source_key, starts.get(record), ", ".join(dict.fromkeys(types.split("; "))),
             ", ".join(dict.fromkeys(columns.split("; "))), reason, raw)
            for record, types, columns, reason, raw in rows
        ]
        con.executemany("INSERT INTO rejected VALUES (?, ?, ?, ?, ?, ?)", out)

    rejected_file = _write_rejected(con, staging, spec)
    rows_written = sum(f.rows for f in files)
    rows_rejected = parse_rejects + contract_rejects
    return CleanResult(
        rows_in=rows_written + rows_rejected, rows_written=rows_written,
        rows_rejected=rows_rejected, parse_rejects=parse_rejects,
        contract_rejects=contract_rejects, files=files, rejected_file=rejected_file,
        columns=contract.columns, column_mapping=column_mapping, extra_columns=extra,
        missing_columns=missing, bytes_in=0, seconds=0.0,
    )


def _write_rejected(con, staging: Path, spec: OutputSpec) -> Path | None:
    n = con.execute("SELECT count(*) FROM rejected").fetchone()[0]
    if not n:
        return None
    out = staging / "rejected.parquet"
    ids = spec.ids_option([c for c, _ in REJECTED_SCHEMA], rejected=True)
    con.execute(
        f"COPY (SELECT *{spec.constant_sql()} FROM rejected ORDER BY line) TO {_lit(str(out))} "
        f"(FORMAT parquet, COMPRESSION {PARQUET_CODEC}{ids})"
    )
    return out


def _short(e: Exception) -> str:
    text = str(e).strip().splitlines()
    return " ".join(text[:3])[:500]


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
            f"max_line_size={fmt.max_line_bytes}, strict_mode=false, store_rejects=true))"
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
