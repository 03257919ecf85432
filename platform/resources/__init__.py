"""Resources: object storage, catalog and scratch, each an interface with local implementations."""

from .catalog import CatalogResource, DuckDBCatalog
from .glue import GlueCatalog
from .s3 import S3Storage
from .scratch import LocalScratch, ScratchResource
from .storage import LocalStorage, ObjectInfo, ObjectStore, StorageResource

__all__ = [
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
