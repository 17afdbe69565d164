"""Node lifecycle: checks before start, the gRPC server, graceful stop.

``create_server(parts, address) -> (server, port)`` builds the gRPC server
apart from ``run`` (tests use port 0). ``run(config)`` is ``mcpctl serve``:
it refuses to start, with one line and exit code 2, when the data directory
is unusable or locked by another node, or a port is taken; it stops
gracefully on SIGTERM/SIGINT.
"""

from __future__ import annotations

import asyncio
import fcntl
import gc
import logging
import os
import signal
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import structlog
from grpc_health.v1 import health as grpc_health
from grpc_health.v1 import health_pb2, health_pb2_grpc

from mcpctl import limits
from mcpctl._proto.mcp.v1 import cluster_pb2, config_pb2, kv_pb2, lease_pb2, watch_pb2
from mcpctl.raft.node import RaftNode
from mcpctl.raft.status import RaftSettings
from mcpctl.server import auth, reflection, security
from mcpctl.server.auth import Guard
from mcpctl.server.config import NodeConfig
from mcpctl.server.etcd import add_services as add_etcd_services
from mcpctl.server.hub import HubLimits, WatchHub
from mcpctl.server.identity import Identity, cluster_key
from mcpctl.server.kv import ClusterServicer, KVServicer, WatchServicer
from mcpctl.server.lease_clock import LeaseClock, store_seed
from mcpctl.server.lease_service import LeaseServicer
from mcpctl.server.leases import Leases
from mcpctl.server.lessor import Lessor, LessorTimings, lease_grace_s, lease_ttl_min_s
from mcpctl.server.mcp_service import add_config_service
from mcpctl.server.metrics import RpcMetrics, build_registry, serve_metrics
from mcpctl.server.node import Node
from mcpctl.server.peers import MemberInfo, Peers
from mcpctl.server.proposer import Proposer
from mcpctl.server.registry import DecodeChecked, add_service, routes_of
from mcpctl.server.stopping import member_stopping
from mcpctl.state import Applied, HistoryLimits, Store

log = structlog.get_logger("mcpctl.server")

# grpc.health.v1 for grpc.aio servers (the package's stubs do not declare `aio`).
HealthServicer: Any = grpc_health.aio.HealthServicer  # type: ignore[attr-defined]

EXIT_OK = 0
EXIT_STARTUP = 2
# On SIGTERM a leader waits this long for another member to take over.
STEP_DOWN_WAIT_S = 2.0
# How often the gRPC health status is re-evaluated.
HEALTH_CHECK_S = 0.2
# On stop, how long the Raft thread gets to close its journal.
STOP_RAFT_WAIT_S = 5.0
# How often a member checks whether it was removed from the cluster.
MEMBERSHIP_CHECK_S = 0.2
# A member that has heard no leader this long asks the other members whether
# a leader still counts it as a voter (at most this often): one removed while
# it was down or cut off never gets its tombstone.
ORPHAN_CHECK_S = 5.0
# grpc's own stop, once our calls are answered (answer_before_stop): what is left
# (health and reflection calls) gets this long.
SERVER_STOP_GRACE_S = 0.2


class StartupError(Exception):
    """The node cannot start; the message is one line."""


def server_options(value_bytes_max: int) -> list[tuple[str, Any]]:
    return [
        ("grpc.max_receive_message_length", value_bytes_max + limits.REQUEST_OVERHEAD_BYTES),
        ("grpc.max_send_message_length", limits.GRPC_SEND_BYTES_MAX),
        # Never share a port with another process (gRPC allows it by default).
        ("grpc.so_reuseport", 0),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.min_ping_interval_without_data_ms", 5000),
    ]


SERVICES = (
    kv_pb2.DESCRIPTOR.services_by_name["KV"],
    cluster_pb2.DESCRIPTOR.services_by_name["Cluster"],
    watch_pb2.DESCRIPTOR.services_by_name["Watch"],
    lease_pb2.DESCRIPTOR.services_by_name["Lease"],
)
# Registered by mcpctl.server.mcp_service; listed for reflection and health.
EXTRA_SERVICES = (config_pb2.DESCRIPTOR.services_by_name["Config"],)


async def create_server(
    parts: NodeParts,
    address: str,
    *,
    metrics: RpcMetrics | None = None,
    health: Any = None,
    guard: Guard | None = None,
    credentials: grpc.ServerCredentials | None = None,
) -> tuple[grpc.aio.Server, int]:
    """The gRPC server of a node: KV, Watch, Cluster, Lease, Config, health and reflection."""
    node, hub = parts.node, parts.hub
    server = grpc.aio.server(
        options=server_options(node.value_bytes_max),
        maximum_concurrent_rpcs=limits.CONCURRENT_RPCS_MAX,
    )
    kv_service, cluster_service, watch_service, lease_service = SERVICES
    add_service(server, KVServicer(node, metrics, guard), kv_service)
    add_service(server, ClusterServicer(node, metrics, guard), cluster_service)
    add_service(server, WatchServicer(hub, guard), watch_service)
    add_service(server, LeaseServicer(parts.leases, metrics, guard), lease_service)
    add_config_service(server, node, metrics, guard)
    add_etcd_services(server, node, hub, parts.leases, metrics, guard, tls=credentials is not None)
    checked = DecodeChecked(server)
    health_pb2_grpc.add_HealthServicer_to_server(health or HealthServicer(), checked)
    names = [s.full_name for s in (*SERVICES, *EXTRA_SERVICES)]
    names += [health_pb2.DESCRIPTOR.services_by_name["Health"].full_name]
    reflection.add_reflection(checked, names)  # v1 and v1alpha
    if len(checked.registered) != 3:  # an older grpc that registers differently
        raise RuntimeError(f"health/reflection registration not seen: {checked.registered}")
    try:
        port = (
            server.add_secure_port(address, credentials)
            if credentials is not None
            else server.add_insecure_port(address)
        )
    except RuntimeError:
        port = 0
    if port == 0:
        raise StartupError(f"server.listen: cannot listen on {address} (port in use?)")
    return server, port


async def answer_before_stop(server: grpc.aio.Server, grace_s: float) -> None:
    """Answer every call of ours before ``server.stop``: new calls and open
    streams get UNAVAILABLE "member stopping; retry another member" with the
    ``mcp-error`` trailer; unary calls in flight get ``grace_s`` to finish
    (mcpctl.server.stopping). Health checks are still answered."""
    routes = routes_of(server)
    routes.refuse(member_stopping())
    streams = await routes.in_flight.end_streams()
    cut = await routes.in_flight.finish_calls(grace_s)
    log.info("calls answered before stopping", streams_ended=streams, calls_cut_short=cut)


async def _report_health(node: Node, health: Any) -> None:
    """grpc.health.v1: SERVING only with a known leader, everything committed applied,
    and at least what this member had applied before it started (``restored``)."""
    serving_before: bool | None = None
    names = ["", *(s.full_name for s in (*SERVICES, *EXTRA_SERVICES))]
    while True:
        st = node.raft.status
        serving = (
            node.raft.hears_leader()
            and st.applied_index >= st.commit_index
            and st.ready
            and st.restored
        )
        if serving != serving_before:
            status = (
                health_pb2.HealthCheckResponse.SERVING
                if serving
                else health_pb2.HealthCheckResponse.NOT_SERVING
            )
            for name in names:
                await health.set(name, status)
            serving_before = serving
        await asyncio.sleep(HEALTH_CHECK_S)


async def _stop_when_removed(node: Node, stop: asyncio.Event) -> None:
    """A member removed from the cluster stops serving: when it applies its
    tombstone, or, if it was removed while it could not hear the leader (down,
    paused, cut off), when a leader with quorum contact lists the voters
    without it."""
    name = node.identity.member_name
    loop = asyncio.get_running_loop()
    unheard_since: float | None = None
    while True:
        if node.peers.removed(name):
            how = "was removed from the cluster"
            break
        if node.raft.hears_leader():
            unheard_since = None
        elif unheard_since is None:
            unheard_since = loop.time()
        elif loop.time() - unheard_since >= ORPHAN_CHECK_S:
            unheard_since = loop.time()
            if await node.left_out():
                how = "is no longer a voter (removed while it could not hear the leader)"
                break
        await asyncio.sleep(MEMBERSHIP_CHECK_S)
    log.warning(f"this member {how}; stopping (wipe its data_dir before adding it again)")
    stop.set()


def _lock_data_dir(data_dir: Path) -> int:
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        probe = data_dir / ".write-test"
        probe.write_bytes(b"")
        probe.unlink()
        fd = os.open(data_dir / "LOCK", os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as e:
        raise StartupError(f"data_dir: {data_dir} is not writable: {e.strerror}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        raise StartupError(f"data_dir: {data_dir} is in use by another node") from None
    return fd


def _check_port_free(address: str, key: str) -> None:
    host, _, port = address.rpartition(":")
    host = host.strip("[]")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, int(port)))
        except OSError as e:
            raise StartupError(f"{key}: cannot listen on {address}: {e.strerror}") from None


def build_raft(cfg: NodeConfig, secret: str) -> RaftNode:
    r = cfg.raft
    settings = RaftSettings(
        self_address=cfg.member.raft,
        bind_address=cfg.raft_listen,
        partner_addresses=[m.raft for m in cfg.peers],
        data_dir=cfg.data_dir,
        secret=secret,
        heartbeat_s=r.heartbeat_ms / 1000,
        election_timeout_min_s=r.election_timeout_min_ms / 1000,
        election_timeout_max_s=r.election_timeout_max_ms / 1000,
        leader_fallback_s=r.leader_fallback_ms / 1000,
        connection_retry_s=r.connection_retry_ms / 1000,
        tick_s=r.tick_ms / 1000,
        compaction_min_entries=r.compaction_min_entries,
        compaction_min_time_s=r.compaction_min_time_s,
        durability=r.durability,
    )
    history = HistoryLimits(
        revisions_max=cfg.limits.history_revisions_max,
        bytes_max=cfg.limits.history_bytes_max,
    )
    return RaftNode(settings, history)


def run(cfg: NodeConfig) -> int:
    """``mcpctl serve``: start, serve until SIGTERM/SIGINT, stop. Returns the exit code."""
    secret = cfg.cluster_secret()
    _lock_data_dir(cfg.data_dir)  # held (fd open) for the life of the process
    _check_port_free(cfg.client_listen, "server.listen")
    _check_port_free(cfg.raft_listen, "raft.listen")
    if cfg.metrics.listen is not None:
        _check_port_free(cfg.metrics.listen, "metrics.listen")
    if cfg.console.listen is not None:
        _check_port_free(cfg.console.listen, "console.listen")
    if cfg.etcd_gateway.listen is not None:
        _check_port_free(cfg.etcd_gateway.listen, "etcd_gateway.listen")
    log.info("starting", config=cfg.redacted())
    _warn_if_open(cfg)
    security.build_guard(cfg.auth, secret)  # token files readable: fail before binding
    if cfg.server.tls is not None:
        security.server_credentials(cfg.server.tls)
    raft_node = build_raft(cfg, secret)
    if not raft_node.wait_bound():
        raise StartupError(f"raft.listen: cannot listen on {cfg.raft_listen}")
    return asyncio.run(_serve(cfg, raft_node, secret))


def _warn_if_open(cfg: NodeConfig) -> None:
    """Say so loudly when clients beyond this machine get in without credentials."""
    if security.is_loopback(cfg.client_listen):
        return
    if not cfg.auth.enabled:
        log.warning(
            "AUTH IS OFF and the client port is reachable beyond loopback: anyone who can "
            "reach it can read and change every key. Turn auth.enabled on outside development.",
            listen=cfg.client_listen,
        )
    if cfg.server.tls is None:
        log.warning(
            "TLS is off and the client port is reachable beyond loopback: "
            "tokens and values travel in clear text",
            listen=cfg.client_listen,
        )


@dataclass(frozen=True, slots=True)
class NodeParts:
    proposer: Proposer
    node: Node
    hub: WatchHub
    lease_clock: LeaseClock
    leases: Leases

    def start(self) -> None:
        """Start what runs on the loop (call on the loop that serves them)."""
        self.hub.start()
        self.lease_clock.start()

    def stop(self) -> None:
        self.hub.stop()
        self.lease_clock.stop()


def build_node(
    cfg: NodeConfig, raft_node: RaftNode, secret: str, *, hub_limits: HubLimits | None = None
) -> NodeParts:
    """The Proposer, Node, WatchHub and lease clock of ``raft_node``, wired as
    ``serve`` wires them.

    Build them on the loop that will serve them, then ``parts.start()``.
    """
    proposer = Proposer(
        raft_node,
        proposal_timeout_s=cfg.limits.proposal_timeout_ms / 1000,
        leader_wait_s=cfg.limits.leader_wait_ms / 1000,
    )
    identity = Identity.of(cfg.cluster.name, cfg.name, cluster_key(cfg.cluster.token, secret))
    node = Node(
        identity,
        raft_node,
        proposer,
        peers=Peers(
            [MemberInfo(m.name, m.raft, m.client) for m in cfg.cluster.members],
            directory=lambda: raft_node.consumer.read(lambda s: s.members()),
            credentials=security.member_channel_credentials(cfg),
            token=auth.member_token(secret) if cfg.auth.enabled else None,
        ),
        value_bytes_max=cfg.limits.value_bytes_max,
    )
    hub = WatchHub(
        raft_node,
        node.header,
        leader_timeout_s=cfg.raft.election_timeout_max_ms / 1000,
        hub_limits=hub_limits,
    )
    r = cfg.raft
    lease_clock = LeaseClock(
        Lessor(
            LessorTimings(
                grace_s=lease_grace_s(r.leader_fallback_ms / 1000, r.election_timeout_max_ms / 1000)
            )
        ),
        status=lambda: raft_node.status,
        fence=proposer.fence,
        write=node.write,
        seed=lambda: raft_node.consumer.read(store_seed),
        proposal_timeout_s=cfg.limits.proposal_timeout_ms / 1000,
    )
    leases = Leases(node, lease_clock, ttl_min_s=lease_ttl_min_s(r.election_timeout_max_ms / 1000))
    # The store's one pair of apply hooks, fanned out here: the watch hub
    # publishes what was written, the lease clock learns grants and ends.
    applied_listeners = (hub.on_applied, lease_clock.on_applied)
    reset_listeners = (hub.on_reset, lease_clock.on_reset)

    def on_applied(results: Sequence[Applied]) -> None:
        for listener in applied_listeners:
            listener(results)

    def on_reset(store: Store) -> None:
        for listener in reset_listeners:
            listener(store)

    raft_node.consumer.listen(on_applied, on_reset)
    return NodeParts(proposer, node, hub, lease_clock, leases)


async def _start_console(
    cfg: NodeConfig, node: Node, guard: Guard, metrics: RpcMetrics, leases: Leases
) -> Any:
    """The web console (docs/console.md) on this loop, when ``console.listen`` is set."""
    if cfg.console.listen is None:
        return None
    # Here: starlette and uvicorn are imported only by a node whose console is on.
    from mcpctl.server.console.server import ConsoleStartupError, start_console

    try:
        console = await start_console(
            cfg.console.listen, node, guard, metrics=metrics, leases=leases
        )
    except ConsoleStartupError as e:
        raise StartupError(str(e)) from None
    log.info("console ready", url=console.url)
    return console


async def _start_etcd_gateway(cfg: NodeConfig, port: int) -> Any:
    """etcd's JSON gateway (a client of this node's gRPC port), if ``etcd_gateway.listen``."""
    if cfg.etcd_gateway.listen is None:
        return None
    if cfg.server.tls is not None:
        raise StartupError("etcd_gateway.listen: not available with server.tls yet")
    # Here: starlette and uvicorn are imported only by a node whose gateway is on.
    from mcpctl.server.etcd.gateway import GatewayStartupError, start_gateway

    host = cfg.client_listen.rpartition(":")[0].strip("[]")
    target = f"127.0.0.1:{port}" if host in ("", "0.0.0.0", "::") else f"{host}:{port}"
    try:
        gateway = await start_gateway(cfg.etcd_gateway.listen, target)
    except GatewayStartupError as e:
        raise StartupError(str(e)) from None
    log.info("etcd gateway ready", port=gateway.port)
    return gateway


async def _serve(cfg: NodeConfig, raft_node: RaftNode, secret: str) -> int:
    parts = build_node(cfg, raft_node, secret)
    proposer, node, hub = parts.proposer, parts.node, parts.hub
    parts.start()
    registry, rpc_metrics = build_registry(node, hub, parts.leases)
    if cfg.metrics.listen is not None:
        serve_metrics(registry, cfg.metrics.listen)
    health = HealthServicer()
    # One guard: gRPC and the console share limits. Each identity's rate is for
    # the whole cluster: every voter enforces its share (docs/security.md).
    guard = security.build_guard(cfg.auth, secret, voters=lambda: len(node.raft.status.members))
    server, port = await create_server(
        parts,
        cfg.client_listen,
        metrics=rpc_metrics,
        health=health,
        guard=guard,
        credentials=security.server_credentials(cfg.server.tls) if cfg.server.tls else None,
    )
    await server.start()
    console = await _start_console(cfg, node, guard, rpc_metrics, parts.leases)
    gateway = await _start_etcd_gateway(cfg, port)
    stop = asyncio.Event()
    health_task = asyncio.create_task(_report_health(node, health))
    removal_task = asyncio.create_task(_stop_when_removed(node, stop))
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    # Everything built so far (modules, config, the store as replayed from disk)
    # lives as long as the process: out of the cyclic GC's full scans, which
    # otherwise walk these ~60k+ objects and pause the node for tens of ms.
    gc.freeze()
    log.info(
        "node ready",
        client=cfg.client_listen,
        port=port,
        raft=cfg.member.raft,
        members=[m.name for m in cfg.cluster.members],
    )
    await stop.wait()
    log.info("stopping")
    health_task.cancel()
    removal_task.cancel()
    await health.enter_graceful_shutdown()
    await answer_before_stop(server, cfg.limits.stop_grace_ms / 1000)
    if console is not None:
        await console.stop()
    if gateway is not None:
        await gateway.stop()
    parts.stop()
    raft_node.consumer.listen(None, None)
    await server.stop(grace=SERVER_STOP_GRACE_S)
    proposer.close()
    await node.peers.close()
    # Hand leadership over before going away: clients see no election gap.
    handed = await asyncio.to_thread(raft_node.step_down, STEP_DOWN_WAIT_S)
    if not handed:
        log.warning("leadership transfer did not complete", wait_s=STEP_DOWN_WAIT_S)
    if not await asyncio.to_thread(raft_node.destroy, STOP_RAFT_WAIT_S):
        # Never hang on the way out: the journal is mmap'd, so nothing is lost.
        log.warning("raft thread did not stop in time; exiting anyway", wait_s=STOP_RAFT_WAIT_S)
        logging.shutdown()
        os._exit(EXIT_OK)
    log.info("stopped")
    return EXIT_OK
