"""The cleaning engine on JSON Lines and Parquet inputs: typed rows, rejected lines with their
numbers and columns, compression, time zones (see test_cleaning.py for the conventions)."""

from __future__ import annotations

import datetime as dt
import gzip
from decimal import Decimal

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from data_platform.cleaning import CleanError

from .cleaning_support import _accounted, _clean, _contract, _rejected, _rows, clean_file

UTC = dt.timezone.utc


JSONL_COLUMNS = [
    {"name": "id", "type": "int", "nullable": False},
    {"name": "price", "type": "decimal(8,2)"},
    {"name": "order_date", "type": "date", "source": "Order Date"},
    {"name": "ts", "type": "timestamp"},
    {"name": "ok", "type": "bool"},
]


def test_jsonl_valid_lines_are_typed(tmp_path):
    """Keys map through `source`, numbers given as strings are cast, unknown keys are ignored."""
    contract = _contract(JSONL_COLUMNS, {"type": "jsonl"})
    text = (
        '{"id": 1, "price": 9.99, "Order Date": "2024-01-02", '
        '"ts": "2024-01-02T03:04:05+01:00", "ok": true}\n'
        '{"id": "7", "extra": [1, 2]}\n'
    )
    result = _clean(tmp_path, "a.jsonl", text, contract)
    _accounted(result, 2)
    assert result.column_mapping["Order Date"] == "order_date"
    assert _rows(result, "id") == [
        {"id": 1, "price": Decimal("9.99"), "order_date": dt.date(2024, 1, 2),
         "ts": dt.datetime(2024, 1, 2, 2, 4, 5, tzinfo=UTC), "ok": True},
        {"id": 7, "price": None, "order_date": None, "ts": None, "ok": None},
    ]


def test_jsonl_bad_lines_are_rejected_with_line_numbers(tmp_path):
    contract = _contract(JSONL_COLUMNS, {"type": "jsonl"})
    lines = [
        '{"id": 1}',
        '{"id": 2, "price": "abc"}',
        '{not json',
        '[1, 2, 3]',
        '{"id": null, "price": 1}',
        '{"price": 2}',
        '"just a string"',
        '{"id": 8}',
    ]
    result = _clean(tmp_path, "a.jsonl", "\n".join(lines) + "\n", contract)
    _accounted(result, 8)
    assert [r["id"] for r in _rows(result, "id")] == [1, 8]
    rejected = _rejected(result)
    assert [(r["line"], r["error_type"]) for r in rejected] == [
        (2, "CAST"), (3, "PARSE"), (4, "PARSE"), (5, "CAST"), (6, "CAST"), (7, "PARSE"),
    ]
    reasons = {r["line"]: r["reason"] for r in rejected}
    assert reasons[2] == "column price: cannot convert abc to decimal(8,2)"
    assert reasons[3] == reasons[4] == reasons[7] == "line is not a JSON object"
    assert reasons[5] == reasons[6] == "column id: null in a non-nullable column"
    assert {r["line"]: r["raw"] for r in rejected}[3] == "{not json"
    assert {r["line"]: r["raw"] for r in rejected}[2] == '{"id": 2, "price": "abc"}'


def test_jsonl_invalid_utf8_line_is_rejected(tmp_path):
    contract = _contract([{"name": "id", "type": "int"}], {"type": "jsonl"})
    result = _clean(tmp_path, "a.jsonl", b'{"id":1}\n{"id":2,"p":"\xff"}\n{"id":3}\n', contract)
    _accounted(result, 3)
    assert [r["id"] for r in _rows(result, "id")] == [1, 3]
    [rej] = _rejected(result)
    assert (rej["line"], rej["error_type"]) == (2, "INVALID ENCODING")


def test_jsonl_gzip(tmp_path):
    contract = _contract([{"name": "id", "type": "int"}], {"type": "jsonl"})
    result = _clean(tmp_path, "a.jsonl.gz", gzip.compress(b'{"id": 1}\n{"id": 2}\n'), contract)
    _accounted(result, 2)
    assert [r["id"] for r in _rows(result, "id")] == [1, 2]


def test_jsonl_timestamps_without_offset_use_the_contract_timezone(tmp_path):
    contract = _contract([{"name": "ts", "type": "timestamp"}],
                         {"type": "jsonl", "timezone": "Europe/Berlin"})
    result = _clean(tmp_path, "a.jsonl", '{"ts": "2024-01-31 10:00:00"}\n', contract)
    _accounted(result, 1)
    assert _rows(result) == [{"ts": dt.datetime(2024, 1, 31, 9, tzinfo=UTC)}]


def test_jsonl_reject_names_the_column(tmp_path):
    contract = _contract(JSONL_COLUMNS, {"type": "jsonl"})
    result = _clean(tmp_path, "a.jsonl", '{"id": 2, "price": "abc"}\n', contract)
    [rej] = _rejected(result)
    assert rej["column_name"] == "price"


# --- Parquet input --------------------------------------------------------------------------

PARQUET_COLUMNS = [
    {"name": "id", "type": "int", "nullable": False},
    {"name": "amount", "type": "float"},
    {"name": "order_id", "type": "int", "source": "Order ID"},
]


def _write_parquet(tmp_path):
    path = tmp_path / "a.parquet"
    pq.write_table(pa.table({
        "id": ["1", "2", "x", None],
        "amount": ["1.5", "bad", "2", "3"],
        "Order ID": [10, 11, 12, 13],
    }), path)
    return path


def test_parquet_input_with_bad_values(tmp_path):
    contract = _contract(PARQUET_COLUMNS, {"type": "parquet"})
    path = _write_parquet(tmp_path)
    result = clean_file(path, contract, tmp_path / "staging", source_key="raw/t/a.parquet")
    _accounted(result, 4)
    assert _rows(result) == [{"id": 1, "amount": 1.5, "order_id": 10}]
    assert [(r["line"], r["reason"]) for r in _rejected(result)] == [
        (2, "column amount: cannot convert bad to float"),
        (3, "column id: cannot convert x to int"),
        (4, "column id: null in a non-nullable column"),
    ]


def test_parquet_reject_raw_keeps_the_original_value(tmp_path):
    contract = _contract(PARQUET_COLUMNS, {"type": "parquet"})
    path = _write_parquet(tmp_path)
    result = clean_file(path, contract, tmp_path / "staging", source_key="raw/t/a.parquet")
    raw = {r["line"]: r["raw"] for r in _rejected(result)}
    assert '"bad"' in raw[2]


def test_file_that_is_not_parquet_raises(tmp_path):
    contract = _contract(PARQUET_COLUMNS, {"type": "parquet"})
    with pytest.raises(CleanError, match="cannot read the file as Parquet"):
        _clean(tmp_path, "a.parquet", b"id,amount\n1,2\n", contract)


# --- files that cannot be processed ---------------------------------------------------------


@pytest.mark.parametrize("name, text, fmt", [
    ("a.csv", "id,price,order_date\n1,2.5,2024-01-02\n2,x,2024-01-03\n3,1,2024-02-01\n", None),
    ("a.jsonl", '{"id": 1, "Order Date": "2024-01-02"}\n{"id": "x"}\n'
                '{"id": 3, "Order Date": "2024-02-01"}\n',
     {"type": "jsonl"}),
])
def test_cleaned_files_are_handed_over_final_before_the_rejects(tmp_path, name, text, fmt):
    """`on_written` gets the cleaned files once, as soon as they are complete: a caller reads
    them (the profile, the key facts) while the engine still writes the rejected rows."""
    columns = [dict(c, nullable=False) if c["name"] == "order_date" else c
               for c in JSONL_COLUMNS]
    contract = _contract(columns, fmt, partition_column="order_date")
    seen = []

    def written(files):
        rejected_yet = list((tmp_path / "staging").glob("*reject*.parquet"))
        seen.append(([(f.path, f.subdir, pq.read_table(f.path).to_pylist()) for f in files],
                     rejected_yet))

    path = tmp_path / name
    path.write_text(text)
    result = clean_file(path, contract, tmp_path / "staging", source_key=f"raw/t/{name}",
                        on_written=written)
    assert len(seen) == 1
    handed, rejected_yet = seen[0]
    assert rejected_yet == [] and result.rejected_file is not None
    assert [(p, s) for p, s, _ in handed] == [(f.path, f.subdir) for f in result.files]
    assert sorted(r["id"] for _, _, rows in handed for r in rows) == [1, 3]
    assert [r for _, _, rows in handed for r in rows] == \
        [r for f in result.files for r in pq.read_table(f.path).to_pylist()]
