"""The catalog on AWS: native Iceberg tables in the Glue Data Catalog, queried through Athena.

`iceberg()` returns pyiceberg's Glue catalog. Each dataset table is a Glue table of type ICEBERG
in the platform's Glue database (the Iceberg namespace) whose `metadata_location` points at the
table's metadata in the lake bucket (`warehouse/<database>/<table>/`). Commits swap that pointer
with Glue's optimistic `UpdateTable(VersionId=...)`; a lost race surfaces as pyiceberg's
CommitFailedException and the commit is rebuilt and retried (see tables/commit.py).

Data and metadata files are read and written by pyiceberg's PyArrow FileIO, configured here
from the same settings as boto3: the region, and the endpoint of an S3-compatible server when
`AWS_ENDPOINT_URL_S3` or `AWS_ENDPOINT_URL` is set. Credentials are not passed: the FileIO uses
the AWS default chain (environment, profile, the ECS task role), so they never go stale.

Athena reads Iceberg tables natively, so `expose` has nothing to do; `query` and `execute` run SQL
in the platform's workgroup through `athena.run_query` (polling, typed results, statistics).
Nothing here calls AWS or reads the environment until a run asks for a client.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import boto3
from pydantic import Field, model_validator
from pyiceberg.catalog import Catalog

from .athena import AthenaQueryError, QueryResult, run_query
from .catalog import CatalogResource
from .s3 import BOTO_CONFIG

__all__ = ["AthenaQueryError", "GlueCatalog", "s3_endpoint"]  # the error is raised by query

# The S3 FileIO's timeouts (seconds), matching BOTO_CONFIG's.
S3_CONNECT_TIMEOUT_S = BOTO_CONFIG.connect_timeout
S3_REQUEST_TIMEOUT_S = BOTO_CONFIG.read_timeout


def s3_endpoint() -> str | None:
    """The S3 endpoint boto3 would use from the environment, if one is configured (else None)."""
    return os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL") or None


class GlueCatalog(CatalogResource):
    """Iceberg tables in the Glue Data Catalog (database = namespace), Athena queries."""

    database: str = Field(description="Glue database holding the tables (the Iceberg namespace)")
    workgroup: str = Field(description="Athena workgroup for queries")
    output_url: str | None = Field(default=None,
                                   description="s3:// URL for Athena results (if the "
                                               "workgroup does not enforce one)")
    region_name: str | None = Field(default=None, description="AWS region; default from env")
    query_timeout_s: float = Field(default=300.0)

    @model_validator(mode="before")
    @classmethod
    def _namespace_is_database(cls, data: Any) -> Any:
        # The Iceberg namespace of a Glue catalog is the database: never two names for it.
        if isinstance(data, dict) and data.get("database") is not None:
            data = {**data, "namespace": data["database"]}
        return data

    def _session(self):
        return boto3.session.Session(region_name=self.region_name)

    def glue(self):
        """A Glue client with the platform's timeouts and retries (endpoint from the env)."""
        return self._session().client("glue", config=BOTO_CONFIG)

    def athena(self):
        """An Athena client with the platform's timeouts and retries (throttled calls retry)."""
        return self._session().client("athena", config=BOTO_CONFIG)

    def file_io_properties(self) -> dict[str, str]:
        """pyiceberg properties of the tables' S3 FileIO (PyArrow)."""
        region = self.region_name or self._session().region_name
        if not region:
            raise ValueError("no AWS region: set AWS_REGION (the S3 FileIO needs one)")
        props = {
            "py-io-impl": "pyiceberg.io.pyarrow.PyArrowFileIO",
            # An explicit region also keeps the FileIO from probing the bucket for its region.
            "s3.region": region,
            "s3.connect-timeout": str(S3_CONNECT_TIMEOUT_S),
            "s3.request-timeout": str(S3_REQUEST_TIMEOUT_S),
        }
        endpoint = s3_endpoint()
        if endpoint:
            props["s3.endpoint"] = endpoint
        return props

    def iceberg(self) -> Catalog:
        from pyiceberg.catalog.glue import GlueCatalog as PyIcebergGlueCatalog

        # Our own client: pyiceberg's would have retries but no connect/read timeouts.
        return PyIcebergGlueCatalog("platform", client=self.glue(), **self.file_io_properties())

    def expose(self, names: Sequence[str]) -> None:
        """Nothing to do: Athena reads the current snapshot from the Glue table itself."""

    def compaction_sql(self, name: str) -> list[str]:
        """Athena bin-packs small files and vacuums expired snapshots' files itself."""
        table = f"{_ident(self.database)}.{_ident(name)}"
        return [f"OPTIMIZE {table} REWRITE DATA USING BIN_PACK", f"VACUUM {table}"]

    def execute(self, sql: str) -> QueryResult:
        """Run `sql` in the platform's workgroup and database; returns every row, typed, with
        Athena's statistics (bytes scanned, engine time, estimated cost). Raises
        AthenaQueryError when the query fails, is cancelled or times out."""
        return run_query(self.athena(), sql, workgroup=self.workgroup, database=self.database,
                         output_url=self.output_url, timeout_s=self.query_timeout_s)

    def query(self, sql: str) -> list[tuple]:
        """Run `sql` on Athena; returns its rows as Python values (see `athena.run_query`)."""
        return self.execute(sql).rows


def _ident(name: str) -> str:
    """An Athena (Trino) identifier: bare when plain, else double-quoted."""
    import re

    return name if re.fullmatch(r"[a-z_][a-z0-9_]*", name) else '"' + name.replace('"', '""') + '"'
