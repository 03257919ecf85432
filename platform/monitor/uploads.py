"""The last upload of each dataset, recorded by its ingest runs for the freshness check.

One small JSON object per dataset in the lake, `_monitor/<dataset>/uploads.json`: the newest
change time of a raw file an ingest run pinned, and its key. No Dagster and no asset imports
here: the cleaning step writes it.
"""

from __future__ import annotations

import json
import time

from ..resources.storage import ObjectStore


def uploads_key(dataset: str) -> str:
    return f"_monitor/{dataset}/uploads.json"


def last_upload(lake: ObjectStore, dataset: str) -> dict | None:
    """{"last_upload": epoch seconds, "key": raw key, "recorded_at": ...} or None."""
    data = lake.get_bytes(uploads_key(dataset))
    return json.loads(data) if data else None


def record_upload(lake: ObjectStore, dataset: str, uploaded: float, key: str) -> None:
    """Raise the dataset's recorded last upload to `uploaded` (epoch seconds) if it is newer.

    Two runs writing at once may lose the smaller of their times for a moment; the next
    run's newer upload replaces it anyway.
    """
    old = last_upload(lake, dataset)
    if old is not None and old["last_upload"] >= uploaded:
        return
    lake.put_bytes(json.dumps({"last_upload": uploaded, "key": key,
                               "recorded_at": time.time()}).encode(), uploads_key(dataset))
