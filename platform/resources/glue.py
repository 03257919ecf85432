"""The catalog on AWS: Glue Data Catalog tables over the lake's Parquet, queried through Athena.

Registering a dataset creates or updates an external Parquet table (what a Glue crawler would
produce, without the crawler: the contract already knows the schema) and adds any new hive
partitions. Queries run in the platform's Athena workgroup and are polled to completion.
"""

import time
from collections.abc import Sequence

import boto3
from pydantic import Field

from ..contracts import Column
from .catalog import CatalogResource
from .s3 import BOTO_CONFIG

PARQUET = {
    "InputFormat": "org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat",
    "OutputFormat": "org.apache.hadoop.hive.ql.io.parquet.MapredParquetOutputFormat",
    "SerdeInfo": {
        "SerializationLibrary": "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe",
        "Parameters": {"serialization.format": "1"},
    },
}
_GLUE_TYPES = {"int": "bigint", "float": "double", "bool": "boolean", "string": "string",
               "date": "date", "timestamp": "timestamp"}
REJECTED_COLUMNS = [("source_key", "string"), ("line", "bigint"), ("error_type", "string"),
                    ("column_name", "string"), ("reason", "string"), ("raw", "string")]


def glue_type(column: Column) -> str:
    return column.type.replace(" ", "") if column.type.startswith("decimal") \
        else _GLUE_TYPES[column.type]


class AthenaQueryError(RuntimeError):
    """An Athena query failed, was cancelled or timed out."""


def table_input(name: str, columns: Sequence[tuple[str, str]], location: str,
                partition_keys: Sequence[tuple[str, str]] = (), description: str = "") -> dict:
    """Return the Glue TableInput for an external Parquet table at `location`."""
    return {
        "Name": name,
        "Description": description,
        "TableType": "EXTERNAL_TABLE",
        "Parameters": {"classification": "parquet", "EXTERNAL": "TRUE",
                       "parquet.compression": "ZSTD"},
        "PartitionKeys": [{"Name": n, "Type": t} for n, t in partition_keys],
        "StorageDescriptor": {
            "Columns": [{"Name": n, "Type": t} for n, t in columns],
            "Location": location.rstrip("/") + "/",
            **PARQUET,
        },
    }


class GlueCatalog(CatalogResource):
    """Glue tables, Athena queries."""

    database: str = Field(description="Glue database holding one table per dataset")
    workgroup: str = Field(description="Athena workgroup for queries")
    output_url: str | None = Field(default=None,
                                   description="s3:// URL for Athena results (if the "
                                               "workgroup does not enforce one)")
    region_name: str | None = Field(default=None)
    query_timeout_s: float = Field(default=300.0)

    def glue(self):
        return boto3.session.Session().client("glue", region_name=self.region_name,
                                              config=BOTO_CONFIG)

    def athena(self):
        return boto3.session.Session().client("athena", region_name=self.region_name,
                                              config=BOTO_CONFIG)

    def _upsert(self, glue, tinput: dict) -> None:
        try:
            glue.create_table(DatabaseName=self.database, TableInput=tinput)
        except glue.exceptions.AlreadyExistsException:
            glue.update_table(DatabaseName=self.database, TableInput=tinput)

    def register_table(self, name, columns, data_uri, *, has_data, partition_column=None,
                       rejected_uri=None, partition_values: Sequence[str] = ()) -> str:
        glue = self.glue()
        pcols = [(c.name, glue_type(c)) for c in columns if c.name == partition_column]
        cols = [(c.name, glue_type(c)) for c in columns if c.name != partition_column]
        tinput = table_input(name, cols, data_uri, pcols,
                             description=f"Cleaned {name}, maintained by the data platform")
        self._upsert(glue, tinput)
        if pcols and partition_values:
            self._add_partitions(glue, name, data_uri, partition_column, partition_values,
                                 tinput["StorageDescriptor"])
        if rejected_uri:
            self._upsert(glue, table_input(f"{name}_rejected", REJECTED_COLUMNS, rejected_uri,
                                           description=f"Rows of {name} that broke its contract"))
        return f"glue://{self.database}/{name} -> {tinput['StorageDescriptor']['Location']}"

    def _add_partitions(self, glue, name, data_uri, column, values, sd) -> None:
        for i in range(0, len(values), 100):  # the API's batch limit
            chunk = values[i:i + 100]
            resp = glue.batch_create_partition(
                DatabaseName=self.database, TableName=name,
                PartitionInputList=[{
                    "Values": [v],
                    "StorageDescriptor": {**sd, "Location":
                                          f"{data_uri.rstrip('/')}/{column}={v}/"},
                } for v in chunk],
            )
            errors = [e for e in resp.get("Errors", [])
                      if e.get("ErrorDetail", {}).get("ErrorCode") != "AlreadyExistsException"]
            if errors:
                raise RuntimeError(f"Glue refused partitions of {name}: {errors[:3]}")

    def query(self, sql: str) -> list[tuple]:
        athena = self.athena()
        kwargs = {"QueryString": sql, "WorkGroup": self.workgroup,
                  "QueryExecutionContext": {"Database": self.database}}
        if self.output_url:
            kwargs["ResultConfiguration"] = {"OutputLocation": self.output_url}
        qid = athena.start_query_execution(**kwargs)["QueryExecutionId"]
        deadline, delay = time.monotonic() + self.query_timeout_s, 0.2
        while True:
            status = athena.get_query_execution(QueryExecutionId=qid)["QueryExecution"]["Status"]
            state = status["State"]
            if state == "SUCCEEDED":
                break
            if state in ("FAILED", "CANCELLED"):
                raise AthenaQueryError(f"Athena query {qid} {state}: "
                                       f"{status.get('StateChangeReason', '')}")
            if time.monotonic() > deadline:
                athena.stop_query_execution(QueryExecutionId=qid)
                raise AthenaQueryError(f"Athena query {qid} timed out after "
                                       f"{self.query_timeout_s}s")
            time.sleep(delay)
            delay = min(delay * 1.5, 5.0)
        rows, types = [], None
        for page in athena.get_paginator("get_query_results").paginate(QueryExecutionId=qid):
            rs = page["ResultSet"]
            if types is None:
                types = [c["Type"] for c in rs.get("ResultSetMetadata", {}).get("ColumnInfo", [])]
                data = rs.get("Rows", [])[1:]  # the first row of the first page is the header
            else:
                data = rs.get("Rows", [])
            for r in data:
                rows.append(tuple(_convert(d.get("VarCharValue"), t)
                                  for d, t in zip(r["Data"], types)))
        return rows


def _convert(value: str | None, athena_type: str):
    if value is None:
        return None
    if athena_type in ("bigint", "integer", "smallint", "tinyint"):
        return int(value)
    if athena_type in ("double", "float", "real"):
        return float(value)
    if athena_type == "boolean":
        return value == "true"
    return value

