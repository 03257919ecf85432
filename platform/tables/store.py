"""Creating, loading and evolving a dataset's Iceberg tables in any pyiceberg catalog.

A dataset `<ds>` has two tables in the platform's namespace: `<ds>` (cleaned rows) and
`<ds>_rejected` (rows that broke the contract). Their data and metadata live under
`warehouse/<namespace>/<table>/` in the lake, so staged files can be written there by the
lake's object store and referenced in place by a commit.
"""

from __future__ import annotations

import time

from pyiceberg.catalog import Catalog
from pyiceberg.exceptions import (
    CommitFailedException,
    NoSuchIcebergTableError,
    NoSuchPropertyException,
    NoSuchTableError,
    TableAlreadyExistsError,
)
from pyiceberg.table import Table

from ..contracts import Contract
from ..resources.storage import ObjectStore
from .commit import RETRYABLE
from .schema import (
    SOURCE_KEY,
    SOURCE_VERSION,
    Evolution,
    iceberg_type,
    new_schema,
    partition_spec,
    plan_evolution,
    rejected_columns,
    table_columns,
)

# Commit cost stays flat with history: old metadata files are deleted, manifests merged, and
# the lineage columns keep exact bounds (strings are truncated to 16 characters by default).
TABLE_PROPERTIES = {
    "format-version": "2",
    "write.metadata.delete-after-commit.enabled": "true",
    "write.metadata.previous-versions-max": "20",
    "commit.manifest-merge.enabled": "true",
    f"write.metadata.metrics.column.{SOURCE_KEY}": "full",
    f"write.metadata.metrics.column.{SOURCE_VERSION}": "full",
    "write.parquet.compression-codec": "snappy",
}


def rejected_name(dataset: str) -> str:
    return f"{dataset}_rejected"


def table_prefix(namespace: str, name: str) -> str:
    """Lake key prefix of a table's folder (data/ and metadata/ below it)."""
    return f"warehouse/{namespace}/{name}"


def staging_prefix(namespace: str, name: str, partition_subdir: str = "") -> str:
    """Where a run stages data files for `name`: inside the table's data folder, unreferenced."""
    sub = f"/{partition_subdir}" if partition_subdir else ""
    return f"{table_prefix(namespace, name)}/data{sub}"


def ensure_namespace(catalog: Catalog, namespace: str) -> None:
    """Create the namespace unless it exists; a concurrent creator winning is fine."""
    if catalog.namespace_exists(namespace):
        return  # the usual case; on Glue the database is deployed, runs may not create one
    try:
        catalog.create_namespace_if_not_exists(namespace)
    except Exception:
        # Two runs creating it at once: the loser's insert fails (as NamespaceAlreadyExists or
        # as the SQL catalog's raw integrity error). Only a namespace that is there is fine.
        if not catalog.namespace_exists(namespace):
            raise


class NotAnIcebergTable(RuntimeError):
    """The catalog has a table of that name that is not an Iceberg table."""


def load_table(catalog: Catalog, namespace: str, name: str) -> Table | None:
    """The table, or None if there is none; raises NotAnIcebergTable for a foreign table."""
    try:
        return catalog.load_table((namespace, name))
    except (NoSuchIcebergTableError, NoSuchPropertyException) as e:  # before its base class
        # A Glue table from before the Iceberg tables (external Parquet): never dropped by the
        # platform. It holds no data of its own (raw is the source of truth).
        raise NotAnIcebergTable(
            f"{namespace}.{name} exists but is not an Iceberg table ({e}); if it is the external "
            "Parquet table of the old layout, delete it from the catalog and rerun") from e
    except NoSuchTableError:
        return None


def ensure_table(catalog: Catalog, namespace: str, name: str, columns: list[tuple[str, str]],
                 partition_column: str | None, lake: ObjectStore,
                 attempts: int = 6) -> tuple[Table, Evolution]:
    """Load table `name`, creating it or evolving its schema to `columns` first.

    Evolution (added columns, widened decimals) is one schema commit, applied before any data
    that needs it is staged. Raises SchemaChangeError for a breaking change, changing nothing.
    """
    for attempt in range(attempts):
        try:
            return _ensure_once(catalog, namespace, name, columns, partition_column, lake)
        except TableAlreadyExistsError:
            continue  # a concurrent run created it: load and compare
        except RETRYABLE as e:  # a concurrent schema change, or the SQLite file stayed busy
            if attempt == attempts - 1:
                raise CommitFailedException(f"could not create or evolve table {name} in "
                                            f"{attempts} attempts: {e}") from e
            time.sleep(0.05 * (attempt + 1))
    raise CommitFailedException(f"could not create table {name}: created and dropped at once")


def _ensure_once(catalog: Catalog, namespace: str, name: str, columns: list[tuple[str, str]],
                 partition_column: str | None, lake: ObjectStore) -> tuple[Table, Evolution]:
    table = load_table(catalog, namespace, name)
    if table is None:
        ensure_namespace(catalog, namespace)
        schema = new_schema(columns)
        table = catalog.create_table(
            (namespace, name), schema=schema,
            partition_spec=partition_spec(schema, partition_column),
            location=lake.uri(table_prefix(namespace, name)),
            properties=TABLE_PROPERTIES,
        )
        return table, Evolution(add=[], widen=[])
    evolution = plan_evolution(table.schema(), columns, spec=table.spec(),
                               partition_column=partition_column, table=name)
    if evolution:
        with table.update_schema() as update:
            for col, t in evolution.add:
                update.add_column(col, iceberg_type(t))
            for col, _, t in evolution.widen:
                update.update_column(col, field_type=iceberg_type(t))
    return table, evolution


def ensure_dataset_tables(catalog: Catalog, namespace: str, contract: Contract,
                          lake: ObjectStore) -> dict[str, tuple[Table, Evolution]]:
    """Create or evolve both tables of a dataset; {"data": ..., "rejected": ...}."""
    return {
        "data": ensure_table(catalog, namespace, contract.name, table_columns(contract),
                             contract.partition_column, lake),
        "rejected": ensure_table(catalog, namespace, rejected_name(contract.name),
                                 rejected_columns(), None, lake),
    }
