"""The primary-key audit at commit: the key-order pass and DuckDB's path must agree on what is
unique, whichever one decides. Real ingest runs into a local Iceberg table."""

import datetime
import json

import dagster as dg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from data_platform.assets.key_facts import _from_facts, key_facts
from data_platform.definitions import build_definitions
from data_platform.resources import DuckDBCatalog
from data_platform.tables.commit import StagedVersion

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


def test_unique_keys_are_proven_unique_from_staged_facts_or_one_sort(data_dir, instance):
    defs = build_definitions()
    write_raw(data_dir, "orders/a.csv", HEADER + rows(range(1, 2001)))  # dense ids
    write_raw(data_dir, "orders/b.csv", HEADER + rows(list(range(3099, 2999, -1))
                                                      + [1_000_000_000_000]))  # sparse
    r = run_ingest(defs, instance, "orders", ["a.csv", "b.csv"])
    check = pk_check(r)
    assert r.success and check.passed and count() == 2101
    # Each file's keys were proven unique while it was staged; the ranges do not meet.
    assert check.metadata["method"].value == "staged facts"
    # Later ids, after the committed ones: no committed file read.
    write_raw(data_dir, "orders/c.csv", HEADER + rows(range(2 * 10**12, 2 * 10**12 + 10)))
    r = run_ingest(defs, instance, "orders", ["c.csv"])
    assert pk_check(r).metadata["method"].value == "staged facts" and count() == 2111
    # Two files whose ranges interleave (odd and even ids) but share no key: one sort of both.
    write_raw(data_dir, "orders/d.csv", HEADER + rows(range(5 * 10**12, 5 * 10**12 + 20, 2)))
    write_raw(data_dir, "orders/e.csv", HEADER + rows(range(5 * 10**12 + 1, 5 * 10**12 + 20, 2)))
    r = run_ingest(defs, instance, "orders", ["d.csv", "e.csv"])
    check = pk_check(r)
    assert r.success and check.metadata["method"].value == "sorted in memory"
    assert count() == 2131


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


@pytest.mark.parametrize("values, kind", [
    ([3, 1, 2], "int"),
    ([datetime.date(2026, 1, 2), datetime.date(2026, 1, 1)], "date"),
    ([datetime.datetime(2026, 1, 1, 10, tzinfo=datetime.timezone.utc),
      datetime.datetime(2026, 1, 1, 9, 30, 0, 123456, tzinfo=datetime.timezone.utc)],
     "timestamp"),
])
def test_staged_key_facts_round_trip_through_json_and_decide_only_disjoint_files(
        tmp_path, values, kind):
    """key_facts of a staged file survive the staging record's JSON with their types; files
    with a duplicate or a null key have none, and files whose ranges meet are left to the
    commit's own read of the keys."""
    def staged(name, vals):
        path = tmp_path / f"{name}.parquet"
        pq.write_table(pa.table({"k": vals}), path)
        return json.loads(json.dumps(key_facts([path], ("k",))))

    a = staged("a", values)
    assert a["kind"] == kind and a["rows"] == len(values)
    lo, hi = min(values), max(values)
    shift = (lambda v: v + 10) if kind == "int" else (lambda v: v + datetime.timedelta(days=10))
    b = staged("b", [shift(v) for v in values])
    go = [StagedVersion("a.csv", 1, []), StagedVersion("b.csv", 1, [])]
    assert _from_facts(go, {"a.csv": a, "b.csv": b}) == (2 * len(values), lo, shift(hi))
    assert _from_facts(go, {"a.csv": a, "b.csv": a}) is None  # same range: may share keys
    assert _from_facts(go, {"a.csv": a}) is None  # a file without facts
    assert staged("dup", values + values[:1]) is None
    assert staged("null", values + [None]) is None
    assert key_facts([tmp_path / "a.parquet"], ("k", "other")) is None  # composite key


def test_key_facts_that_cannot_be_computed_are_left_to_the_commit(tmp_path):
    """A staged file the shortcut cannot read (here: not Parquet) gives no facts and no error:
    the commit reads the keys itself."""
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(b"not parquet")
    assert key_facts([bad], ("k",)) is None


def test_a_profile_that_cannot_be_computed_fails_nothing(data_dir, instance, monkeypatch):
    """The key facts and the profile read the cleaned files from the moment they are written,
    handed to the table step; a profile that fails is logged and left out: the file still
    commits, its staged key facts still spare the commit a read of the keys."""
    import data_platform.assets.clean as clean_mod
    import duckdb

    def broken(paths, contract):
        raise duckdb.IOException("cannot read the staged file")

    monkeypatch.setattr(clean_mod, "profile_files", broken)
    write_raw(data_dir, "orders/a.csv", HEADER + rows(range(1, 101)))
    r = run_ingest(build_definitions(), instance, "orders", ["a.csv"])
    assert r.success and count() == 100
    assert pk_check(r).metadata["method"].value == "staged facts"
    messages = [e.user_message for e in instance.all_logs(r.run_id)]
    assert any("no column profile: cannot read the staged file" in m for m in messages)


STREAMED = {  # DuckDB SQL for a column `k` written as the cleaning engine writes Parquet
    "dense ids": "SELECT range + 5 AS k FROM range(20000)",
    "sparse ids": "SELECT range * 1000003 AS k FROM range(20000)",
    "negative ids": "SELECT range - 10000 AS k FROM range(20000)",
    "ids in no order": "SELECT range AS k FROM range(20000) ORDER BY hash(range)",
    "a duplicate": "SELECT range % 19999 AS k FROM range(20000)",
    "a null": "SELECT CASE WHEN range = 7 THEN NULL ELSE range END AS k FROM range(20000)",
    "dates": "SELECT DATE '2020-01-01' + range::INTEGER AS k FROM range(3000)",
    "32-bit ids": "SELECT range::INTEGER AS k FROM range(3000)",
    "instants": "SELECT TIMESTAMPTZ '2024-01-01 00:00:00+00' + to_microseconds(range * 7) AS k "
                "FROM range(20000)",
    "local times": "SELECT TIMESTAMP '2024-01-01' + to_seconds(range) AS k FROM range(20000)",
    "a repeated time": "SELECT TIMESTAMP '2024-01-01' + to_seconds(range % 100) AS k "
                       "FROM range(20000)",
    "strings": "SELECT range::VARCHAR AS k FROM range(2000)",
    "no rows": "SELECT range AS k FROM range(0)",
}


def _duckdb_parquet(path, sql):
    import duckdb

    con = duckdb.connect()
    try:
        con.execute(f"COPY ({sql}) TO '{path}' (FORMAT parquet, ROW_GROUP_SIZE 1000)")
    finally:
        con.close()
    return str(path)


@pytest.mark.parametrize("case", sorted(STREAMED))
def test_streamed_keys_decide_as_the_whole_column_does(tmp_path, monkeypatch, case):
    """Staged keys streamed from DuckDB in batches, the flags' range from the footers, give the
    answer (rows, smallest, largest, or None) of the column read whole, for every kind of key;
    the footers give the range for every integer-stored kind."""
    from data_platform.assets import key_facts as kf

    path = _duckdb_parquet(tmp_path / "k.parquet", STREAMED[case])
    streamed = kf._streamed_local([path], "k")
    if case != "strings":
        assert streamed is not kf._UNKNOWN  # the footers give the range: no whole read
    monkeypatch.setattr(kf, "_streamed_local", lambda paths, column: kf._UNKNOWN)
    whole = kf._sorted_unique(None, [path], "k")
    monkeypatch.undo()
    assert kf._sorted_unique(None, [path], "k") == whole
    assert (whole is None) == (case in ("a duplicate", "a null", "a repeated time", "strings"))


def test_two_streamed_files_are_one_set_of_keys(tmp_path):
    from data_platform.assets import key_facts as kf

    a = _duckdb_parquet(tmp_path / "a.parquet", "SELECT range AS k FROM range(1000)")
    b = _duckdb_parquet(tmp_path / "b.parquet", "SELECT range AS k FROM range(1000, 2000)")
    c = _duckdb_parquet(tmp_path / "c.parquet", "SELECT range AS k FROM range(999, 1500)")
    assert kf._streamed_local([a, b], "k") == (2000, 0, 1999)
    assert kf._streamed_local([a, c], "k") is None  # 999 twice


def test_footers_never_decide_alone(tmp_path, monkeypatch):
    """A footer whose range leaves out a stored key makes the answer None (the commit then reads
    the keys itself), never a wrong one; a range wider than the keys still gives their exact
    bounds; files without statistics are read whole."""
    from data_platform.assets import key_facts as kf

    path = _duckdb_parquet(tmp_path / "k.parquet", "SELECT range + 5 AS k FROM range(20000)")
    real = kf._footer_bounds
    monkeypatch.setattr(kf, "_footer_bounds", lambda p, c: (20000, 6, 20004))  # 5 left out
    assert kf._streamed_local([path], "k") is None
    monkeypatch.setattr(kf, "_footer_bounds", lambda p, c: (20000, 0, 30000))
    assert kf._streamed_local([path], "k") == (20000, 5, 20004)
    monkeypatch.setattr(kf, "_footer_bounds", lambda p, c: (19999, 5, 20004))  # a row unsaid
    assert kf._streamed_local([path], "k") is None
    monkeypatch.setattr(kf, "_footer_bounds", real)
    bare = tmp_path / "bare.parquet"
    pq.write_table(pa.table({"k": list(range(100))}), bare, write_statistics=False)
    assert kf._streamed_local([str(bare)], "k") is kf._UNKNOWN
    assert kf._sorted_unique(None, [str(bare)], "k") == (100, 0, 99)
