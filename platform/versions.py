"""Object versions: what the sensor saw of a raw file, handed to the run that ingests it.

A raw key can change many times (replaced, reverted, copied over with an old timestamp). Each
observed change is a *version*: the object's cheap signature (size, modification and change
times locally; size, ETag, VersionId and LastModified on S3) and a sequence number that orders
the versions of one key. The sequence is the time (ns) the sensor first saw that signature, so a
later version always has a larger one, whatever the file's own timestamps say; a run started by
hand (no version in its config) uses the run's creation time, which is later than anything the
sensor saw before it.

The sensor passes `{key: FileVersion}` to the run through the cleaned asset's run config; the
run copies exactly that version (or skips the key as superseded when the object changed again),
and the commit never lets a lower sequence replace a higher one.
"""

from __future__ import annotations

import dagster as dg
from pydantic import Field


class FileVersion(dg.Config):
    """One observed version of a raw object."""

    seq: int = Field(description="Orders versions of one key: ns when the sensor first saw it")
    signature: str = Field(description="The object's signature when the sensor saw it")


class IngestConfig(dg.Config):
    """Run config of `cleaned/<dataset>`: the versions the sensor asked for, by partition key.

    Keys missing here (a run started from the UI or a backfill) are ingested as they are now.
    """

    versions: dict[str, FileVersion] = Field(default_factory=dict)


def op_name(dataset: str) -> str:
    """The op name of `cleaned/<dataset>` (Dagster joins asset key parts with `__`)."""
    return f"cleaned__{dataset}"


def versions_run_config(dataset: str, versions: dict[str, tuple[int, str]]) -> dict:
    """Run config that pins `{partition key: (seq, signature)}` for one ingest run."""
    return {"ops": {op_name(dataset): {"config": {"versions": {
        k: {"seq": int(seq), "signature": sig} for k, (seq, sig) in versions.items()
    }}}}}
