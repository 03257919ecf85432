"""Physical line numbers for rejected rows, through quoted newlines and blank lines."""

from __future__ import annotations

import csv
import gzip
import io
from pathlib import Path

from ..contracts import Contract
from .base import _csv_reader


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
