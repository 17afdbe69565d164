"""The ``mcp.v1.Config`` servicer: decode, call plan on the node, encode.

Thin like the KV servicers (STYLE §4): reads and writes are the node's own
``range`` and ``txn`` (validation, linearizable fences, request-id dedupe,
the proposer all apply unchanged); ``mcpctl.mcp.plan`` only decides what to
read and which guarded txn to write. Errors are ``mcpctl.errors`` classes,
mapped to a status by ``rpc``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mcpctl import validate
from mcpctl._proto.mcp.v1 import config_pb2 as config
from mcpctl._proto.mcp.v1 import kv_pb2 as kv
from mcpctl.mcp import plan
from mcpctl.server.errors import rpc

if TYPE_CHECKING:
    from collections.abc import Sequence

    import grpc

    from mcpctl.auth import Guard, Identity
    from mcpctl.node import Node
    from mcpctl.server.metrics import RpcMetrics

SERVICE = config.DESCRIPTOR.services_by_name["Config"]

_OPS = {
    "add": config.ConfigChange.ADD,
    "change": config.ConfigChange.CHANGE,
    "delete": config.ConfigChange.DELETE,
}


def change_pb(ch: plan.Change) -> config.ConfigChange:
    return config.ConfigChange(
        op=_OPS[ch.op],
        key=ch.key.encode("utf-8"),
        prev_value=ch.prev_value or b"",
        value=ch.value or b"",
    )


_ROOT = b"/mcp/"


class KvEquivalentGuard:
    """Authorizes a Config call as the KV call it amounts to, through ``Guard.check``.

    Apply writes (a dry run reads) every key under /mcp/, Export reads them,
    Rollback writes (a dry run reads) its key or prefix: the caller needs
    exactly the permissions of that KV call, and is rate-limited once.
    """

    def __init__(self, guard: Guard) -> None:
        self._guard = guard

    def authenticate(self, metadata: Sequence[tuple[str, Any]]) -> Identity:
        return self._guard.authenticate(metadata)

    def admit(self, identity: Identity, method: str, request: Any) -> None:
        kv_method, kv_request = kv_equivalent(method, request)
        self._guard.admit(identity, kv_method, kv_request)

    def check(self, metadata: Sequence[tuple[str, Any]], method: str, request: Any) -> Identity:
        identity = self.authenticate(metadata)
        self.admit(identity, method, request)
        return identity


def kv_equivalent(method: str, request: Any) -> tuple[str, Any]:
    """The KV method and request whose permissions a Config call needs."""
    if method == "Apply":
        key, prefix, write = _ROOT, True, not request.dry_run
    elif method == "Rollback":
        key, prefix, write = request.key, request.prefix, not request.dry_run
    elif method == "Export":
        key, prefix, write = _ROOT, True, False
    else:
        raise AssertionError(f"unknown Config method {method}")
    if write:
        return "DeleteRange", kv.DeleteRangeRequest(key=key, prefix=prefix)
    return "Range", kv.RangeRequest(key=key, prefix=prefix)


class ConfigServicer:
    def __init__(
        self, node: Node, metrics: RpcMetrics | None = None, guard: Guard | None = None
    ) -> None:
        self._node = node
        self.metrics = metrics
        # `rpc` asks self.guard before each call.
        self.guard = KvEquivalentGuard(guard) if guard is not None else None

    @rpc
    async def Apply(self, request: config.ApplyRequest, timeout_s: float) -> config.ApplyResponse:
        validate.check_request_id(request.request_id)
        out = await plan.apply(
            self._node,
            request.document,
            dry_run=request.dry_run,
            expected_revision=request.expected_revision,
            request_id=request.request_id,
            timeout_s=timeout_s,
        )
        return config.ApplyResponse(
            header=self._node.header(out.revision or None),
            changes=[change_pb(ch) for ch in out.changes],
            read_revision=out.read_revision,
            revision=out.revision,
        )

    @rpc
    async def Export(
        self, request: config.ExportRequest, timeout_s: float
    ) -> config.ExportResponse:
        document, revision = await plan.export(self._node, request.revision, timeout_s)
        return config.ExportResponse(
            header=self._node.header(), document=document, revision=revision
        )

    @rpc
    async def Rollback(
        self, request: config.RollbackRequest, timeout_s: float
    ) -> config.RollbackResponse:
        validate.check_key(request.key, field="rollback.key")
        validate.check_request_id(request.request_id)
        out = await plan.rollback(
            self._node,
            request.key,
            prefix=request.prefix,
            to_revision=request.to_revision,
            dry_run=request.dry_run,
            request_id=request.request_id,
            timeout_s=timeout_s,
        )
        return config.RollbackResponse(
            header=self._node.header(out.revision or None),
            changes=[change_pb(ch) for ch in out.changes],
            read_revision=out.read_revision,
            revision=out.revision,
        )


def add_config_service(
    server: grpc.aio.Server,
    node: Node,
    metrics: RpcMetrics | None = None,
    guard: Guard | None = None,
) -> None:
    """Register ``mcp.v1.Config`` on a node's gRPC server (called by ``create_server``)."""
    # Imported here: mcpctl.server.app imports this module.
    from mcpctl.server.app import add_service

    servicer: Any = ConfigServicer(node, metrics, guard)
    add_service(server, servicer, SERVICE)


__all__ = ["SERVICE", "ConfigServicer", "KvEquivalentGuard", "add_config_service", "kv_equivalent"]
