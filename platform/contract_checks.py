"""The `checks` section of a dataset contract: thresholds of the audits and the monitoring.

    checks:
      rejected_share_warn: 0.01     # share of rejected records per file: WARN above
      rejected_share_error: 0.10    # ERROR above (the file is not committed)
      max_age: 26h                  # freshness: WARN when no upload for longer (absent: off)
      drift_threshold: 5            # drift: WARN when a column's score is above
      drift_history: 20             # drift: how many recent committed files are the baseline
      drift_ignore: [note]          # drift: columns not scored (besides key and partition)

Pure parsing: no Dagster, no storage. Errors are ValueError with a message naming the field;
`contracts.py` adds the file name.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any

DEFAULT_DRIFT_THRESHOLD = 5.0
DEFAULT_DRIFT_HISTORY = 20
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_DURATION = re.compile(r"^(?:\d+(?:\.\d+)?[smhdw])+$")
_PART = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")


@dataclasses.dataclass(frozen=True)
class CheckSettings:
    """Parsed `checks` of a contract (defaults when absent)."""

    rejected_share_warn: float = 0.01
    rejected_share_error: float = 0.10
    max_age_seconds: float | None = None
    drift_threshold: float = DEFAULT_DRIFT_THRESHOLD
    drift_history: int = DEFAULT_DRIFT_HISTORY
    drift_ignore: tuple[str, ...] = ()


def parse_duration(value: Any) -> float:
    """Seconds of a duration such as `90s`, `30m`, `26h`, `2d`, `1w` or `1d12h`.

    Raises ValueError for anything else (a bare number is refused: its unit would be a guess).
    """
    text = value.strip().lower().replace(" ", "") if isinstance(value, str) else None
    if not text or not _DURATION.match(text):
        raise ValueError(f"{value!r} is not a duration like 30m, 26h or 2d "
                         "(units s, m, h, d, w)")
    seconds = sum(float(n) * _UNITS[u] for n, u in _PART.findall(text))
    if seconds <= 0:
        raise ValueError(f"{value!r} must be longer than zero")
    return seconds


def format_duration(seconds: float) -> str:
    """The shortest exact form of `seconds` in one unit (`93600` -> `26h`), for round trips."""
    for unit in ("w", "d", "h", "m"):
        if seconds % _UNITS[unit] == 0:
            return f"{int(seconds // _UNITS[unit])}{unit}"
    return f"{seconds:g}s"


def parse_checks(checks: Any, column_names: list[str] | None = None) -> CheckSettings:
    """Validate a contract's `checks` mapping (None: defaults) and return CheckSettings.

    `column_names` (declared columns, if any) lets `drift_ignore` name unknown columns as an
    error. Raises ValueError naming the field.
    """
    if checks is None:
        checks = {}
    known = {f.name for f in dataclasses.fields(CheckSettings)} - {"max_age_seconds"} | {
        "max_age"}
    if not isinstance(checks, dict) or set(checks) - known:
        extra = sorted(set(checks) - known) if isinstance(checks, dict) else checks
        raise ValueError(f"checks may only set {', '.join(sorted(known))} (found {extra})")
    try:
        warn = float(checks.get("rejected_share_warn", 0.01))
        error = float(checks.get("rejected_share_error", 0.10))
    except (TypeError, ValueError):
        raise ValueError("checks thresholds must be numbers between 0 and 1") from None
    if not (0 <= warn <= error <= 1):
        raise ValueError("checks need 0 <= rejected_share_warn <= rejected_share_error <= 1")
    max_age = None
    if checks.get("max_age") is not None:
        try:
            max_age = parse_duration(checks["max_age"])
        except ValueError as e:
            raise ValueError(f"checks.max_age: {e}") from None
    threshold = checks.get("drift_threshold", DEFAULT_DRIFT_THRESHOLD)
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or threshold <= 0:
        raise ValueError(f"checks.drift_threshold must be a number above 0, not {threshold!r}")
    history = checks.get("drift_history", DEFAULT_DRIFT_HISTORY)
    if isinstance(history, bool) or not isinstance(history, int) or not 1 <= history <= 1000:
        raise ValueError(f"checks.drift_history must be a whole number of files from 1 to "
                         f"1000, not {history!r}")
    ignore = checks.get("drift_ignore") or []
    if not isinstance(ignore, list) or not all(isinstance(c, str) for c in ignore):
        raise ValueError("checks.drift_ignore must be a list of column names")
    unknown = [c for c in ignore if column_names and c not in column_names]
    if unknown:
        raise ValueError(f"checks.drift_ignore names undeclared columns {unknown}")
    return CheckSettings(warn, error, max_age, float(threshold), history, tuple(ignore))


def checks_to_dict(s: CheckSettings) -> dict[str, Any]:
    """The `checks` mapping of `s`; monitoring fields only when they differ from the defaults."""
    d: dict[str, Any] = {"rejected_share_warn": s.rejected_share_warn,
                         "rejected_share_error": s.rejected_share_error}
    if s.max_age_seconds is not None:
        d["max_age"] = format_duration(s.max_age_seconds)
    if s.drift_threshold != DEFAULT_DRIFT_THRESHOLD:
        d["drift_threshold"] = s.drift_threshold
    if s.drift_history != DEFAULT_DRIFT_HISTORY:
        d["drift_history"] = s.drift_history
    if s.drift_ignore:
        d["drift_ignore"] = list(s.drift_ignore)
    return d
