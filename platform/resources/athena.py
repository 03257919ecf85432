"""Running one SQL statement on Athena: start it, wait for it, page its results, type them.

`run_query(client, sql, ...)` takes a boto3 Athena client (built with retries, so throttled API
calls are retried by botocore) and returns a `QueryResult` whose rows hold Python values, not
the strings Athena returns: decimals stay exact (`decimal.Decimal`), dates and timestamps become
`datetime` objects, NULL becomes None. A failed, cancelled or timed-out query raises
`AthenaQueryError`; a failure Athena marks as retryable is re-run a bounded number of times.

Nothing here imports Dagster: the catalog resource, the maintenance job and any script share it.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
import re
import time
from collections.abc import Callable
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from botocore.exceptions import ClientError

PAGE_SIZE = 1000  # the most get_query_results returns per call
MB = 2**20
TB = 2**40
MIN_BILLED_BYTES = 10 * MB


class AthenaQueryError(RuntimeError):
    """An Athena query failed, was cancelled or timed out; says which query and why."""

    def __init__(self, message: str, *, query_id: str, state: str, reason: str = "",
                 error: dict | None = None):
        super().__init__(message)
        self.query_id, self.state, self.reason = query_id, state, reason
        self.error = error or {}

    @property
    def retryable(self) -> bool:
        """Whether Athena says re-running the query may succeed (throttling, system errors)."""
        if "Retryable" in self.error:
            return bool(self.error["Retryable"])
        return self.error.get("ErrorCategory") == 1  # SYSTEM; 2 is USER, 3 OTHER


@dataclasses.dataclass(frozen=True)
class QueryResult:
    """What one successful query returned, with Athena's statistics."""

    query_id: str
    state: str
    columns: list[str]
    types: list[str]
    rows: list[tuple]
    bytes_scanned: int = 0
    engine_ms: int = 0
    statement_type: str = ""
    attempts: int = 1

    def estimated_cost_usd(self, price_per_tb: float = 5.0) -> float:
        """Estimated charge of this query in USD. Athena bills data scanned, rounded up to the
        megabyte with a 10 MB minimum per query, at `price_per_tb` per TB (taken as 2**40
        bytes here); DDL statements are not billed. An estimate, not the bill: the price
        differs per region and capacity reservations bill differently."""
        if self.statement_type == "DDL":
            return 0.0
        billed = max(math.ceil(self.bytes_scanned / MB) * MB, MIN_BILLED_BYTES)
        return billed / TB * price_per_tb


@dataclasses.dataclass(frozen=True)
class Poll:
    """How to wait for a query: the first delay, its growth and cap (seconds); the clock and
    sleep used (tests pass their own so that nothing waits)."""

    first_s: float = 0.2
    factor: float = 1.5
    cap_s: float = 2.0
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.monotonic


def run_query(client, sql: str, *, workgroup: str, database: str | None = None,
              output_url: str | None = None, timeout_s: float = 300.0, poll: Poll = Poll(),
              retries: int = 2) -> QueryResult:
    """Run `sql` in `workgroup` (default database `database`; results to `output_url` when
    the workgroup does not set one) and wait at most `timeout_s` overall.

    Returns a QueryResult with typed rows. Raises AthenaQueryError when the query fails or is
    cancelled (with Athena's reason and error category/type), or when it times out (after
    asking Athena to stop it). A failure Athena marks retryable is started again up to
    `retries` times: a failed statement changed nothing (an Iceberg commit is atomic).
    """
    params: dict[str, Any] = {"QueryString": sql, "WorkGroup": workgroup}
    if database:
        params["QueryExecutionContext"] = {"Database": database}
    if output_url:
        params["ResultConfiguration"] = {"OutputLocation": output_url}
    deadline = poll.clock() + timeout_s
    attempt = 0
    while True:
        attempt += 1
        # botocore fills in ClientRequestToken once per call, so its own retries of a
        # throttled start never start the query twice.
        qid = client.start_query_execution(**params)["QueryExecutionId"]
        execution = _wait(client, qid, deadline, timeout_s, poll)
        state = execution["Status"]["State"]
        if state == "SUCCEEDED":
            break
        error = _failure(qid, execution)
        pause = min(poll.cap_s * attempt, deadline - poll.clock())
        if not (state == "FAILED" and error.retryable and attempt <= retries and pause > 0):
            raise error
        poll.sleep(pause)
    columns, types, rows = _results(client, qid)
    stats = execution.get("Statistics") or {}
    return QueryResult(query_id=qid, state=state, columns=columns, types=types, rows=rows,
                       bytes_scanned=int(stats.get("DataScannedInBytes") or 0),
                       engine_ms=int(stats.get("EngineExecutionTimeInMillis") or 0),
                       statement_type=execution.get("StatementType", ""), attempts=attempt)


def _wait(client, qid: str, deadline: float, timeout_s: float, poll: Poll) -> dict:
    """Poll until the query leaves QUEUED/RUNNING; returns its QueryExecution."""
    delay = poll.first_s
    while True:
        execution = client.get_query_execution(QueryExecutionId=qid)["QueryExecution"]
        if execution["Status"]["State"] in ("SUCCEEDED", "FAILED", "CANCELLED"):
            return execution
        left = deadline - poll.clock()
        if left <= 0:
            try:
                client.stop_query_execution(QueryExecutionId=qid)
            except ClientError:
                pass  # it finished meanwhile: the timeout still stands, it came too late
            raise AthenaQueryError(f"Athena query {qid} timed out after {timeout_s:g}s "
                                   "(asked Athena to stop it)", query_id=qid, state="TIMEOUT")
        poll.sleep(min(delay, left))
        delay = min(delay * poll.factor, poll.cap_s)


def _failure(qid: str, execution: dict) -> AthenaQueryError:
    status = execution["Status"]
    state, reason = status["State"], status.get("StateChangeReason", "")
    error = status.get("AthenaError") or {}
    detail = ""
    if error:
        category = {1: "SYSTEM", 2: "USER", 3: "OTHER"}.get(error.get("ErrorCategory"), "?")
        detail = (f" [ErrorCategory {error.get('ErrorCategory')} ({category}), ErrorType "
                  f"{error.get('ErrorType')}, retryable: {bool(error.get('Retryable'))}]")
        if error.get("ErrorMessage") and error["ErrorMessage"] not in reason:
            detail += f" {error['ErrorMessage']}"
    return AthenaQueryError(f"Athena query {qid} {state}: {reason or 'no reason given'}{detail}",
                            query_id=qid, state=state, reason=reason, error=error)


def _results(client, qid: str) -> tuple[list[str], list[str], list[tuple]]:
    """Every page of the results: (column names, type names, typed rows)."""
    columns: list[str] = []
    types: list[str] = []
    converters: list[Callable[[str | None], Any]] = []
    rows: list[tuple] = []
    token, page_no = None, 0
    while True:
        kwargs: dict[str, Any] = {"QueryExecutionId": qid, "MaxResults": PAGE_SIZE}
        if token:
            kwargs["NextToken"] = token
        page = client.get_query_results(**kwargs)
        page_no += 1
        result_set = page["ResultSet"]
        data = result_set.get("Rows", [])
        if page_no == 1:
            info = result_set.get("ResultSetMetadata", {}).get("ColumnInfo", [])
            columns = [c["Name"] for c in info]
            types = [type_name(c) for c in info]
            converters = [converter(c) for c in info]
            # A SELECT's first page starts with a row of column labels; DDL and SHOW results
            # have none, so the row is dropped only when it is exactly the labels.
            labels = [c.get("Label", c["Name"]) for c in info]
            if data and [d.get("VarCharValue") for d in data[0]["Data"]] in (labels, columns):
                data = data[1:]
        for row in data:
            cells = row["Data"]
            rows.append(tuple(conv(cell.get("VarCharValue"))
                              for conv, cell in zip(converters, cells)))
        token = page.get("NextToken")
        if not token:
            return columns, types, rows


def type_name(info: dict) -> str:
    """The column's type as Athena names it, with precision and scale for decimals."""
    name = info["Type"]
    if name == "decimal" and "Precision" in info:
        return f"decimal({info['Precision']},{info.get('Scale', 0)})"
    return name


def converter(info: dict) -> Callable[[str | None], Any]:
    """A function turning Athena's text of one value of this column into a Python value
    (None stays None: a NULL has no VarCharValue)."""
    base = re.sub(r"\(.*", "", info["Type"].strip().lower()).strip()
    with_tz = "with time zone" in info["Type"].lower()
    if base.startswith("timestamp"):
        parse = _timestamp_tz if with_tz else _timestamp
    elif base.startswith("time"):
        parse = _time
    else:
        parse = _PARSERS.get(base, str)

    def convert(value: str | None):
        return None if value is None else parse(value)
    return convert


def _bool(text: str) -> bool:
    return text.lower() == "true"


def _float(text: str) -> float:
    # float() reads "NaN", "Infinity" and "-Infinity", as Athena prints them.
    return float(text)


def _bytes(text: str) -> bytes:
    # Athena prints varbinary as hex pairs separated by spaces, which fromhex accepts.
    return bytes.fromhex(text)


_PARSERS: dict[str, Callable[[str], Any]] = {
    "boolean": _bool,
    "tinyint": int, "smallint": int, "integer": int, "int": int, "bigint": int,
    "double": _float, "float": _float, "real": _float,
    "decimal": Decimal,  # exact: never through float
    "varchar": str, "char": str, "string": str,
    "date": dt.date.fromisoformat,
    "varbinary": _bytes,
    # Nested and JSON values stay text: Athena renders arrays, maps and rows as `[a, b]`,
    # `{k=v}` and `{f=v}` without quoting, so a value holding `,` `=` or `}` cannot be parsed
    # back reliably. JSON is already text the caller can json.loads.
    "json": str, "array": str, "map": str, "row": str, "struct": str,
}

_CLOCK = r"(\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,12}))?)?"
_TS = re.compile(r"(\d{4})-(\d{2})-(\d{2})[ T]" + _CLOCK + r"\s*(.*)")
_TIME = re.compile(_CLOCK + r"\s*(.*)")
_OFFSET = re.compile(r"([+-])(\d{2}):?(\d{2})")


def _micro(fraction: str | None) -> int:
    # Athena prints up to 9 fractional digits (nanoseconds); Python keeps 6: truncate, so a
    # value never moves into the next second.
    return int((fraction or "")[:6].ljust(6, "0"))


def _zone(text: str) -> dt.tzinfo | None:
    """The tzinfo of a zone suffix (`UTC`, `Z`, `+01:00`, `Europe/Berlin`); None if unknown."""
    if text in ("UTC", "Z", "GMT", "Etc/UTC", "UCT"):
        return dt.timezone.utc
    m = _OFFSET.fullmatch(text)
    if m:
        delta = dt.timedelta(hours=int(m.group(2)), minutes=int(m.group(3)))
        return dt.timezone(-delta if m.group(1) == "-" else delta)
    try:
        return ZoneInfo(text)
    except (ZoneInfoNotFoundError, ValueError):
        return None


def _timestamp(text: str) -> dt.datetime | str:
    m = _TS.fullmatch(text.strip())
    if not m:
        return text  # e.g. a year outside Python's 1..9999: keep Athena's text
    y, mo, d, h, mi, s, frac, _ = m.groups()
    return dt.datetime(int(y), int(mo), int(d), int(h), int(mi), int(s or 0), _micro(frac))


def _timestamp_tz(text: str) -> dt.datetime | str:
    """An aware datetime; a zone name zoneinfo does not know keeps the text, so the value
    is never silently read as another zone."""
    m = _TS.fullmatch(text.strip())
    if not m:
        return text
    naive = _timestamp(text)
    zone = _zone(m.group(8).strip() or "UTC")
    return text if zone is None else naive.replace(tzinfo=zone)


def _time(text: str) -> dt.time | str:
    m = _TIME.fullmatch(text.strip())
    if not m:
        return text
    h, mi, s, frac, rest = m.groups()
    zone = _zone(rest.strip()) if rest.strip() else None
    if rest.strip() and zone is None:
        return text
    return dt.time(int(h), int(mi), int(s or 0), _micro(frac), tzinfo=zone)
