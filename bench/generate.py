"""The bench input: a generated CSV of orders with injected malformed rows, and its contract.

Generation is vectorized with pyarrow.compute and runs in a child process (`clean_csv.py
--generate`), so the parent's memory stays small; a file of the same size, seed and bad-row
rate is reused.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

MIB = 1 << 20
GEN_VERSION = 1
CHUNK_ROWS = 500_000
HEADER = ["id", "customer_id", "quantity", "amount", "score", "created_at", "event_date",
          "customer_name", "status"]
# Malformed-row kinds, injected in rotation; all but null_id are parse rejects in DuckDB.
BAD_KINDS = ("bad_int", "bad_float", "bad_date", "too_many_fields", "too_few_fields", "null_id")
CONTRACT_KINDS = ("null_id",)
FIRST_NAMES = ["Anna", "Ben", "Chloé", "David", "Emma", "Farid", "Grace", "Hugo", "Inès", "Jamal",
               "Kenji", "Lena", "Marco", "Nadia", "Oscar", "Priya", "Quentin", "Rosa", "Sven",
               "Tomás", "Uma", "Victor", "Wei", "Xenia", "Yusuf", "Zoë"]
LAST_NAMES = ["Smith", "Müller", "García", "Rossi", "Dubois", "Kowalski", "Nguyen", "Ivanova",
              "O'Brien", "Tanaka", "Silva", "Jensen", "Cohen", "Okafor", "Larsen", "Novak"]
STATUSES = ["new", "paid", "shipped", "delivered", "cancelled", "refunded"]
OFFSETS = [("Z", 0), ("+00:00", 0), ("+01:00", 60), ("+02:00", 120), ("-05:00", -300),
           ("-08:00", -480), ("+05:30", 330), ("+09:00", 540)]
DAYS = 31  # event_date spans one month (31 partitions with --partitioned)
T0_MS = 1_717_200_000_000  # 2024-06-01T00:00:00Z


def contract_dict(partitioned: bool) -> dict:
    d = {
        "name": "bench_orders",
        "kind": "table",
        "format": {"type": "csv"},
        "columns": [
            {"name": "id", "type": "int", "nullable": False},
            {"name": "customer_id", "type": "int"},
            {"name": "quantity", "type": "int"},
            {"name": "amount", "type": "float"},
            {"name": "score", "type": "float"},
            {"name": "created_at", "type": "timestamp"},
            {"name": "event_date", "type": "date", "nullable": False},
            {"name": "customer_name", "type": "string"},
            {"name": "status", "type": "string"},
        ],
        "primary_key": ["id"],
    }
    if partitioned:
        d["partition_column"] = "event_date"
    return d


# --------------------------------------------------------------------------- generation


def _gen_chunk(seed: int, chunk_no: int, start: int, n: int, bad_every: int, bad_counter: int):
    """Return (lines StringArray, {row_in_chunk: kind}) for rows start..start+n-1."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    rng = np.random.default_rng([seed, chunk_no])
    s = pa.string()

    def with_nulls(arr: pa.Array, p_empty: float, p_na: float) -> pa.Array:
        u = rng.random(n)
        arr = pc.if_else(pa.array(u < p_empty), "", arr)
        return pc.if_else(pa.array((u >= p_empty) & (u < p_empty + p_na)), "NA", arr)

    ids = pc.cast(pa.array(np.arange(start + 1, start + n + 1, dtype=np.int64)), s)
    customer = with_nulls(pc.cast(pa.array(rng.integers(1, 2_000_000, n)), s), 0.01, 0.005)
    quantity = with_nulls(pc.cast(pa.array(rng.integers(1, 50, n)), s), 0.002, 0.003)
    amount = with_nulls(pc.cast(pa.array(np.round(rng.gamma(2.0, 40.0, n), 2)), s), 0.01, 0.0)
    score = with_nulls(pc.cast(pa.array(rng.standard_normal(n)), s), 0.0, 0.01)
    utc_ms = T0_MS + rng.integers(0, DAYS * 86_400_000, n)
    off_idx = rng.integers(0, len(OFFSETS), n)
    off_min = np.array([o[1] for o in OFFSETS], dtype=np.int64)[off_idx]
    local = pa.array(utc_ms + off_min * 60_000).cast(pa.timestamp("ms"))
    created = pc.binary_join_element_wise(
        pc.strftime(local, format="%Y-%m-%dT%H:%M:%S"),
        pa.array([o[0] for o in OFFSETS]).take(pa.array(off_idx)), "")
    event_date = pc.cast(pa.array((utc_ms // 86_400_000).astype(np.int32)).cast(pa.date32()), s)
    first = pa.array(FIRST_NAMES).take(pa.array(rng.integers(0, len(FIRST_NAMES), n)))
    last = pa.array(LAST_NAMES).take(pa.array(rng.integers(0, len(LAST_NAMES), n)))
    plain = pc.binary_join_element_wise(first, last, " ")
    quoted = pc.binary_join_element_wise('"', last, ", ", first, '"', "")  # "Last, First"
    name = pc.if_else(pa.array(rng.random(n) < 0.01), quoted, plain)
    name = with_nulls(name, 0.02, 0.01)
    status = pa.array(STATUSES).take(pa.array(rng.integers(0, len(STATUSES), n)))
    status = with_nulls(status, 0.005, 0.0)
    cols = [ids, customer, quantity, amount, score, created, event_date, name, status]

    # Malformed rows: about n / bad_every per chunk, never in the first rows of the file.
    k = max(1, n // bad_every) if bad_every > 0 else 0
    lo = 100 if start == 0 else 0
    rows = np.sort(rng.choice(np.arange(lo, n), size=min(k, n - lo), replace=False)) if k else []
    bad = {int(r): BAD_KINDS[(bad_counter + i) % len(BAD_KINDS)] for i, r in enumerate(rows)}

    def put(col: int, kind: str, value: str) -> None:
        mask = np.zeros(n, dtype=bool)
        mask[[r for r, kd in bad.items() if kd == kind]] = True
        if mask.any():
            cols[col] = pc.if_else(pa.array(mask), value, cols[col])

    put(2, "bad_int", "12x")
    put(3, "bad_float", "12.3.4")
    put(6, "bad_date", "2024-02-30")
    put(8, "too_many_fields", "paid,surplus")
    put(0, "null_id", "")
    lines = pc.binary_join_element_wise(*cols, ",")
    few = [r for r, kd in bad.items() if kd == "too_few_fields"]
    if few:  # drop the last two fields
        mask = np.zeros(n, dtype=bool)
        mask[few] = True
        short = pc.binary_join_element_wise(*[c.take(pa.array(few)) for c in cols[:7]], ",")
        lines = pc.replace_with_mask(lines, pa.array(mask), short)
    return pc.binary_join_element_wise(lines, "", "\n"), bad


def generate(path: Path, meta_path: Path, size_mb: int, seed: int, bad_every: int) -> dict:
    import numpy as np

    target = size_mb * MIB
    tmp = path.with_suffix(".csv.tmp")
    rows = 0
    written = 0
    malformed: dict[str, int] = {k: 0 for k in BAD_KINDS}
    bad_lines: list[list] = []  # [file line number (header = 1), kind]
    chunk_no = 0
    with open(tmp, "wb") as f:
        header = (",".join(HEADER) + "\n").encode()
        f.write(header)
        written += len(header)
        while written < target:
            lines, bad = _gen_chunk(seed, chunk_no, rows, CHUNK_ROWS, bad_every,
                                    sum(malformed.values()))
            offs = np.frombuffer(lines.buffers()[1], dtype=np.int32)[
                lines.offset:lines.offset + len(lines) + 1]
            rel = offs - offs[0]
            keep = len(lines)
            if rel[-1] > target - written:  # last chunk: stop at the first row reaching target
                keep = int(np.searchsorted(rel, target - written, side="left"))
            f.write(memoryview(lines.buffers()[2])[offs[0]:offs[keep]])
            written += int(rel[keep])
            for r, kind in sorted(bad.items()):
                if r < keep:
                    malformed[kind] += 1
                    bad_lines.append([rows + r + 2, kind])
            rows += keep
            chunk_no += 1
    os.replace(tmp, path)
    meta = {"version": GEN_VERSION, "size_mb": size_mb, "seed": seed, "bad_every": bad_every,
            "bytes": path.stat().st_size, "rows": rows, "malformed": malformed,
            "bad_lines": bad_lines}
    meta_path.write_text(json.dumps(meta))
    return meta


def get_input(workdir: Path, size_mb: int, seed: int, bad_every: int) -> tuple[Path, dict]:
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / f"orders_{size_mb}mb_seed{seed}_bad{bad_every}.csv"
    meta_path = path.with_suffix(".json")
    if path.exists() and meta_path.exists():
        try:
            meta = json.loads(meta_path.read_text())
        except ValueError:
            meta = {}
        if (meta.get("version") == GEN_VERSION and meta.get("bytes") == path.stat().st_size
                and meta.get("size_mb") == size_mb and meta.get("seed") == seed
                and meta.get("bad_every") == bad_every):
            print(f"reusing {path.name} ({meta['bytes'] / MIB:.0f} MB, {meta['rows']:,} rows)")
            return path, meta
    print(f"generating {path.name} ({size_mb} MB) ...", flush=True)
    t = time.perf_counter()
    # In a child process: Linux carries a process's RSS high-water mark into the children it
    # forks (and across exec), so a parent that grew while generating would inflate the peak
    # RSS measured for both sides. The parent stays small (no numpy/pyarrow/pandas imports).
    subprocess.run([sys.executable, str(Path(__file__).with_name("clean_csv.py").resolve()),
                    "--generate", str(path),
                    "--size-mb", str(size_mb), "--seed", str(seed), "--bad-every",
                    str(bad_every)], check=True)
    meta = json.loads(meta_path.read_text())
    print(f"generated {meta['rows']:,} rows, {sum(meta['malformed'].values())} malformed, "
          f"in {time.perf_counter() - t:.1f}s", flush=True)
    return path, meta
