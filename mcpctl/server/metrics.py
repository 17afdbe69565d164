"""Prometheus metrics for one node, served on its own port (``metrics.listen``).

Gauges and counters are read at scrape time from the node's published state
(``RaftNode.status``, proposer and watch-hub counters) by one collector, so
nothing on the hot path updates them; the only metric updated per request is
the RPC latency histogram (by method and status code). Each node has its own
``CollectorRegistry``, so several nodes can live in one test process.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator
from itertools import accumulate

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from mcpctl.raft.status import Role
from mcpctl.server.hub import WatchHub
from mcpctl.server.leases import Leases
from mcpctl.server.node import Node

RPC_BUCKETS_S = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class RpcMetrics(Collector):
    """The RPC latency histogram (``mcp_rpc_duration_seconds{method,code}``),
    updated once per request: one list per (method, code), the bucket found with
    ``bisect`` and one add, no lock (every update runs on the node's loop; a
    scrape, on the metrics thread, copies the lists first). prometheus_client's
    ``Histogram`` took two locks and walked the buckets in Python on each
    request, ~1.5 µs (issue #20)."""

    NAME = "mcp_rpc_duration_seconds"

    def __init__(self, registry: CollectorRegistry) -> None:
        # (method, code) -> per-bucket counts (the last for +Inf), then the sum.
        self._series: dict[tuple[str, str], list[float]] = {}
        self._bounds = [repr(float(b)) for b in RPC_BUCKETS_S] + ["+Inf"]
        registry.register(self)

    def observe(self, method: str, code: str, seconds: float) -> None:
        series = self._series.get((method, code))
        if series is None:
            series = self._series[(method, code)] = [0.0] * (len(RPC_BUCKETS_S) + 2)
        series[bisect_left(RPC_BUCKETS_S, seconds)] += 1
        series[-1] += seconds

    def collect(self) -> Iterator[Metric]:
        family = HistogramMetricFamily(
            self.NAME,
            "gRPC request latency by method and status code",
            labels=["method", "code"],
        )
        for labels, series in list(self._series.items()):
            counts = series[:-1]
            cumulative = list(accumulate(counts))
            family.add_metric(
                list(labels), list(zip(self._bounds, cumulative, strict=True)), series[-1]
            )
        yield family


class NodeCollector(Collector):
    def __init__(self, node: Node, hub: WatchHub, leases: Leases | None = None) -> None:
        self._node = node
        self._hub = hub
        self._leases = leases

    def collect(self) -> Iterator[Metric]:
        st = self._node.raft.status
        yield GaugeMetricFamily("mcp_raft_term", "Current Raft term", value=st.term)
        role = GaugeMetricFamily("mcp_raft_role", "1 for this member's Raft role", labels=["role"])
        for r in Role:
            role.add_metric([r.name.lower()], 1.0 if r == st.role else 0.0)
        yield role
        yield GaugeMetricFamily(
            "mcp_raft_has_leader", "1 when a leader is known", value=float(st.leader is not None)
        )
        yield GaugeMetricFamily("mcp_raft_commit_index", "Raft commit index", value=st.commit_index)
        yield GaugeMetricFamily(
            "mcp_raft_applied_index", "Raft index applied to the store", value=st.applied_index
        )
        yield GaugeMetricFamily(
            "mcp_raft_last_log_index", "Last index in the Raft log", value=st.last_log_index
        )
        yield GaugeMetricFamily(
            "mcp_apply_lag_seconds",
            "Age of the oldest committed entry not yet applied here",
            value=st.apply_lag_s,
        )
        yield GaugeMetricFamily(
            "mcp_leader_last_contact_seconds",
            "Seconds since this member last heard from a leader (0 on the leader)",
            value=st.leader_contact_age_s,
        )
        behind = GaugeMetricFamily(
            "mcp_peer_entries_behind", "Leader only: entries a peer lacks", labels=["peer"]
        )
        lag = GaugeMetricFamily(
            "mcp_peer_lag_seconds",
            "Leader only: age of the oldest entry a peer lacks",
            labels=["peer"],
        )
        contact = GaugeMetricFamily(
            "mcp_peer_last_contact_seconds",
            "Leader only: seconds since a peer last answered",
            labels=["peer"],
        )
        for p in st.peers:
            name = self._node.peers.name_of(p.address)
            if p.entries_behind is not None and p.lag_s is not None:  # else unknown yet
                behind.add_metric([name], p.entries_behind)
                lag.add_metric([name], p.lag_s)
            contact.add_metric([name], p.contact_age_s)
        yield behind
        yield lag
        yield contact
        revision, keys, leases = self._node.read(lambda s: (s.revision, len(s), s.lease_count()))
        yield GaugeMetricFamily("mcp_store_revision", "Store revision", value=revision)
        yield GaugeMetricFamily("mcp_store_keys", "Keys in the store", value=keys)
        yield GaugeMetricFamily("mcp_leases", "Live leases (replicated)", value=leases)
        yield from self._lease_metrics()
        proposer = self._node.proposer
        yield CounterMetricFamily(
            "mcp_proposals_committed",
            "Raft entries proposed here that committed",
            value=proposer.proposals_committed,
        )
        yield CounterMetricFamily(
            "mcp_proposals_failed",
            "Raft entries proposed here that failed or timed out",
            value=proposer.proposals_failed,
        )
        yield GaugeMetricFamily(
            "mcp_proposals_queued", "Requests waiting for a Raft proposal", value=proposer.queued
        )
        stats = self._hub.stats
        yield GaugeMetricFamily("mcp_watch_streams", "Open watch streams", value=self._hub.watchers)
        yield CounterMetricFamily(
            "mcp_watch_events_sent", "Watch events sent", value=stats.events_sent
        )
        yield CounterMetricFamily(
            "mcp_watch_messages_sent", "Watch messages sent", value=stats.messages_sent
        )
        yield CounterMetricFamily(
            "mcp_watch_slow", "Times a watch stream fell behind", value=stats.slow_marked
        )
        yield CounterMetricFamily(
            "mcp_watch_compacted",
            "Watch streams ended because history was compacted",
            value=stats.compacted_ended,
        )

    def _lease_metrics(self) -> Iterator[Metric]:
        if self._leases is None:
            return
        stats = self._leases.stats
        yield CounterMetricFamily(
            "mcp_lease_expired",
            "Leases this member's clock expired (as leader)",
            value=stats.expired,
        )
        yield CounterMetricFamily(
            "mcp_lease_revoked", "Leases revoked through this member", value=stats.revoked
        )
        yield CounterMetricFamily(
            "mcp_lease_keepalives", "Keepalives this member answered", value=stats.keepalives
        )
        yield CounterMetricFamily(
            "mcp_lease_checkpoints",
            "Lease checkpoints this member committed",
            value=stats.checkpoints,
        )
        yield CounterMetricFamily(
            "mcp_lease_fenced",
            "Lease expiries/checkpoints of this member the store dropped as stale",
            value=stats.fenced,
        )
        yield CounterMetricFamily(
            "mcp_lease_clock_paused_seconds",
            "Pauses of the leader's lease-clock loop not counted against leases "
            "(each longer than LEASE_CLOCK_PAUSE_S_MAX)",
            value=stats.paused_s,
        )
        yield GaugeMetricFamily(
            "mcp_lease_keepalive_streams",
            "Open keepalive streams on this member",
            value=self._leases.keepalive_streams,
        )


def build_registry(
    node: Node, hub: WatchHub, leases: Leases | None = None
) -> tuple[CollectorRegistry, RpcMetrics]:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(NodeCollector(node, hub, leases))
    return registry, RpcMetrics(registry)


def serve_metrics(registry: CollectorRegistry, address: str) -> None:
    """Serve /metrics on ``address`` (host:port) from a daemon thread."""
    host, _, port = address.rpartition(":")
    start_http_server(int(port), addr=host.strip("[]"), registry=registry)
