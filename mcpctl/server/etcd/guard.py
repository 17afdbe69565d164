"""The auth guard for etcd calls: the same guard, buckets and rules as mcp.v1.

etcd clients send their token as ``token`` metadata (after ``Authenticate``);
it is read as our bearer token. Each etcd call is checked as the mcp.v1 call
it amounts to (a Range as a Range of its covering prefix, a lease call as
ours), and refusals answer etcd's messages.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from mcpctl._proto.etcd.etcdserverpb import rpc_pb2 as rpc
from mcpctl._proto.mcp.v1 import kv_pb2 as kv
from mcpctl.errors import PermissionDenied, Unauthenticated
from mcpctl.server.auth import Guard, Identity
from mcpctl.server.etcd.convert import KeySpan
from mcpctl.server.etcd.errors import INVALID_AUTH_TOKEN, PERMISSION_DENIED, error
from mcpctl.server.etcd.unserved import INSTEAD

TOKEN_KEY = "token"
_SAME = {
    "LeaseGrant": "Grant",
    "LeaseRevoke": "Revoke",
    "LeaseKeepAlive": "KeepAlive",
    "LeaseTimeToLive": "TimeToLive",
    "LeaseLeases": "Leases",
    "MemberList": "MemberList",
    "Status": "Status",
    "Alarm": "Status",
    # A Watch stream is admitted like a Status (rate bucket); each watch it
    # creates is authorized as a Watch of its keys (``authorize_watch``).
    "Watch": "Status",
    "Compact": "Compact",
}


class EtcdGuard:
    def __init__(self, guard: Guard) -> None:
        self.guard = guard

    @property
    def enabled(self) -> bool:
        return self.guard.enabled

    def authenticate(self, metadata: Sequence[tuple[str, Any]]) -> Identity:
        token = next(
            (v for k, v in metadata if k.lower() == TOKEN_KEY and isinstance(v, str)), None
        )
        if token is not None:
            metadata = (("authorization", "Bearer " + token), *metadata)
        try:
            return self.guard.authenticate(metadata)
        except Unauthenticated:
            raise error(INVALID_AUTH_TOKEN) from None

    def admit(self, identity: Identity, method: str, request: Any) -> None:
        kv_method, kv_request = _equivalent(method, request)
        try:
            self.guard.admit(identity, kv_method, kv_request)
        except PermissionDenied:
            raise error(PERMISSION_DENIED) from None

    def authorize_watch(self, identity: Identity, span: KeySpan) -> None:
        cover = span.cover()
        try:
            self.guard.authorize(
                identity, "Watch", kv.RangeRequest(key=cover.key, prefix=cover.prefix)
            )
        except PermissionDenied:
            raise error(PERMISSION_DENIED) from None


def _equivalent(method: str, request: Any) -> tuple[str, Any]:
    if method in _SAME:
        return _SAME[method], request
    if method in INSTEAD:  # answers UNIMPLEMENTED, changes nothing: as a Status
        return "Status", request
    if method == "Range":
        cover = KeySpan.of(request.key, request.range_end).cover()
        return "Range", kv.RangeRequest(key=cover.key, prefix=cover.prefix)
    if method == "Put":
        return "Put", kv.PutRequest(key=request.key)
    if method == "DeleteRange":
        cover = KeySpan.of(request.key, request.range_end).cover()
        return "DeleteRange", kv.DeleteRangeRequest(key=cover.key, prefix=cover.prefix)
    if method == "Txn":
        return "Txn", _txn(request)
    return method, request


def _txn(req: rpc.TxnRequest) -> kv.TxnRequest:
    out = kv.TxnRequest()
    for c in req.compare:
        cover = KeySpan.of(c.key, c.range_end).cover()
        out.compare.add(key=cover.key, prefix=cover.prefix)
    for ops, dest in ((req.success, out.success), (req.failure, out.failure)):
        for op in ops:
            which = op.WhichOneof("request")
            if which == "request_range":
                cover = KeySpan.of(op.request_range.key, op.request_range.range_end).cover()
                dest.add().request_range.CopyFrom(
                    kv.RangeRequest(key=cover.key, prefix=cover.prefix)
                )
            elif which == "request_put":
                dest.add().request_put.CopyFrom(kv.PutRequest(key=op.request_put.key))
            elif which == "request_delete_range":
                d = op.request_delete_range
                cover = KeySpan.of(d.key, d.range_end).cover()
                dest.add().request_delete_range.CopyFrom(
                    kv.DeleteRangeRequest(key=cover.key, prefix=cover.prefix)
                )
    return out
