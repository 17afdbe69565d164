"""Typed values of the SDK: what a call returns and how keys and ids go in.

Frozen dataclasses built from the wire messages (``of``), so a service never
imports ``mcpctl._proto`` to read a result. Nothing here does I/O.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mcpctl import limits
from mcpctl._proto.mcp.v1 import kv_pb2
from mcpctl._proto.mcp.v1 import kv_pb2 as kv

if TYPE_CHECKING:  # imported lazily at run time: `mcpctl get` should start fast
    from mcpctl._proto.mcp.v1 import cluster_pb2 as cluster
    from mcpctl._proto.mcp.v1 import lease_pb2


class LeaseHandle:
    """What ``lease=`` takes besides an id: ``Lease``, ``mcpctl.aio.Lease``."""

    id: int


class LeaseState(LeaseHandle):
    """What the leases of both clients hold: ``id``, ``ttl`` (seconds, as last
    granted or renewed), ``lost`` (an event set when the lease is gone: a
    ``threading.Event`` or an ``asyncio.Event``), ``lost_reason``, the
    callbacks, and when the next renewal is due and the lease runs out
    (counted from when its last successful renewal was sent)."""

    def __init__(
        self, lease_id: int, ttl: int, sent_at: float, lost: Any, on_lost: Any, on_renewed: Any
    ) -> None:
        self.id = lease_id
        self.ttl = ttl
        self.lost = lost
        self.lost_reason: str | None = None
        self.on_lost = on_lost
        self.on_renewed = on_renewed
        self.header: Header | None = None  # the grant's answer (None: adopted by keep_alive)
        self._renewed(sent_at, ttl)

    def _renewed(self, sent_at: float, ttl: int) -> None:
        self.ttl = ttl
        self._next_s = sent_at + ttl / limits.CLIENT_KEEPALIVE_TTL_DIVISOR
        self._expires_s = sent_at + ttl

    def __int__(self) -> int:
        return self.id

    def __repr__(self) -> str:
        state = f"lost: {self.lost_reason}" if self.lost.is_set() else "alive"
        return f"{type(self).__name__}(id={self.id:016x}, ttl={self.ttl}, {state})"


def lease_id_of(lease: LeaseHandle | int | None) -> int:
    """The id of ``lease`` (a lease handle or an int id; None: 0, no lease)."""
    if lease is None:
        return 0
    if isinstance(lease, LeaseHandle):
        return lease.id
    if isinstance(lease, bool) or not isinstance(lease, int) or lease < 0:
        raise ValueError(f"lease must be a Lease or a lease id >= 0, not {lease!r}")
    return lease


def new_request_id() -> str:
    return uuid.uuid4().hex


def encode_key(key: str | bytes) -> bytes:
    return key.encode("utf-8", "surrogateescape") if isinstance(key, str) else key


def encode_value(value: str | bytes) -> bytes:
    return value.encode("utf-8") if isinstance(value, str) else value


@dataclass(frozen=True, slots=True)
class Header:
    cluster_id: int
    member_id: int
    member_name: str
    revision: int
    raft_term: int

    @classmethod
    def of(cls, h: kv.ResponseHeader) -> Header:
        return cls(h.cluster_id, h.member_id, h.member_name, h.revision, h.raft_term)


@dataclass(frozen=True, slots=True)
class KeyValue:
    key: str
    value: bytes
    create_revision: int
    mod_revision: int
    version: int
    lease: int = 0  # the id of the lease the key is attached to; 0: none

    @classmethod
    def of(cls, item: kv.KeyValue) -> KeyValue:
        return cls(
            item.key.decode("utf-8", "replace"),
            item.value,
            item.create_revision,
            item.mod_revision,
            item.version,
            item.lease,
        )

    @property
    def text(self) -> str:
        return self.value.decode("utf-8", "replace")


@dataclass(frozen=True, slots=True)
class GetResult:
    header: Header
    kvs: list[KeyValue]
    count: int
    more: bool

    @property
    def first(self) -> KeyValue | None:
        return self.kvs[0] if self.kvs else None


@dataclass(frozen=True, slots=True)
class PutResult:
    header: Header
    prev_kv: KeyValue | None

    @property
    def revision(self) -> int:
        return self.header.revision


@dataclass(frozen=True, slots=True)
class DeleteResult:
    header: Header
    deleted: int
    prev_kvs: list[KeyValue]


@dataclass(frozen=True, slots=True)
class TxnResult:
    """Which branch ran (``succeeded``: the compares held) and one result per
    operation of that branch, in order (``GetResult`` for ``Op.get``...)."""

    header: Header
    succeeded: bool
    responses: list[GetResult | PutResult | DeleteResult]

    @classmethod
    def of(cls, r: kv.TxnResponse) -> TxnResult:
        return cls(Header.of(r.header), r.succeeded, [_response_of(op) for op in r.responses])


def _response_of(op: kv.ResponseOp) -> GetResult | PutResult | DeleteResult:
    which = op.WhichOneof("response")
    if which == "response_range":
        g = op.response_range
        return GetResult(Header.of(g.header), [KeyValue.of(i) for i in g.kvs], g.count, g.more)
    if which == "response_put":
        p = op.response_put
        prev = KeyValue.of(p.prev_kv) if p.HasField("prev_kv") else None
        return PutResult(Header.of(p.header), prev)
    d = op.response_delete_range
    return DeleteResult(Header.of(d.header), d.deleted, [KeyValue.of(i) for i in d.prev_kvs])


@dataclass(frozen=True, slots=True)
class MemberStatus:
    endpoint: str
    member_name: str
    role: str
    term: int
    leader: str
    commit_index: int
    applied_index: int
    has_quorum: bool
    ready: bool
    revision: int
    compact_revision: int
    keys: int
    header: Header
    # Serves reads: has applied what it had before it (re)started.
    restored: bool = False
    # Since this member last heard its leader's AppendEntries (0 on the leader).
    last_contact_ms: int = 0

    @classmethod
    def of(cls, endpoint: str, r: cluster.StatusResponse) -> MemberStatus:
        return cls(
            endpoint,
            r.member_name,
            r.role,
            r.term,
            r.leader,
            r.commit_index,
            r.applied_index,
            r.has_quorum,
            r.ready,
            r.revision,
            r.compact_revision,
            r.keys,
            Header.of(r.header),
            r.restored,
            r.last_contact_ms,
        )


@dataclass(frozen=True, slots=True)
class Event:
    type: str  # "PUT" or "DELETE"
    kv: KeyValue
    prev_kv: KeyValue | None

    @classmethod
    def of(cls, ev: kv_pb2.Event) -> Event:  # `kv` here would be the field
        return cls(
            "DELETE" if ev.type == kv_pb2.Event.DELETE else "PUT",
            KeyValue.of(ev.kv),
            KeyValue.of(ev.prev_kv) if ev.HasField("prev_kv") else None,
        )


@dataclass(frozen=True, slots=True)
class WatchBatch:
    """One watch message: all events of the revisions it covers, in order."""

    header: Header
    events: list[Event]
    created: bool = False
    progress: bool = False

    @property
    def revision(self) -> int:
        return self.header.revision


# -- leases ------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class LeaseGrant:
    """A new lease: its id and the TTL granted (seconds; the node may raise a small one)."""

    header: Header
    id: int
    ttl: int

    @classmethod
    def of(cls, r: kv.LeaseGrantResponse) -> LeaseGrant:
        return cls(Header.of(r.header), r.id, r.ttl)


@dataclass(frozen=True, slots=True)
class LeaseKeepAlive:
    """One renewal: the TTL the lease has again (seconds); 0: the lease is gone."""

    header: Header
    id: int
    ttl: int
    error: str = ""  # "lease not found" when ttl is 0 because the lease does not exist

    @classmethod
    def of(cls, r: lease_pb2.LeaseKeepAliveResponse) -> LeaseKeepAlive:
        return cls(Header.of(r.header), r.id, r.ttl, r.error)


@dataclass(frozen=True, slots=True)
class TimeToLive:
    """A lease's remaining and granted TTL (seconds, the leader's clock) and its keys
    (filled only when asked for)."""

    header: Header
    id: int
    ttl: int
    granted_ttl: int
    keys: list[str]

    @classmethod
    def of(cls, r: lease_pb2.LeaseTimeToLiveResponse) -> TimeToLive:
        keys = [k.decode("utf-8", "replace") for k in r.keys]
        return cls(Header.of(r.header), r.id, r.ttl, r.granted_ttl, keys)


@dataclass(frozen=True, slots=True)
class LeaseList:
    """Every live lease's id."""

    header: Header
    ids: list[int]

    @classmethod
    def of(cls, r: lease_pb2.LeaseLeasesResponse) -> LeaseList:
        return cls(Header.of(r.header), [item.id for item in r.leases])
