"""Drift: each newly committed file's column profile against the dataset's recent history.

History is the profiles of the last `drift_history` committed files (contract, default 20),
kept newest last in one small JSON object in the lake, `_monitor/<dataset>/drift.json`, and
appended to after each commit. A run's files are scored in version order, each against the
history as it stood before it (so a first backfill of many files is already compared).

Score of one statistic x of the new file, against its values h in the history files:

    z = |x - median(h)| / max(1.4826 * MAD(h), floor)

a robust z-score: how many "usual file-to-file spreads" the new value is away from the usual
value. The floor keeps a history of near-identical files from turning a tiny change into a
huge score: 0.02 for the null share (2 points), and 0.1 x the history's median standard
deviation for numbers. Statistics per column:

    every column       null_share
    numbers            mean, stddev, p05, p50, p95 (bool: mean, the share of true)
    strings            top-value distance: total variation distance between the new file's
                       top-5 value shares and the history's mean shares (values outside
                       anyone's top 5 pooled as "other"); z as above against the history
                       files' own distances, floor 0.05

A column's score is its largest z; the file drifted when any column's score is above the
contract's `drift_threshold` (default 5: a score is the largest of a dozen or more statistics,
and with short histories ordinary files reach 3; 25 similar files of 200 rows peaked at 2.9,
while a mean moved by 1.5 standard deviations scores about 15). Dates and timestamps, the primary key and the
partition column move by design: only their null share is scored; `drift_ignore` columns are
not scored at all. Until MIN_HISTORY files are in the history a column is not scored (the
check passes with a note). Empty files are not scored and do not join the history.

The history object is read, extended and written by each commit; two runs of one dataset
committing at the same moment may drop one run's files from it (a thinner baseline, never a
wrong score); it could be rebuilt from the profiles in the committed files' staging records.
"""

from __future__ import annotations

import json
import statistics
import time

from ..contracts import Contract
from ..resources.storage import ObjectStore

MIN_HISTORY = 5
NULL_FLOOR, TOP_FLOOR, NUMBER_FLOOR = 0.02, 0.05, 0.1
MAX_SCORE = 1e6
NUMBER_STATS = ("mean", "stddev", "p05", "p50", "p95")


def history_key(dataset: str) -> str:
    return f"_monitor/{dataset}/drift.json"


def read_history(lake: ObjectStore, dataset: str) -> list[dict]:
    """The dataset's history entries, oldest first ({key, version, run_id, committed_at,
    profile, scores, drifted})."""
    data = lake.get_bytes(history_key(dataset))
    return json.loads(data)["entries"] if data else []


def write_history(lake: ObjectStore, dataset: str, entries: list[dict]) -> None:
    lake.put_bytes(json.dumps({"entries": entries}).encode(), history_key(dataset))


def _robust_z(x: float, h: list[float], floor: float) -> float:
    center = statistics.median(h)
    mad = statistics.median(abs(v - center) for v in h)
    spread = max(1.4826 * mad, floor, 1e-12)
    return min(abs(x - center) / spread, MAX_SCORE)


def _shares(top: list) -> dict[str, float]:
    return {str(v): float(s) for v, s in top or []}


def _tvd(a: dict[str, float], b: dict[str, float]) -> float:
    """Total variation distance of two top-value share maps, the rest pooled as `other`."""
    keys = set(a) | set(b)
    other = abs((1 - sum(a.values())) - (1 - sum(b.values())))
    return 0.5 * (sum(abs(a.get(k, 0.0) - b.get(k, 0.0)) for k in keys) + other)


def _mean_shares(maps: list[dict[str, float]]) -> dict[str, float]:
    keys = set().union(*maps) if maps else set()
    return {k: sum(m.get(k, 0.0) for m in maps) / len(maps) for k in keys}


def column_score(new: dict, history: list[dict], location: bool) -> dict[str, float]:
    """{statistic: z} of one column's profile against its history profiles (see module)."""
    parts: dict[str, float] = {}
    nulls = [h["null_share"] for h in history if h.get("null_share") is not None]
    if new.get("null_share") is not None and nulls:
        parts["null_share"] = _robust_z(new["null_share"], nulls, NULL_FLOOR)
    if not location:
        return parts
    kind = new.get("kind")
    if kind in ("number", "bool"):
        sds = [h["stddev"] for h in history if h.get("stddev") is not None]
        floor = NUMBER_FLOOR * statistics.median(sds) if sds else 0.0
        for stat in NUMBER_STATS:
            values = [h[stat] for h in history if h.get(stat) is not None]
            if new.get(stat) is not None and len(values) >= MIN_HISTORY:
                parts[stat] = _robust_z(new[stat], values, floor)
    elif kind == "string":
        tops = [_shares(h["top"]) for h in history if h.get("top")]
        if new.get("top") and len(tops) >= MIN_HISTORY:
            mean = _mean_shares(tops)
            own = [_tvd(t, mean) for t in tops]
            d = _tvd(_shares(new["top"]), mean)
            parts["top_values"] = min(max(0.0, d - statistics.median(own)) / max(
                1.4826 * statistics.median(abs(x - statistics.median(own)) for x in own),
                TOP_FLOOR), MAX_SCORE)
    return parts


def score_profile(contract: Contract, profile: dict, history: list[dict]) -> dict:
    """Score one file's profile against history profiles (oldest first).

    Returns {"scores": {column: score}, "parts": {column: {statistic: z}}, "drifted":
    {column: score above the threshold}, "note": why some or all columns were not scored}.
    """
    fixed = set(contract.primary_key) | {contract.partition_column} - {None}
    ignored = set(contract.checks.drift_ignore)
    scores, parts, notes = {}, {}, []
    if not profile.get("rows"):
        return {"scores": {}, "parts": {}, "drifted": {}, "note": "empty file: not scored"}
    for name, new in profile.get("columns", {}).items():
        if name in ignored:
            continue
        past = [h["columns"][name] for h in history if name in h.get("columns", {})
                and h.get("rows")]
        if len(past) < MIN_HISTORY:
            notes.append(name)
            continue
        location = name not in fixed and new.get("kind") != "time"
        p = column_score(new, past, location)
        if p:
            parts[name] = {k: round(v, 3) for k, v in p.items()}
            scores[name] = max(parts[name].values())
    threshold = contract.checks.drift_threshold
    drifted = {c: s for c, s in scores.items() if s > threshold}
    note = ""
    if notes:
        note = (f"not scored yet (history of {len(history)} file(s), at least {MIN_HISTORY} "
                f"needed): {', '.join(notes)}")
    return {"scores": scores, "parts": parts, "drifted": drifted, "note": note}


def summarize(history: list[dict]) -> dict:
    """Per column, the median of each statistic over the history profiles (for metadata)."""
    out: dict[str, dict] = {}
    names = {n for h in history for n in h.get("columns", {})}
    for name in sorted(names):
        cols = [h["columns"][name] for h in history if name in h.get("columns", {})]
        s: dict = {"files": len(cols)}
        for stat in ("null_share",) + NUMBER_STATS:
            values = [c[stat] for c in cols if c.get(stat) is not None]
            if values:
                s[stat] = round(statistics.median(values), 6)
        tops = [_shares(c["top"]) for c in cols if c.get("top")]
        if tops:
            mean = _mean_shares(tops)
            s["top"] = [[k, round(v, 4)] for k, v in sorted(mean.items(),
                                                             key=lambda kv: -kv[1])[:5]]
        out[name] = s
    return out


def evaluate_run(contract: Contract, lake: ObjectStore, files: list[dict], run_id: str
                 ) -> tuple[dict[str, dict], list[dict]]:
    """Score each committed file of a run ({key, version, profile}) in version order against
    the history before it, append it, and save the history (trimmed to `drift_history`).

    Returns ({key: score_profile result}, the history the first file was compared with).
    """
    history = read_history(lake, contract.name)
    before = list(history)
    keep = contract.checks.drift_history
    results = {}
    for f in sorted(files, key=lambda f: (f["version"], f["key"])):
        profile = f.get("profile")
        if not profile:
            results[f["key"]] = {"scores": {}, "parts": {}, "drifted": {},
                                 "note": "no profile recorded (staged before drift checks, "
                                         "or its reads died with the process that staged it)"}
            continue
        window = [e["profile"] for e in history[-keep:]]
        result = score_profile(contract, profile, window)
        result["history_files"] = len(window)
        results[f["key"]] = result
        if profile.get("rows"):
            history = [e for e in history if e["key"] != f["key"]] + [{
                "key": f["key"], "version": f["version"], "run_id": run_id,
                "committed_at": time.time(), "profile": profile, "scores": result["scores"],
                "drifted": result["drifted"]}]
    if files:
        write_history(lake, contract.name, history[-keep:])
    return results, [e["profile"] for e in before[-keep:]]


def drift_outcome(contract: Contract, lake: ObjectStore, files: list[dict], run_id: str
                  ) -> tuple[bool, str, dict]:
    """Evaluate the drift of a run's newly committed files (see `evaluate_run`).

    Returns (passed, reason, metadata): metadata names the drifted files under `warned`
    ({file: columns and scores}), every file scored under `detail`, and holds the new
    profiles, the history summary and the threshold.
    """
    if not files:
        return True, "", {"note": "no file committed by this run"}
    results, before = evaluate_run(contract, lake, files, run_id)
    warned = {k: ", ".join(f"{c} ({max(r['parts'][c], key=r['parts'][c].get)} z="
                           f"{s:.1f})" for c, s in sorted(r["drifted"].items(),
                                                          key=lambda cs: -cs[1]))
              for k, r in results.items() if r["drifted"]}
    detail = {k: {"scores": r["scores"], "drifted": sorted(r["drifted"]),
                  "history_files": r.get("history_files", 0), "note": r["note"]}
              for k, r in results.items()}
    notes = sorted({r["note"] for r in results.values() if r["note"]})
    meta = {"warned": warned, "detail": detail,
            "drifted_columns": {k: sorted(r["drifted"]) for k, r in results.items()
                                if r["drifted"]},
            "scores": {k: r["parts"] for k, r in results.items()},
            "profiles": {f["key"]: f.get("profile") for f in files},
            "history": summarize(before), "history_files": len(before),
            "threshold": contract.checks.drift_threshold}
    if notes:
        meta["note"] = "; ".join(notes)
    reason = ""
    if warned:
        reason = (f"{len(warned)} file(s) drifted from the last {len(before)} committed: "
                  + "; ".join(f"{k}: {v}" for k, v in list(warned.items())[:5]))
    return not warned, reason, meta
