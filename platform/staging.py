"""Staging records and the ingestion ledger, kept in the lake next to the tables.

Layout (keys relative to the lake root):
    _staging/<dataset>/<slug>/<version>.json   one per staged version of a raw file: its files,
                                               counts, audit and status
    _ledger/<dataset>/<slug>.json              the version and content hash last committed
    _ledger/<dataset>/hash/<digest>/<slug>     committed keys by content (finds renamed files)
    _ledger/<dataset>/_algorithm               the dataset's content-hash algorithm, for life
    _contracts/<dataset>.json                  the schema inferred from a dataset's first file

`<slug>` names one raw key: a readable form plus a hash of the exact key, so two keys never
share records and no key (`*`, `?`, `[...]`, spaces, unicode) reaches anything as a pattern.
Staged data files themselves live in the tables' data folders (see tables/store.py). The ledger
is a cache: every decision it informs is checked against the table's committed versions.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import time
from typing import Any

import blake3

from .resources.storage import ObjectStore

STAGED = "staged"  # staged and audited, passed: to be committed
FAILED = "failed"  # staged but an ERROR audit failed: never committed, kept for inspection
UNREADABLE = "unreadable"  # the file cannot be read at all
SUPERSEDED = "superseded"  # the object changed again before it was copied: a newer run has it
UNCHANGED = "unchanged"  # same content as the committed version: nothing to do
COMMITTED = "committed"


def slug(key: str) -> str:
    """Return a file-name-safe, collision-free name for a raw object key."""
    readable = re.sub(r"[^0-9A-Za-z._-]+", "_", key).strip("._")[:80] or "file"
    digest = hashlib.sha1(key.encode("utf-8")).hexdigest()[:10]
    return f"{readable}-{digest}"


def inferred_contract_key(dataset: str) -> str:
    return f"_contracts/{dataset}.json"


def staging_dir(dataset: str, key: str) -> str:
    return f"_staging/{dataset}/{slug(key)}"


@dataclasses.dataclass
class StagingRecord:
    """One staged version of a raw file, and what became of it."""

    dataset: str
    key: str
    version: int
    status: str
    reason: str = ""
    signature: str | None = None
    content_hash: str | None = None
    run_id: str | None = None
    source_records: int | None = None
    rows_written: int = 0
    rows_rejected: int = 0
    data_files: list[str] = dataclasses.field(default_factory=list)
    rejected_files: list[str] = dataclasses.field(default_factory=list)
    audit: dict[str, Any] = dataclasses.field(default_factory=dict)
    snapshot_id: int | None = None
    updated_at: float = 0.0
    profile: dict | None = None  # column profile of the staged rows, for the drift check
    key_facts: dict | None = None  # primary-key facts of the staged rows (assets/keys.py)

    @property
    def record_key(self) -> str:
        return f"{staging_dir(self.dataset, self.key)}/{self.version:020d}.json"

    def save(self, lake: ObjectStore) -> None:
        self.updated_at = time.time()
        lake.put_bytes(json.dumps(dataclasses.asdict(self), indent=1).encode(), self.record_key)

    @classmethod
    def from_bytes(cls, data: bytes) -> StagingRecord:
        return cls(**json.loads(data))


def latest_record(lake: ObjectStore, dataset: str, key: str) -> StagingRecord | None:
    """The staging record of the highest version of `key`, or None."""
    newest = None
    for o in lake.list(staging_dir(dataset, key) + "/"):
        if o.key.endswith(".json") and (newest is None or o.key > newest):
            newest = o.key
    data = lake.get_bytes(newest) if newest else None
    return StagingRecord.from_bytes(data) if data else None


def read_record(lake: ObjectStore, dataset: str, key: str, version: int) -> StagingRecord | None:
    """The staging record of one exact version of `key`, or None."""
    data = lake.get_bytes(f"{staging_dir(dataset, key)}/{version:020d}.json")
    return StagingRecord.from_bytes(data) if data else None


def records(lake: ObjectStore, dataset: str) -> list[StagingRecord]:
    """Every staging record of a dataset (for maintenance and inspection)."""
    out = []
    for o in lake.list(f"_staging/{dataset}/"):
        if o.key.endswith(".json"):
            data = lake.get_bytes(o.key)
            if data:
                out.append(StagingRecord.from_bytes(data))
    return out


def ledger_key(dataset: str, key: str) -> str:
    return f"_ledger/{dataset}/{slug(key)}.json"


def read_ledger(lake: ObjectStore, dataset: str, key: str) -> dict | None:
    data = lake.get_bytes(ledger_key(dataset, key))
    return json.loads(data) if data else None


def write_ledger(lake: ObjectStore, dataset: str, key: str, version: int, content_hash: str,
                 snapshot_id: int | None) -> None:
    old = read_ledger(lake, dataset, key)
    lake.put_bytes(json.dumps({"key": key, "version": version, "content_hash": content_hash,
                               "snapshot_id": snapshot_id}).encode(), ledger_key(dataset, key))
    lake.put_bytes(key.encode(), _hash_key(dataset, content_hash, key))
    if old and old.get("content_hash") and old["content_hash"] != content_hash:
        lake.delete(_hash_key(dataset, old["content_hash"], key))


def forget_ledger(lake: ObjectStore, dataset: str, key: str) -> None:
    old = read_ledger(lake, dataset, key)
    if old and old.get("content_hash"):
        lake.delete(_hash_key(dataset, old["content_hash"], key))
    lake.delete(ledger_key(dataset, key))


def keys_with_content(lake: ObjectStore, dataset: str, content_hash: str) -> list[str]:
    """Keys whose committed version had this content (per the ledger)."""
    prefix = f"_ledger/{dataset}/hash/{_digest(content_hash)}/"
    found = (lake.get_bytes(o.key) for o in lake.list(prefix))
    return sorted(data.decode() for data in found if data)


# Content hashes are "<algorithm>:<hex>". BLAKE3 hashes 1.1 GB in 0.60-0.63 s of one core here,
# SHA-256 (with the CPU's SHA extensions) in 1.06-1.59 s, and the run hashes every byte it
# ingests; both resist collisions, which matters: the hash decides what is skipped as
# unchanged and which vanished key a new one was renamed from.
HASHES = {"blake3": blake3.blake3, "sha256": hashlib.sha256}
NEW_DATASETS = "blake3"
LEGACY = "sha256"  # what a ledger written before the algorithm was recorded holds


def _algorithm_key(dataset: str) -> str:
    return f"_ledger/{dataset}/_algorithm"


def hash_algorithm(lake: ObjectStore, dataset: str) -> str:
    """The algorithm of the dataset's content hashes, fixed when its ledger begins: a digest is
    only ever compared with digests of the same algorithm, so a ledger from before BLAKE3 stays
    SHA-256 (an unchanged re-upload is still skipped, a rename still moves its rows). Read
    once per run; recorded first writer wins, like the inferred schema."""
    marker = _algorithm_key(dataset)
    found = lake.get_bytes(marker)
    if found is None:
        older = next(iter(lake.list(f"_ledger/{dataset}/")), None) is not None
        lake.put_bytes_if_absent((LEGACY if older else NEW_DATASETS).encode(), marker)
        found = lake.get_bytes(marker)
    name = found.decode().strip()
    if name not in HASHES:
        raise ValueError(f"{marker} names an unknown hash algorithm {name!r}")
    return name


def new_hasher(algorithm: str):
    """A hashlib-like object (update, hexdigest) for `algorithm` (see HASHES)."""
    return HASHES[algorithm]()


def _digest(content_hash: str) -> str:
    return content_hash.split(":", 1)[-1]


def _hash_key(dataset: str, content_hash: str, key: str) -> str:
    return f"_ledger/{dataset}/hash/{_digest(content_hash)}/{slug(key)}"
