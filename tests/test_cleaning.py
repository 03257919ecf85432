"""Tests for the cleaning engine: raw CSV / JSON Lines / Parquet in, typed and rejected Parquet out.

Every test builds its raw file in `tmp_path` and checks the staged Parquet by reading it back
with pyarrow. `_accounted` checks that each input row is either written or rejected, against a
row count the test knows independently of the engine. Every clean in this module is also
reconciled against the independent record count (`_reconciled`).
"""

from __future__ import annotations

import datetime as dt
import gzip
from decimal import Decimal

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from data_platform.cleaning import REJECTED_SCHEMA, CleanError, clean_file
from data_platform.contracts import load_contracts, parse_contract
from data_platform.records import source_records

UTC = dt.timezone.utc


@pytest.fixture(autouse=True)
def _reconciled(monkeypatch):
    """Every file these tests clean is a fixture for the rows_reconcile audit: the raw file's
    records, counted independently of the engine (by `source_records` with the contract alone,
    and as the engine reports it), equal the rows written plus the rows rejected."""
    engine = clean_file

    def clean_and_reconcile(path, contract, *args, **kwargs):
        result = engine(path, contract, *args, **kwargs)
        counted = source_records(path, contract)
        assert counted == result.source_records == result.rows_written + result.rows_rejected, (
            path.name, counted, result.source_records, result.rows_written,
            result.rows_rejected)
        return result

    monkeypatch.setitem(globals(), "clean_file", clean_and_reconcile)


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

ID_NAME = [{"name": "id", "type": "int", "nullable": False}, {"name": "name", "type": "string"}]


@pytest.mark.parametrize("name", ["a.csv", "a.jsonl"])
def test_empty_file_raises(tmp_path, name):
    fmt = {"type": "jsonl"} if name.endswith("jsonl") else {}
    with pytest.raises(CleanError, match="empty"):
        _clean(tmp_path, name, b"", _contract(ID_NAME, fmt))


def test_empty_gzip_raises(tmp_path):
    with pytest.raises(CleanError, match="empty after decompression"):
        _clean(tmp_path, "a.csv.gz", gzip.compress(b""), _contract(ID_NAME))


def test_header_only_gives_zero_rows(tmp_path):
    result = _clean(tmp_path, "a.csv", "id,name\n", _contract(ID_NAME))
    _accounted(result, 0)
    assert result.files == []
    assert result.rejected_file is None


@pytest.mark.parametrize("delimiter", [";", "\t", "|"])
def test_wrong_delimiter_suggests_the_right_one(tmp_path, delimiter):
    text = f"id{delimiter}name\n1{delimiter}a\n"
    with pytest.raises(CleanError, match="is the delimiter") as err:
        _clean(tmp_path, "a.csv", text, _contract(ID_NAME))
    assert f"is the delimiter {delimiter!r}?" in str(err.value)


def test_png_bytes_named_csv_raise(tmp_path):
    png = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x02"
    with pytest.raises(CleanError, match="NUL bytes"):
        _clean(tmp_path, "photo.csv", png, _contract(ID_NAME))


def test_header_of_unrelated_text_raises(tmp_path):
    with pytest.raises(CleanError, match="matches none of the contract columns"):
        _clean(tmp_path, "a.csv", "Dear reader,\nthis is a letter.\n", _contract(ID_NAME))


@pytest.mark.parametrize(("name", "fmt"), [("a.xlsx", {}), ("a.json", {}),
                                           ("a.csv", {"type": "jsonl"}),
                                           ("a.csv", {"type": "parquet"})])
def test_wrong_extension_raises(tmp_path, name, fmt):
    with pytest.raises(CleanError, match="extension"):
        _clean(tmp_path, name, "id,name\n1,a\n", _contract(ID_NAME, fmt))


def test_contract_without_columns_is_refused(tmp_path):
    with pytest.raises(ValueError, match="infer_columns"):
        _clean(tmp_path, "a.csv", "id\n1\n", parse_contract({"name": "t"}))


# --- row-level problems ---------------------------------------------------------------------


def test_too_few_and_too_many_fields_are_rejected(tmp_path):
    text = "id,name\n1,a\n2,b,extra\n3\n4,d\n"
    result = _clean(tmp_path, "a.csv", text, _contract(ID_NAME))
    _accounted(result, 4)
    assert [r["id"] for r in _rows(result, "id")] == [1, 4]
    assert [(r["line"], r["error_type"], r["raw"]) for r in _rejected(result)] == [
        (3, "TOO MANY COLUMNS", "2,b,extra"),
        (4, "MISSING COLUMNS", "3"),
    ]
    assert result.parse_rejects == 2
    assert result.contract_rejects == 0


def test_bad_int_value_is_rejected_naming_the_column(tmp_path):
    contract = _contract(ID_NAME + [{"name": "n", "type": "int"}])
    result = _clean(tmp_path, "a.csv", "id,name,n\n1,a,1\n2,b,notint\n3,c,3\n", contract)
    _accounted(result, 3)
    assert [r["id"] for r in _rows(result, "id")] == [1, 3]
    [rej] = _rejected(result)
    assert (rej["line"], rej["error_type"], rej["column_name"], rej["raw"]) == (
        3, "CAST", "n", "2,b,notint")
    assert '"n"' in rej["reason"] and "notint" in rej["reason"]


def test_null_in_non_nullable_column_is_rejected_with_its_line(tmp_path):
    """NOT NULL rejects get the right line even after rows the parser already rejected."""
    contract = _contract([{"name": "id", "type": "int", "nullable": False},
                          {"name": "name", "type": "string", "nullable": False},
                          {"name": "n", "type": "int"}])
    text = "id,name,n\n1,a,1\n2,,2\nx,b,3\n4,d,bad\n5,e,5\n,,6\n7,g,7\n"
    result = _clean(tmp_path, "a.csv", text, contract)
    _accounted(result, 7)
    # A null id is refused by the reader itself (typed non-nullable columns are enforced
    # there); a null name is a row rule checked after parsing. Both are NOT NULL rejects.
    assert (result.parse_rejects, result.contract_rejects) == (3, 1)
    assert [r["id"] for r in _rows(result, "id")] == [1, 5, 7]
    assert [(r["line"], r["error_type"], r["column_name"]) for r in _rejected(result)] == [
        (3, "NOT NULL", "name"),
        (4, "CAST", "id"),
        (5, "CAST", "n"),
        (7, "NOT NULL", "id"),
    ]
    assert _rejected(result)[3]["raw"] == ",,6"
    not_null = [r for r in _rejected(result) if r["error_type"] == "NOT NULL"]
    assert not_null[0]["reason"] == "column name: null in a non-nullable column"
    assert not_null[0]["raw"] == '{"id":2,"name":null,"n":2}'


def test_quoted_newline_is_kept_in_the_value(tmp_path):
    text = 'id,name\n1,"multi\nline"\n2,b\n3,"x\r\ny"\n'
    result = _clean(tmp_path, "a.csv", text, _contract(ID_NAME))
    _accounted(result, 3)
    assert _rows(result, "id") == [
        {"id": 1, "name": "multi\nline"}, {"id": 2, "name": "b"}, {"id": 3, "name": "x\r\ny"},
    ]


def test_parse_reject_line_after_a_quoted_newline(tmp_path):
    text = 'id,name\n1,"multi\nline"\n2,b,extra\nx,c\n'
    result = _clean(tmp_path, "a.csv", text, _contract(ID_NAME))
    _accounted(result, 3)
    assert [(r["line"], r["raw"]) for r in _rejected(result)] == [(4, "2,b,extra"), (5, "x,c")]


def test_not_null_reject_line_after_a_blank_line(tmp_path):
    contract = _contract([{"name": "id", "type": "int"},
                          {"name": "name", "type": "string", "nullable": False}])
    result = _clean(tmp_path, "a.csv", "id,name\n1,a\n\n2,\n3,c\n", contract)
    _accounted(result, 3)
    [rej] = _rejected(result)
    assert rej["line"] == 4


def test_invalid_utf8_deep_in_the_file_rejects_only_that_row(tmp_path):
    """A bad byte past the first few kilobytes: DuckDB rejects just that row."""
    good = "".join(f"{i},name{i}\n" for i in range(1, 5001)).encode()
    content = b"id,name\n" + good + b"5001,bad\xff\xfevalue\n5002,fine\n"
    result = _clean(tmp_path, "a.csv", content, _contract(ID_NAME))
    _accounted(result, 5002)
    assert result.rows_written == 5001
    assert 5001 not in {r["id"] for r in _rows(result)}
    [rej] = _rejected(result)
    assert (rej["line"], rej["error_type"]) == (5002, "INVALID ENCODING")


def test_invalid_utf8_in_an_early_row_rejects_only_that_row(tmp_path):
    content = b"id,name\n1,ok\n2,bad\xff\xfevalue\n3,fine\n"
    result = _clean(tmp_path, "a.csv", content, _contract(ID_NAME))
    _accounted(result, 3)
    assert [r["id"] for r in _rows(result, "id")] == [1, 3]
    [rej] = _rejected(result)
    assert (rej["line"], rej["error_type"]) == (3, "INVALID ENCODING")


def test_invalid_utf8_in_the_header_raises(tmp_path):
    with pytest.raises(CleanError, match="not valid utf-8"):
        _clean(tmp_path, "a.csv", b"id,na\xffme\n1,a\n", _contract(ID_NAME))


def test_ten_megabyte_line_is_kept_as_a_string(tmp_path):
    """The default max_line_bytes is 16 MiB, so a 10 MiB value is data, not an error."""
    size = 10 * 1024 * 1024
    text = f"id,name\n1,a\n2,{'x' * size}\n3,c\n"
    result = _clean(tmp_path, "a.csv", text, _contract(ID_NAME))
    _accounted(result, 3)
    lengths = {r["id"]: len(r["name"]) for r in _rows(result)}
    assert lengths == {1: 1, 2: size, 3: 1}


def test_line_over_max_line_bytes_is_rejected(tmp_path):
    contract = _contract(ID_NAME, {"max_line_bytes": 4096})
    text = f"id,name\n1,a\n2,{'z' * 10_000}\n3,c\n"
    result = _clean(tmp_path, "a.csv", text, contract)
    _accounted(result, 3)
    assert [r["id"] for r in _rows(result, "id")] == [1, 3]
    [rej] = _rejected(result)
    assert (rej["line"], rej["error_type"]) == (3, "LINE SIZE OVER MAXIMUM")
    assert "4096" in rej["reason"]
    assert rej["raw"].startswith("2,zzz")


def test_result_metadata_reports_counts_and_columns(tmp_path):
    text = "id,name,junk\n1,a,x\n2,b,extra,more\n"
    path = tmp_path / "a.csv"
    path.write_text(text, encoding="utf-8")
    result = clean_file(path, _contract(ID_NAME), tmp_path / "staging", source_key="k")
    meta = result.metadata()
    assert {k: meta[k] for k in ("rows_in", "rows_written", "rows_rejected", "parse_rejects",
                                 "contract_rejects", "bytes_in", "extra_columns")} == {
        "rows_in": 2, "rows_written": 1, "rows_rejected": 1, "parse_rejects": 1,
        "contract_rejects": 0, "bytes_in": len(text), "extra_columns": ["junk"],
    }


def test_decimal_with_too_many_places_or_digits_is_rejected_not_rounded(tmp_path):
    """DuckDB would round 12.345 into decimal(6,2); the contract rejects it instead."""
    contract = parse_contract({"name": "d", "columns": [
        {"name": "id", "type": "int", "nullable": False},
        {"name": "amount", "type": "decimal(6,2)"}]})
    src = tmp_path / "d.csv"
    src.write_text("id,amount\n1,12.34\n2,12.345\n3,\n4,123456.7\n5,-0.50\n")
    result = clean_file(src, contract, tmp_path / "stage", source_key="d/d.csv")
    assert (result.rows_in, result.rows_written, result.rows_rejected) == (5, 3, 2)
    written = pq.read_table(result.files[0].path).to_pylist()
    assert [(r["id"], r["amount"]) for r in written] == [
        (1, Decimal("12.34")), (3, None), (5, Decimal("-0.50"))]
    rejected = pq.read_table(result.rejected_file).to_pylist()
    assert [(r["line"], r["error_type"], r["column_name"]) for r in rejected] == [
        (3, "DECIMAL", "amount"), (5, "DECIMAL", "amount")]
    assert "12.345" in rejected[0]["reason"] and "decimal(6,2)" in rejected[0]["reason"]


def test_jsonl_decimal_with_too_many_places_is_rejected(tmp_path):
    contract = parse_contract({"name": "d", "format": {"type": "jsonl"}, "columns": [
        {"name": "amount", "type": "decimal(6,2)"}]})
    src = tmp_path / "d.jsonl"
    src.write_text('{"amount": "1.25"}\n{"amount": 1.255}\n')
    result = clean_file(src, contract, tmp_path / "stage", source_key="d/d.jsonl")
    assert (result.rows_written, result.rows_rejected) == (1, 1)
    assert pq.read_table(result.rejected_file).to_pylist()[0]["line"] == 2


def test_field_ids_and_lineage_constants_are_written_by_the_copy_itself(tmp_path):
    contract = parse_contract({
        "name": "t",
        "columns": [{"name": "id", "type": "int", "nullable": False},
                    {"name": "day", "type": "date", "nullable": False}],
        "partition_column": "day",
    })
    src = tmp_path / "a b*.csv"
    src.write_text("id,day\n1,2024-01-01\n2,2024-01-02\nx,2024-01-01\n")
    ids = {"id": 1, "day": 2, "_source_key": 3, "_source_version": 4}
    rejected_ids = {c: i for i, (c, _) in enumerate(REJECTED_SCHEMA, start=1)}
    rejected_ids.update(_source_key=7, _source_version=8)
    constants = {"_source_key": ("VARCHAR", "a b*.csv'; --"), "_source_version": ("BIGINT", 7)}
    result = clean_file(src, contract, tmp_path / "out", source_key="t/a b*.csv",
                        field_ids=ids, rejected_field_ids=rejected_ids, constants=constants)
    for f in result.files + [type(result.files[0])(result.rejected_file, "", 1)]:
        schema = pq.read_schema(f.path)
        got = {fld.name: int(fld.metadata[b"PARQUET:field_id"]) for fld in schema}
        assert got == (rejected_ids if f.path == result.rejected_file else ids)
        table = pq.read_table(f.path)
        assert set(table["_source_key"].to_pylist()) == {"a b*.csv'; --"}
        assert set(table["_source_version"].to_pylist()) == {7}
    with pytest.raises(ValueError, match="no Parquet field id"):
        clean_file(src, contract, tmp_path / "out2", source_key="t/a.csv",
                   field_ids={"id": 1, "day": 2}, constants=constants)


def test_a_file_whose_every_row_is_rejected_streams_its_rejects(tmp_path):
    """A systematic type error rejects every row: the platform streams the rejects to Parquet
    in batches (never a Python list of them) with exact physical line numbers, through quoted
    newlines. (DuckDB's own reject store still grows with the rejects: see the README.)"""
    contract = parse_contract({
        "name": "t",
        "columns": [{"name": "id", "type": "int", "nullable": False},
                    {"name": "note", "type": "string", "nullable": False}],
    })
    n = 300_000
    body = "".join(f"x{i},n{i}\n" if i % 1000 else f'x{i},"two\nlines"\n' for i in range(n))
    src = tmp_path / "bad.csv"
    src.write_text("id,note\n" + body)
    result = clean_file(src, contract, tmp_path / "out", source_key="t/bad.csv",
                        memory_limit="128MB")
    assert (result.rows_written, result.rows_rejected, result.source_records) == (0, n, n)
    lines = pq.read_table(result.rejected_file, columns=["line", "error_type"])
    assert lines.num_rows == n and set(lines["error_type"].to_pylist()) == {"CAST"}
    got = lines["line"].to_pylist()
    # Row i starts on line 2 + i + (two-line rows before it: rows 0, 1000, 2000, ...).
    assert [got[i] for i in (0, 1, 999, 1000, 1001, n - 1)] == [
        2 + i + (i + 999) // 1000 for i in (0, 1, 999, 1000, 1001, n - 1)]
