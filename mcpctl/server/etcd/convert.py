"""etcd messages from ours and back: headers, key-values, events, key spans.

etcd names a set of keys with ``key`` and ``range_end``: an empty range_end
is the key alone, ``"\\0"`` every key >= key, anything else [key, range_end).
The store selects a key or every key under a prefix; ``KeySpan.cover`` is the
narrowest such selection holding the span (its longest common prefix), and
``KeySpan.contains`` filters it down to the span exactly.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from mcpctl import limits
from mcpctl._proto.etcd.etcdserverpb import rpc_pb2 as rpc
from mcpctl._proto.etcd.mvccpb import kv_pb2 as mvcc
from mcpctl._proto.mcp.v1 import kv_pb2 as kv
from mcpctl.server.etcd.errors import EMPTY_KEY, error
from mcpctl.server.identity import stable_id
from mcpctl.state.keyspace import Span


@functools.lru_cache(maxsize=64)
def member_id(cluster_id: int, name: str) -> int:
    """A member's etcd id: the same on every member (MemberList, Status.leader and
    headers agree), from the cluster id and the member's name."""
    return stable_id("etcd member", str(cluster_id), name)


def header(h: kv.ResponseHeader) -> rpc.ResponseHeader:
    return rpc.ResponseHeader(
        cluster_id=h.cluster_id,
        member_id=member_id(h.cluster_id, h.member_name),
        revision=h.revision,
        raft_term=h.raft_term,
    )


def key_value(item: kv.KeyValue, *, keys_only: bool = False) -> mvcc.KeyValue:
    return mvcc.KeyValue(
        key=item.key,
        create_revision=item.create_revision,
        mod_revision=item.mod_revision,
        version=item.version,
        value=b"" if keys_only else item.value,
        lease=item.lease,
    )


def event(ev: kv.Event, *, prev_kv: bool) -> mvcc.Event:
    out = mvcc.Event(type=mvcc.Event.DELETE if ev.type == kv.Event.DELETE else mvcc.Event.PUT)
    out.kv.CopyFrom(key_value(ev.kv))
    if prev_kv and ev.HasField("prev_kv"):
        out.prev_kv.CopyFrom(key_value(ev.prev_kv))
    return out


def prefix_end(prefix: bytes) -> bytes:
    """etcd's range_end for every key starting with ``prefix`` ("\\0" when none is
    larger: a prefix of 0xff bytes, or empty)."""
    stripped = prefix.rstrip(b"\xff")
    if not stripped:
        return b"\x00"
    return stripped[:-1] + bytes([stripped[-1] + 1])


@dataclass(frozen=True, slots=True)
class KeySpan:
    """etcd's (key, range_end): end None = the key alone, b"" = no upper bound."""

    key: bytes
    end: bytes | None

    @classmethod
    def of(cls, key: bytes, range_end: bytes) -> KeySpan:
        if not key and not range_end:
            raise error(EMPTY_KEY)
        if len(key) > limits.KEY_BYTES_MAX or len(range_end) > limits.KEY_BYTES_MAX:
            raise error(("INVALID_ARGUMENT", "etcdserver: request is too large"))
        if not range_end:
            return cls(key, None)
        if range_end == b"\x00":
            return cls(key, b"")
        return cls(key, range_end)

    @property
    def single(self) -> bool:
        return self.end is None

    def contains(self, key: bytes) -> bool:
        if self.end is None:
            return key == self.key
        return key >= self.key and (not self.end or key < self.end)

    def cover(self) -> Span:
        """The narrowest store selection holding this span."""
        if self.end is None:
            return Span(self.key, False)
        if not self.end:
            return Span(b"", True)
        if self.end == prefix_end(self.key):
            return Span(self.key, True)  # a prefix range: exactly that prefix
        n = 0
        for a, b in zip(self.key, self.end, strict=False):
            if a != b:
                break
            n += 1
        return Span(self.key[:n], True)

    def store_prefix(self) -> bytes | None:
        """The prefix this span is exactly, when the store takes it as one
        (valid UTF-8 without NUL); else None."""
        if self.end is None:
            return None
        if self.key in (b"", b"\x00") and self.end == b"":
            return b""
        if self.end != prefix_end(self.key) or self.end == b"\x00":
            return None
        return self.key if storable_prefix(self.key) else None

    def guard_prefix(self) -> bytes:
        """A prefix the store accepts (valid UTF-8, no NUL) that holds this span."""
        return storable_cut(self.cover().key)


def storable_prefix(key: bytes) -> bool:
    return storable_cut(key) == key


def storable_cut(key: bytes) -> bytes:
    """The longest start of ``key`` the store accepts as a prefix."""
    key = key.split(b"\x00", 1)[0]
    for cut in range(len(key), max(len(key) - 4, -1), -1):
        try:
            key[:cut].decode("utf-8")
        except UnicodeDecodeError:
            continue
        return key[:cut]
    return b""
