"""Content hashes of ingested files: BLAKE3 for a dataset whose ledger begins now, SHA-256 kept
for a ledger written before the algorithm was recorded, so that digests are only ever compared
with digests of the same algorithm (an unchanged re-upload is still skipped and a rename still
moves its rows across the upgrade). Real local resources, an ephemeral Dagster instance."""

import hashlib

import blake3
import dagster as dg
import pytest
from data_platform import staging as st
from data_platform.definitions import build_definitions
from data_platform.resources import DuckDBCatalog, LocalStorage

from .conftest import write_raw
from .helpers import run_ingest

HEADER = "Order ID,Customer,Amount,Currency,Ordered At,Order Date,Gift?\n"
BODY = "".join(f"{i},c{i},2.50,EUR,2026-11-20T10:00:00+00:00,2026-11-20,false\n"
               for i in range(1, 51))


@pytest.fixture
def instance():
    return dg.DagsterInstance.ephemeral()


def count() -> int:
    return DuckDBCatalog().query("SELECT count(*) FROM orders")[0][0]


def test_a_new_dataset_hashes_with_blake3(data_dir, instance):
    path = write_raw(data_dir, "orders/a.csv", HEADER + BODY)
    assert run_ingest(build_definitions(), instance, "orders", ["a.csv"]).success
    lake = LocalStorage().lake()
    assert lake.get_bytes("_ledger/orders/_algorithm") == b"blake3"
    want = "blake3:" + blake3.blake3(path.read_bytes()).hexdigest()
    assert st.read_ledger(lake, "orders", "a.csv")["content_hash"] == want
    assert st.keys_with_content(lake, "orders", want) == ["a.csv"]


def test_a_ledger_from_before_keeps_sha256_across_the_upgrade(data_dir, instance, monkeypatch):
    """The first ingest writes a ledger as the platform did before BLAKE3 (SHA-256 digests, no
    algorithm recorded). Afterwards identical bytes uploaded again are skipped as unchanged,
    and a renamed file moves its rows instead of adding them twice."""
    defs = build_definitions()
    monkeypatch.setattr(st, "NEW_DATASETS", "sha256")
    path = write_raw(data_dir, "orders/a.csv", HEADER + BODY)
    assert run_ingest(defs, instance, "orders", ["a.csv"]).success and count() == 50
    lake = LocalStorage().lake()
    lake.delete("_ledger/orders/_algorithm")  # what the platform before BLAKE3 left
    monkeypatch.setattr(st, "NEW_DATASETS", "blake3")

    write_raw(data_dir, "orders/a.csv", HEADER + BODY)  # the same bytes, a new version
    assert run_ingest(defs, instance, "orders", ["a.csv"]).success
    assert lake.get_bytes("_ledger/orders/_algorithm") == b"sha256"
    assert st.latest_record(lake, "orders", "a.csv").status == st.UNCHANGED

    path.rename(path.with_name("b.csv"))
    assert run_ingest(defs, instance, "orders", ["b.csv"]).success
    assert count() == 50  # moved, not duplicated
    want = "sha256:" + hashlib.sha256((HEADER + BODY).encode()).hexdigest()
    assert st.read_ledger(lake, "orders", "b.csv")["content_hash"] == want
    assert DuckDBCatalog().query("SELECT DISTINCT _source_key FROM orders") == [("b.csv",)]


def test_an_unknown_recorded_algorithm_is_an_error_not_a_guess(data_dir):
    lake = LocalStorage().lake()
    lake.put_bytes(b"md4", "_ledger/orders/_algorithm")
    with pytest.raises(ValueError, match="unknown hash algorithm 'md4'"):
        st.hash_algorithm(lake, "orders")
