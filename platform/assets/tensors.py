"""`tensors/<dataset>` of an image dataset: its valid images as uint8 NHWC shards with an index.

The asset selects the valid rows of the committed manifest (the Iceberg table's current
snapshot: nothing a check has not passed), hands them to the tensor step through the compute
resource (Dagster Pipes: a subprocess locally, an ECS task or Batch job on AWS), and returns what
the step reported: the materialization (samples, shards, decoded, reused, mean/std) and its
checks. It is not partitioned: one dataset of tensors per image dataset, rebuilt incrementally
(images already tensorized with the same settings are not decoded again).

`build_tensors_sensors` launch it after every finished ingest run of an image dataset.
"""


import dagster as dg
import pyarrow.parquet as pq
from pyiceberg.expressions import EqualTo

from ..contracts import Contract
from ..resources.catalog import CatalogResource
from ..resources.compute import ComputeResource
from ..resources.scratch import ScratchResource
from ..resources.storage import StorageResource
from ..tables.store import load_table

STEP = "data_platform.images.tensor_step:build"
SELECTED = ["key", "member", "content_hash", "label", "split"]
CHECKS = (
    ("index_covers_manifest", "Every valid committed image is in the index exactly once, and "
                              "nothing else is."),
    ("shards_match_index", "Every shard's shape, dtype and sha256 match the index."),
    ("stats_finite", "The train split's per-channel mean and std are finite."),
    ("no_content_in_two_splits", "No image content appears in two splits (WARN)."),
)


def tensors_job_name(dataset: str) -> str:
    return f"tensors_{dataset}_job"


def build_tensors_asset(contract: Contract, table_key: dg.AssetKey) -> dg.AssetsDefinition:
    ds, settings = contract.name, contract.images
    key = dg.AssetKey(["tensors", ds])

    @dg.asset(
        key=key,
        deps=[table_key],
        group_name=ds,
        kinds={"numpy", "pillow"},
        check_specs=[dg.AssetCheckSpec(n, asset=key, description=d) for n, d in CHECKS],
        description=(f"The valid images of {ds} as uint8 {settings.size[1]}x{settings.size[0]}"
                     f"x3 shards ({settings.fit}, {settings.resample}) with an index and the "
                     "train split's mean/std; open with data_platform.tensors.open_dataset."),
    )
    def tensors(context: dg.AssetExecutionContext, storage: StorageResource,
                catalog: CatalogResource, scratch: ScratchResource, compute: ComputeResource):
        lake = storage.lake()
        table = load_table(catalog.iceberg(), catalog.namespace, ds)
        if table is None or table.current_snapshot() is None:
            raise dg.Failure(f"{ds} has no committed manifest yet: nothing to tensorize")
        rows = table.scan(row_filter=EqualTo("valid", True), selected_fields=tuple(SELECTED),
                          snapshot_id=table.current_snapshot().snapshot_id).to_arrow()
        selection = f"_tensors/{ds}/selection-{context.run.run_id}.parquet"
        with scratch.tempdir(prefix=f"tensors-{ds}-") as work:
            pq.write_table(rows.select(SELECTED), work / "selection.parquet")
            lake.put_file(work / "selection.parquet", selection, move=True)
        try:
            results = compute.run(context, step=STEP, params={
                "dataset": ds, "asset_key": key.to_user_string(),
                "raw_uri": storage.raw().uri(), "lake_uri": lake.uri(),
                "scratch": str(scratch.root()), "selection": selection,
                "size": list(settings.size), "fit": settings.fit,
                "resample": settings.resample, "shard_mb": settings.shard_mb,
                "snapshot_id": str(table.current_snapshot().snapshot_id)})
        finally:
            lake.delete(selection)
        yield from results

    return tensors


def build_tensors_sensors(ingest_jobs: dict,
                          tensors_jobs: dict) -> list:
    """Sensors that launch `tensors_<ds>_job` after each finished ingest run of an image
    dataset: after a success, and after a failure too (a run that failed on some files may
    have committed the others). The run key is the ingest run's id: once per ingest run."""
    sensors = []
    for status, name in ((dg.DagsterRunStatus.SUCCESS, "tensors_sensor"),
                         (dg.DagsterRunStatus.FAILURE, "tensors_after_failure_sensor")):
        sensors.append(_tensors_sensor(name, status, ingest_jobs, tensors_jobs))
    return sensors


def _tensors_sensor(name, status, ingest_jobs, tensors_jobs):
    @dg.run_status_sensor(
        name=name,
        run_status=status,
        monitored_jobs=list(ingest_jobs.values()),
        request_jobs=list(tensors_jobs.values()),
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Rebuilds an image dataset's tensors after an ingest run "
                    f"({status.value.lower()}) changed its manifest table.",
    )
    def tensors_sensor(context: dg.RunStatusSensorContext):
        job = context.dagster_run.job_name
        for ds, ingest in ingest_jobs.items():
            if ingest.name == job:
                return dg.RunRequest(run_key=f"tensors-{context.dagster_run.run_id}",
                                     job_name=tensors_jobs[ds].name)
        return dg.SkipReason(f"{job} is not an image dataset's ingest job")

    return tensors_sensor
