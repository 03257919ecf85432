"""The bench report: correctness per side, the results table, phases, targets, the last line."""

from __future__ import annotations

import math
import os
import statistics

from generate import CONTRACT_KINDS, MIB
from ours import CLEAN_OVERLAPPING, CLEAN_PHASES, OVERLAPPING, SEQUENTIAL

NAMES = {"baseline": "1 naive pandas read_csv+to_parquet",
         "baseline_typed": "2 pandas, same typed columns",
         "duckdb_bare": "3a bare DuckDB COPY read_csv",
         "polars": "3b polars scan_csv -> sink_parquet",
         "ours": "4 ours: clean_file",
         "ours_partitioned": "4 ours: clean_file, partitioned",
         "ours_commit": "5 ours: ingest job + Iceberg commit"}
ORDER = list(NAMES)


def check_ours(label: str, res: dict, meta: dict) -> list[str]:
    """Ours must reject exactly the injected rows, at their line numbers."""
    warnings = []
    expected_rows = meta["rows"]
    expected_bad = sum(meta["malformed"].values())
    expected_contract = sum(meta["malformed"][k] for k in CONTRACT_KINDS)
    if res["rows_in"] != expected_rows:
        warnings.append(f"{label}: rows_in={res['rows_in']:,} but the file has "
                        f"{expected_rows:,} data rows")
    if res.get("source_records") not in (None, expected_rows):
        warnings.append(f"{label}: counted {res['source_records']:,} records, expected "
                        f"{expected_rows:,}")
    if res["rows_rejected"] != expected_bad:
        warnings.append(f"{label}: rows_rejected={res['rows_rejected']} but {expected_bad} "
                        f"malformed rows were injected ({meta['malformed']})")
    # Null ids may be refused by the reader or by a row rule; either way they are NOT NULL.
    not_null = sum(1 for _, kind in res["rejected_lines"] if kind == "NOT NULL")
    if not_null != expected_contract:
        warnings.append(f"{label}: {not_null} NOT NULL rejects, expected {expected_contract}")
    if res["rows_written"] != expected_rows - expected_bad:
        warnings.append(f"{label}: rows_written={res['rows_written']:,}, expected "
                        f"{expected_rows - expected_bad:,}")
    got = sorted(line for line, _ in res["rejected_lines"])
    want = sorted(line for line, _ in meta["bad_lines"])
    if got != want:
        kinds = dict((line, kind) for line, kind in meta["bad_lines"])
        missing = sorted(set(want) - set(got))
        extra = sorted(set(got) - set(want))
        warnings.append(f"{label}: rejected lines differ from the injected lines: missing "
                        f"{[(m, kinds[m]) for m in missing[:10]]}, unexpected {extra[:10]}")
    return warnings


def check_commit(res: dict, meta: dict, ours: dict | None) -> list[str]:
    """The job must commit exactly the good rows and the rejects, and they must read back."""
    warnings = []
    bad = sum(meta["malformed"].values())
    good = meta["rows"] - bad
    if not res["run_success"]:
        warnings.append("ours_commit: the run failed")
    failed = sorted(k for k, ok in res["checks"].items() if not ok)
    if failed:
        warnings.append(f"ours_commit: checks failed: {failed}")
    if (res["rows_written"], res["rows_rejected"]) != (good, bad):
        warnings.append(f"ours_commit: read back {res['rows_written']:,} rows and "
                        f"{res['rows_rejected']} rejects, expected {good:,} and {bad}")
    snap = list(res["snapshot_records"].values())
    if snap != [res["rows_written"], res["rows_rejected"]]:
        warnings.append(f"ours_commit: snapshot total-records {snap} differ from the rows "
                        "read back")
    if ours and "profile" in ours and ours["profile"]["nulls"]:
        diff = {c: n - ours["profile"]["nulls"].get(c)
                for c, n in res["profile"]["nulls"].items()
                if ours["profile"]["nulls"].get(c) is not None
                and n != ours["profile"]["nulls"][c]}
        if diff:
            warnings.append(f"ours_commit: committed null counts differ from clean_file's: {diff}")
    return warnings


def correctness(label: str, res: dict, meta: dict, ref: dict | None, warned: bool,
                columns: list[str]) -> tuple[str, str]:
    """(short text for the table, detail line) of what a side did with the bad rows."""
    bad = sum(meta["malformed"].values())
    if label.startswith("ours"):
        if warned:
            return "MISMATCH (see warnings)", ""
        if label == "ours_commit":
            return f"exact: {bad} rejected, read back", ""
        return f"exact: {bad} rejected at their lines", ""
    good = meta["rows"] - bad
    rejected = res.get("rows_rejected") or 0
    dropped = meta["rows"] - res["rows_written"] - rejected
    kept = res["rows_written"] - good
    parts = []
    if rejected:
        parts.append(f"rejects {rejected}")
    if dropped:
        parts.append(f"drops {dropped} silently")
    detail = []
    prof = res.get("profile")
    untyped = [c for c in columns
               if prof and ref and prof["types"].get(c) != ref["types"].get(c)]
    if kept:
        if prof and ref:
            extra = {c: prof["nulls"][c] - ref["nulls"][c] for c in columns
                     if prof["nulls"].get(c) is not None and ref["nulls"].get(c) is not None
                     and prof["nulls"][c] != ref["nulls"][c]}
            if extra:
                detail.append(f"null counts vs ours: {extra}")
        parts.append(f"keeps {kept} bad rows" + (" (values as text)" if untyped else
                                                 " (values -> NULL)"))
    if prof and ref:
        if untyped:
            parts.append("untyped " + ",".join(untyped))
            detail.append("types vs ours: " + ", ".join(
                f"{c} {prof['types'].get(c)} (ours {ref['types'].get(c)})" for c in untyped))
    return "; ".join(parts) or "same rows as ours", "; ".join(detail)


def _phase_lines(title: str, phases: dict, total: float, sequential, overlapping,
                 rest: str, rss: dict | None = None) -> list[str]:
    rss = rss or {}
    out = [title + "  (RSS MB: the process's high-water mark at the end of the phase)"]
    if "before the run" in rss:
        out.append(f"  {'(before the run)':<42} {'':>8} {'':>6} {rss['before the run']:>7.0f}")
    seq = 0.0
    for name in sequential:
        if name in phases:
            seq += phases[name]
            mark = f"{rss[name]:>7.0f}" if name in rss else ""
            out.append(f"  {name:<42} {phases[name]:>7.2f}s {100 * phases[name] / total:>5.1f}% "
                       f"{mark}")
    out.append(f"  {rest:<42} {total - seq:>7.2f}s "
               f"{100 * (total - seq) / total:>5.1f}%")
    for name in overlapping:
        if name in phases:
            mark = f"{rss[name]:>7.0f}" if name in rss else ""
            out.append(f"  {name:<42} {phases[name]:>7.2f}s (overlaps) {mark}")
    return out


def report(best: dict, meta: dict, columns: list[str], runs: str) -> str:
    """Print everything; return the last line."""
    size_mb = meta["bytes"] / MIB
    ours = best.get("ours") if "error" not in best.get("ours", {"error": 1}) else None
    ref = ours.get("profile") if ours else None
    warnings: list[str] = []
    flagged: set[str] = set()
    for label, b in best.items():
        if "error" in b:
            warnings.append(f"{label} failed: {b['error'][:300]}")
            continue
        w = check_ours(label, b, meta) if label in ("ours", "ours_partitioned") else \
            check_commit(b, meta, ours) if label == "ours_commit" else []
        if w:
            flagged.add(label)
        warnings += w

    print()
    print(f"input: {size_mb:.0f} MB, {meta['rows']:,} data rows, "
          f"{sum(meta['malformed'].values())} malformed ({meta['malformed']}); warm page cache; "
          f"{os.cpu_count()} CPUs; {runs}; each side in its own process")
    head = (f"{'side':<37} {'seconds':>7} {'MB/s':>6} {'CPU s':>6} {'peak RSS MB':>11} "
            f"{'rows written':>12} {'rejected':>8}  correctness")
    print(head)
    print("-" * (len(head) + 30))
    details = []
    for label in sorted(best, key=ORDER.index):
        b = best[label]
        if "error" in b:
            print(f"{NAMES[label]:<37} {'FAILED':>7} {'':>6} {b['cpu_seconds']:>6.1f} "
                  f"{b['peak_rss_mb']:>11.0f}  ({b['error'][:70]})")
            continue
        short, detail = correctness(label, b, meta, ref, label in flagged, columns)
        rej = "" if b["rows_rejected"] is None else f"{b['rows_rejected']:,}"
        print(f"{NAMES[label]:<37} {b['seconds']:>7.1f} {size_mb / b['seconds']:>6.1f} "
              f"{b['cpu_seconds']:>6.1f} {b['peak_rss_mb']:>11.0f} {b['rows_written']:>12,} "
              f"{rej:>8}  {short}")
        for text in (detail, b.get("note")):
            if text:
                details.append(f"  {NAMES[label]}: {text}")
    print("(seconds: wall time of the work, imports excluded; CPU s: user+system of all its "
          "threads; peak RSS: the child process's ru_maxrss)")
    print("\n".join(details))

    if ours and ours.get("phases"):
        for line in _phase_lines(f"inside clean_file ({ours['seconds']:.1f}s; the rest is "
                                 "the COPY a bare DuckDB run also does, with field ids and "
                                 "lineage columns):", ours["phases"], ours["seconds"],
                                 CLEAN_PHASES, CLEAN_OVERLAPPING, "the COPY (and setup)",
                                 ours.get("phases_rss_mb")):
            print(line)
        bare = best.get("duckdb_bare", {})
        if "error" not in bare and "seconds" in bare:
            print(f"  vs bare DuckDB COPY: {ours['seconds'] - bare['seconds']:+.2f}s wall, "
                  f"{ours['cpu_seconds'] - bare['cpu_seconds']:+.2f}s CPU")
    oc = best.get("ours_commit", {})
    if "phases" in oc:
        for line in _phase_lines(f"phases of the ingest job run ({oc['seconds']:.1f}s):",
                                 oc["phases"], oc["seconds"], SEQUENTIAL, OVERLAPPING,
                                 "other (Dagster run, steps, events)",
                                 oc.get("phases_rss_mb")):
            print(line)
        print(f"  checks: {oc['checks']}")
    for w in warnings:
        print("WARNING: " + w)
    if not warnings:
        print("correctness: ours rejects exactly the injected rows at their line numbers; the "
              "job commits exactly the good rows and the rejects (read back through the views)")

    def rate(label):
        b = best.get(label)
        return size_mb / b["seconds"] if b and "error" not in b else math.nan

    typed_speedup = rate("ours") / rate("baseline_typed")
    peers = [rate(p) for p in ("duckdb_bare", "polars") if not math.isnan(rate(p))]
    best_peer_ratio = rate("ours") / max(peers) if peers else math.nan
    publish_ratio = (best["ours"]["seconds"] / oc["seconds"]
                     if ours and "error" not in oc and "seconds" in oc else math.nan)
    rss = [best[k]["peak_rss_mb"] for k in ("ours", "ours_commit") if k in best]
    peak = max(rss) if rss else math.nan
    print(f"targets: typed_speedup >= 8: {typed_speedup:.2f}; best_peer_ratio >= 0.9: "
          f"{best_peer_ratio:.2f}; publish_ratio >= 0.9: {publish_ratio:.2f}; "
          f"peak RSS < 1024 MB: {peak:.0f}")
    return (f"typed_speedup={typed_speedup:.2f} best_peer_ratio={best_peer_ratio:.2f} "
            f"publish_ratio={publish_ratio:.2f} peak_rss_mb="
            f"{'nan' if math.isnan(peak) else round(peak)}")


def paired_rounds(results: dict[str, list[dict]]) -> str:
    """The two speed ratios round by round, and their medians. Each round runs every side once
    within a few minutes, so a host that slows down for a while (steal on shared cores) slows
    both sides of a ratio; on a noisy host the median of these is steadier than the ratio of
    two best-ofs, which may come from different minutes. Informational: the last line keeps
    the best-of ratios."""
    def secs(label: str, i: int) -> float:
        rs = results.get(label) or []
        return rs[i]["seconds"] if i < len(rs) and "error" not in rs[i] else math.nan

    rounds = max((len(v) for v in results.values()), default=0)
    peer, publish = [], []
    for i in range(rounds):
        peers = [s for s in (secs("duckdb_bare", i), secs("polars", i)) if not math.isnan(s)]
        peer.append(min(peers) / secs("ours", i) if peers else math.nan)
        publish.append(secs("ours", i) / secs("ours_commit", i))

    def show(values: list[float]) -> str:
        known = [v for v in values if not math.isnan(v)]
        med = f"{statistics.median(known):.2f}" if known else "nan"
        return f"{', '.join(f'{v:.2f}' for v in values)} (median {med})"

    return (f"per round (paired): best_peer_ratio {show(peer)}; "
            f"publish_ratio {show(publish)}")


def publish_split(results: dict[str, list[dict]]) -> str:
    """Where the job's extra seconds go, as medians over all runs: the job's own clean_file
    against clean_file alone, and the rest of the job run (Dagster, reads, commits, views).
    The rest is timed inside each job run, so the host's speed from run to run hardly moves
    it; the two clean_file medians differ by the hash and flush the job adds, and by noise."""
    jobs = [r for r in results.get("ours_commit") or [] if "error" not in r
            and "clean_file" in r.get("phases", {})]
    alone = [r["seconds"] for r in results.get("ours") or [] if "error" not in r]
    if not jobs or not alone:
        return ""
    inside = [r["phases"]["clean_file"] for r in jobs]
    rest = sorted(r["seconds"] - r["phases"]["clean_file"] for r in jobs)
    return (f"job run split (medians of {len(jobs)} runs): clean_file alone "
            f"{statistics.median(alone):.2f}s, clean_file in the job "
            f"{statistics.median(inside):.2f}s, the rest of the job "
            f"{statistics.median(rest):.2f}s ({rest[0]:.2f}-{rest[-1]:.2f})")
