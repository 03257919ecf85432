"""Tests for dataset contracts: parsing, validation and the shipped YAML files (names and types:
test_contract_types.py)."""

from __future__ import annotations

import dataclasses

import pytest
from data_platform.contracts import (
    CONTRACTS_DIR,
    DEFAULT_NULL_MARKERS,
    ContractError,
    load_contract,
    load_contracts,
    parse_contract,
)


def _valid(**overrides):
    """A minimal valid contract mapping with declared columns; `overrides` replace keys."""
    data = {
        "name": "orders",
        "format": {"type": "csv"},
        "columns": [
            {"name": "order_id", "type": "int", "nullable": False},
            {"name": "order_date", "type": "date", "nullable": False},
            {"name": "note", "type": "string"},
        ],
    }
    data.update(overrides)
    return data


def _same(a, b) -> bool:
    return dataclasses.replace(a, source_path=None) == dataclasses.replace(b, source_path=None)


# --- parse_contract -------------------------------------------------------------------------


def test_minimal_contract_gets_defaults():
    c = parse_contract({"name": "penguins"})
    assert c.kind == "table"
    assert c.inferred is True
    assert c.format.type == "csv"
    assert c.format.delimiter == ","
    assert c.format.header is True
    assert c.format.timezone == "UTC"
    assert (c.rejected_share_warn, c.rejected_share_error) == (0.01, 0.10)


def test_default_null_markers():
    assert DEFAULT_NULL_MARKERS == ("", "NA", "N/A", "NULL", "null", "NaN")
    assert parse_contract({"name": "t"}).format.null_markers == DEFAULT_NULL_MARKERS


def test_custom_null_markers_become_a_tuple():
    c = parse_contract({"name": "t", "format": {"null_markers": ["-", "?"]}})
    assert c.format.null_markers == ("-", "?")


def test_valid_contract_is_parsed():
    c = parse_contract(_valid(primary_key="order_id", partition_column="order_date"),
                       where="orders.yaml")
    assert [col.name for col in c.columns] == ["order_id", "order_date", "note"]
    assert c.column("order_id").nullable is False
    assert c.column("note").nullable is True
    assert c.primary_key == ("order_id",)  # a single string is accepted as a one-column key
    assert c.partition_column == "order_date"
    assert c.source_path == "orders.yaml"
    with pytest.raises(KeyError):
        c.column("missing")


@pytest.mark.parametrize("name", ["Orders", "1orders", "orders-2024", "", None, 5, "a" * 64])
def test_bad_dataset_name(name):
    with pytest.raises(ContractError, match="name"):
        parse_contract(_valid(name=name), where="x.yaml")


def test_error_names_the_file():
    with pytest.raises(ContractError, match=r"^bad\.yaml: "):
        parse_contract(_valid(name="Bad"), where="bad.yaml")


def test_contract_must_be_a_mapping():
    with pytest.raises(ContractError, match="must be a mapping"):
        parse_contract(["name", "orders"])


def test_unknown_top_level_keys():
    with pytest.raises(ContractError, match=r"unknown keys \['colums'\]"):
        parse_contract(_valid(colums=[]))


def test_unknown_format_keys():
    with pytest.raises(ContractError, match=r"unknown format keys \['delim'\]"):
        parse_contract(_valid(format={"type": "csv", "delim": ";"}))


def test_unknown_column_keys():
    data = _valid(columns=[{"name": "a", "type": "int", "nulable": False}])
    with pytest.raises(ContractError, match=r"columns\[0\] has unknown keys \['nulable'\]"):
        parse_contract(data)


def test_column_needs_name_and_type():
    with pytest.raises(ContractError, match=r"columns\[1\] needs at least name and type"):
        parse_contract(_valid(columns=[{"name": "a", "type": "int"}, {"name": "b"}]))


def test_non_snake_case_column_name_suggests_the_fix():
    data = _valid(columns=[{"name": "Order ID", "type": "int"}])
    with pytest.raises(ContractError, match=r"'order_id' with source: 'Order ID'"):
        parse_contract(data)


def test_bad_column_type_names_the_column():
    with pytest.raises(ContractError, match="column amount: unknown column type"):
        parse_contract(_valid(columns=[{"name": "amount", "type": "money"}]))


def test_duplicate_column_names():
    data = _valid(columns=[{"name": "a", "type": "int"}, {"name": "a", "type": "string"}])
    with pytest.raises(ContractError, match="duplicate column names"):
        parse_contract(data)


def test_primary_key_must_be_declared():
    with pytest.raises(ContractError, match="primary_key column 'id' is not a declared column"):
        parse_contract(_valid(primary_key=["order_id", "id"]))


def test_partition_column_must_be_declared():
    with pytest.raises(ContractError, match="partition_column 'day' is not a declared column"):
        parse_contract(_valid(partition_column="day"))


def test_partition_column_must_not_be_nullable():
    with pytest.raises(ContractError, match="partition_column 'note' must be declared nullable"):
        parse_contract(_valid(partition_column="note"))


@pytest.mark.parametrize("key", [{"primary_key": ["id"]}, {"partition_column": "day"}])
def test_key_and_partition_need_declared_columns(key):
    with pytest.raises(ContractError, match="need declared columns"):
        parse_contract({"name": "t", **key})


@pytest.mark.parametrize(
    "checks",
    [
        {"rejected_share_warn": 0.5, "rejected_share_error": 0.1},
        {"rejected_share_warn": -0.1},
        {"rejected_share_error": 1.5},
    ],
)
def test_bad_thresholds(checks):
    with pytest.raises(ContractError, match="rejected_share_warn <= rejected_share_error"):
        parse_contract(_valid(checks=checks))


def test_equal_thresholds_are_allowed():
    c = parse_contract(_valid(checks={"rejected_share_warn": 0.2, "rejected_share_error": 0.2}))
    assert (c.rejected_share_warn, c.rejected_share_error) == (0.2, 0.2)


def test_unknown_kind():
    with pytest.raises(ContractError, match="kind 'video'"):
        parse_contract({"name": "clips", "kind": "video"})


@pytest.mark.parametrize(
    ("fmt", "message"),
    [
        ({"type": "xlsx"}, "format.type 'xlsx'"),
        ({"compression": "zip"}, "compression must be auto, none or gzip"),
        ({"delimiter": ";;"}, "format.delimiter must be a single character"),
        ({"quote": ""}, "format.quote must be a single character"),
        ({"null_markers": "NA"}, "null_markers must be a list of strings"),
        ({"null_markers": ["NA", 0]}, "null_markers must be a list of strings"),
    ],
)
def test_bad_format(fmt, message):
    with pytest.raises(ContractError, match=message):
        parse_contract(_valid(format=fmt))


@pytest.mark.parametrize(
    "data",
    [
        _valid(columns=[{"name": "a", "type": "int", "nullable": "false"}]),
        _valid(format={"type": "csv", "header": "no"}),
    ],
    ids=["nullable-string", "header-string"],
)
def test_boolean_options_must_be_booleans(data):
    with pytest.raises(ContractError):
        parse_contract(data)


def test_non_numeric_threshold_is_a_contract_error():
    with pytest.raises(ContractError, match="x.yaml"):
        parse_contract(_valid(checks={"rejected_share_warn": "lots"}), where="x.yaml")


def test_unknown_timezone_is_a_contract_error():
    with pytest.raises(ContractError, match="timezone"):
        parse_contract(_valid(format={"type": "csv", "timezone": "Mars/Olympus_Mons"}))


# --- files ----------------------------------------------------------------------------------


def test_shipped_contracts_load():
    contracts = load_contracts()
    assert sorted(contracts) == ["orders", "penguins", "shapes"]
    assert contracts["shapes"].kind == "images" and contracts["shapes"].images.size == (64, 64)

    orders = contracts["orders"]
    assert orders.inferred is False
    assert orders.primary_key == ("order_id",)
    assert orders.partition_column == "order_date"
    assert orders.column("order_id").source == "Order ID"
    assert orders.column("amount").sql_type == "DECIMAL(12,2)"
    assert orders.column("ordered_at").type == "timestamp"
    assert orders.column("is_gift").source == "Gift?"
    assert orders.column("order_date").nullable is False

    penguins = contracts["penguins"]
    assert penguins.inferred is True
    assert (penguins.rejected_share_warn, penguins.rejected_share_error) == (0.02, 0.20)


def test_each_shipped_file_name_equals_its_contract_name():
    paths = sorted(CONTRACTS_DIR.glob("*.yaml"))
    assert [p.stem for p in paths] == ["orders", "penguins", "shapes"]
    for p in paths:
        c = load_contract(p)
        assert c.name == p.stem
        assert c.source_path == p.name


def test_file_name_must_match_contract_name(tmp_path):
    (tmp_path / "sales.yaml").write_text("name: orders\n", encoding="utf-8")
    with pytest.raises(ContractError, match="sales.yaml: name 'orders' must equal the file name"):
        load_contracts(tmp_path)


def test_invalid_yaml_names_the_file(tmp_path):
    (tmp_path / "broken.yaml").write_text("name: [unclosed\n", encoding="utf-8")
    with pytest.raises(ContractError, match="broken.yaml: invalid YAML"):
        load_contracts(tmp_path)


def test_load_contracts_only_reads_yaml_files(tmp_path):
    (tmp_path / "a.yaml").write_text("name: a\n", encoding="utf-8")
    (tmp_path / "b.yml.bak").write_text("name: [broken\n", encoding="utf-8")
    assert list(load_contracts(tmp_path)) == ["a"]


# --- round trip -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["orders", "penguins"])
def test_shipped_contract_round_trips(name):
    c = load_contracts()[name]
    assert _same(parse_contract(c.to_dict()), c)


def test_custom_contract_round_trips():
    data = {
        "name": "events",
        "description": "Events",
        "format": {"type": "csv", "delimiter": ";", "quote": "'", "escape": "\\",
                   "header": False, "encoding": "latin-1", "compression": "gzip",
                   "null_markers": ["-"], "timezone": "Europe/Berlin"},
        "columns": [
            {"name": "event_id", "type": "int", "nullable": False, "source": "Event ID",
             "description": "the id"},
            {"name": "price", "type": "decimal(8,3)"},
            {"name": "day", "type": "date", "nullable": False},
        ],
        "primary_key": ["event_id", "day"],
        "partition_column": "day",
        "checks": {"rejected_share_warn": 0.05, "rejected_share_error": 0.5},
    }
    c = parse_contract(data)
    again = parse_contract(c.to_dict())
    assert _same(again, c)
    assert again.format.timezone == "Europe/Berlin"
    assert again.column("event_id").source == "Event ID"


def test_jsonl_contract_round_trips():
    c = parse_contract({"name": "clicks", "format": {"type": "jsonl"},
                        "columns": [{"name": "id", "type": "int"}]})
    assert _same(parse_contract(c.to_dict()), c)


def test_max_line_bytes_round_trips():
    c = parse_contract({"name": "t", "format": {"max_line_bytes": 1024}})
    assert parse_contract(c.to_dict()).format.max_line_bytes == 1024


def test_jsonl_encoding_round_trips():
    c = parse_contract({"name": "t", "format": {"type": "jsonl", "encoding": "latin-1"}})
    assert parse_contract(c.to_dict()).format.encoding == "latin-1"


def test_to_json_is_stable():
    c = load_contracts()["orders"]
    assert c.to_json() == parse_contract(c.to_dict()).to_json()
    assert c.to_json().startswith('{"checks": {"rejected_share_error": 0.1')
