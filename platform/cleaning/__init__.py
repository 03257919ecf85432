"""The cleaning engine: one raw file in, typed Parquet plus rejected rows out, on local disk.

DuckDB does the work. For CSV its reader parses and types in parallel and streams, so memory
stays bounded whatever the file size (~420 MB peak on 1.1 GB, see bench/), and `store_rejects`
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
import contextlib
import os
import threading
import time
from pathlib import Path
from typing import Any

import duckdb

from .. import arrow_memory
from ..contracts import EXTENSIONS, Column, Contract, contract_type_from_duckdb, normalize_names
from ..records import LineIndex, feed_hasher, scan_source
from ..sql import quote_literal as _lit
from .flush import FlushBehind
from .base import (
    PARQUET_CODEC,
    REJECTED_SCHEMA,
    CleanError,
    CleanResult,
    OutputSpec,
    StagedFile,
    _compression,
    _connect,
    _line_options,
    _list,
    _sniff_text,
)
from .csv_engine import _clean_csv
from .typed import _clean_typed_cast

__all__ = ["PARQUET_CODEC", "REJECTED_SCHEMA", "CleanError", "CleanResult", "OutputSpec",
           "StagedFile", "_compression", "clean_file", "infer_columns"]
arrow_memory.configure()  # before the first Arrow buffer of the cleaning and what follows it


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
                f"{_line_options(fmt.max_line_bytes)})"
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


# Niceness of the thread that counts (and hashes) the raw file (see lower_priority): 10 yields
# to DuckDB's threads (weight 110 against 1024) without starving when other processes load the
# machine.
SCAN_NICE = 10


def lower_priority(nice: int) -> None:
    """Lower the calling thread's priority (Linux schedules threads apart: niceness is per
    thread; threads it starts, such as a DuckDB connection's, inherit it). Used for the staged
    files' profile too (assets/reads.py). The count and the hash run on what DuckDB's parallel
    COPY leaves idle (its threads use ~1.85 of 2 cores) instead of taking a share of the CPU
    from it; what is left when the COPY ends runs at once on the cores it frees. Measured on
    the 1.1 GB bench file, 2 cores, alternating runs: clean_file with the hash ~0.5 s faster
    on average."""
    with contextlib.suppress(AttributeError, OSError):  # not Linux, or not permitted
        if nice:
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), nice)


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
    source_records: int | None = None,
    line_index: LineIndex | None = None,
    hasher=None,
    flush_behind: bool = False,
    on_written=None,
) -> CleanResult:
    """Parse `path` per `contract` into staged Parquet under `staging`.

    Returns a CleanResult listing the staged cleaned files (with their hive sub-folder), the
    staged rejected file (or None) and the row counts. Raises CleanError when the file cannot be
    processed at all. The contract must have columns (infer them first for inferred datasets).
    A caller that counted the records (`source_records`) may pass the count's `line_index`.
    `hasher` (a hashlib object), when given, is fed the file's bytes by the count's read (or a
    read of its own with `source_records`), at background priority; it is complete when this
    returns, also on CleanError, and a failed read raises instead. With
    `flush_behind`, the staged files are flushed to disk while they are written (for a caller
    that keeps them and makes them durable: see flush.py). `on_written`, when given, is called
    with the cleaned files (StagedFile) as soon as they are final, while the rejected rows are
    still written and the count finished: a caller may start reading them at once.
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
        # threads with room to spare (measured: ~420 MB peak RSS on 1.1 GB, flat with size).
        memory_limit = f"{max(768, 384 * (threads or os.cpu_count() or 2))}MB"
    # The raw file's records are counted by an independent scan, concurrently with the parse,
    # at background priority. The hash is fed by the same read: reading 1.1 GB from the page
    # cache costs 0.4-0.7 s of CPU here, and a second thread reading it again was 0.3 s slower
    # on average (alternating runs). A caller that counted the records while copying the file
    # passes `source_records`; then the scan only hashes.
    scan = concurrent.futures.ThreadPoolExecutor(max_workers=1, initializer=lower_priority,
                                                 initargs=(SCAN_NICE,))
    if source_records is None:
        counted = hashed = scan.submit(scan_source, path, contract, compression, hasher=hasher)
    else:
        counted = None
        hashed = scan.submit(feed_hasher, path, hasher) if hasher is not None else None

    def index_of_lines():
        """The counter's line index (waiting for it), for mapping rejects to lines; None
        when there is none (the mapping then reads the file itself)."""
        if source_records is not None:
            return line_index
        if counted is None or counted.exception() is not None:
            return None
        return counted.result()[1]

    con = _connect(staging, memory_limit=memory_limit, threads=threads)
    try:
        with FlushBehind(staging, enabled=flush_behind):
            # Timestamps written without an offset are read in the contract's zone.
            con.execute(f"SET TimeZone={_lit(fmt.timezone)}")
            spec = OutputSpec(field_ids, rejected_field_ids, dict(constants or {}),
                              on_written)
            if fmt.type == "csv":
                result = _clean_csv(con, path, contract, staging, source_key, compression,
                                    spec, index_of_lines)
            else:
                result = _clean_typed_cast(con, path, contract, staging, source_key,
                                           compression, spec)
    finally:
        con.close()
        scan.shutdown(wait=True)
        if hasher is not None and hashed.exception() is not None:
            raise hashed.exception()  # the hash would be of part of the file: never record it
    result.bytes_in = bytes_in
    try:
        result.source_records = counted.result()[0] if source_records is None else source_records
    except Exception:  # noqa: BLE001 - uncounted fails the reconciliation audit, loudly
        result.source_records = None
    result.seconds = time.perf_counter() - t0
    return result
