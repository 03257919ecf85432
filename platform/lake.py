"""Lake layout and the publish protocol that makes a partition's outputs replace exactly.

Layout (keys relative to the lake root):
    cleaned/<dataset>/[<partition_column>=<value>/]<slug>[-<n>].parquet
    rejected/<dataset>/<slug>.parquet
    _manifests/<dataset>/<slug>.json           what the partition's last run published
    _manifests/<dataset>/<slug>.pending.json   what a run is about to publish
    _contracts/<dataset>.json                  the schema inferred from a dataset's first file

`<slug>` names one raw object: a readable form of its key plus a hash of the exact key, so two
keys never share outputs. Publishing writes each file atomically under a stable name (a rerun
replaces files in place, so readers never see duplicates or partial files), then deletes the
files the previous run published that this one did not (stale hive partitions). A pending
manifest written first means even a run killed halfway leaves nothing that the next run cannot
find and remove.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from dataclasses import dataclass
from typing import Any

from .cleaning import CleanResult
from .contracts import Column, Contract
from .resources.storage import ObjectStore


def slug(key: str) -> str:
    """Return a file-name-safe, collision-free name for a raw object key."""
    readable = re.sub(r"[^0-9A-Za-z._-]+", "_", key).strip("._")[:80] or "file"
    digest = hashlib.sha1(key.encode("utf-8")).hexdigest()[:10]
    return f"{readable}-{digest}"


def cleaned_prefix(dataset: str) -> str:
    return f"cleaned/{dataset}"


def rejected_prefix(dataset: str) -> str:
    return f"rejected/{dataset}"


def manifest_key(dataset: str, key: str, *, pending: bool = False) -> str:
    return f"_manifests/{dataset}/{slug(key)}{'.pending' if pending else ''}.json"


def inferred_contract_key(dataset: str) -> str:
    return f"_contracts/{dataset}.json"


@dataclass
class Manifest:
    """What one partition's run published; checks reconcile against it."""

    dataset: str
    source_key: str
    content_hash: str
    files: list[str]
    rejected_file: str | None
    rows_in: int
    rows_written: int
    rows_rejected: int
    columns: list[dict[str, Any]]
    run_id: str | None = None
    published_at: float = 0.0

    def to_bytes(self) -> bytes:
        return json.dumps(self.__dict__, sort_keys=True, indent=1).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> Manifest:
        return cls(**json.loads(data))


def read_manifest(lake: ObjectStore, dataset: str, key: str) -> Manifest | None:
    data = lake.get_bytes(manifest_key(dataset, key))
    return Manifest.from_bytes(data) if data else None


def publish(
    lake: ObjectStore,
    contract: Contract,
    key: str,
    result: CleanResult,
    *,
    content_hash: str,
    run_id: str | None,
) -> Manifest:
    """Move a partition's staged outputs into the lake, replacing its previous outputs exactly."""
    ds = contract.name
    name = slug(key)
    targets: list[tuple[str, Any]] = []
    per_dir: dict[str, int] = {}
    for f in result.files:
        n = per_dir.get(f.subdir, 0)
        per_dir[f.subdir] = n + 1
        fname = f"{name}.parquet" if n == 0 else f"{name}-{n}.parquet"
        sub = f"{f.subdir}/" if f.subdir else ""
        targets.append((f"{cleaned_prefix(ds)}/{sub}{fname}", f.path))
    rejected_key = f"{rejected_prefix(ds)}/{name}.parquet" if result.rejected_file else None
    if rejected_key:
        targets.append((rejected_key, result.rejected_file))

    previous: set[str] = set()
    for pending in (False, True):
        data = lake.get_bytes(manifest_key(ds, key, pending=pending))
        if data:
            old = Manifest.from_bytes(data)
            previous.update(old.files)
            if old.rejected_file:
                previous.add(old.rejected_file)
    manifest = Manifest(
        dataset=ds, source_key=key, content_hash=content_hash,
        files=[t for t, _ in targets if t != rejected_key], rejected_file=rejected_key,
        rows_in=result.rows_in, rows_written=result.rows_written,
        rows_rejected=result.rows_rejected,
        columns=[c.to_dict() for c in result.columns], run_id=run_id,
    )
    lake.put_bytes(manifest.to_bytes(), manifest_key(ds, key, pending=True))
    for target, local in targets:
        lake.put_file(local, target)
    for stale in sorted(previous - {t for t, _ in targets}):
        lake.delete(stale)
    manifest.published_at = time.time()
    lake.put_bytes(manifest.to_bytes(), manifest_key(ds, key))
    lake.delete(manifest_key(ds, key, pending=True))
    return manifest


def columns_from_dicts(items: list[dict[str, Any]]) -> tuple[Column, ...]:
    return tuple(Column(**c) for c in items)
