"""The lease table (docs/leases.md): ids, TTLs, checkpoints and attached keys.

Replicated per lease: the granted TTL, the last checkpointed remaining TTL
and the attached keys. Every key with ``KeyValue.lease = L`` is in lease L's
keys and nothing else is: the store keeps that with ``attach``/``detach``
on every put and delete. Grant and checkpoint are answered here; revoke and
expiry delete keys, so the store runs them (one revision per lease).

Expiry and checkpoint are *fenced* (``fenced``): applied only when the
proposing leader's term equals the term of the Raft entry that carries them,
so a deposed leader can neither expire leases nor shorten their TTLs.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from mcpctl import limits, validate
from mcpctl._proto.mcp.v1 import kv_pb2 as kv
from mcpctl._proto.mcp.v1 import raft_pb2 as raft
from mcpctl.errors import (
    Internal,
    InvalidArgument,
    LeaseExists,
    LeaseNotFound,
    McpError,
    ResourceExhausted,
)

# The history identity of the revisions an expiry writes (a revoke records
# the revoker's identity instead).
LEASE_EXPIRY_IDENTITY = "lease-expiry"
LEASE_COMMANDS = frozenset({"lease_grant", "lease_revoke", "lease_expire", "lease_checkpoint"})


@dataclass(frozen=True, slots=True)
class LeaseInfo:
    """A lease as the store holds it (``Store.lease``)."""

    id: int
    ttl_s: int  # granted
    remaining_ms: int  # last checkpointed (the granted TTL until the first checkpoint)
    keys: tuple[bytes, ...]  # attached, sorted


@dataclass(slots=True)
class _Lease:
    ttl_s: int
    remaining_ms: int
    keys: set[bytes] = field(default_factory=set)


@dataclass(slots=True)
class LeaseTable:
    """Lease id -> lease."""

    _leases: dict[int, _Lease] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self._leases)

    def __contains__(self, lease_id: int) -> bool:
        return lease_id in self._leases

    def check_attach(self, puts: Iterable[kv.PutRequest]) -> McpError | None:
        """Refuse puts naming an unknown lease, or that would take a lease past
        LEASE_KEYS_MAX keys. Deletes in the same txn are not credited."""
        adding: dict[int, set[bytes]] = {}
        for put in puts:
            if not put.lease:
                continue
            lease = self._leases.get(put.lease)
            if lease is None:
                return LeaseNotFound()
            if put.key not in lease.keys:
                adding.setdefault(put.lease, set()).add(put.key)
        for lease_id, keys in adding.items():
            if len(self._leases[lease_id].keys) + len(keys) > limits.LEASE_KEYS_MAX:
                return ResourceExhausted(
                    f"lease {lease_id}: at most {limits.LEASE_KEYS_MAX} keys per lease "
                    f"(LEASE_KEYS_MAX); {len(self._leases[lease_id].keys)} attached"
                )
        return None

    def attach(self, lease_id: int, key: bytes) -> None:
        self._leases[lease_id].keys.add(key)

    def detach(self, lease_id: int, key: bytes) -> None:
        self._leases[lease_id].keys.discard(key)

    def grant(self, req: kv.LeaseGrantRequest) -> kv.LeaseGrantResponse | McpError:
        if req.id <= 0:
            return InvalidArgument("lease_grant.id: the proposing node must choose an id > 0")
        if not 1 <= req.ttl <= limits.LEASE_TTL_S_MAX:
            return InvalidArgument(
                f"lease_grant.ttl: {req.ttl} s is outside 1..{limits.LEASE_TTL_S_MAX} "
                "(the node raises a TTL below the minimum before proposing)"
            )
        if req.id in self._leases:
            return LeaseExists()
        if len(self._leases) >= limits.LEASES_MAX:
            return ResourceExhausted(
                f"lease: {limits.LEASES_MAX} leases exist (LEASES_MAX); revoke one first"
            )
        self._leases[req.id] = _Lease(ttl_s=req.ttl, remaining_ms=req.ttl * 1000)
        return kv.LeaseGrantResponse(id=req.id, ttl=req.ttl)

    def keys_of(self, lease_id: int) -> list[bytes]:
        """The lease's keys, sorted: a set's order differs between processes."""
        return sorted(self._leases[lease_id].keys)

    def remove(self, lease_id: int) -> None:
        """Forget a lease whose keys the store has deleted."""
        assert not self._leases[lease_id].keys
        del self._leases[lease_id]

    def checkpoint(
        self, req: raft.LeaseCheckpointRequest, entry_term: int | None
    ) -> raft.LeaseCheckpointResponse | McpError:
        try:
            validate.check_lease_checkpoint(req)
        except McpError as err:
            return err
        fenced = is_fenced(req.proposer_term, entry_term)
        if isinstance(fenced, McpError):
            return fenced
        if fenced:
            return raft.LeaseCheckpointResponse(fenced=True)
        resp = raft.LeaseCheckpointResponse()
        for cp in req.checkpoints:
            lease = self._leases.get(cp.id)
            if lease is None:
                resp.skipped.append(cp.id)
                continue
            # Never more than granted: a checkpoint records, it does not extend.
            lease.remaining_ms = min(cp.remaining_ms, lease.ttl_s * 1000)
            resp.recorded.append(cp.id)
        return resp

    def info(self, lease_id: int) -> LeaseInfo | None:
        """The lease with this id, or None."""
        lease = self._leases.get(lease_id)
        if lease is None:
            return None
        return LeaseInfo(lease_id, lease.ttl_s, lease.remaining_ms, tuple(sorted(lease.keys)))

    def ttl_s(self, lease_id: int) -> int | None:
        """The lease's granted TTL, or None when there is no such lease."""
        lease = self._leases.get(lease_id)
        return None if lease is None else lease.ttl_s

    def ids(self) -> list[int]:
        """Every live lease id, ascending."""
        return sorted(self._leases)

    def remaining_ms(self) -> list[tuple[int, int]]:
        """(id, last checkpointed remaining TTL in ms) of every lease, by id:
        what a new leader seeds its expiry clock from."""
        return [(i, self._leases[i].remaining_ms) for i in sorted(self._leases)]

    def records(self) -> list[raft.LeaseRecord]:
        """Every lease without its keys (a snapshot carries them as KeyValue.lease)."""
        return [
            raft.LeaseRecord(id=i, ttl_s=self._leases[i].ttl_s, remaining_ms=ms)
            for i, ms in self.remaining_ms()
        ]

    def load(self, rec: raft.LeaseRecord) -> None:
        """Restore one lease from a snapshot, keys attached afterwards."""
        self._leases[rec.id] = _Lease(ttl_s=rec.ttl_s, remaining_ms=rec.remaining_ms)


def is_fenced(proposer_term: int, entry_term: int | None) -> McpError | bool:
    """Whether a leader-clock command is stale (Internal: no entry term to judge)."""
    if entry_term is None:
        return Internal("a fenced lease command was applied without its Raft entry's term")
    return proposer_term != entry_term
