"""Shared pieces of the cleaning engine: results, output options, DuckDB set-up, file sniffing,
and writing the staged files."""

from __future__ import annotations

import csv
import dataclasses
import gzip
from pathlib import Path
from typing import Any, Callable

import duckdb
import pyarrow.parquet as pq

from ..contracts import Column, Contract
from ..sql import quote_ident as _q
from ..sql import quote_literal as _lit


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
    # Called with the cleaned files as soon as they are final, before the rejected rows are
    # written and the record count is waited for: a caller may start reading them then.
    on_written: Callable[[list[StagedFile]], None] | None = None

    def written(self, files: list[StagedFile]) -> None:
        if self.on_written is not None:
            self.on_written(files)

    def constant_sql(self) -> str:
        """`, CAST(<value> AS <type>) AS <name>...` for the SELECT list ('' without any).

        A text constant is cast to a one-value ENUM: the Parquet column is the same (UTF8,
        dictionary-encoded, same statistics), but DuckDB's writer takes the dictionary from the
        enum instead of hashing the string on every row (writing the bench file's 11M rows on
        one thread: 0.65 s less CPU, medians of 6 alternating runs)."""
        def value(t: str, v: Any) -> str:
            if v is None:
                return f"CAST(NULL AS {t})"
            if t == "VARCHAR":
                return f"CAST({_lit(str(v))} AS ENUM({_lit(str(v))}))"
            return f"CAST({_lit(str(v))} AS {t})"

        return "".join(f", {value(t, v)} AS {_q(n)}" for n, (t, v) in self.constants.items())

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


# DuckDB sizes its CSV buffers at 16 x max_line_size unless told: 256 MiB each for our 16 MiB
# lines, which cost the bench file ~350 MB of RSS and ~1.5 s of page-fault time. Two lines'
# worth (at least its default 32 MiB) still parses a line of max_line_size wherever it falls.
MIN_CSV_BUFFER = 32 * 1024 * 1024


def _line_options(max_line_bytes: int) -> str:
    """`max_line_size=..., buffer_size=...` for a DuckDB read_csv."""
    buffer = max(MIN_CSV_BUFFER, 2 * max_line_bytes)
    return f"max_line_size={max_line_bytes}, buffer_size={buffer}"


def _csv_reader(lines, fmt):
    return csv.reader(lines, delimiter=fmt.delimiter, quotechar=fmt.quote,
                      doublequote=fmt.escape == fmt.quote,
                      escapechar=None if fmt.escape == fmt.quote else fmt.escape)


def _list(values: tuple[str, ...] | list[str]) -> str:
    return "[" + ", ".join(_lit(v) for v in values) + "]"


def _wide_decimal(column: Column) -> str:
    """A wider DECIMAL to read a decimal column with, so extra digits can be detected.

    DuckDB rounds `12.345` into DECIMAL(12,2) without a word; reading with more scale and
    comparing against the exact cast turns that into a contract reject instead.
    """
    p, s = (int(x) for x in column.sql_type[len("DECIMAL("):-1].split(","))
    scale = max(s, min(s + 8, 38 - (p - s)))
    return f"DECIMAL(38,{scale})"


def _footer_rows(path: Path) -> int:
    return pq.ParquetFile(path).metadata.num_rows


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


def _write_rejected(con, staging: Path, spec: OutputSpec,
                    parts: list[Path] | None = None) -> Path | None:
    """Write the staged rejected file from the `rejected` table, or from the Parquet `parts`
    the rejects were streamed to; None when there is no rejected row."""
    if parts is not None:
        if not parts:
            return None
        source = "read_parquet([" + ", ".join(_lit(str(p)) for p in parts) + "])"
    else:
        source = "rejected"
        if not con.execute("SELECT count(*) FROM rejected").fetchall()[0][0]:
            return None
    out = staging / "rejected.parquet"
    ids = spec.ids_option([c for c, _ in REJECTED_SCHEMA], rejected=True)
    con.execute(
        f"COPY (SELECT *{spec.constant_sql()} FROM {source} ORDER BY line) TO {_lit(str(out))} "
        f"(FORMAT parquet, COMPRESSION {PARQUET_CODEC}{ids})"
    )
    return out


def _short(e: Exception) -> str:
    text = str(e).strip().splitlines()
    return " ".join(text[:3])[:500]
