"""The cleaning engine on bad input: empty and header-only files, wrong delimiters, extensions
and formats, short and long rows, bad values, nulls, quoted newlines, invalid UTF-8, huge lines,
decimals that do not fit, and files whose every row is rejected (see test_cleaning.py)."""

from __future__ import annotations

import datetime as dt
import gzip
from decimal import Decimal

import pyarrow.parquet as pq
import pytest
from data_platform.cleaning import REJECTED_SCHEMA, CleanError
from data_platform.contracts import parse_contract

from .cleaning_support import _accounted, _clean, _contract, _rejected, _rows, clean_file

UTC = dt.timezone.utc


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


def test_lines_of_nearly_max_line_bytes_across_reader_buffers_are_kept(tmp_path):
    """DuckDB's CSV buffers are sized at two maximum lines (at least 32 MiB), not its default
    sixteen: three values of 16 MiB - 64 bytes, one of them across the 32 MiB boundary where
    the reader's first buffer ends, all parse as data."""
    size = 16 * 1024 * 1024 - 64
    text = "id,name\n" + "".join(f"{i},{'s' if i % 2 else chr(96 + i) * size}\n"
                                   for i in range(1, 8))
    assert len(text) > 3 * size and len(text) > 32 * 1024 * 1024
    result = _clean(tmp_path, "a.csv", text, _contract(ID_NAME))
    _accounted(result, 7)
    assert result.rows_rejected == 0
    lengths = {r["id"]: len(r["name"]) for r in _rows(result)}
    assert lengths == {1: 1, 2: size, 3: 1, 4: size, 5: 1, 6: size, 7: 1}


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
