"""The store's snapshot form: ``raft.Snapshot`` bytes, assembled from the records.

The format is the one main has always written (a protobuf ``raft.Snapshot``,
canonical field order): snapshots and backups written before the compact
records load as they are, and a store writes the same bytes for the same
state (tests/unit/test_state_records.py loads a fixture written by the
earlier code and writes it back byte for byte). Loading shares one
``Version`` per distinct key version between the key table and the history,
as the running store does.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable

from mcpctl._proto.mcp.v1 import kv_pb2 as kv
from mcpctl._proto.mcp.v1 import raft_pb2 as raft
from mcpctl.errors import Internal
from mcpctl.state.keyspace import show
from mcpctl.state.records import Revision, Version, framed

# Snapshot.kvs (4), .history (5) and .dedupe (6), length-delimited.
_KVS_TAG = b"\x22"
_HISTORY_TAG = b"\x2a"
_DEDUPE_TAG = b"\x32"


def snapshot_bytes(
    head: raft.Snapshot,
    kvs: list[Version],
    history: list[Revision],
    dedupe: Iterable[bytes],
    tail: raft.Snapshot,
) -> bytes:
    """``head`` holds fields 1-3, ``dedupe`` is field 6 (each entry's bytes),
    ``tail`` fields 7 and up: with the records between them, the bytes are
    those of one Snapshot with every field set."""
    parts = [head.SerializeToString(deterministic=True)]
    parts += [framed(_KVS_TAG, v.blob) for v in kvs]
    parts += [framed(_HISTORY_TAG, r.wire()) for r in history]
    parts += [framed(_DEDUPE_TAG, d) for d in dedupe]
    parts.append(tail.SerializeToString(deterministic=True))
    return b"".join(parts)


def load_snapshot(snap: raft.Snapshot) -> tuple[list[Version], list[Revision]]:
    """The key table's versions (key order) and the history's revisions (oldest
    first), one shared ``Version`` per distinct key version."""
    shared: dict[bytes, Version] = {}
    keys: dict[bytes, bytes] = {}  # one bytes object per key, as in a running store

    def version(item: kv.KeyValue) -> Version:
        blob = item.SerializeToString(deterministic=True)
        v = shared.get(blob)
        if v is None:
            key = item.key
            key = keys.setdefault(key, key)
            v = shared[blob] = Version(
                key, blob, item.create_revision, item.mod_revision, item.version, item.lease
            )
        return v

    kvs = [version(item) for item in snap.kvs]
    history: list[Revision] = []
    for entry in snap.history:
        events: list[Version | None] = []
        for ev in entry.events:
            prev = version(ev.prev_kv) if ev.HasField("prev_kv") else None
            if ev.type == kv.Event.DELETE:
                if prev is None:
                    raise Internal(
                        f"snapshot: revision {entry.revision} deletes {show(ev.kv.key)} "
                        "without its previous value"
                    )
                events += (None, prev)
            else:
                events += (version(ev.kv), prev)
        rev = Revision(entry.revision, entry.ts_ms, sys.intern(entry.identity), tuple(events))
        rev.nbytes = entry.ByteSize()
        history.append(rev)
    return kvs, history
