"""Shared by the cleaning engine's tests: contracts built inline, a raw file cleaned into
`tmp_path`, the staged and rejected rows read back, and `clean_file` itself wrapped so that every
file these tests clean is also a fixture for the rows_reconcile audit: the raw file's records,
counted independently of the engine (by `source_records` with the contract alone, and as the
engine reports it), equal the rows written plus the rows rejected."""

from __future__ import annotations

import pyarrow.parquet as pq
from data_platform.cleaning import clean_file as engine_clean_file
from data_platform.contracts import parse_contract
from data_platform.records import source_records


def clean_file(path, contract, *args, **kwargs):
    """`data_platform.cleaning.clean_file`, reconciled against the independent record count."""
    result = engine_clean_file(path, contract, *args, **kwargs)
    counted = source_records(path, contract)
    assert counted == result.source_records == result.rows_written + result.rows_rejected, (
        path.name, counted, result.source_records, result.rows_written, result.rows_rejected)
    return result


def _contract(columns, fmt=None, **extra):
    fmt = {"type": "csv", **(fmt or {})}
    return parse_contract({"name": "t", "format": fmt, "columns": columns, **extra})


def _clean(tmp_path, name, content, contract):
    path = tmp_path / name
    path.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
    return clean_file(path, contract, tmp_path / "staging", source_key=f"raw/t/{name}")


def _rows(result, key=None):
    """All cleaned rows as dicts, sorted by `key` (DuckDB may write them in any order)."""
    rows = [r for f in result.files for r in pq.read_table(f.path).to_pylist()]
    return sorted(rows, key=lambda r: r[key]) if key else rows


def _rejected(result):
    if result.rejected_file is None:
        return []
    return pq.read_table(result.rejected_file).to_pylist()


def _accounted(result, rows_in):
    """Every one of `rows_in` input rows is either in a cleaned file or in the rejected file."""
    written = sum(pq.read_metadata(f.path).num_rows for f in result.files)
    rejected = len(_rejected(result))
    assert result.rows_in == rows_in
    assert result.rows_written == written
    assert result.rows_rejected == rejected
    assert result.rows_in == result.rows_written + result.rows_rejected
