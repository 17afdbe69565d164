"""A copy of every key under a prefix, kept by applying watch messages: the
part of ``ConfigWatcher`` (sync and ``mcpctl.aio``) that does no I/O.

``apply_batch`` applies one watch message (all changes of its revisions, in
order) and says what changed; ``relist_changes`` is the difference a fresh
read makes (after the history needed was compacted, or a check found the copy
wrong); ``copy_differs`` is that check. Callers hold their own lock.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from mcpctl.client._values import KeyValue, WatchBatch


@dataclass(frozen=True, slots=True)
class Change:
    type: str  # "PUT" or "DELETE"
    key: str
    value: bytes | None  # None for DELETE
    prev_value: bytes | None  # None when the key did not exist before
    revision: int


def initial_changes(kvs: Iterable[KeyValue]) -> list[Change]:
    """One PUT per key of a first read (``initial_changes=True``)."""
    return [Change("PUT", kv.key, kv.value, None, kv.mod_revision) for kv in kvs]


def apply_batch(data: dict[str, KeyValue], batch: WatchBatch) -> list[Change]:
    """Apply ``batch``'s events to ``data`` in order; the changes they made."""
    changes = []
    for ev in batch.events:
        prev = data.get(ev.kv.key)
        prev_value = prev.value if prev is not None else None
        if ev.type == "DELETE":
            data.pop(ev.kv.key, None)
            changes.append(Change("DELETE", ev.kv.key, None, prev_value, ev.kv.mod_revision))
        else:
            data[ev.kv.key] = ev.kv
            changes.append(Change("PUT", ev.kv.key, ev.kv.value, prev_value, ev.kv.mod_revision))
    return changes


def _differ(a: KeyValue, b: KeyValue) -> bool:
    # The value too: a cached copy from another cluster may share mod revisions.
    return a.mod_revision != b.mod_revision or a.value != b.value


def relist_changes(
    old: dict[str, KeyValue], fresh: dict[str, KeyValue], revision: int
) -> list[Change]:
    """What replacing ``old`` by ``fresh`` (read at ``revision``) changes: PUTs of
    new or rewritten keys, then DELETEs of keys gone, each sorted by key."""
    changes = [
        Change("PUT", k, kv.value, old[k].value if k in old else None, kv.mod_revision)
        for k, kv in sorted(fresh.items())
        if k not in old or _differ(old[k], kv)
    ]
    changes += [
        Change("DELETE", k, None, kv.value, revision)
        for k, kv in sorted(old.items())
        if k not in fresh
    ]
    return changes


def copy_differs(data: dict[str, KeyValue], read: Iterable[KeyValue]) -> bool:
    """True when ``data`` is not what a read at the same revision found."""
    return {k: kv.mod_revision for k, kv in data.items()} != {
        kv.key: kv.mod_revision for kv in read
    }
