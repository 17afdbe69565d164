"""What each call of the SDK sends and how its answer reads: one ``Call`` per
method, shared by the sync ``Client`` and the asyncio ``mcpctl.aio.Client``.

A ``Call`` names the service and method, carries the request, and turns the
response into the typed result (``_values``, ``_results``). The two clients
differ only in how they run it (``_rules`` decides retries for both), so a
request field or a result type is written once.

The cluster, lease and watch messages are imported inside the functions that
build them, for CLI start-up time (``mcpctl get`` needs only ``kv_pb2``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, Literal, TypeVar

from mcpctl._proto.mcp.v1 import kv_pb2 as kv
from mcpctl.client._results import ClusterStatus, HistoryResult, Member
from mcpctl.client._txn import Compare, Op, txn_request
from mcpctl.client._values import (
    DeleteResult,
    GetResult,
    Header,
    KeyValue,
    LeaseGrant,
    LeaseHandle,
    LeaseKeepAlive,
    LeaseList,
    PutResult,
    TimeToLive,
    TxnResult,
    encode_key,
    encode_value,
    lease_id_of,
    new_request_id,
)
from mcpctl.errors import LeaseNotFound

if TYPE_CHECKING:
    from mcpctl._proto.mcp.v1 import watch_pb2 as watchpb

R = TypeVar("R")
Service = Literal["KV", "Cluster", "Lease"]


@dataclass(frozen=True, slots=True)
class Call(Generic[R]):
    """One logical call: ``service``/``method`` with ``request``; ``result``
    reads the response."""

    service: Service
    method: str
    request: Any
    result: Callable[[Any], R]


def stub_class(service: Service) -> Any:
    """The generated stub of ``service`` (works on sync and asyncio channels)."""
    if service == "KV":
        from mcpctl._proto.mcp.v1 import kv_pb2_grpc

        return kv_pb2_grpc.KVStub
    if service == "Cluster":
        from mcpctl._proto.mcp.v1 import cluster_pb2_grpc

        return cluster_pb2_grpc.ClusterStub
    from mcpctl._proto.mcp.v1 import lease_pb2_grpc

    return lease_pb2_grpc.LeaseStub


# -- KV ----------------------------------------------------------------------------
def get(
    key: str | bytes,
    *,
    prefix: bool = False,
    revision: int = 0,
    serializable: bool = False,
    keys_only: bool = False,
    count_only: bool = False,
    limit: int = 0,
) -> Call[GetResult]:
    req = kv.RangeRequest(
        key=encode_key(key),
        prefix=prefix,
        revision=revision,
        serializable=serializable,
        keys_only=keys_only,
        count_only=count_only,
        limit=limit,
    )

    def read(r: kv.RangeResponse) -> GetResult:
        return GetResult(Header.of(r.header), [KeyValue.of(i) for i in r.kvs], r.count, r.more)

    return Call("KV", "Range", req, read)


def put(
    key: str | bytes,
    value: str | bytes,
    *,
    prev_kv: bool = False,
    expected_mod_revision: int | None = None,
    lease: LeaseHandle | int | None = None,
    request_id: str | None = None,
) -> Call[PutResult]:
    req = kv.PutRequest(
        key=encode_key(key),
        value=encode_value(value),
        prev_kv=prev_kv,
        lease=lease_id_of(lease),
        request_id=request_id or new_request_id(),
    )
    if expected_mod_revision is not None:
        req.expected_mod_revision = expected_mod_revision

    def read(r: kv.PutResponse) -> PutResult:
        return PutResult(
            Header.of(r.header), KeyValue.of(r.prev_kv) if r.HasField("prev_kv") else None
        )

    return Call("KV", "Put", req, read)


def delete(
    key: str | bytes, *, prefix: bool = False, prev_kv: bool = False, request_id: str | None = None
) -> Call[DeleteResult]:
    req = kv.DeleteRangeRequest(
        key=encode_key(key),
        prefix=prefix,
        prev_kv=prev_kv,
        request_id=request_id or new_request_id(),
    )

    def read(r: kv.DeleteRangeResponse) -> DeleteResult:
        return DeleteResult(Header.of(r.header), r.deleted, [KeyValue.of(i) for i in r.prev_kvs])

    return Call("KV", "DeleteRange", req, read)


def txn(
    compare: Iterable[Compare | kv.Compare],
    success: Iterable[Op | kv.RequestOp],
    failure: Iterable[Op | kv.RequestOp],
    *,
    request_id: str | None = None,
) -> Call[TxnResult]:
    req = txn_request(compare, success, failure, request_id or new_request_id())
    return Call("KV", "Txn", req, TxnResult.of)


def history(key: str | bytes, *, prefix: bool = False, limit: int = 0) -> Call[HistoryResult]:
    req = kv.HistoryRequest(key=encode_key(key), prefix=prefix, limit=limit)
    return Call("KV", "History", req, HistoryResult.of)


def compact(revision: int) -> Call[Header]:
    return Call(
        "KV", "Compact", kv.CompactionRequest(revision=revision), lambda r: Header.of(r.header)
    )


def watch_request(
    key: str | bytes,
    *,
    prefix: bool = False,
    start_revision: int = 0,
    prev_kv: bool = False,
    progress_notify: bool = False,
    progress_interval_ms: int = 0,
) -> watchpb.WatchRequest:
    from mcpctl._proto.mcp.v1 import watch_pb2 as watchpb

    return watchpb.WatchRequest(
        key=encode_key(key),
        prefix=prefix,
        start_revision=start_revision,
        prev_kv=prev_kv,
        progress_notify=progress_notify,
        progress_interval_ms=progress_interval_ms,
    )


# -- leases ------------------------------------------------------------------------
def grant(ttl: int, *, id: int = 0) -> Call[LeaseGrant]:
    return Call("Lease", "Grant", kv.LeaseGrantRequest(ttl=ttl, id=id), LeaseGrant.of)


def keep_alive_request(lease_id: int) -> Any:
    from mcpctl._proto.mcp.v1 import lease_pb2

    return lease_pb2.LeaseKeepAliveRequest(id=lease_id)


def keep_alive_answer(lease_id: int, msg: Any) -> LeaseKeepAlive:
    """One renewal's answer; ``LeaseNotFound`` when it says the lease is gone (TTL 0)."""
    answer = LeaseKeepAlive.of(msg)
    if answer.ttl <= 0:
        raise LeaseNotFound(f"lease {lease_id:016x} not found (expired or revoked)")
    return answer


def revoke(lease: LeaseHandle | int) -> Call[Header]:
    req = kv.LeaseRevokeRequest(id=lease_id_of(lease))
    return Call("Lease", "Revoke", req, lambda r: Header.of(r.header))


def time_to_live(lease: LeaseHandle | int, *, keys: bool = False) -> Call[TimeToLive]:
    from mcpctl._proto.mcp.v1 import lease_pb2

    req = lease_pb2.LeaseTimeToLiveRequest(id=lease_id_of(lease), keys=keys)
    return Call("Lease", "TimeToLive", req, TimeToLive.of)


def leases() -> Call[LeaseList]:
    from mcpctl._proto.mcp.v1 import lease_pb2

    return Call("Lease", "Leases", lease_pb2.LeaseLeasesRequest(), LeaseList.of)


# -- cluster -----------------------------------------------------------------------
def _members(r: Any) -> list[Member]:
    return [Member.of(m) for m in r.members]


def cluster_status() -> Call[ClusterStatus]:
    from mcpctl._proto.mcp.v1 import cluster_pb2 as cluster

    return Call("Cluster", "ClusterStatus", cluster.ClusterStatusRequest(), ClusterStatus.of)


def member_list() -> Call[list[Member]]:
    from mcpctl._proto.mcp.v1 import cluster_pb2 as cluster

    return Call("Cluster", "MemberList", cluster.MemberListRequest(), _members)


def member_add(name: str, raft_address: str, client_address: str) -> Call[list[Member]]:
    from mcpctl._proto.mcp.v1 import cluster_pb2 as cluster

    req = cluster.MemberAddRequest(
        name=name, raft_address=raft_address, client_address=client_address
    )
    return Call("Cluster", "MemberAdd", req, _members)


def member_remove(name: str) -> Call[list[Member]]:
    from mcpctl._proto.mcp.v1 import cluster_pb2 as cluster

    return Call("Cluster", "MemberRemove", cluster.MemberRemoveRequest(name=name), _members)


def status_request() -> Any:
    from mcpctl._proto.mcp.v1 import cluster_pb2 as cluster

    return cluster.StatusRequest()


def snapshot_request() -> Any:
    from mcpctl._proto.mcp.v1 import cluster_pb2 as cluster

    return cluster.SnapshotRequest()


def snapshot_data(chunks: Iterable[Any]) -> tuple[bytes, int]:
    """The store bytes and revision of a snapshot's chunks, checked against the
    digest the member sent (``Unavailable`` when damaged: retry)."""
    import hashlib

    from mcpctl.errors import Unavailable

    parts: list[bytes] = []
    revision, digest = 0, ""
    for chunk in chunks:
        parts.append(chunk.data)
        revision, digest = chunk.revision, chunk.sha256 or digest
    data = b"".join(parts)
    if hashlib.sha256(data).hexdigest() != digest:
        raise Unavailable("snapshot stream damaged (checksum mismatch); retry")
    return data, revision
