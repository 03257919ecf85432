"""The raw-upload sensor's state, kept in the instance's database instead of its cursor.

A cursor is stored with every tick and read whole by every tick; the sensor's state (per
dataset: watermark, recent signatures, versions in flight, messages to acknowledge) would ride
along in each of the ~17,000 ticks a day. Here the cursor is a pointer, `{"v": 3, "gen": G,
"t": last tick (ns)}`, and the state lives in the instance's key-value table (Postgres on AWS,
SQLite locally) under two kinds of keys:

- one *blob* (`STATE_KEY`) holding the state of generation G, the one the saved cursor points
  to, and the state a tick computed on top of it (generation G + 1). The daemon saves a tick's
  cursor only after it has submitted the tick's runs, so a tick that died before that left a
  blob whose newest generation no cursor points to: the next tick reads generation G again and
  makes the same decisions (same run keys, which the daemon drops if they were submitted);
- one row per raw object handled (`handled/<dataset>/<key>` -> [signature, seq]), for lookups
  that must not load every key (queue mode, reconciliation). Rows only ever record committed
  facts: a tick lists the versions it handled in its blob (`flush`), and the *next* tick,
  seeing that blob's generation committed by the cursor, writes them as rows.

A cursor of the previous format (v2, which held the state itself) is taken over; one of another
format, or reset from the UI, starts from an empty state (the runs skip content already
committed).
"""

from __future__ import annotations

import json
from collections.abc import Iterable

import dagster as dg

CURSOR_VERSION = 3
STATE_KEY = "data_platform/raw_uploads/state"
HANDLED_PREFIX = "data_platform/raw_uploads/handled/"


def _kvs(instance: dg.DagsterInstance):
    return instance.run_storage


def parse_cursor(cursor: str | None) -> tuple[int | None, int | None]:
    """(generation, last tick ns) of a cursor; (None, None) for none or another format."""
    try:
        data = json.loads(cursor) if cursor else {}
    except ValueError:
        return None, None
    if not isinstance(data, dict) or data.get("v") != CURSOR_VERSION:
        return None, None
    return data.get("gen"), data.get("t")


def make_cursor(gen: int, now_ns: int) -> str:
    return json.dumps({"v": CURSOR_VERSION, "gen": gen, "t": now_ns})


def legacy_state(cursor: str | None) -> dict:
    """The state a cursor of the previous format (v2) carried itself, as the new state: a
    platform upgraded in place carries on where it was instead of seeing every file anew."""
    try:
        data = json.loads(cursor) if cursor else {}
    except ValueError:
        return {}
    if isinstance(data, dict) and data.get("v") == 2 and isinstance(data.get("datasets"), dict):
        return {"datasets": data["datasets"]}
    return {}


def load_state(instance: dg.DagsterInstance, gen: int | None) -> dict:
    """The state of generation `gen` (empty for None or a generation no longer stored)."""
    if gen is None:
        return {}
    raw = _kvs(instance).get_cursor_values({STATE_KEY}).get(STATE_KEY)
    blob = json.loads(raw) if raw else {}
    if blob.get("g") == gen:
        return blob.get("v") or {}
    if blob.get("pg") == gen:
        return blob.get("pv") or {}
    return {}


def save_state(instance: dg.DagsterInstance, gen: int | None, committed: dict,
               new: dict) -> int:
    """Store `new` as generation gen + 1 next to `committed` (generation gen); return the new
    generation. Nothing is written when the state did not change."""
    base = gen or 0
    if gen is not None and new == committed:
        return gen
    blob = {"g": base + 1, "v": new, "pg": gen, "pv": committed}
    _kvs(instance).set_cursor_values({STATE_KEY: json.dumps(blob, sort_keys=True)})
    return base + 1


def _row_key(dataset: str, key: str) -> str:
    return f"{HANDLED_PREFIX}{dataset}/{key}"


def handled_rows(instance: dg.DagsterInstance, dataset: str,
                 keys: Iterable[str]) -> dict[str, tuple[str, int]]:
    """{key: (signature, seq)} of the committed handled rows of these keys (one query)."""
    names = {_row_key(dataset, k): k for k in keys}
    if not names:
        return {}
    found = _kvs(instance).get_cursor_values(set(names))
    out = {}
    for name, value in found.items():
        if value:
            sig, seq = json.loads(value)
            out[names[name]] = (sig, int(seq))
    return out


def write_handled(instance: dg.DagsterInstance, flush: dict[str, dict[str, list]]) -> int:
    """Write `{dataset: {key: [signature, seq]}}` as handled rows; returns rows written."""
    values = {_row_key(ds, k): json.dumps(v) for ds, keys in flush.items()
              for k, v in keys.items()}
    if values:
        _kvs(instance).set_cursor_values(values)
    return len(values)
