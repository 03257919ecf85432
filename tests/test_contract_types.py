"""Tests for the contract's column names and types: header names normalized to snake_case, and
contract types mapped to and from DuckDB's."""

from __future__ import annotations

import pytest
from data_platform.contracts import (
    Column,
    ContractError,
    contract_type_from_duckdb,
    duckdb_type,
    normalize_name,
    normalize_names,
)


# --- normalize_name -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Culmen Length (mm)", "culmen_length_mm"),
        ("orderId", "order_id"),
        ("OrderID", "order_id"),
        ("HTTPServerName", "http_server_name"),
        ("Café Crème", "cafe_creme"),
        ("Ångström", "angstrom"),
        ("2nd place", "c_2nd_place"),
        ("  Gift?  ", "gift"),
        ("a--b__c", "a_b_c"),
        ("already_snake", "already_snake"),
    ],
)
def test_normalize_name(raw, expected):
    assert normalize_name(raw) == expected


@pytest.mark.parametrize("raw", ["", "   ", "???", "日本"])
def test_normalize_name_with_nothing_left_becomes_column(raw):
    """A header with no ASCII letter or digit still yields a usable identifier."""
    assert normalize_name(raw) == "column"


def test_normalize_names_makes_duplicates_unique():
    assert normalize_names(["Name", "name", "NAME ", "Other", ""]) == [
        "name", "name_2", "name_3", "other", "column",
    ]


def test_normalize_names_does_not_collide_with_an_existing_suffix():
    """`a_2` is already taken by a real header, so the second `a` must skip to `a_3`."""
    assert normalize_names(["a", "a_2", "a"]) == ["a", "a_2", "a_3"]


# --- types ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("contract_type", "sql"),
    [
        ("int", "BIGINT"),
        ("float", "DOUBLE"),
        ("bool", "BOOLEAN"),
        ("string", "VARCHAR"),
        ("date", "DATE"),
        ("timestamp", "TIMESTAMPTZ"),
        ("decimal(12,2)", "DECIMAL(12,2)"),
        ("decimal( 5 , 0 )", "DECIMAL(5,0)"),
        ("decimal(1,1)", "DECIMAL(1,1)"),
        ("decimal(38,38)", "DECIMAL(38,38)"),
    ],
)
def test_duckdb_type(contract_type, sql):
    assert duckdb_type(contract_type) == sql


@pytest.mark.parametrize("bad", ["decimal(0,0)", "decimal(39,2)", "decimal(5,6)"])
def test_decimal_out_of_range_is_rejected(bad):
    with pytest.raises(ContractError, match="out of range"):
        duckdb_type(bad)


@pytest.mark.parametrize("bad", ["integer", "Int", "text", "decimal", "decimal(5)", "DECIMAL(5,2)"])
def test_unknown_type_is_rejected(bad):
    with pytest.raises(ContractError, match="unknown column type"):
        duckdb_type(bad)


def test_column_sql_type_uses_the_contract_type():
    assert Column(name="amount", type="decimal(12,2)").sql_type == "DECIMAL(12,2)"


@pytest.mark.parametrize(
    ("duck", "expected"),
    [
        ("INTEGER", "int"),
        ("BIGINT", "int"),
        ("DOUBLE", "float"),
        ("VARCHAR", "string"),
        ("TIMESTAMP WITH TIME ZONE", "timestamp"),
        ("DECIMAL(18, 3)", "decimal(18,3)"),
        ("TIME", "string"),
        ("STRUCT(a INTEGER)", "string"),
    ],
)
def test_contract_type_from_duckdb(duck, expected):
    assert contract_type_from_duckdb(duck) == expected
