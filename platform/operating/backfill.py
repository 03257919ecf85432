"""Asset backfills of a dataset's files, launched like the UI's "Materialize selected" does.

A backfill here is a real Dagster asset backfill of `cleaned/<ds>` and `table/<ds>` over some
partitions: listed under Overview > Backfills, executed by the daemon's backfill loop (which
honours the assets' single-run backfill policy: one run per contiguous range of files, not one
run per file). Locally it is written straight into the instance in DAGSTER_HOME, as the
webserver's `launchPartitionBackfill` mutation does; against a deployment it goes through that
mutation. Either way the daemon runs it.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from collections.abc import Callable

import dagster as dg

from .sources import GraphQLClient, LocalSource, OperatingError, Source
from .state import assets_of, dataset_state

TERMINAL = {"COMPLETED", "COMPLETED_SUCCESS", "COMPLETED_FAILED", "FAILED", "CANCELED"}
SUCCESS = {"COMPLETED", "COMPLETED_SUCCESS"}


@dataclasses.dataclass
class Progress:
    """Where a backfill is: its status and partition counts of its last asset (table/<ds>)."""

    status: str
    targeted: int = 0
    materialized: int = 0
    failed: int = 0
    in_progress: int = 0

    @property
    def done(self) -> bool:
        return self.status in TERMINAL

    @property
    def succeeded(self) -> bool:
        return self.status in SUCCESS and self.failed == 0

    def line(self) -> str:
        return (f"{self.status}: {self.materialized}/{self.targeted} files done, "
                f"{self.failed} failed, {self.in_progress} running")


def select_partitions(source: Source, dataset: str, *, all_: bool = False,
                      partitions: list[str] | None = None, failed: bool = False,
                      missing: bool = False) -> tuple[list[str], dict[str, str]]:
    """The dataset's partitions a backfill should target, in partition order, and why each.

    The selectors add up (`--failed --missing` is both). Raises OperatingError for an unknown
    dataset or partition, or when no selector is given.
    """
    if not (all_ or partitions or failed or missing):
        raise OperatingError("say which files: --all, --partitions K1,K2, --failed or --missing")
    state = dataset_state(source, dataset, with_checks=failed)
    known = set(state.partitions)
    why: dict[str, str] = {}
    if partitions:
        unknown = [p for p in partitions if p not in known]
        if unknown:
            raise OperatingError(
                f"{dataset} has no partition(s) {', '.join(map(repr, unknown))} "
                f"({len(known)} known; a partition is a file key under raw/{dataset}/)")
        why.update({p: "requested" for p in partitions})
    if all_:
        why.update({p: "all" for p in state.partitions if p not in why})
    if failed:
        checks = state.check_failed()
        for p in state.failed_partitions():
            why.setdefault(p, checks.get(p, "latest run failed"))
    if missing:
        for p in state.missing_partitions():
            why.setdefault(p, "never materialized")
    return [p for p in state.partitions if p in why], why


def _title(dataset: str, selectors: str) -> str:
    return f"data-platform backfill {dataset} {selectors}".strip()


def launch_local(source: LocalSource, dataset: str, partitions: list[str], *,
                 selectors: str = "") -> str:
    """Add an asset backfill of `partitions` to the local instance; returns its id."""
    from dagster._core.execution.backfill import PartitionBackfill
    from dagster._core.utils import make_new_backfill_id
    from dagster._time import get_current_timestamp

    backfill = PartitionBackfill.from_asset_partitions(
        backfill_id=make_new_backfill_id(),
        asset_graph=source.graph,
        partition_names=partitions,
        asset_selection=[dg.AssetKey(a) for a in assets_of(dataset)],
        backfill_timestamp=get_current_timestamp(),
        tags={"data_platform/backfill": dataset},
        dynamic_partitions_store=source.instance,
        all_partitions=False,
        title=_title(dataset, selectors),
        description=f"{len(partitions)} file(s) of {dataset}, launched from the command line",
        run_config=None,
    )
    source.instance.add_backfill(backfill)
    return backfill.backfill_id


def local_progress(source: LocalSource, backfill_id: str) -> Progress:
    """Progress of a backfill in the local instance."""
    backfill = source.instance.get_backfill(backfill_id)
    if backfill is None:
        raise OperatingError(f"no backfill {backfill_id} in the instance")
    progress = Progress(backfill.status.value)
    data = backfill.get_asset_backfill_data(source.graph)
    statuses = data.get_backfill_status_per_asset_key(source.graph)
    if statuses:
        from dagster._core.execution.asset_backfill import AssetBackfillStatus as S

        last = statuses[-1]
        counts = last.partitions_counts_by_status
        progress.targeted = last.num_targeted_partitions
        progress.materialized, progress.failed = counts[S.MATERIALIZED], counts[S.FAILED]
        progress.in_progress = counts[S.IN_PROGRESS]
    return progress


def daemon_warning(source: LocalSource, max_age: float = 120.0) -> str | None:
    """A warning when no backfill daemon has reported recently (nothing would run it)."""
    beat = source.instance.get_daemon_heartbeats().get("BACKFILL")
    if beat is None or time.time() - beat.timestamp > max_age:
        return ("warning: no Dagster daemon has reported in the last "
                f"{int(max_age)} s for this instance; the backfill runs once one does "
                "(`make dev` starts it)")
    return None


_LAUNCH = """mutation Launch($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on Error { message }
  } }"""

_PROGRESS = """query Progress($id: String!) { partitionBackfillOrError(backfillId: $id) {
  __typename
  ... on PartitionBackfill { status assetBackfillData { assetBackfillStatuses {
    ... on AssetPartitionsStatusCounts { assetKey { path } numPartitionsTargeted
      numPartitionsInProgress numPartitionsMaterialized numPartitionsFailed } } } }
  ... on BackfillNotFoundError { message }
  ... on PythonError { message } } }"""


def launch_remote(client: GraphQLClient, dataset: str, partitions: list[str], *,
                  selectors: str = "") -> str:
    """Launch the backfill through the webserver's `launchPartitionBackfill`; returns its id."""
    params = {
        "assetSelection": [{"path": a} for a in assets_of(dataset)],
        "partitionNames": partitions,
        "title": _title(dataset, selectors),
        "description": f"{len(partitions)} file(s) of {dataset}, launched from the command line",
        "tags": [{"key": "data_platform/backfill", "value": dataset}],
    }
    result = client(_LAUNCH, params=params)["launchPartitionBackfill"]
    if result["__typename"] != "LaunchBackfillSuccess":
        raise OperatingError(f"the webserver refused the backfill ({result['__typename']}): "
                             f"{result.get('message', result)}")
    return result["backfillId"]


def remote_progress(client: GraphQLClient, backfill_id: str) -> Progress:
    """Progress of a backfill, read through the webserver."""
    node = client(_PROGRESS, id=backfill_id)["partitionBackfillOrError"]
    if node["__typename"] != "PartitionBackfill":
        raise OperatingError(f"backfill {backfill_id}: {node.get('message', node['__typename'])}")
    progress = Progress(node["status"])
    counts = [s for s in (node.get("assetBackfillData") or {}).get("assetBackfillStatuses", [])
              if s]
    if counts:
        last = counts[-1]
        progress.targeted = last["numPartitionsTargeted"]
        progress.materialized = last["numPartitionsMaterialized"]
        progress.failed = last["numPartitionsFailed"]
        progress.in_progress = last["numPartitionsInProgress"]
    return progress


def follow(poll: Callable[[], Progress], *, interval: float = 2.0, timeout: float | None = None,
           out=None) -> Progress:
    """Poll until the backfill ends, printing a progress line whenever it changes; returns the
    final Progress. Raises OperatingError when `timeout` seconds pass first."""
    out = out or sys.stdout
    deadline = None if timeout is None else time.monotonic() + timeout
    last = None
    while True:
        progress = poll()
        line = progress.line()
        if line != last:
            print(f"[{time.strftime('%H:%M:%S')}] {line}", file=out, flush=True)
            last = line
        if progress.done:
            return progress
        if deadline is not None and time.monotonic() > deadline:
            raise OperatingError(f"gave up waiting after {timeout:.0f} s (the backfill goes on)")
        time.sleep(interval)
