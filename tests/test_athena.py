"""The Athena query path (resources/athena.py): typing, paging, polling, failures, retries.

Athena cannot run here (moto's Athena executes no SQL and never fails or queues a query), so
these tests drive a real boto3 Athena client through botocore's Stubber: the responses are the
shapes Athena documents, written here, and what is asserted is what our code does with them
(the values it types, the calls it makes and in which order), never a number as if measured.
The clock and sleep are the test's own, so no test waits.
"""

import datetime as dt
import math
from decimal import Decimal
from zoneinfo import ZoneInfo

import boto3
import pytest
from botocore.stub import Stubber
from data_platform.resources import GlueCatalog
from data_platform.resources.athena import (
    MB,
    TB,
    AthenaQueryError,
    Poll,
    QueryResult,
    converter,
    run_query,
)


class FakeTime:
    """A clock that moves only when the code under test sleeps; remembers every sleep."""

    def __init__(self):
        self.now, self.sleeps = 0.0, []

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds

    def poll(self, **kw) -> Poll:
        return Poll(sleep=self.sleep, clock=lambda: self.now, **kw)


@pytest.fixture
def athena():
    """A real Athena client (no endpoint is ever reached) and its Stubber, checked at the end."""
    client = boto3.client("athena", region_name="eu-west-1", aws_access_key_id="testing",
                          aws_secret_access_key="testing")
    with Stubber(client) as stub:
        yield client, stub
        stub.assert_no_pending_responses()


def started(stub, qid="q-1", **params):
    params = {"QueryString": "SELECT 1", "WorkGroup": "wg", **params}
    stub.add_response("start_query_execution", {"QueryExecutionId": qid}, params)


def status(stub, state, qid="q-1", reason=None, error=None, scanned=None, statement="DML"):
    st = {"State": state}
    if reason:
        st["StateChangeReason"] = reason
    if error:
        st["AthenaError"] = error
    execution = {"QueryExecutionId": qid, "Status": st, "StatementType": statement}
    if scanned is not None:
        execution["Statistics"] = {"DataScannedInBytes": scanned, "EngineExecutionTimeInMillis": 42}
    stub.add_response("get_query_execution", {"QueryExecution": execution},
                      {"QueryExecutionId": qid})


def page(stub, columns, rows, qid="q-1", header=True, token=None, next_token=None):
    """One get_query_results page; `columns` are (name, type[, precision, scale])."""
    info = [{"Name": c[0], "Label": c[0], "Type": c[1],
             **({"Precision": c[2], "Scale": c[3]} if len(c) > 2 else {})} for c in columns]
    cells = [[{} if v is None else {"VarCharValue": v} for v in r] for r in rows]
    if header:
        cells.insert(0, [{"VarCharValue": c[0]} for c in columns])
    response = {"ResultSet": {"Rows": [{"Data": r} for r in cells],
                              "ResultSetMetadata": {"ColumnInfo": info}}}
    if next_token:
        response["NextToken"] = next_token
    expected = {"QueryExecutionId": qid, "MaxResults": 1000}
    if token:
        expected["NextToken"] = token
    stub.add_response("get_query_results", response, expected)


BERLIN = ZoneInfo("Europe/Berlin")


@pytest.mark.parametrize("athena_type, text, expected", [
    ("boolean", "true", True), ("boolean", "false", False),
    ("tinyint", "-7", -7), ("smallint", "300", 300), ("integer", "70000", 70000),
    ("bigint", "9223372036854775807", 2**63 - 1),
    ("double", "2.5", 2.5), ("real", "-Infinity", -math.inf), ("float", "Infinity", math.inf),
    ("decimal", "12345678901234567890.123456789",
     Decimal("12345678901234567890.123456789")),
    ("decimal(10,2)", "0.10", Decimal("0.10")),
    ("varchar", "héllo, world", "héllo, world"), ("char", "ab ", "ab "), ("varchar", "", ""),
    ("string", "x", "x"),
    ("date", "2024-02-29", dt.date(2024, 2, 29)),
    ("timestamp", "2024-01-02 03:04:05.123", dt.datetime(2024, 1, 2, 3, 4, 5, 123000)),
    ("timestamp", "2024-01-02 03:04:05.123456", dt.datetime(2024, 1, 2, 3, 4, 5, 123456)),
    # nanoseconds: truncated to microseconds, never rounded into the next second
    ("timestamp(9)", "2024-01-02 03:04:05.999999999",
     dt.datetime(2024, 1, 2, 3, 4, 5, 999999)),
    ("timestamp", "2024-01-02 03:04:05", dt.datetime(2024, 1, 2, 3, 4, 5)),
    ("timestamp with time zone", "2024-01-02 03:04:05.123 UTC",
     dt.datetime(2024, 1, 2, 3, 4, 5, 123000, tzinfo=dt.timezone.utc)),
    ("timestamp(6) with time zone", "2024-01-02 03:04:05.123456789 -05:30",
     dt.datetime(2024, 1, 2, 3, 4, 5, 123456,
                 tzinfo=dt.timezone(-dt.timedelta(hours=5, minutes=30)))),
    ("timestamp with time zone", "2024-07-02 03:04:05.000 Europe/Berlin",
     dt.datetime(2024, 7, 2, 3, 4, 5, tzinfo=BERLIN)),
    # a zone zoneinfo does not know keeps Athena's text rather than guessing an offset
    ("timestamp with time zone", "2024-01-02 03:04:05.000 Mars/Olympus",
     "2024-01-02 03:04:05.000 Mars/Olympus"),
    ("time", "03:04:05.123456789", dt.time(3, 4, 5, 123456)),
    ("time with time zone", "03:04:05.500+01:00",
     dt.time(3, 4, 5, 500000, tzinfo=dt.timezone(dt.timedelta(hours=1)))),
    ("varbinary", "48 65 6c 6c 6f", b"Hello"), ("varbinary", "", b""),
    ("json", '{"a": [1, 2]}', '{"a": [1, 2]}'),
    ("array", "[a, b, c]", "[a, b, c]"), ("map", "{k=v}", "{k=v}"),
    ("row", "{x=1, y=a}", "{x=1, y=a}"),
    ("interval day to second", "1 02:00:00.000", "1 02:00:00.000"),  # unknown: text
])
def test_athena_text_converts_to_python_values(athena_type, text, expected):
    value = converter({"Type": athena_type})(text)
    assert value == expected and type(value) is type(expected)
    if isinstance(expected, dt.datetime):
        assert value.utcoffset() == expected.utcoffset()


def test_nan_stays_a_float_and_nulls_become_none():
    assert math.isnan(converter({"Type": "double"})("NaN"))
    for t in ("boolean", "bigint", "double", "decimal", "varchar", "date", "timestamp",
              "timestamp with time zone", "time", "varbinary", "json", "array"):
        assert converter({"Type": t})(None) is None


def test_a_select_returns_typed_rows_columns_and_statistics(athena):
    client, stub = athena
    clock = FakeTime()
    started(stub)
    status(stub, "SUCCEEDED", scanned=123456)
    cols = [("id", "bigint"), ("amount", "decimal", 10, 2), ("day", "date"),
            ("at", "timestamp"), ("ok", "boolean"), ("name", "varchar")]
    page(stub, cols, [["1", "2.50", "2026-11-20", "2026-11-20 10:00:00.000", "true", "a"],
                      [None, None, None, None, None, None]])
    r = run_query(client, "SELECT 1", workgroup="wg", poll=clock.poll())
    assert r.columns == ["id", "amount", "day", "at", "ok", "name"]
    assert r.types == ["bigint", "decimal(10,2)", "date", "timestamp", "boolean", "varchar"]
    assert r.rows == [(1, Decimal("2.50"), dt.date(2026, 11, 20),
                       dt.datetime(2026, 11, 20, 10), True, "a"), (None,) * 6]
    assert (r.query_id, r.state, r.bytes_scanned, r.engine_ms, r.attempts) == (
        "q-1", "SUCCEEDED", 123456, 42, 1)
    assert clock.sleeps == []  # it had already succeeded: no wait


def test_results_page_with_next_token_and_the_header_only_on_page_one(athena):
    client, stub = athena
    started(stub)
    status(stub, "SUCCEEDED")
    cols = [("n", "integer"), ("s", "varchar")]
    page(stub, cols, [["1", "a"], ["2", "b"]], next_token="t1")
    # Later pages have no header: a data row equal to the labels is data there.
    page(stub, cols, [["3", "c"], [None, "s"]], header=False, token="t1", next_token="t2")
    page(stub, cols, [["5", None]], header=False, token="t2")
    r = run_query(client, "SELECT 1", workgroup="wg", poll=FakeTime().poll())
    assert r.rows == [(1, "a"), (2, "b"), (3, "c"), (None, "s"), (5, None)]


def test_a_ddl_result_without_a_header_keeps_its_first_row(athena):
    client, stub = athena
    started(stub, QueryString="SHOW TABLES")
    status(stub, "SUCCEEDED", statement="UTILITY")
    page(stub, [("tab_name", "string")], [["orders"], ["orders_rejected"]], header=False)
    r = run_query(client, "SHOW TABLES", workgroup="wg", poll=FakeTime().poll())
    assert r.rows == [("orders",), ("orders_rejected",)]
    assert r.statement_type == "UTILITY"


def test_queued_then_running_is_polled_with_growing_capped_delays(athena):
    client, stub = athena
    clock = FakeTime()
    started(stub)
    for state in ["QUEUED"] * 2 + ["RUNNING"] * 6 + ["SUCCEEDED"]:
        status(stub, state)
    page(stub, [("n", "integer")], [["1"]])
    r = run_query(client, "SELECT 1", workgroup="wg", poll=clock.poll())
    assert r.rows == [(1,)]
    assert clock.sleeps == pytest.approx([0.2, 0.3, 0.45, 0.675, 1.0125, 1.51875, 2.0, 2.0])


def test_start_parameters_name_workgroup_database_and_output_only_when_given(athena):
    client, stub = athena
    started(stub, "q-a", QueryExecutionContext={"Database": "platform"},
            ResultConfiguration={"OutputLocation": "s3://b/athena-results/"})
    status(stub, "SUCCEEDED", "q-a")
    page(stub, [("n", "integer")], [], "q-a")
    started(stub, "q-b")  # no database, no output location: the workgroup's settings apply
    status(stub, "SUCCEEDED", "q-b")
    page(stub, [("n", "integer")], [], "q-b")
    assert run_query(client, "SELECT 1", workgroup="wg", database="platform",
                     output_url="s3://b/athena-results/", poll=FakeTime().poll()).rows == []
    assert run_query(client, "SELECT 1", workgroup="wg", poll=FakeTime().poll()).rows == []


def test_failed_query_raises_with_reason_and_athena_error_and_is_not_retried(athena):
    client, stub = athena
    started(stub)
    status(stub, "RUNNING")
    status(stub, "FAILED", reason="COLUMN_NOT_FOUND: line 1:8: Column 'x' cannot be resolved",
           error={"ErrorCategory": 2, "ErrorType": 1006, "Retryable": False,
                  "ErrorMessage": "COLUMN_NOT_FOUND: line 1:8: Column 'x' cannot be resolved"})
    with pytest.raises(AthenaQueryError) as e:
        run_query(client, "SELECT 1", workgroup="wg", poll=FakeTime().poll())
    msg = str(e.value)
    assert "q-1" in msg and "FAILED" in msg and "Column 'x' cannot be resolved" in msg
    assert "ErrorCategory 2 (USER)" in msg and "ErrorType 1006" in msg
    assert (e.value.query_id, e.value.state, e.value.retryable) == ("q-1", "FAILED", False)


def test_cancelled_query_raises_and_is_not_retried(athena):
    client, stub = athena
    started(stub)
    status(stub, "CANCELLED", reason="Query cancelled by user")
    with pytest.raises(AthenaQueryError, match=r"q-1 CANCELLED: Query cancelled by user"):
        run_query(client, "SELECT 1", workgroup="wg", poll=FakeTime().poll())


@pytest.mark.parametrize("stop_fails", [False, True])
def test_timeout_stops_the_query_and_raises_naming_it(athena, stop_fails):
    client, stub = athena
    clock = FakeTime()
    started(stub)
    for _ in range(5):  # sleeps 0.25, 0.5, 1, then the 0.25 left of 2 s: five polls
        status(stub, "RUNNING")
    if stop_fails:  # finished between the last poll and the stop: the timeout still stands
        stub.add_client_error("stop_query_execution", "InvalidRequestException",
                              expected_params={"QueryExecutionId": "q-1"})
    else:
        stub.add_response("stop_query_execution", {}, {"QueryExecutionId": "q-1"})
    with pytest.raises(AthenaQueryError, match=r"q-1 timed out after 2s") as e:
        run_query(client, "SELECT 1", workgroup="wg", timeout_s=2,
                  poll=clock.poll(first_s=0.25, factor=2, cap_s=1))
    assert e.value.state == "TIMEOUT"
    assert clock.sleeps == [0.25, 0.5, 1, 0.25] and clock.now == 2


def test_retryable_failure_is_started_again_and_then_succeeds(athena):
    client, stub = athena
    clock = FakeTime()
    started(stub, "q-1")
    status(stub, "FAILED", "q-1", reason="Throttling: rate exceeded",
           error={"ErrorCategory": 1, "ErrorType": 1002, "Retryable": True})
    started(stub, "q-2")
    status(stub, "SUCCEEDED", "q-2", scanned=10)
    page(stub, [("n", "integer")], [["1"]], "q-2")
    r = run_query(client, "SELECT 1", workgroup="wg", poll=clock.poll())
    assert (r.query_id, r.attempts, r.rows) == ("q-2", 2, [(1,)])
    assert clock.sleeps == [2.0]  # one pause before the restart


def test_retryable_failures_stop_after_the_bound(athena):
    client, stub = athena
    for qid in ("q-1", "q-2"):
        started(stub, qid)
        # no Retryable flag: a SYSTEM (category 1) error counts as retryable
        status(stub, "FAILED", qid, reason="Internal error", error={"ErrorCategory": 1,
                                                                   "ErrorType": 401})
    with pytest.raises(AthenaQueryError, match="q-2 FAILED: Internal error") as e:
        run_query(client, "SELECT 1", workgroup="wg", retries=1, poll=FakeTime().poll())
    assert e.value.retryable


def test_a_system_error_athena_marks_not_retryable_is_not_retried(athena):
    client, stub = athena
    started(stub)
    status(stub, "FAILED", reason="Internal error",
           error={"ErrorCategory": 1, "ErrorType": 401, "Retryable": False})
    with pytest.raises(AthenaQueryError, match="retryable: False") as e:
        run_query(client, "SELECT 1", workgroup="wg", poll=FakeTime().poll())
    assert not e.value.retryable


def test_estimated_cost_bills_megabytes_with_a_10_mb_minimum():
    def cost(scanned, statement="DML", price=5.0):
        return QueryResult("q", "SUCCEEDED", [], [], [], bytes_scanned=scanned,
                           statement_type=statement).estimated_cost_usd(price)
    assert cost(0) == cost(1) == cost(10 * MB) == pytest.approx(10 * MB / TB * 5.0)
    assert cost(10 * MB + 1) == pytest.approx(11 * MB / TB * 5.0)  # rounded up to the MB
    assert cost(TB) == pytest.approx(5.0) and cost(TB, price=6.75) == pytest.approx(6.75)
    assert cost(TB, statement="DDL") == 0.0  # DDL is not billed


def test_glue_catalog_runs_queries_in_its_workgroup_and_database(athena, monkeypatch):
    """GlueCatalog.query keeps returning rows (now typed); execute returns the statistics."""
    client, stub = athena
    monkeypatch.setattr(GlueCatalog, "athena", lambda self: client)
    params = {"QueryExecutionContext": {"Database": "platform"},
              "ResultConfiguration": {"OutputLocation": "s3://lake/athena-results/"}}
    started(stub, QueryString="SELECT sum(amount) FROM orders", **params)
    status(stub, "SUCCEEDED", scanned=3 * MB)
    page(stub, [("s", "decimal", 18, 2)], [["7.50"]])
    started(stub, "q-2", QueryString="VACUUM orders", **params)
    status(stub, "SUCCEEDED", "q-2", scanned=20 * MB)
    page(stub, [], [], "q-2", header=False)
    catalog = GlueCatalog(database="platform", workgroup="wg",
                          output_url="s3://lake/athena-results/")
    assert catalog.query("SELECT sum(amount) FROM orders") == [(Decimal("7.50"),)]
    result = catalog.execute("VACUUM orders")
    assert result.bytes_scanned == 20 * MB
    assert result.estimated_cost_usd() == pytest.approx(20 * MB / TB * 5.0)
