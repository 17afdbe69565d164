"""The per-identity dedupe table: at-most-once writes.

A request id seen before *from the same identity* returns the first outcome,
if the retry is the same request (same operation, keys, values and options:
its ``request_fingerprint``); another request under a used id is
INVALID_ARGUMENT, never a silent OK. The table holds at most ``entries_max``
ids, oldest dropped first.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from dataclasses import dataclass, field

from mcpctl._proto.mcp.v1 import kv_pb2 as kv
from mcpctl._proto.mcp.v1 import raft_pb2 as raft
from mcpctl.errors import InvalidArgument
from mcpctl.state.applied import Applied, Response

# 128 bits: a collision between two requests of one identity under one id is
# out of reach.
_FINGERPRINT_BYTES = 16


@dataclass(slots=True)
class DedupeTable:
    """(identity, request id) -> first outcome, oldest first."""

    entries_max: int
    _dedupe: OrderedDict[tuple[str, str], raft.DedupeEntry] = field(default_factory=OrderedDict)

    def get(self, identity: str, request_id: str) -> raft.DedupeEntry | None:
        return self._dedupe.get((identity, request_id))

    def record(
        self, identity: str, request_id: str, fingerprint: bytes, result: Response, revision: int
    ) -> None:
        entry = raft.DedupeEntry(
            request_id=request_id,
            revision=revision,
            identity=identity,
            fingerprint=fingerprint,
        )
        if isinstance(result, kv.TxnResponse):
            entry.succeeded = result.succeeded
        elif isinstance(result, kv.DeleteRangeResponse):
            entry.deleted = result.deleted
        self._dedupe[(identity, request_id)] = entry
        while len(self._dedupe) > self.entries_max:
            self._dedupe.popitem(last=False)

    def load(self, entry: raft.DedupeEntry) -> None:
        """Restore one entry from a snapshot (oldest first)."""
        self._dedupe[(entry.identity, entry.request_id)] = entry

    def entries(self) -> list[raft.DedupeEntry]:
        """Every entry, oldest first (for a snapshot)."""
        return list(self._dedupe.values())


def replay(which: str, entry: raft.DedupeEntry, fingerprint: bytes, revision: int) -> Applied:
    """A retried request: answer with the first attempt's outcome, write nothing.

    The replayed response carries what was recorded (revision, txn
    succeeded, deleted count), not prev_kv or txn read results. A
    different request under the same id is refused: answering it with
    the first outcome would report a write that never happened.
    ``revision`` is the store's current revision (the refusal's).
    """
    if entry.fingerprint != fingerprint:
        return Applied(
            revision,
            InvalidArgument(
                f"request_id {entry.request_id!r} was already used for a different "
                "request; a retry must repeat the same request, a new request "
                "needs a new id"
            ),
        )
    result: Response
    if which == "put":
        result = kv.PutResponse()
    elif which == "delete_range":
        result = kv.DeleteRangeResponse(deleted=entry.deleted)
    else:
        result = kv.TxnResponse(succeeded=entry.succeeded)
    return Applied(entry.revision, result, duplicate=True)


def request_fingerprint(
    which: str, op: kv.PutRequest | kv.DeleteRangeRequest | kv.TxnRequest
) -> bytes:
    """What a retry must repeat: the operation with every field (the request id
    too, which is the same in both by construction). Deterministic
    serialization, so every replica computes the same bytes."""
    digest = hashlib.sha256(which.encode())
    digest.update(b"\x00")
    digest.update(op.SerializeToString(deterministic=True))
    return digest.digest()[:_FINGERPRINT_BYTES]
