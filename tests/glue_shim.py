"""Test-side shim: make moto's Glue enforce UpdateTable's optimistic check as real Glue does.

Real Glue rejects `UpdateTable(VersionId=v)` with ConcurrentModificationException when the
table's current version is no longer `v`; pyiceberg's Glue catalog passes the version it read
and maps that exception to CommitFailedException, which the platform's commit retries. moto's
Glue ignores `VersionId` and applies every update, so there concurrent commits silently lose
updates. This shim wraps one Glue client: its `update_table` compares the table's current
`VersionId` (and `metadata_location`, against the `previous_metadata_location` being replaced)
with what the caller expects and raises the exception Glue would. The compare-and-update is
made atomic with a lock shared by every wrapped client of the process (the test's threads).

It exists only for tests against moto; production code never uses it.
"""

from __future__ import annotations

import threading
from typing import Any

_LOCK = threading.Lock()
conflicts: list[str] = []  # tables whose update this shim refused, in order (tests clear it)


class VersionCheckingGlue:
    """A Glue client whose `update_table` honours `VersionId` as real Glue does."""

    def __init__(self, client, *, before_update=None):
        self._client = client
        self._before_update = before_update  # called with the table name, outside the lock

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)  # exceptions, meta, every other operation

    def update_table(self, **kwargs) -> dict:
        name = kwargs["TableInput"]["Name"]
        if self._before_update:
            self._before_update(name)
        with _LOCK:
            current = self._client.get_table(DatabaseName=kwargs["DatabaseName"],
                                             Name=name)["Table"]
            expected = kwargs.get("VersionId")
            previous = kwargs["TableInput"].get("Parameters", {}).get(
                "previous_metadata_location")
            have = current.get("Parameters", {}).get("metadata_location")
            if (expected is not None and current.get("VersionId") != expected) or (
                    previous is not None and have != previous):
                conflicts.append(name)
                raise self._client.exceptions.ConcurrentModificationException(
                    {"Error": {"Code": "ConcurrentModificationException",
                               "Message": f"table {name} is at version "
                                          f"{current.get('VersionId')}, not {expected}"}},
                    "UpdateTable")
            return self._client.update_table(**kwargs)

