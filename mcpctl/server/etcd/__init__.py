"""etcd's v3 gRPC API over the mcp-config store (docs/etcd-compat.md).

``add_services`` registers the etcd services on a node's gRPC server beside
mcp.v1, with the same guard (auth, rate buckets), metrics and audit.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

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
    from mcpctl.server.etcd import cluster, kv, lease, watch
    from mcpctl.server.etcd.guard import EtcdGuard

    g = EtcdGuard(guard) if guard is not None else None
    add_service(server, kv.KVServicer(node, metrics, g), kv.SERVICE)
    add_service(server, watch.WatchServicer(node, hub, g), watch.SERVICE)
    add_service(server, lease.LeaseServicer(node, leases, metrics, g), lease.SERVICE)
    add_service(server, cluster.ClusterServicer(node, metrics, g, tls=tls), cluster.CLUSTER)
    add_service(server, cluster.MaintenanceServicer(node, metrics, g), cluster.MAINTENANCE)
    add_service(server, cluster.AuthServicer(node, metrics, g), cluster.AUTH)
