"""A restarted member never serves a revision older than one it served before
it stopped (issue #19, item 2): neither a serializable read nor gRPC health
SERVING until it has applied its own snapshot and journal at least that far;
UNAVAILABLE meanwhile.

PySyncObj saves the commit index once per second, so a member killed right
after a burst of writes comes back with a commit index (and a store) up to a
second behind what it had applied and served. These tests write a burst,
read a member and kill -9 it at once, and hammer the restarted member from the moment
its port opens.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from mcpctl.client import Client
from mcpctl.errors import McpError, Unavailable
from tests.cluster import Cluster, NodeProc, wait_for

pytestmark = pytest.mark.cluster

BURST_WRITES = 150
# Generous: a restarted member rejoins within a couple of seconds here.
CATCH_UP_TIMEOUT_S = 30.0
# How long a lone member (no quorum) is watched before the others come back.
LONE_WATCH_S = 3.0


@dataclass
class Observed:
    """What a restarted member answered, while hammered."""

    served_before: int
    reads: list[int] = field(default_factory=list)
    unavailable: int = 0
    serving_health: int = 0
    not_serving_health: int = 0
    restored_status: int = 0
    stale: list[str] = field(default_factory=list)

    def caught_up(self) -> bool:
        return bool(self.reads) and self.reads[-1] >= self.served_before


@contextmanager
def writing(cluster: Cluster) -> Iterator[None]:
    """A burst of writes, and writes going on in the background while the body runs."""
    with cluster.client() as c:
        for i in range(BURST_WRITES):
            c.put(f"/restart/{i}", str(i))
    stop = threading.Event()

    def writer() -> None:
        with cluster.client(timeout=1.0) as c:
            i = 0
            while not stop.is_set():
                i += 1
                try:
                    c.put(f"/restart/bg/{i % 10}", str(i))
                except McpError:
                    stop.wait(0.05)

    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(10)


def read_then_kill(cluster: Cluster, node: NodeProc) -> int:
    """The revision ``node`` serves (serializable), then kill -9 it at once: its
    saved commit index is then most likely behind what it served."""
    with Client([node.endpoint], timeout=2.0, attempts_max=1) as c:
        served = c.get("/restart/", prefix=True, serializable=True).header.revision
    cluster.kill(node)
    return served


def hammer(node: NodeProc, obs: Observed, until: float, stop_when_caught_up: bool) -> None:
    """Serializable reads, health checks and Status against ``node`` until ``until``;
    a Status that says ``restored`` must be at or above the revision served before."""
    with (
        Client([node.endpoint], timeout=0.5, attempts_max=1) as c,
        grpc.insecure_channel(node.endpoint) as ch,
    ):
        health = health_pb2_grpc.HealthStub(ch)
        while time.monotonic() < until:
            try:
                revision = c.get("/restart/", prefix=True, serializable=True).header.revision
                obs.reads.append(revision)
                if revision < obs.served_before:
                    obs.stale.append(f"serializable read at {revision}")
            except Unavailable:
                obs.unavailable += 1
            except McpError:
                pass
            try:
                st = c.status(node.endpoint)
            except McpError:
                pass
            else:
                if st.restored:
                    obs.restored_status += 1
                    if st.revision < obs.served_before:
                        obs.stale.append(f"Status restored at revision {st.revision}")
            try:
                resp = health.Check(health_pb2.HealthCheckRequest(), timeout=0.5)
            except grpc.RpcError:
                continue
            if resp.status == health_pb2.HealthCheckResponse.SERVING:
                obs.serving_health += 1
                try:
                    st = c.status(node.endpoint)
                except McpError:
                    continue
                if st.revision < obs.served_before:
                    obs.stale.append(f"health SERVING at revision {st.revision}")
            else:
                obs.not_serving_health += 1
            if (
                stop_when_caught_up
                and obs.caught_up()
                and obs.serving_health
                and obs.restored_status
            ):
                return


def test_member_restarted_after_kill_never_serves_an_older_revision(cluster: Cluster) -> None:
    """kill -9 a follower right after a burst, start it again: from the moment its
    port opens, every serializable read it answers and every SERVING health
    answer is at or above the revision it served before the kill. The leader
    is paused meanwhile, so the restarted member hears no commit index until
    the other follower wins an election (otherwise the leader often reaches
    it before its port opens, and the stale window is not seen)."""
    leader = cluster.leader()
    victim = next(n for n in cluster.nodes if n is not leader)
    with writing(cluster):
        served = read_then_kill(cluster, victim)
    cluster.pause(leader)
    try:
        cluster.start(victim)
        obs = Observed(served)
        hammer(victim, obs, time.monotonic() + CATCH_UP_TIMEOUT_S, stop_when_caught_up=True)
    finally:
        cluster.resume(leader)
    assert not obs.stale, (obs.stale[:5], obs)
    assert obs.caught_up() and obs.serving_health and obs.restored_status, obs


def test_full_cluster_restart_members_never_serve_an_older_revision(cluster: Cluster) -> None:
    """kill -9 every member right after a burst; start one alone (no leader can
    exist): it may answer UNAVAILABLE, never an older revision, and is not
    SERVING; then start the others: every member gets back to (at least) what
    it served, without ever answering below it."""
    with writing(cluster):
        served = {n.name: read_then_kill(cluster, n) for n in cluster.nodes}
    lone, *others = cluster.nodes
    cluster.start(lone)
    lone_obs = Observed(served[lone.name])
    hammer(lone, lone_obs, time.monotonic() + LONE_WATCH_S, stop_when_caught_up=False)
    assert not lone_obs.stale, (lone_obs.stale[:5], lone_obs)
    assert lone_obs.serving_health == 0, lone_obs
    for node in others:
        cluster.start(node)
    for node in cluster.nodes:
        obs = Observed(served[node.name])
        hammer(node, obs, time.monotonic() + CATCH_UP_TIMEOUT_S, stop_when_caught_up=True)
        assert not obs.stale, (node.name, obs.stale[:5], obs)
        assert obs.caught_up() and obs.serving_health and obs.restored_status, (node.name, obs)
    wait_for("a leader", cluster.leader)
