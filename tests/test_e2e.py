"""End to end: `dagster dev` (webserver + daemon) on a free port picks up a dropped file on its
own, and the table answers a query. Real processes, real SQLite instance, no mocks."""

import shutil
import time

import dagster as dg
import pytest
from data_platform.resources import DuckDBCatalog
from data_platform.tensors import open_dataset

from .conftest import SAMPLES, write_raw
from .devserver import DevServer

HEADER = "Order ID,Customer,Amount,Currency,Ordered At,Order Date,Gift?\n"


@pytest.mark.e2e
def test_dagster_dev_processes_a_dropped_file(data_dir, tmp_path):
    dev = DevServer(data_dir, tmp_path / "dagster_home", tmp_path / "dagster_dev.log").start()
    try:
        body = "".join(
            f"{i},c{i},{i}.25,EUR,2026-11-20T10:00:00+00:00,2026-11-20,false\n"
            for i in range(1, 51)
        )
        write_raw(data_dir, "orders/dropped.csv", HEADER + body + "51,bad,12x,EUR\n")
        catalog = DuckDBCatalog(path=str(data_dir / "catalog.duckdb"))
        count = dev.wait_for(lambda: catalog.query("SELECT count(*), sum(amount) FROM orders")[0],
                             180, "the orders table")
        assert count == (50, sum(i + 0.25 for i in range(1, 51)))
        assert catalog.query("SELECT line FROM orders_rejected") == [(52,)]

        # A name with glob characters, and the first file overwritten with an old mtime (as
        # `cp -p` does): both are picked up by the running daemon, each row exactly once.
        write_raw(data_dir, "orders/r[1].csv",
                  HEADER + "1000,c,1.00,EUR,2026-11-20T10:00:00+00:00,2026-11-20,false\n")
        old = time.time() - 30 * 86400
        write_raw(data_dir, "orders/dropped.csv", HEADER + "".join(body.splitlines(True)[:10]),
                  mtime=old)
        expected = [("dropped.csv", 10), ("r[1].csv", 1)]
        dev.wait_for(lambda: catalog.query(
            "SELECT _source_key, count(*) FROM orders GROUP BY 1 ORDER BY 1") == expected,
            180, "the overwrite and the new file")
        assert catalog.query("SELECT count(*) FROM orders_rejected") == [(0,)]

        # A folder of images and a zip dropped in: manifest, table and, launched by the
        # tensors sensor after the ingest run, tensor shards the reader opens.
        shutil.copytree(SAMPLES / "shapes", data_dir / "raw" / "shapes")
        index = data_dir / "lake" / "tensors" / "shapes" / "index.json"
        instance = dg.DagsterInstance.from_config(str(dev.home))
        tensors = dg.AssetKey(["tensors", "shapes"])
        dev.wait_for(lambda: instance.get_latest_materialization_event(tensors), 240,
                     "the shapes tensors")
        assert catalog.query("SELECT count(*) FILTER (valid), count(*) FILTER (NOT valid) "
                             "FROM shapes") == [(12, 1)]
        ds = open_dataset(index.parent)
        assert len(ds) == 12 and ds[0][0].shape == (64, 64, 3)
        assert sorted({ds[i][1] for i in range(len(ds))}) == ["circle", "square", "triangle"]
    finally:
        dev.stop()
