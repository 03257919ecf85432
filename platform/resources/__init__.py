"""Resources: object storage, catalog, scratch and compute, each an interface with local and AWS
implementations."""

from .catalog import CatalogResource, DuckDBCatalog
from .compute import ComputeResource, InProcessCompute, LocalCompute, SubprocessCompute
from .compute_aws import AwsCompute, BatchCompute, ECSCompute
from .glue import GlueCatalog
from .s3 import S3Storage
from .scratch import LocalScratch, ScratchResource
from .storage import LocalStorage, ObjectInfo, ObjectStore, StorageResource

__all__ = [
    "AwsCompute",
    "BatchCompute",
    "ComputeResource",
    "ECSCompute",
    "InProcessCompute",
    "LocalCompute",
    "SubprocessCompute",
    "CatalogResource",
    "DuckDBCatalog",
    "GlueCatalog",
    "LocalScratch",
    "LocalStorage",
    "ObjectInfo",
    "ObjectStore",
    "S3Storage",
    "ScratchResource",
    "StorageResource",
]
