"""The tensor step: an image dataset's valid manifest rows -> uint8 NHWC shards with an index.

Heavy work, so it runs through the compute resource (Dagster Pipes): a subprocess or the run's
own process locally, an ECS task or a Batch job on AWS, always this same function. The run
passes the selection (the valid rows of the committed manifest, as a Parquet file in the lake)
and where raw and lake live; the step reports the materialization and its checks back.

Sources: a single image is read where it lies locally (downloaded to scratch from S3); archive
members are read member by member (never extracted by name) into scratch files named by their
content hash, only for images not already in the previous index. Every image's bytes are checked
against the manifest's content hash before they are decoded, so a raw file replaced since the
manifest was made is left out (and reported) instead of mixed in: its new manifest follows.

Output: locally the dataset folder is `<lake>/tensors/<dataset>` itself (the writer renames each
shard into place and writes the index last). On S3 the writer works in a persistent scratch
folder (EFS), then new shards are uploaded, the index last, and unreferenced objects removed.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import pyarrow.parquet as pq

from ..sweep import sweep_stale
from ..tensors import checks as tc
from ..tensors.index import INDEX_NAME, InvalidIndex, load_index
from ..tensors.writer import Sample, write_tensors
from .archives import ArchiveError, Limits, MemberError, iter_members
from .decode import DecodeSettings
from .zones import Zone

CHUNK = 1 << 22


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _previous_hashes(out_dir: Path, fingerprint: str) -> set[str]:
    try:
        index = load_index(out_dir)
    except (InvalidIndex, OSError, ValueError):
        return set()
    return set(index.column("content_hash")) if index.fingerprint == fingerprint else set()


def gather_sources(rows: list[dict], raw, dataset: str, src_dir: Path, known: set[str],
                   limits: Limits = Limits()) -> tuple[list[Sample], list[dict]]:
    """Samples for the selected rows, and the rows left out (with the reason).

    An image already in the previous index (`known` content hashes) gets no source read: the
    writer reuses its pixels. Others are read and checked against their content hash.
    """
    samples, left_out = [], []
    by_key: dict[str, list[dict]] = {}
    for r in rows:
        by_key.setdefault(r["key"], []).append(r)
    src_dir.mkdir(parents=True, exist_ok=True)

    def add(r: dict, source) -> None:
        samples.append(Sample(key=r["key"], member=r["member"], content_hash=r["content_hash"],
                              label=r["label"], split=r["split"] or "train", source=source))

    def take(r: dict, data: bytes) -> None:
        """Keep the image's bytes (in scratch, named by content) if they are its manifest's."""
        if _sha256(data) != r["content_hash"]:
            left_out.append({**r, "reason": "changed since its manifest"})
            return
        dest = src_dir / r["content_hash"]
        dest.write_bytes(data)
        add(r, str(dest))

    for key, group in sorted(by_key.items()):
        needed = [r for r in group if r["content_hash"] not in known]
        for r in group:
            if r["content_hash"] in known:
                add(r, b"")  # never read: the writer keeps the tensor it has
        if not needed:
            continue
        wanted = {r["member"]: r for r in needed}  # single files: the one None member
        try:
            upload = raw.local_file(f"{dataset}/{key}", src_dir / "upload")
            if group[0]["member"] is None:
                take(wanted.pop(None), upload.read_bytes())
                continue
            for m in iter_members(upload, limits):
                r = wanted.pop(m.name, None)
                if r is None:
                    continue
                try:
                    if m.reason:
                        raise MemberError(m.reason)
                    data = m.read()
                except MemberError as e:
                    left_out.append({**r, "reason": str(e)})
                    continue
                take(r, data)
            left_out += [{**r, "reason": "not in the archive any more"}
                         for r in wanted.values()]
        except (FileNotFoundError, ArchiveError) as e:
            left_out += [{**r, "reason": f"{type(e).__name__}: {e}"} for r in wanted.values()]
    return samples, left_out


def build(params: dict, pipes) -> None:
    """The step: params dataset, asset_key, raw_uri, lake_uri, scratch, selection (lake key),
    size, fit, resample, shard_mb, workers."""
    ds = params["dataset"]
    raw, lake = Zone(params["raw_uri"]), Zone(params["lake_uri"])
    settings = DecodeSettings(size=tuple(params["size"]), fit=params["fit"],
                              resample=params["resample"])
    scratch = Path(params["scratch"])
    out_dir = lake.path(f"tensors/{ds}") if not lake.s3 else scratch / "tensors-cache" / ds
    work = scratch / f"tensor-step-{ds}-{os.getpid()}"
    for name in sweep_stale(scratch):
        pipes.log.info(f"removed stale scratch {name} (a killed step's leftovers)")
    try:
        rows = pq.read_table(lake.local_file(params["selection"],
                                             work / "selection.parquet")).to_pylist()
        known = _previous_hashes(out_dir, settings.fingerprint())
        samples, left_out = gather_sources(rows, raw, ds, work / "src", known)
        fresh = sum(1 for s in samples if s.content_hash not in known)
        pipes.log.info(f"{ds}: {len(samples)} images, {fresh} not tensorized yet, "
                       f"{len(left_out)} left out")
        summary = write_tensors(samples, out_dir, settings,
                                shard_bytes=int(params["shard_mb"]) << 20,
                                previous_index=out_dir if (out_dir / INDEX_NAME).exists() else None,
                                workers=int(params.get("workers", 1)))
        if lake.s3:
            _publish(out_dir, lake, f"tensors/{ds}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    _report(pipes, params["asset_key"], rows, left_out, summary, out_dir)


def _publish(folder: Path, lake: Zone, prefix: str) -> None:
    """Upload what the index references and is not there yet, the index last, then remove
    what it no longer references."""
    index = load_index(folder)
    files = [s["file"] for s in index.shards] + [index.header["samples"]["file"]]
    there = lake.names(prefix)
    for name in files:
        if name not in there:
            lake.upload(folder / name, f"{prefix}/{name}")
    lake.upload(folder / INDEX_NAME, f"{prefix}/{INDEX_NAME}")
    for name in there - set(files) - {INDEX_NAME}:
        lake.delete(f"{prefix}/{name}")


def _report(pipes, asset_key: str, rows: list[dict], left_out: list[dict], summary: dict,
            out_dir: Path) -> None:
    failed = summary.get("failed") or []
    committed = [r for r in rows if (r["key"], r["member"]) not in
                 {(x["key"], x["member"]) for x in left_out + failed}]
    results = {
        "index_covers_manifest": tc.manifest_in_index(committed, out_dir),
        "shards_match_index": tc.shards_match(out_dir),
        "stats_finite": tc.stats_finite(out_dir),
        "no_content_in_two_splits": tc.no_cross_split(out_dir),
    }
    for name, (passed, detail) in results.items():
        severity = "WARN" if name == "no_content_in_two_splits" else "ERROR"
        pipes.report_asset_check(check_name=name, passed=bool(passed), severity=severity,
                                 asset_key=asset_key, metadata={"detail": {"raw_value": detail,
                                                                           "type": "json"}})
    keep = ("samples", "shards", "decoded", "reused", "bytes", "mean", "std", "fingerprint")
    meta = {k: summary[k] for k in keep if k in summary}
    meta["left_out"] = {"raw_value": left_out[:50], "type": "json"}
    meta["failed_to_decode"] = {"raw_value": failed[:50], "type": "json"}
    meta["cross_split_duplicates"] = {"raw_value": summary.get("cross_split_duplicates", [])[:50],
                                      "type": "json"}
    for k in ("mean", "std"):
        if k in meta:
            meta[k] = {"raw_value": meta[k], "type": "json"}
    pipes.report_asset_materialization(asset_key=asset_key, metadata=meta)
