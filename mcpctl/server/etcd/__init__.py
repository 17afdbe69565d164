"""etcd's v3 gRPC API over the mcp-config store (docs/etcd-compat.md).

``add_services`` registers the etcd services on a node's gRPC server beside
mcp.v1, with the same guard (auth, rate buckets), metrics and audit.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mcpctl.server.registry import add_service

if TYPE_CHECKING:
    import grpc

    from mcpctl.server.auth import Guard
    from mcpctl.server.hub import WatchHub
    from mcpctl.server.leases import Leases
    from mcpctl.server.metrics import RpcMetrics
    from mcpctl.server.node import Node


def add_services(
    server: grpc.aio.Server,
    node: Node,
    hub: WatchHub,
    leases: Leases,
    metrics: RpcMetrics | None,
    guard: Guard | None,
    *,
    tls: bool = False,
) -> None:
    from mcpctl.server.etcd import cluster, kv, lease, unserved, watch
    from mcpctl.server.etcd.guard import EtcdGuard
    from mcpctl.server.etcd.metrics import EtcdMetrics

    g = EtcdGuard(guard) if guard is not None else None
    m = EtcdMetrics(metrics) if metrics is not None else None
    servicers: list[tuple[Any, Any]] = [
        (kv.KVServicer(node, m, g), kv.SERVICE),
        (watch.WatchServicer(node, hub, g), watch.SERVICE),
        (lease.LeaseServicer(node, leases, m, g), lease.SERVICE),
        (cluster.ClusterServicer(node, m, g, tls=tls), cluster.CLUSTER),
        (cluster.MaintenanceServicer(node, m, g), cluster.MAINTENANCE),
        (cluster.AuthServicer(node, m, g), cluster.AUTH),
    ]
    for servicer, service in servicers:
        unserved.fill(servicer, service)
        add_service(server, servicer, service)
