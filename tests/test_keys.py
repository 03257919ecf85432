"""The primary-key audit at commit: the key-order pass and DuckDB's path must agree on what is
unique, whichever one decides. Real ingest runs into a local Iceberg table."""

import dagster as dg
import pytest
from data_platform.definitions import build_definitions
from data_platform.resources import DuckDBCatalog

from .conftest import write_raw
from .helpers import check_results, run_ingest

HEADER = "Order ID,Customer,Amount,Currency,Ordered At,Order Date,Gift?\n"


def rows(ids, day="2026-11-20"):
    return "".join(f"{i},c{i},2.50,EUR,{day}T10:00:00+00:00,{day},false\n" for i in ids)


def pk_check(result):
    return check_results(result)[("table/orders", "primary_key_unique")]


@pytest.fixture
def instance():
    return dg.DagsterInstance.ephemeral()


def count():
    return DuckDBCatalog().query("SELECT count(*) FROM orders")[0][0]


def test_unique_keys_are_proven_unique_by_one_sort(data_dir, instance):
    defs = build_definitions()
    write_raw(data_dir, "orders/a.csv", HEADER + rows(range(1, 2001)))
    write_raw(data_dir, "orders/b.csv", HEADER + rows(list(range(3099, 2999, -1))
                                                      + [1_000_000_000_000]))
    r = run_ingest(defs, instance, "orders", ["a.csv", "b.csv"])
    check = pk_check(r)
    assert r.success and check.passed and count() == 2101
    assert check.metadata["method"].value == "sorted in memory"
    # Later ids, after the committed ones: still one sort, no committed file read.
    write_raw(data_dir, "orders/c.csv", HEADER + rows(range(2 * 10**12, 2 * 10**12 + 10)))
    r = run_ingest(defs, instance, "orders", ["c.csv"])
    assert pk_check(r).metadata["method"].value == "sorted in memory" and count() == 2111


@pytest.mark.parametrize("files, refused", [
    # each file rising, but their ranges overlap on id 5
    ({"a.csv": range(1, 6), "b.csv": range(5, 9)}, {"a.csv", "b.csv"}),
    # a repeated id next to itself: not strictly rising
    ({"a.csv": [1, 2, 2, 3]}, {"a.csv"}),
    # out of order, with a duplicate far apart
    ({"a.csv": [9, 1, 5, 9]}, {"a.csv"}),
])
def test_duplicates_in_new_files_are_refused_whatever_the_order(data_dir, instance, files,
                                                                  refused):
    defs = build_definitions()
    for name, ids in files.items():
        write_raw(data_dir, f"orders/{name}", HEADER + rows(ids))
    r = run_ingest(defs, instance, "orders", sorted(files))
    check = pk_check(r)
    assert not r.success and not check.passed
    assert set(check.metadata["refused"].value) == refused
    assert "method" not in check.metadata


def test_rising_keys_that_collide_with_committed_rows_are_refused(data_dir, instance):
    defs = build_definitions()
    write_raw(data_dir, "orders/a.csv", HEADER + rows(range(1, 6)))
    assert run_ingest(defs, instance, "orders", ["a.csv"]).success
    write_raw(data_dir, "orders/b.csv", HEADER + rows(range(4, 9)))  # rising, but 4 and 5 exist
    r = run_ingest(defs, instance, "orders", ["b.csv"])
    check = pk_check(r)
    assert not r.success and set(check.metadata["refused"].value) == {"b.csv"}
    assert "already committed" in check.metadata["refused"].value["b.csv"]
    assert count() == 5
    # Re-processing a.csv itself (its rows are replaced) with rising ids is no collision.
    write_raw(data_dir, "orders/a.csv", HEADER + rows(range(1, 7)))
    assert run_ingest(defs, instance, "orders", ["a.csv"]).success and count() == 6
