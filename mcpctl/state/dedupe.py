"""The per-identity dedupe table: at-most-once writes.

A request id seen before *from the same identity* returns the first outcome,
if the retry is the same request (same operation, keys, values and options:
its ``request_fingerprint``); another request under a used id is
INVALID_ARGUMENT, never a silent OK. The table holds at most ``entries_max``
ids, oldest dropped first.

An entry is small (it exists for every write that carries an id): one
string key (the identity's length, the identity, the id) -> the outcome
packed in one bytes object (``Seen`` when read back), in a plain dict with a
deque for the order; no message, no tuple per entry. The snapshot form is
still ``DedupeEntry``, byte for byte.
"""

from __future__ import annotations

import hashlib
import struct
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import NamedTuple

from mcpctl._proto.mcp.v1 import kv_pb2 as kv
from mcpctl._proto.mcp.v1 import raft_pb2 as raft
from mcpctl.errors import InvalidArgument
from mcpctl.state.applied import Applied, Response
from mcpctl.state.records import framed, varint

# 128 bits: a collision between two requests of one identity under one id is
# out of reach.
_FINGERPRINT_BYTES = 16


class Seen(NamedTuple):
    """The first outcome of a request id."""

    revision: int
    fingerprint: bytes
    succeeded: bool  # a txn's
    deleted: int  # a delete's


# revision, txn succeeded, deleted count; the fingerprint follows.
_PACKED = struct.Struct("<q?q")


def _key(identity: str, request_id: str) -> str:
    return f"{len(identity)}:{identity}{request_id}"


def _split(key: str) -> tuple[str, str]:
    size, _, rest = key.partition(":")
    n = int(size)
    return rest[:n], rest[n:]


def _pack(seen: Seen) -> bytes:
    return _PACKED.pack(seen.revision, seen.succeeded, seen.deleted) + seen.fingerprint


def _unpack(packed: bytes) -> Seen:
    revision, succeeded, deleted = _PACKED.unpack_from(packed)
    return Seen(revision, packed[_PACKED.size :], succeeded, deleted)


@dataclass(slots=True)
class DedupeTable:
    """(identity, request id) -> first outcome, oldest first."""

    entries_max: int
    _dedupe: dict[str, bytes] = field(default_factory=dict)
    _order: deque[str] = field(default_factory=deque)  # the keys, oldest first

    def get(self, identity: str, request_id: str) -> Seen | None:
        packed = self._dedupe.get(_key(identity, request_id))
        return None if packed is None else _unpack(packed)

    def record(
        self, identity: str, request_id: str, fingerprint: bytes, result: Response, revision: int
    ) -> None:
        succeeded, deleted = False, 0
        if isinstance(result, kv.TxnResponse):
            succeeded = result.succeeded
        elif isinstance(result, kv.DeleteRangeResponse):
            deleted = result.deleted
        self._put(_key(identity, request_id), Seen(revision, fingerprint, succeeded, deleted))
        while len(self._dedupe) > self.entries_max:
            del self._dedupe[self._order.popleft()]

    def _put(self, key: str, seen: Seen) -> None:
        if key not in self._dedupe:  # a key set again keeps its place
            self._order.append(key)
        self._dedupe[key] = _pack(seen)

    def load(self, entry: raft.DedupeEntry) -> None:
        """Restore one entry from a snapshot (oldest first)."""
        self._put(
            _key(entry.identity, entry.request_id),
            Seen(entry.revision, entry.fingerprint, entry.succeeded, entry.deleted),
        )

    def wires(self) -> Iterator[bytes]:
        """Every entry's canonical ``DedupeEntry`` bytes, oldest first (for a snapshot)."""
        for key in self._order:
            identity, request_id = _split(key)
            seen = _unpack(self._dedupe[key])
            parts: list[bytes] = []
            if request_id:
                parts.append(_string(b"\x0a", request_id))
            if seen.revision:
                parts += (b"\x10", varint(seen.revision))
            if seen.succeeded:
                parts.append(b"\x18\x01")
            if seen.deleted:
                parts += (b"\x20", varint(seen.deleted))
            if identity:
                parts.append(_string(b"\x2a", identity))
            if seen.fingerprint:
                parts.append(framed(b"\x32", seen.fingerprint))
            yield b"".join(parts)


def _string(tag: bytes, text: str) -> bytes:
    return framed(tag, text.encode())


def replay(which: str, request_id: str, entry: Seen, fingerprint: bytes, revision: int) -> Applied:
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
                f"request_id {request_id!r} was already used for a different "
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
