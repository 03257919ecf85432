"""Physical line numbers for rejected rows, through quoted newlines and blank lines, streamed.

A file can have as many rejected rows as it has rows (a systematic type error in a 100 GB file),
so nothing here holds the rejects in memory: DuckDB's reject table is read in batches in line
order, each batch's byte positions are mapped to physical lines by a forward pass over the file
(with the record counter's line index, a pass over at most 64 KiB before each rejected line), and
the rows are appended to a Parquet file that DuckDB reads back when it writes the final
rejected file.
"""

from __future__ import annotations

import csv
import gzip
import io
from collections.abc import Callable, Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from ..contracts import Contract
from ..records import LineIndex
from .base import _csv_reader

BATCH = 50_000
REJECT_ARROW = pa.schema([("source_key", pa.string()), ("line", pa.int64()),
                          ("error_type", pa.string()), ("column_name", pa.string()),
                          ("reason", pa.string()), ("raw", pa.string())])


class LineMapper:
    """Maps nondecreasing byte offsets of the (decompressed) file to 1-based physical lines,
    counting each byte once; with a `LineIndex` of the file, it skips ahead to the index mark
    before an offset instead of reading the bytes between."""

    def __init__(self, path: Path, compression: str, index: LineIndex | None = None):
        self.f = (gzip.open if compression == "gzip" else open)(path, "rb")
        self.index = index if compression != "gzip" else None
        self.read_size = index.step if self.index else 1 << 22
        self.chunk, self.start = b"", 0
        self.pos, self.line = 0, 1  # an offset already mapped, and its line

    def line_of(self, offset: int) -> int:
        if self.index is not None and offset >= self.start + len(self.chunk):
            mark, newlines = self.index.seek_point(offset)
            if mark > max(self.pos, self.start + len(self.chunk)):
                self.f.seek(mark)
                self.chunk, self.start, self.pos, self.line = b"", mark, mark, 1 + newlines
        while offset >= self.start + len(self.chunk):
            rel = max(self.pos - self.start, 0)
            self.line += self.chunk.count(b"\n", rel)
            self.start += len(self.chunk)
            self.pos = self.start
            self.chunk = self.f.read(self.read_size)
            if not self.chunk:
                return self.line  # past the end: the last line
        if offset > self.pos:
            self.line += self.chunk.count(b"\n", self.pos - self.start, offset - self.start)
            self.pos = offset
        return self.line

    def close(self) -> None:
        self.f.close()


class RejectWriter:
    """Appends rejected rows to a Parquet file in batches; `lines()` re-reads their lines."""

    def __init__(self, path: Path):
        self.path, self.rows, self.writer = path, 0, None
        self.buf: list[tuple] = []

    def add(self, row: tuple) -> None:
        self.buf.append(row)
        if len(self.buf) >= BATCH:
            self.flush()

    def flush(self) -> None:
        if not self.buf:
            return
        if self.writer is None:
            self.writer = pq.ParquetWriter(self.path, REJECT_ARROW)
        self.writer.write_table(pa.Table.from_pylist(
            [dict(zip(REJECT_ARROW.names, r)) for r in self.buf], REJECT_ARROW))
        self.rows += len(self.buf)
        self.buf = []

    def close(self) -> Path | None:
        self.flush()
        if self.writer is not None:
            self.writer.close()
        return self.path if self.rows else None


def _batches(con, sql: str) -> Iterator[list[tuple]]:
    """The rows of `sql` in batches (DuckDB streams the result; no statement may run on `con`
    until it is exhausted)."""
    result = con.execute(sql)
    while batch := result.fetchmany(BATCH):
        yield batch


def write_parse_rejects(con, path: Path, compression: str, contract: Contract, source_key: str,
                        columns: list[str], enforced: set[str], out: Path,
                        index: Callable[[], LineIndex | None] = lambda: None) -> Path | None:
    """One rejected row per line DuckDB's reader refused, with its physical line number,
    streamed into `out` (Parquet, in line order); returns it, or None without rejects.

    DuckDB numbers lines counting a multi-line record as one, so the byte position of each
    rejected line is mapped to its physical line. A conversion failure of a null marker in a
    reader-enforced column is reported as what it is: a null in a non-nullable column.
    """
    fmt = contract.format
    markers = set(fmt.null_markers)
    writer = RejectWriter(out)
    mapper: LineMapper | None = None
    entry: dict | None = None
    current = None

    def emit(e: dict) -> None:
        nonlocal mapper
        if mapper is None:  # the first reject: only now wait for the counter's index
            mapper = LineMapper(path, compression, index())
        writer.add((source_key, mapper.line_of(e["pos"]), ", ".join(dict.fromkeys(e["types"])),
                    ", ".join(dict.fromkeys(e["columns"])) or None,
                    "; ".join(dict.fromkeys(e["reasons"])), e["raw"]))

    try:
        for batch in _batches(con, (
                "SELECT line_byte_position, column_name, CAST(error_type AS VARCHAR), "
                "error_message, csv_line FROM reject_errors "
                "ORDER BY line_byte_position, column_idx")):
            # One entry per rejected line: its errors share the line's byte position (DuckDB's
            # own line numbers can repeat across its parallel scan's chunks).
            for pos, column, etype, message, raw in batch:
                if pos != current:
                    if entry is not None:
                        emit(entry)
                    current = pos
                    entry = {"pos": pos, "types": [], "columns": [], "reasons": [],
                             "raw": (raw or "").lstrip("\r\n")}
                entry["pos"] = min(entry["pos"], pos)
                if etype == "CAST" and column in enforced:
                    fields = next(_csv_reader(io.StringIO(entry["raw"], newline=""), fmt), [])
                    idx = columns.index(column)
                    if idx < len(fields) and fields[idx] in markers:
                        etype = "NOT NULL"
                        message = f"column {column}: null in a non-nullable column"
                if etype == "MISSING COLUMNS" and entry["reasons"]:
                    continue  # DuckDB reports one per missing field; the first says it all
                entry["types"].append(etype)
                if etype not in ("MISSING COLUMNS", "TOO MANY COLUMNS") and column:
                    entry["columns"].append(column)
                entry["reasons"].append(message)
        if entry is not None:
            emit(entry)
    finally:
        if mapper is not None:
            mapper.close()
    return writer.close()


def reject_lines(path: Path | None) -> Iterator[int]:
    """The physical lines of a parse-rejects file, ascending, read in batches."""
    if path is None:
        return
    for batch in pq.ParquetFile(path).iter_batches(BATCH, columns=["line"]):
        yield from batch.column(0).to_pylist()


def record_start_lines(path: Path, compression: str, contract: Contract,
                       wanted: Iterator[int], skip_lines: Iterator[int]) -> Iterator[tuple[int,
                                                                                     int | None]]:
    """For ascending record ordinals (1-based, over the records DuckDB parsed), yield
    (ordinal, first physical line) in one pass of Python's csv reader, which tracks physical
    lines through quoted newlines; blank lines and the lines DuckDB rejected (`skip_lines`,
    ascending) are not records. An ordinal the reader cannot reach gets None.
    """
    fmt = contract.format
    opener = gzip.open if compression == "gzip" else open
    limit = csv.field_size_limit()
    csv.field_size_limit(max(limit, fmt.max_line_bytes))
    skips = iter(skip_lines)
    next_skip = next(skips, None)
    target = next(wanted, None)
    try:
        with opener(path, "rb") as raw:
            text = io.TextIOWrapper(raw, encoding=fmt.encoding, errors="replace", newline="")
            reader = _csv_reader(text, fmt)
            prev_end, ordinal = 0, 0
            if fmt.header:
                next(reader, None)
                prev_end = reader.line_num
            try:
                for row in reader:
                    if target is None:
                        break
                    start, prev_end = prev_end + 1, reader.line_num
                    while next_skip is not None and next_skip < start:
                        next_skip = next(skips, None)
                    if not row or start == next_skip:
                        continue
                    ordinal += 1
                    if ordinal == target:
                        yield ordinal, start
                        target = next(wanted, None)
            except csv.Error:
                pass  # records the Python reader cannot follow keep no line number
    finally:
        csv.field_size_limit(limit)
    while target is not None:
        yield target, None
        target = next(wanted, None)
