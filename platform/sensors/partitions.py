"""The dynamic partitions of each dataset, as the sensor needs them, without loading all of
them every tick.

Listing mode compares every listed object with the set of known partitions (a key never
launched is new, whatever its timestamp). At 100,000 partitions reloading that set each tick
costs a query of 100,000 rows every few seconds; instead this process keeps it and extends it
with the partitions added since its last look (Dagster's storage ids only grow), page by page.
Partitions deleted from the UI are forgotten at the next full reload (every `full_reload_s`);
the keys a tick actually launches are checked exactly (`existing`), so a stale entry can delay
a file by at most that long, never launch it against a missing partition.
"""

from __future__ import annotations

import dataclasses
import time

import dagster as dg

PAGE = 10_000


@dataclasses.dataclass
class _Entry:
    keys: list[str]
    known: set[str]
    cursor: str | None
    loaded_at: float


class PartitionCache:
    """Per process and instance: the keys of each dynamic partitions definition."""

    def __init__(self, full_reload_s: float = 300.0):
        self.full_reload_s = full_reload_s
        self._entries: dict[tuple[str, str], _Entry] = {}

    def known(self, instance: dg.DagsterInstance, name: str) -> set[str]:
        """The partition keys of `name` (possibly missing deletions younger than the reload
        interval). Reads only the partitions added since the previous call."""
        if not instance.is_persistent:  # a throwaway instance: nothing to gain, nothing to mix up
            return set(instance.get_dynamic_partitions(name))
        slot = (str(instance.root_directory), name)
        entry = self._entries.get(slot)
        now = time.monotonic()
        if entry is None or now - entry.loaded_at > self.full_reload_s:
            entry = _Entry([], set(), None, now)
            self._entries[slot] = entry
        while True:
            page = instance.get_paginated_dynamic_partitions(name, PAGE, ascending=True,
                                                             cursor=entry.cursor)
            entry.keys.extend(page.results)
            entry.known.update(page.results)
            if page.results:
                entry.cursor = page.cursor
            if not page.has_more:
                return entry.known

    def count(self, instance: dg.DagsterInstance, name: str) -> int:
        return len(self.known(instance, name))


def existing(instance: dg.DagsterInstance, name: str, keys: list[str]) -> set[str]:
    """Which of `keys` are partitions right now (one query)."""
    return set(instance.get_existing_dynamic_partitions(name, keys)) if keys else set()


CACHE = PartitionCache()
