"""What ``Store.apply`` returns: the response (or error) and what it wrote."""

from __future__ import annotations

from dataclasses import dataclass

from mcpctl._proto.mcp.v1 import kv_pb2 as kv
from mcpctl._proto.mcp.v1 import raft_pb2 as raft
from mcpctl.errors import McpError

Response = (
    kv.PutResponse
    | kv.DeleteRangeResponse
    | kv.TxnResponse
    | kv.CompactionResponse
    | raft.MemberRecord
    | kv.LeaseGrantResponse
    | kv.LeaseRevokeResponse
    | raft.LeaseExpireResponse
    | raft.LeaseCheckpointResponse
)


@dataclass(frozen=True, slots=True)
class Applied:
    """The outcome of applying one request."""

    revision: int  # store revision after the request
    result: Response | McpError
    # The history entry this request created (None when nothing was written).
    written: raft.HistoryRevision | None = None
    duplicate: bool = False
    # A lease expiry writes one revision per expired lease (``written`` stays
    # None): these, oldest first.
    expired: tuple[raft.HistoryRevision, ...] = ()
    # The leases a revoke or an expiry removed (the leader's clock drops them).
    leases_ended: tuple[int, ...] = ()

    @property
    def writes(self) -> tuple[raft.HistoryRevision, ...]:
        """Every history entry this request created, oldest first."""
        return (self.written,) if self.written is not None else self.expired
