"""The drift check on crafted histories, through the real cleaned/table assets (ephemeral
instance, local Iceberg catalog and lake on tmp folders), and the profile and score functions
directly for edge cases (all-null column, empty file, one row, constant history).
"""

import random

import dagster as dg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from data_platform import staging as st
from data_platform.contracts import parse_contract
from data_platform.definitions import build_definitions
from data_platform.monitor.drift import MIN_HISTORY, read_history, score_profile
from data_platform.monitor.profile import profile_files
from data_platform.resources import LocalStorage

from .conftest import write_raw
from .helpers import check_results, run_ingest

HEADER = "Order ID,Customer,Amount,Currency,Ordered At,Order Date,Gift?\n"
ROWS = 200


def orders_file(seed: int, *, mean=50.0, null_currency=0.0, currencies=None) -> str:
    """A day of orders: amounts ~ N(mean, 10), currencies EUR/USD/GBP (or `currencies`),
    a share `null_currency` of them empty; ids unique per seed."""
    rng = random.Random(seed)
    weights = currencies or {"EUR": 0.7, "USD": 0.2, "GBP": 0.1}
    lines = []
    for i in range(ROWS):
        cur = "" if rng.random() < null_currency else rng.choices(
            list(weights), list(weights.values()))[0]
        gift = "true" if rng.random() < 0.1 else "false"
        lines.append(f"{seed * 1000 + i},c{rng.randrange(50)},{rng.gauss(mean, 10):.2f},{cur},"
                     f"2026-11-20T10:00:00+00:00,2026-11-20,{gift}\n")
    return HEADER + "".join(lines)


def drift_of(result):
    return check_results(result)[("table/orders", "drift")]


@pytest.fixture
def instance():
    return dg.DagsterInstance.ephemeral()


def test_drifted_files_warn_with_their_columns_and_similar_ones_pass(data_dir, instance):
    defs = build_definitions()
    # 20 similar files in one run: scored in order, each against the ones before it.
    keys = [f"day{n:02d}.csv" for n in range(20)]
    for n, key in enumerate(keys):
        write_raw(data_dir, f"orders/{key}", orders_file(n))
    r = run_ingest(defs, instance, "orders", keys)
    assert r.success
    first = drift_of(r)
    assert first.passed, first.metadata["warned"].value
    detail = first.metadata["detail"].value
    assert "not scored yet" in detail["day00.csv"]["note"]
    assert detail["day19.csv"]["history_files"] == 19 and not detail["day19.csv"]["note"]
    assert set(detail["day19.csv"]["scores"]) >= {"amount", "currency", "customer", "is_gift"}
    lake = LocalStorage().lake()
    assert len(read_history(lake, "orders")) == 20
    rec = st.latest_record(lake, "orders", "day19.csv")
    assert rec.profile["rows"] == ROWS and rec.profile["columns"]["amount"]["kind"] == "number"

    def one(key, content):
        write_raw(data_dir, f"orders/{key}", content)
        result = run_ingest(defs, instance, "orders", [key])
        assert result.success  # drift never blocks the commit
        return drift_of(result)

    shifted = one("shifted.csv", orders_file(100, mean=65.0))  # +1.5 standard deviations
    assert not shifted.passed and shifted.severity == dg.AssetCheckSeverity.WARN
    assert shifted.metadata["drifted_columns"].value == {"shifted.csv": ["amount"]}
    assert "amount (" in shifted.metadata["warned"].value["shifted.csv"]
    assert shifted.metadata["history_files"].value == 20
    assert shifted.metadata["history"].value["amount"]["mean"] == pytest.approx(50, abs=2)
    assert shifted.metadata["profiles"].value["shifted.csv"]["columns"]["amount"]["mean"] \
        == pytest.approx(65, abs=2)
    # Order ids grow file after file, and dates move: neither is scored for location.
    assert set(shifted.metadata["scores"].value["shifted.csv"]["order_id"]) == {"null_share"}

    nulls = one("nulls.csv", orders_file(101, null_currency=0.4))
    assert not nulls.passed
    assert nulls.metadata["drifted_columns"].value == {"nulls.csv": ["currency"]}
    assert nulls.metadata["scores"].value["nulls.csv"]["currency"]["null_share"] > 3

    dominant = one("yen.csv", orders_file(102, currencies={"JPY": 0.6, "EUR": 0.4}))
    assert not dominant.passed
    assert dominant.metadata["drifted_columns"].value == {"yen.csv": ["currency"]}
    assert dominant.metadata["scores"].value["yen.csv"]["currency"]["top_values"] > 3

    similar = one("similar.csv", orders_file(103))
    assert similar.passed, similar.metadata["warned"].value
    # The committed rows are all there: drift warns, it does not hold anything back.
    assert instance.get_materialized_partitions(dg.AssetKey(["table", "orders"])) >= {
        "shifted.csv", "nulls.csv", "yen.csv", "similar.csv"}


def test_no_history_passes_with_a_note(data_dir, instance):
    write_raw(data_dir, "orders/a.csv", orders_file(1))
    r = run_ingest(build_definitions(), instance, "orders", ["a.csv"])
    check = drift_of(r)
    assert check.passed
    assert "history of 0 file(s)" in check.metadata["note"].value
    assert check.metadata["history_files"].value == 0


CONTRACT = parse_contract({
    "name": "t", "columns": [{"name": "id", "type": "int"}, {"name": "x", "type": "float"},
                             {"name": "s", "type": "string"}, {"name": "d", "type": "date"},
                             {"name": "b", "type": "bool"}],
    "primary_key": ["id"]})


def write(tmp_path, name, columns: dict) -> list:
    path = tmp_path / f"{name}.parquet"
    pq.write_table(pa.table(columns), path)
    return [path]


def test_profile_edge_cases(tmp_path):
    import datetime as dt

    empty = profile_files(write(tmp_path, "empty", {
        "id": pa.array([], pa.int64()), "x": pa.array([], pa.float64()),
        "s": pa.array([], pa.string())}), CONTRACT)
    assert empty["rows"] == 0
    assert empty["columns"]["x"] == {"kind": "number", "null_share": None, "distinct": 0}
    assert "d" not in empty["columns"]  # not in the file: not profiled
    assert profile_files([], CONTRACT) == {"rows": 0, "columns": {}}

    all_null = profile_files(write(tmp_path, "nulls", {
        "id": [1, 2, 3], "x": pa.array([None] * 3, pa.float64()),
        "s": pa.array([None] * 3, pa.string())}), CONTRACT)
    assert all_null["columns"]["x"] == {"kind": "number", "null_share": 1.0, "distinct": 0}
    assert all_null["columns"]["s"] == {"kind": "string", "null_share": 1.0, "distinct": 0}

    one = profile_files(write(tmp_path, "one", {
        "id": [7], "x": [2.5], "s": ["a"], "d": [dt.date(2026, 1, 2)], "b": [True]}), CONTRACT)
    x = one["columns"]["x"]
    assert (x["mean"], x["stddev"], x["p05"], x["p50"], x["p95"]) == (2.5, None, 2.5, 2.5, 2.5)
    assert one["columns"]["s"]["top"] == [["a", 1.0]]
    assert one["columns"]["d"] == {"kind": "time", "null_share": 0.0, "distinct": 1,
                                   "min": "2026-01-02", "max": "2026-01-02"}
    assert one["columns"]["b"]["mean"] == 1.0 and "p50" not in one["columns"]["b"]

    many = profile_files(write(tmp_path, "many", {
        "id": list(range(100)), "x": [float(i) for i in range(100)],
        "s": ["a"] * 50 + ["b"] * 30 + [None] * 20}), CONTRACT)
    s = many["columns"]["s"]
    assert (s["null_share"], s["distinct"], s["top"]) == (0.2, 2, [["a", 0.5], ["b", 0.3]])
    assert many["columns"]["x"]["p50"] == pytest.approx(49.5, abs=1)


def profile(x_mean: float, *, rows=100, null_share=0.0, top=(("a", 0.5), ("b", 0.5))):
    return {"rows": rows, "columns": {
        "id": {"kind": "number", "null_share": 0.0, "mean": 1e6 * x_mean, "stddev": 1.0},
        "x": {"kind": "number", "null_share": null_share, "mean": x_mean, "stddev": 1.0,
              "p05": x_mean - 1.6, "p50": x_mean, "p95": x_mean + 1.6},
        "s": {"kind": "string", "null_share": 0.0, "top": [list(t) for t in top]}}}


def test_scores_against_constant_and_short_histories():
    history = [profile(10.0) for _ in range(MIN_HISTORY)]
    # Identical history files: the floors decide (0.1 stddev; 2 points of nulls; 0.05).
    same = score_profile(CONTRACT, profile(10.0), history)
    assert same["drifted"] == {} and same["scores"]["x"] == 0
    small = score_profile(CONTRACT, profile(10.2), history)  # 0.2 stddev: z = 2
    assert small["scores"]["x"] == pytest.approx(2.0) and not small["drifted"]
    big = score_profile(CONTRACT, profile(10.8, null_share=0.1), history)
    assert set(big["drifted"]) == {"x"}
    assert big["parts"]["x"]["null_share"] == pytest.approx(5.0)
    assert big["parts"]["x"]["p50"] == pytest.approx(8.0)
    # The primary key grows by design: only its null share is scored.
    assert set(big["parts"]["id"]) == {"null_share"}
    new_value = score_profile(CONTRACT, profile(10.0, top=(("c", 0.9), ("a", 0.1))), history)
    assert set(new_value["drifted"]) == {"s"}
    short = score_profile(CONTRACT, profile(99.0), history[:MIN_HISTORY - 1])
    assert short["drifted"] == {} and "not scored yet" in short["note"]
    assert score_profile(CONTRACT, {"rows": 0, "columns": {}}, history)["note"].startswith(
        "empty file")
    tolerant = parse_contract({**CONTRACT.to_dict(), "checks": {"drift_threshold": 9,
                                                                "drift_ignore": ["s"]}})
    assert score_profile(tolerant, profile(10.8), history)["drifted"] == {}
    assert "s" not in score_profile(tolerant, profile(10.0), history)["scores"]
