"""Typed results of the history, cluster and membership calls.

Frozen dataclasses built from the wire messages (``of``), like ``_values``:
a service reads ``client.cluster_status().members[0].lag_ms`` without
importing ``mcpctl._proto``. The field names are the wire's, so code written
against the messages keeps working. Nothing here does I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from mcpctl.client._values import Event, Header

if TYPE_CHECKING:  # imported lazily at run time: `mcpctl get` should start fast
    from mcpctl._proto.mcp.v1 import cluster_pb2 as cluster
    from mcpctl._proto.mcp.v1 import kv_pb2 as kv


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    revision: int
    # Wall-clock ms since the epoch on the member that proposed the write.
    ts_ms: int
    event: Event
    # Who wrote it (the token's name; "anonymous" with auth off, "lease-expiry"...).
    identity: str = ""

    @classmethod
    def of(cls, e: kv.HistoryEntry) -> HistoryEntry:
        return cls(e.revision, e.ts_ms, Event.of(e.event), e.identity)


@dataclass(frozen=True, slots=True)
class HistoryResult:
    header: Header
    # Newest first.
    entries: list[HistoryEntry]
    # History starts here: older changes are gone.
    compact_revision: int
    more: bool

    @classmethod
    def of(cls, r: kv.HistoryResponse) -> HistoryResult:
        return cls(
            Header.of(r.header),
            [HistoryEntry.of(e) for e in r.entries],
            r.compact_revision,
            r.more,
        )


@dataclass(frozen=True, slots=True)
class MemberHealth:
    """One member as the answering member sees it (``ClusterStatus.members``).

    ``entries_behind``, ``lag_ms`` and ``last_contact_ms`` are -1 while not
    known yet; ``role`` .. ``revision`` mean something only when ``reachable``
    (else ``error`` says why)."""

    member_name: str
    endpoint: str
    raft_address: str
    reachable: bool
    error: str
    role: str
    term: int
    commit_index: int
    applied_index: int
    entries_behind: int
    lag_ms: int
    last_contact_ms: int
    revision: int

    @classmethod
    def of(cls, m: cluster.MemberHealth) -> MemberHealth:
        return cls(
            m.member_name,
            m.endpoint,
            m.raft_address,
            m.reachable,
            m.error,
            m.role,
            m.term,
            m.commit_index,
            m.applied_index,
            m.entries_behind,
            m.lag_ms,
            m.last_contact_ms,
            m.revision,
        )


@dataclass(frozen=True, slots=True)
class ClusterStatus:
    """Every member's health and replication lag, as one member sees them."""

    header: Header
    leader: str  # the leader's name; "" when there is none
    members: list[MemberHealth]

    @classmethod
    def of(cls, r: cluster.ClusterStatusResponse) -> ClusterStatus:
        return cls(Header.of(r.header), r.leader, [MemberHealth.of(m) for m in r.members])


@dataclass(frozen=True, slots=True)
class Member:
    """A voting member (``member_list``, ``member_add``, ``member_remove``)."""

    name: str
    raft_address: str
    client_address: str

    @classmethod
    def of(cls, m: cluster.Member) -> Member:
        return cls(m.name, m.raft_address, m.client_address)
