"""Where the operating commands read Dagster's view of a dataset: the local instance
(DAGSTER_HOME) or a deployed webserver's GraphQL API. Both answer the same few questions.

Per asset: its partitions, which are materialized, failed (latest attempt failed) or in
progress; per asset check: its recent evaluations, newest first. Nothing here decides anything;
`state.py` does, the same way for both.
"""

from __future__ import annotations

import abc
import dataclasses
import json
import os
import urllib.error
import urllib.request
from pathlib import Path

import dagster as dg

HISTORY = 100  # evaluations per check read back when deciding what a check says of each file


class OperatingError(Exception):
    """A request the commands cannot carry out (unknown dataset or partition, no instance,
    unreachable webserver); the CLI prints it and exits 2."""


@dataclasses.dataclass
class PartitionStatus:
    """Dagster's partition status of one asset (the Partitions tab of the UI)."""

    materialized: set[str]
    failed: set[str]
    in_progress: set[str]


@dataclasses.dataclass
class CheckEvaluation:
    """One recorded evaluation of an asset check; `order` (its time) sorts it against
    materializations."""

    asset: str
    check: str
    passed: bool
    severity: str
    metadata: dict
    order: float
    timestamp: float
    run_id: str


class Source(abc.ABC):
    """Dagster's view of the platform's assets."""

    @abc.abstractmethod
    def partitions(self, asset: list[str]) -> list[str]:
        """All partition keys of `asset`; raises OperatingError if there is no such asset."""

    @abc.abstractmethod
    def status(self, asset: list[str]) -> PartitionStatus:
        """The asset's partition status."""

    @abc.abstractmethod
    def check_names(self, asset: list[str]) -> list[str]:
        """Names of the asset's checks."""

    @abc.abstractmethod
    def evaluations(self, asset: list[str], check: str) -> list[CheckEvaluation]:
        """Recent evaluations of one check, newest first (at most HISTORY)."""

    @abc.abstractmethod
    def materialized_order(self, asset: list[str], partitions: set[str]) -> dict[str, float]:
        """The `order` of each partition's latest materialization (absent: never)."""


def local_instance(required: bool = True) -> dg.DagsterInstance | None:
    """The instance in DAGSTER_HOME; None (or OperatingError when `required`) without one."""
    home = os.environ.get("DAGSTER_HOME")
    if not home or not Path(home).is_dir():
        if required:
            raise OperatingError(
                "DAGSTER_HOME is not set to an existing folder: set it to the instance the "
                "platform runs with (`make dev` uses .data/dagster_home) or pass --url")
        return None
    return dg.DagsterInstance.get()


class LocalSource(Source):
    """The local instance plus the code's own asset graph (the definitions `dagster dev` loads)."""

    def __init__(self, instance: dg.DagsterInstance, defs: dg.Definitions):
        self.instance, self.defs = instance, defs
        self.graph = defs.resolve_asset_graph()

    def _node(self, asset: list[str]):
        key = dg.AssetKey(asset)
        if not self.graph.has(key):
            raise OperatingError(f"no asset {'/'.join(asset)} in the definitions")
        return key, self.graph.get(key)

    def partitions(self, asset):
        _, node = self._node(asset)
        return list(self.instance.get_dynamic_partitions(node.partitions_def.name))

    def status(self, asset):
        from dagster._core.storage.partition_status_cache import (
            get_and_update_asset_status_cache_value,
        )

        key, node = self._node(asset)
        pd = node.partitions_def
        value = get_and_update_asset_status_cache_value(self.instance, key, pd)
        if value is None:
            return PartitionStatus(set(), set(), set())
        return PartitionStatus(
            set(value.deserialize_materialized_partition_subsets(pd).get_partition_keys()),
            set(value.deserialize_failed_partition_subsets(pd).get_partition_keys()),
            set(value.deserialize_in_progress_partition_subsets(pd).get_partition_keys()))

    def check_names(self, asset):
        key, _ = self._node(asset)
        return sorted(k.name for k in self.graph.asset_check_keys if k.asset_key == key)

    def evaluations(self, asset, check):
        key = dg.AssetCheckKey(dg.AssetKey(asset), check)
        out = []
        for rec in self.instance.event_log_storage.get_asset_check_execution_history(
                key, limit=HISTORY):
            event = rec.event
            data = event.dagster_event.event_specific_data \
                if event is not None and event.dagster_event else None
            if data is None or not hasattr(data, "passed"):
                continue  # planned, still running or skipped: no evaluation yet
            out.append(CheckEvaluation(
                asset="/".join(asset), check=check, passed=data.passed,
                severity=data.severity.value,
                metadata={k: v.value for k, v in data.metadata.items()},
                order=event.timestamp, timestamp=event.timestamp, run_id=rec.run_id))
        return out

    def materialized_order(self, asset, partitions):
        from dagster._core.events import DagsterEventType

        if not partitions:
            return {}
        key = dg.AssetKey(asset)
        ids = self.instance.event_log_storage.get_latest_storage_id_by_partition(
            key, DagsterEventType.ASSET_MATERIALIZATION, partitions=set(partitions))
        if not ids:
            return {}
        records = self.instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=key, storage_ids=list(ids.values())),
            limit=len(ids)).records
        return {r.partition_key: r.timestamp for r in records if r.partition_key}


class GraphQLClient:
    """A minimal client of the webserver's GraphQL endpoint (`<url>/graphql`)."""

    def __init__(self, url: str, timeout: float = 30.0):
        self.url = url.rstrip("/")
        self.timeout = timeout

    def __call__(self, query: str, **variables) -> dict:
        """Run `query`; returns its `data`. Raises OperatingError on transport or GraphQL errors."""
        body = json.dumps({"query": query, "variables": variables}).encode()
        req = urllib.request.Request(f"{self.url}/graphql", data=body, method="POST",
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                answer = json.loads(resp.read())
        except (urllib.error.URLError, OSError, ValueError) as e:
            raise OperatingError(f"cannot reach the Dagster webserver at {self.url}: {e}") from e
        if answer.get("errors"):
            raise OperatingError("GraphQL error: " + "; ".join(
                e.get("message", str(e)) for e in answer["errors"]))
        return answer["data"]


_NODE = """query Node($key: AssetKeyInput!) { assetNodeOrError(assetKey: $key) {
  __typename
  ... on AssetNode { partitionKeys
    assetChecksOrError { ... on AssetChecks { checks { name } } }
    assetPartitionStatuses { ... on DefaultPartitionStatuses {
      materializedPartitions failedPartitions materializingPartitions } } }
  ... on AssetNotFoundError { message } } }"""

_EVALUATIONS = """query Evals($key: AssetKeyInput!, $check: String!, $limit: Int!) {
  assetCheckExecutions(assetKey: $key, checkName: $check, limit: $limit) {
    runId timestamp evaluation { timestamp success severity
      metadataEntries { label __typename ... on JsonMetadataEntry { jsonString }
        ... on IntMetadataEntry { intValue } ... on TextMetadataEntry { text } } } } }"""

_LATEST = """query Latest($key: AssetKeyInput!, $partitions: [String!]) {
  assetNodeOrError(assetKey: $key) { ... on AssetNode {
    latestMaterializationByPartition(partitions: $partitions) { partition timestamp } } } }"""


def _entry_value(entry: dict):
    if "jsonString" in entry:
        return json.loads(entry["jsonString"])
    return entry.get("intValue", entry.get("text"))


class GraphQLSource(Source):
    """A deployed webserver, read through GraphQL (what the UI itself reads)."""

    def __init__(self, client: GraphQLClient):
        self.client = client
        self._nodes: dict[tuple, dict] = {}

    def _node(self, asset: list[str]) -> dict:
        if tuple(asset) not in self._nodes:
            node = self.client(_NODE, key={"path": asset})["assetNodeOrError"]
            if node["__typename"] != "AssetNode":
                raise OperatingError(f"no asset {'/'.join(asset)} on {self.client.url}: "
                                     f"{node.get('message', node['__typename'])}")
            self._nodes[tuple(asset)] = node
        return self._nodes[tuple(asset)]

    def partitions(self, asset):
        return list(self._node(asset)["partitionKeys"] or [])

    def status(self, asset):
        s = self._node(asset).get("assetPartitionStatuses") or {}
        return PartitionStatus(set(s.get("materializedPartitions", [])),
                               set(s.get("failedPartitions", [])),
                               set(s.get("materializingPartitions", [])))

    def check_names(self, asset):
        checks = (self._node(asset).get("assetChecksOrError") or {}).get("checks") or []
        return sorted(c["name"] for c in checks)

    def evaluations(self, asset, check):
        out = []
        for ex in self.client(_EVALUATIONS, key={"path": asset}, check=check,
                              limit=HISTORY)["assetCheckExecutions"]:
            ev = ex.get("evaluation")
            if not ev:
                continue
            out.append(CheckEvaluation(
                asset="/".join(asset), check=check, passed=ev["success"],
                severity=ev["severity"],
                metadata={e["label"]: _entry_value(e) for e in ev["metadataEntries"]},
                order=ev["timestamp"], timestamp=ev["timestamp"], run_id=ex["runId"]))
        return out

    def materialized_order(self, asset, partitions):
        if not partitions:
            return {}
        node = self.client(_LATEST, key={"path": asset},
                           partitions=sorted(partitions))["assetNodeOrError"]
        events = node.get("latestMaterializationByPartition") or []
        # GraphQL timestamps are milliseconds as strings; evaluations' are seconds.
        return {e["partition"]: float(e["timestamp"]) / 1000.0 for e in events if e}
