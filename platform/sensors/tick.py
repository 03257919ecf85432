"""One evaluation of the raw-upload sensor (`Tick`): what it requests (runs, partitions, raw
asset events), the versions it heals, and its notes for the skip reason; shared by listing mode
(raw_uploads.py) and queue mode (queue_mode.py)."""

import dataclasses
import hashlib
import json
import os
from collections.abc import Mapping

import dagster as dg
from dagster._core.storage.tags import (
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
)

from .. import staging as st
from ..assets import DatasetDefs
from ..resources.storage import ObjectInfo, StorageResource
from ..sizing import RunSizing, ecs_tags, size_for
from ..versions import versions_run_config
from .healing import alive_versions, give_up, plan_healing
from .partitions import existing
from .planning import DAGSTER_PARTITION_LIMIT, SensorSettings, Version, ignored_reason, run_key


def heal_requests(dataset: str, job_name: str, again: list[tuple[str, int, str, int]],
                  order: list[str], per_run: int) -> list[dg.RunRequest]:
    """Runs that request versions again: keys next to each other among the dataset's
    partitions share a ranged run (a lost ranged run comes back as one), others run alone."""
    index = {k: i for i, k in enumerate(order)}
    todo = sorted(again, key=lambda a: index.get(a[0], -1))
    groups: list[list] = []
    for a in todo:
        g = groups[-1] if groups else None
        if g and len(g) < per_run and a[0] in index and g[-1][0] in index \
                and index[a[0]] == index[g[-1][0]] + 1:
            g.append(a)
        else:
            groups.append([a])
    out = []
    for g in groups:
        blob = json.dumps([dataset, "again"] + [list(a) for a in g])
        tags = {"platform/dataset": dataset, "platform/files": str(len(g)),
                "platform/reason": f"requested again (attempt {max(a[3] for a in g)})"}
        if len(g) > 1:
            tags.update({ASSET_PARTITION_RANGE_START_TAG: g[0][0],
                         ASSET_PARTITION_RANGE_END_TAG: g[-1][0]})
        out.append(dg.RunRequest(
            run_key=f"{dataset}:{hashlib.sha256(blob.encode()).hexdigest()[:24]}",
            job_name=job_name, partition_key=None if len(g) > 1 else g[0][0],
            run_config=versions_run_config(dataset, {k: (seq, sig) for k, seq, sig, _ in g}),
            tags=tags))
    return out



def _run_config(dataset: str, versions: list[Version]) -> dict:
    return versions_run_config(dataset, {v.key: (v.seq, v.signature) for v in versions})


class Tick:
    """One evaluation: what it requests, and its notes for the skip reason."""

    def __init__(self, context: dg.SensorEvaluationContext, datasets: Mapping[str, DatasetDefs],
                 settings: SensorSettings, storage: StorageResource, state: dict, now_ns: int):
        self.context, self.datasets, self.settings = context, datasets, settings
        self.instance = context.instance
        self.raw, self.lake = storage.raw(), storage.lake()
        self.state, self.now_ns = state, now_ns
        self.run_requests: list[dg.RunRequest] = []
        self.partition_requests: list = []
        self.events: list[dg.AssetMaterialization] = []
        self.notes: list[str] = []
        self.ignored: dict[str, list[str]] = {}
        # Runs are sized by their input where a launcher honours it (ECS, PLATFORM_ENV=aws).
        self.sizing = RunSizing.from_env() if os.environ.get("PLATFORM_ENV") == "aws" else None

    def ds_state(self, ds: str) -> dict:
        return self.state.setdefault("datasets", {}).setdefault(ds, {})

    def classify(self, key: str) -> tuple[str, str] | None:
        """(dataset, key inside it) of a key relative to raw/, or None (noted) if ignored."""
        ds, _, rel = key.partition("/")
        if not rel:
            self.ignored.setdefault("not inside a dataset folder", []).append(key)
        elif ds not in self.datasets:
            self.ignored.setdefault(f"unknown dataset {ds!r}", []).append(key)
        elif reason := ignored_reason(rel):
            self.ignored.setdefault(reason, []).append(key)
        else:
            return ds, rel
        return None

    def split(self, objects) -> dict[str, list[ObjectInfo]]:
        """Group raw objects by dataset, with keys relative to raw/<dataset>/."""
        by_dataset: dict[str, list[ObjectInfo]] = {}
        for o in objects:
            if found := self.classify(o.key):
                by_dataset.setdefault(found[0], []).append(dataclasses.replace(o, key=found[1]))
        return by_dataset

    def heal(self, ds: str) -> None:
        """Request again, or give up, the versions in flight that no run finished."""
        d, s = self.datasets[ds], self.ds_state(ds)
        inflight = s.get("inflight") or {}
        if not inflight:
            return
        settings = self.settings
        heal = plan_healing(
            inflight, alive_versions(self.instance, d.job.name, ds),
            lambda k, sig: getattr(st.read_record(self.lake, ds, k, sig), "status", None),
            now_ns=self.now_ns, heal_after_ns=int(settings.heal_after_seconds * 1e9),
            max_attempts=settings.heal_max_attempts)
        s["inflight"] = heal.inflight
        for key, seq, why in heal.gave_up:
            reason = give_up(self.lake, self.instance, d.job.name, ds, key, seq, why)
            self.context.log.warning(f"{ds}/{key} (version {seq}): {reason}")
            self.notes.append(f"{ds}: gave up on {key}")
        if heal.again:
            self.context.log.info(f"{ds}: requesting {len(heal.again)} file(s) again: "
                                  + ", ".join(a[0] for a in heal.again[:20]))
            order = self.instance.get_dynamic_partitions(d.partitions.name)
            self.run_requests.extend(heal_requests(ds, d.job.name, heal.again, order,
                                                   max(1, settings.max_files_per_run)))

    def launch(self, ds: str, new: list[Version], changed: list[Version]) -> None:
        """Runs for new keys (ranged, after adding their partitions) and changed keys (alone)."""
        d, s = self.datasets[ds], self.ds_state(ds)
        # `known` may be a little stale (partitions.py): the keys launched are checked exactly.
        exact = existing(self.instance, d.partitions.name, [v.key for v in new + changed])
        asked_new = {v.key for v in new}  # a replayed tick's new keys may exist by now
        new, changed = sorted([v for v in new + changed if v.key not in exact
                               or v.key in asked_new], key=lambda v: v.key), \
            [v for v in changed if v.key in exact]
        inflight = s.setdefault("inflight", {})
        for v in new + changed:
            inflight[v.key] = [v.signature, v.seq, self.now_ns, 1, 0]
        new_keys = [v.key for v in new if v.key not in exact]
        if new_keys:
            self.partition_requests.append(d.partitions.build_add_request(new_keys))
        for v in new + changed:
            self.events.append(dg.AssetMaterialization(
                asset_key=d.raw.key, partition=v.key,
                metadata={"size": v.info.size, "signature": v.signature, "seq": v.seq,
                          "changed_ns": v.info.changed_ns, "uri": self.raw.uri(f"{ds}/{v.key}")},
            ))
        step = max(1, self.settings.max_files_per_run)
        for i in range(0, len(new), step):
            chunk = new[i:i + step]
            self.run_requests.append(dg.RunRequest(
                run_key=run_key(ds, chunk), job_name=d.job.name,
                run_config=_run_config(ds, chunk),
                tags={ASSET_PARTITION_RANGE_START_TAG: chunk[0].key,
                      ASSET_PARTITION_RANGE_END_TAG: chunk[-1].key,
                      "platform/dataset": ds, "platform/files": str(len(chunk)),
                      **self.size_tags(chunk)}))
        for v in changed:
            self.run_requests.append(dg.RunRequest(
                run_key=run_key(ds, [v]), job_name=d.job.name, partition_key=v.key,
                run_config=_run_config(ds, [v]),
                tags={"platform/dataset": ds, "platform/files": "1",
                      "platform/reason": "new version", **self.size_tags([v])}))

    def size_tags(self, versions: list[Version]) -> dict[str, str]:
        """The run's input size, and on AWS the task size for it (EcsRunLauncher reads the
        `ecs/*` tags): a 2 KB file gets the smallest task, a 30 GB one a large one."""
        total = sum(v.info.size for v in versions)
        tags = {"platform/input_bytes": str(total)}
        if self.sizing is not None:
            tags.update(ecs_tags(size_for(total, self.sizing)))
        return tags

    def warn_partitions(self, ds: str, count: int) -> None:
        if count >= self.settings.partition_warn_at:
            self.context.log.warning(
                f"{ds} has {count} partitions; Dagster advises at most "
                f"{DAGSTER_PARTITION_LIMIT}. Upload larger files or archives.")

    def skip_reason(self) -> str:
        why = self.notes + [
            f"{reason}: {', '.join(keys[:20])}" + (" ..." if len(keys) > 20 else "")
            for reason, keys in sorted(self.ignored.items())]
        return "no new or changed files" + ("; " + "; ".join(why) if why else "")
