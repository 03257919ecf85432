"""The cleaning engine on CSV: raw in, typed and rejected Parquet out (types, time zones, null
markers, headers, partition folders, compression).

Every test builds its raw file in `tmp_path` and checks the staged Parquet by reading it back
with pyarrow. `_accounted` checks that each input row is either written or rejected, against a
row count the test knows independently of the engine; every clean is also reconciled against
the independent record count (tests/cleaning_support.py).
"""

from __future__ import annotations

import datetime as dt
import gzip
from decimal import Decimal

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from data_platform.cleaning import CleanError
from data_platform.contracts import load_contracts, parse_contract

from .cleaning_support import _accounted, _clean, _contract, _rejected, _rows

UTC = dt.timezone.utc


ALL_TYPES = [
    {"name": "i", "type": "int"},
    {"name": "f", "type": "float"},
    {"name": "d", "type": "decimal(10,2)"},
    {"name": "b", "type": "bool"},
    {"name": "s", "type": "string"},
    {"name": "day", "type": "date"},
    {"name": "ts", "type": "timestamp"},
]


# --- typing ---------------------------------------------------------------------------------


def test_every_contract_type_is_typed(tmp_path):
    text = (
        "i,f,d,b,s,day,ts\n"
        "1,1.5,12.34,true,hello,2024-01-31,2024-01-31T10:00:00Z\n"
        "-7,2e3,0.10,false,\"a, b\",2024-02-29,2024-02-29 23:59:59\n"
    )
    result = _clean(tmp_path, "a.csv", text, _contract(ALL_TYPES))
    _accounted(result, 2)
    schema = pq.read_schema(result.files[0].path)
    assert [(f.name, f.type) for f in schema] == [
        ("i", pa.int64()),
        ("f", pa.float64()),
        ("d", pa.decimal128(10, 2)),
        ("b", pa.bool_()),
        ("s", pa.string()),
        ("day", pa.date32()),
        ("ts", pa.timestamp("us", tz="UTC")),
    ]
    assert _rows(result, "i") == [
        {"i": -7, "f": 2000.0, "d": Decimal("0.10"), "b": False, "s": "a, b",
         "day": dt.date(2024, 2, 29), "ts": dt.datetime(2024, 2, 29, 23, 59, 59, tzinfo=UTC)},
        {"i": 1, "f": 1.5, "d": Decimal("12.34"), "b": True, "s": "hello",
         "day": dt.date(2024, 1, 31), "ts": dt.datetime(2024, 1, 31, 10, tzinfo=UTC)},
    ]


def test_timestamp_offsets_are_converted_to_utc(tmp_path):
    """Offsets are applied; a timestamp without an offset is read as UTC by default."""
    text = (
        "id,ts\n"
        "1,2024-01-31T10:00:00+02:00\n"
        "2,2024-01-31T10:00:00-05:30\n"
        "3,2024-01-31T10:00:00Z\n"
        "4,2024-01-31 10:00:00\n"
        "5,2024-01-31T10:00:00.123456\n"
    )
    contract = _contract([{"name": "id", "type": "int"}, {"name": "ts", "type": "timestamp"}])
    result = _clean(tmp_path, "a.csv", text, contract)
    _accounted(result, 5)
    assert [r["ts"] for r in _rows(result, "id")] == [
        dt.datetime(2024, 1, 31, 8, 0, tzinfo=UTC),
        dt.datetime(2024, 1, 31, 15, 30, tzinfo=UTC),
        dt.datetime(2024, 1, 31, 10, 0, tzinfo=UTC),
        dt.datetime(2024, 1, 31, 10, 0, tzinfo=UTC),
        dt.datetime(2024, 1, 31, 10, 0, 0, 123456, tzinfo=UTC),
    ]


def test_timestamps_without_offset_use_the_contract_timezone(tmp_path):
    """Europe/Berlin is UTC+1 in January and UTC+2 in July; explicit offsets still win."""
    text = "id,ts\n1,2024-01-31 10:00:00\n2,2024-07-01 10:00:00\n3,2024-07-01T10:00:00+00:00\n"
    contract = _contract([{"name": "id", "type": "int"}, {"name": "ts", "type": "timestamp"}],
                         {"timezone": "Europe/Berlin"})
    result = _clean(tmp_path, "a.csv", text, contract)
    _accounted(result, 3)
    assert [r["ts"] for r in _rows(result, "id")] == [
        dt.datetime(2024, 1, 31, 9, tzinfo=UTC),
        dt.datetime(2024, 7, 1, 8, tzinfo=UTC),
        dt.datetime(2024, 7, 1, 10, tzinfo=UTC),
    ]


def test_default_null_markers_become_null(tmp_path):
    markers = ["", "NA", "N/A", "NULL", "null", "NaN"]
    text = "id,i,f,s,day\n" + "".join(f"{n},{m},{m},{m},{m}\n" for n, m in enumerate(markers))
    contract = _contract([
        {"name": "id", "type": "int"}, {"name": "i", "type": "int"},
        {"name": "f", "type": "float"}, {"name": "s", "type": "string"},
        {"name": "day", "type": "date"},
    ])
    result = _clean(tmp_path, "a.csv", text, contract)
    _accounted(result, 6)
    assert _rows(result, "id") == [
        {"id": n, "i": None, "f": None, "s": None, "day": None} for n in range(6)
    ]


def test_custom_null_markers_replace_the_defaults(tmp_path):
    text = "id,s\n1,NA\n2,-\n3,NULL\n-,x\n"
    contract = _contract([{"name": "id", "type": "int"}, {"name": "s", "type": "string"}],
                         {"null_markers": ["-"]})
    result = _clean(tmp_path, "a.csv", text, contract)
    _accounted(result, 4)
    assert sorted(_rows(result), key=lambda r: (r["id"] is None, r["id"] or 0)) == [
        {"id": 1, "s": "NA"},
        {"id": 2, "s": None},
        {"id": 3, "s": "NULL"},
        {"id": None, "s": "x"},
    ]


# --- header ---------------------------------------------------------------------------------


def test_header_is_mapped_by_source_and_by_normalized_name(tmp_path):
    """`Order ID` matches through `source`, `Culmen Length (mm)` through its normalized name;
    the unknown column is dropped from the output and reported."""
    text = "Order ID,Culmen Length (mm),Extra Col,Note\n1,3.5,zzz,hi\n2,,yyy,\n"
    contract = _contract([
        {"name": "order_id", "type": "int", "nullable": False, "source": "Order ID"},
        {"name": "culmen_length_mm", "type": "float"},
        {"name": "note", "type": "string"},
    ])
    result = _clean(tmp_path, "a.csv", text, contract)
    _accounted(result, 2)
    assert result.column_mapping == {
        "Order ID": "order_id", "Culmen Length (mm)": "culmen_length_mm", "Note": "note",
    }
    assert result.extra_columns == ["Extra Col"]
    assert result.missing_columns == []
    assert pq.read_schema(result.files[0].path).names == ["order_id", "culmen_length_mm", "note"]
    assert _rows(result, "order_id") == [
        {"order_id": 1, "culmen_length_mm": 3.5, "note": "hi"},
        {"order_id": 2, "culmen_length_mm": None, "note": None},
    ]


def test_header_order_does_not_matter(tmp_path):
    text = "b,a\nx,1\ny,2\n"
    contract = _contract([{"name": "a", "type": "int"}, {"name": "b", "type": "string"}])
    result = _clean(tmp_path, "a.csv", text, contract)
    _accounted(result, 2)
    assert _rows(result, "a") == [{"a": 1, "b": "x"}, {"a": 2, "b": "y"}]


def test_missing_nullable_column_is_filled_with_nulls(tmp_path):
    text = "id,score\n1,3.5\n2,4\n"
    contract = _contract([{"name": "id", "type": "int"}, {"name": "score", "type": "float"},
                          {"name": "note", "type": "string"}])
    result = _clean(tmp_path, "a.csv", text, contract)
    _accounted(result, 2)
    assert result.missing_columns == ["note"]
    table = pq.read_table(result.files[0].path)
    assert table.schema.field("note").type == pa.string()
    assert _rows(result, "id") == [
        {"id": 1, "score": 3.5, "note": None}, {"id": 2, "score": 4.0, "note": None},
    ]


def test_missing_required_column_raises(tmp_path):
    text = "score,note\n3.5,x\n"
    contract = _contract([{"name": "id", "type": "int", "nullable": False},
                          {"name": "score", "type": "float"}, {"name": "note", "type": "string"}])
    with pytest.raises(CleanError, match=r"required columns missing from the header: \['id'\]"):
        _clean(tmp_path, "a.csv", text, contract)


def test_no_header_mode_reads_columns_in_contract_order(tmp_path):
    contract = _contract([{"name": "a", "type": "int"}, {"name": "b", "type": "string"}],
                         {"header": False})
    result = _clean(tmp_path, "a.csv", "1,x\n2,y\n", contract)
    _accounted(result, 2)
    assert _rows(result, "a") == [{"a": 1, "b": "x"}, {"a": 2, "b": "y"}]


def test_no_header_mode_treats_a_header_line_as_data(tmp_path):
    """With header: false a stray header is a data row: it fails to type and is rejected at line 1."""
    contract = _contract([{"name": "a", "type": "int"}, {"name": "b", "type": "string"}],
                         {"header": False})
    result = _clean(tmp_path, "a.csv", "a,b\n2,y\n", contract)
    _accounted(result, 2)
    assert _rows(result) == [{"a": 2, "b": "y"}]
    [rej] = _rejected(result)
    assert (rej["line"], rej["column_name"], rej["raw"]) == (1, "a", "a,b")


def test_semicolon_delimiter_and_utf8_bom(tmp_path):
    """A declared delimiter is used, and a UTF-8 byte-order mark does not hide the first column."""
    contract = _contract([{"name": "id", "type": "int", "nullable": False},
                          {"name": "name", "type": "string"}], {"delimiter": ";"})
    result = _clean(tmp_path, "a.csv", "\ufeffid;name\n1;a,b\n", contract)
    _accounted(result, 1)
    assert _rows(result) == [{"id": 1, "name": "a,b"}]


# --- output layout --------------------------------------------------------------------------


def test_partition_column_writes_hive_subdirectories(tmp_path):
    contract = parse_contract({
        "name": "t",
        "columns": [{"name": "id", "type": "int"},
                    {"name": "day", "type": "date", "nullable": False}],
        "partition_column": "day",
    })
    text = "id,day\n1,2024-01-01\n2,2024-01-02\n3,2024-01-01\n4,\n"
    result = _clean(tmp_path, "a.csv", text, contract)
    _accounted(result, 4)
    by_subdir = {}
    for f in result.files:
        # The partition column stays inside each file (Iceberg reads it from there).
        day = set(pq.read_table(f.path, columns=["day"])["day"].to_pylist())
        assert f.subdir == f"day={day.pop().isoformat()}" and not day
        by_subdir.setdefault(f.subdir, []).extend(
            r["id"] for r in pq.read_table(f.path).to_pylist())
        assert f.rows == pq.read_metadata(f.path).num_rows
    assert {k: sorted(v) for k, v in by_subdir.items()} == {
        "day=2024-01-01": [1, 3], "day=2024-01-02": [2],
    }
    [rej] = _rejected(result)
    assert (rej["line"], rej["error_type"], rej["column_name"]) == (5, "NOT NULL", "day")


def test_unpartitioned_output_has_no_subdir(tmp_path):
    contract = _contract([{"name": "id", "type": "int"}])
    result = _clean(tmp_path, "a.csv", "id\n1\n2\n", contract)
    _accounted(result, 2)
    assert [f.subdir for f in result.files] == [""]
    assert result.rejected_file is None


def test_shipped_orders_contract(tmp_path):
    """The real orders contract: source headers, decimal amount, partition by order date."""
    contract = load_contracts()["orders"]
    text = (
        "Order ID,Customer,Amount,Currency,Ordered At,Order Date,Gift?\n"
        "1,Ann,19.99,EUR,2024-03-01T09:30:00+01:00,2024-03-01,true\n"
        "2,Bob,5,USD,2024-03-02 12:00:00,2024-03-02,false\n"
        "3,,1.00,EUR,2024-03-02 12:00:00,2024-03-02,\n"
        "x,Cid,1.00,EUR,2024-03-02 12:00:00,2024-03-02,\n"
    )
    result = _clean(tmp_path, "orders_2024-03-02.csv", text, contract)
    _accounted(result, 4)
    assert sorted(f.subdir for f in result.files) == [
        "order_date=2024-03-01", "order_date=2024-03-02",
    ]
    assert _rows(result, "order_id") == [
        {"order_id": 1, "customer": "Ann", "amount": Decimal("19.99"), "currency": "EUR",
         "ordered_at": dt.datetime(2024, 3, 1, 8, 30, tzinfo=UTC),
         "order_date": dt.date(2024, 3, 1), "is_gift": True},
        {"order_id": 2, "customer": "Bob", "amount": Decimal("5.00"), "currency": "USD",
         "ordered_at": dt.datetime(2024, 3, 2, 12, tzinfo=UTC),
         "order_date": dt.date(2024, 3, 2), "is_gift": False},
    ]
    assert [(r["line"], r["error_type"], r["column_name"]) for r in _rejected(result)] == [
        (4, "NOT NULL", "customer"), (5, "CAST", "order_id"),
    ]
    assert {r["source_key"] for r in _rejected(result)} == {"raw/t/orders_2024-03-02.csv"}


# --- compression ----------------------------------------------------------------------------


def test_gzip_csv_is_decompressed(tmp_path):
    contract = _contract([{"name": "id", "type": "int"}, {"name": "s", "type": "string"}])
    result = _clean(tmp_path, "a.csv.gz", gzip.compress(b"id,s\n1,a\n2,b\n"), contract)
    _accounted(result, 2)
    assert _rows(result, "id") == [{"id": 1, "s": "a"}, {"id": 2, "s": "b"}]


def test_gz_name_without_gzip_content_raises(tmp_path):
    contract = _contract([{"name": "id", "type": "int"}])
    with pytest.raises(CleanError, match="cannot read the file as gzip"):
        _clean(tmp_path, "a.csv.gz", b"id\n1\n", contract)


# --- JSON Lines -----------------------------------------------------------------------------
