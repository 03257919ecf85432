"""Resources: object storage, catalog and scratch, each an interface with local implementations."""

from .catalog import CatalogResource, DuckDBCatalog
from .scratch import LocalScratch, ScratchResource
from .storage import LocalStorage, ObjectInfo, ObjectStore, StorageResource

__all__ = [
    "CatalogResource",
    "DuckDBCatalog",
    "LocalScratch",
    "LocalStorage",
    "ObjectInfo",
    "ObjectStore",
    "ScratchResource",
    "StorageResource",
]
