"""Cluster status and replication lag on a real cluster (DESIGN §5): true within
about a second, on any node, with members down."""

from __future__ import annotations

import threading
import time

import pytest

from mcpctl.client import Client, MemberHealth
from mcpctl.errors import McpError
from tests.cluster import Cluster, wait_for

pytestmark = pytest.mark.cluster


def rows(c: Client) -> dict[str, MemberHealth]:
    return {m.member_name: m for m in c.cluster_status().members}


def test_idle_cluster_reports_zero_lag_everywhere_from_every_node(cluster: Cluster) -> None:
    """Caught up and idle: entries_behind 0 and lag_ms 0 for every member, whichever
    member answers; exactly one leader."""
    with cluster.client() as c:
        c.put("/idle", "x")
    for node in cluster.nodes:
        with cluster.client(node) as c:

            def settled(c: Client = c) -> dict[str, MemberHealth] | None:
                r = rows(c)
                ok = all(m.entries_behind == 0 and m.lag_ms == 0 for m in r.values())
                return r if ok else None

            r = wait_for(f"{node.name} to report zero lag", settled)
            assert set(r) == {"n1", "n2", "n3"}
            assert all(m.reachable for m in r.values())
            assert [m.role for m in r.values()].count("leader") == 1
            assert len({m.commit_index for m in r.values()}) == 1


def test_paused_follower_shows_growing_lag_then_recovers(cluster: Cluster) -> None:
    """A follower stopped with SIGSTOP for 3 s while writes continue: its lag_ms reaches
    about 2,500+ and entries_behind > 0 while the others stay about 0; after SIGCONT
    it is back to 0 within a few seconds."""
    leader = cluster.leader()
    paused = next(n for n in cluster.nodes if n is not leader)
    others = [n for n in cluster.nodes if n is not paused]
    stop = threading.Event()
    written = [0]

    def writer() -> None:
        with cluster.client(*others, timeout=5.0) as c:
            for i in range(2000):
                if stop.is_set():
                    return
                try:
                    c.put(f"/lag/{i % 20}", str(i))
                    written[0] += 1
                except McpError:
                    pass
                stop.wait(0.02)

    thread = threading.Thread(target=writer, daemon=True)
    cluster.pause(paused)
    paused_at = time.monotonic()
    thread.start()
    try:
        with cluster.client(*others) as c:

            def lagged() -> dict[str, MemberHealth] | None:
                r = rows(c)
                return r if r[paused.name].lag_ms >= 2500 else None

            r = wait_for("the paused follower's lag to pass 2,500 ms", lagged, timeout_s=15)
            assert time.monotonic() - paused_at >= 2.4  # lag is not over-reported
            lagging = r[paused.name]
            assert not lagging.reachable and lagging.entries_behind > 0
            for n in others:
                assert r[n.name].lag_ms < 1000 and r[n.name].entries_behind <= 5, r[n.name]
    finally:
        cluster.resume(paused)
    try:
        with cluster.client(*others) as c:
            wait_for(
                "the resumed follower to catch up",
                lambda: (
                    all(m.lag_ms == 0 and m.entries_behind == 0 for m in rows(c).values()) or None
                ),
                timeout_s=20,
            )
    finally:
        stop.set()
        thread.join(10)
    assert written[0] > 0


def test_killed_node_is_reported_unreachable_and_the_rest_still_shown(cluster: Cluster) -> None:
    """kill -9 of a member: status through a surviving member shows it unreachable
    (with the leader's view of its lag), and the others as healthy."""
    leader = cluster.leader()
    victim = next(n for n in cluster.nodes if n is not leader)
    cluster.kill(victim)
    survivor = next(n for n in cluster.nodes if n is not victim and n is not leader)
    with Client([survivor.endpoint], timeout=5.0) as c:
        c.put("/after-kill", "x")
        r = rows(c)
    assert r[victim.name].reachable is False and r[victim.name].error
    assert r[victim.name].entries_behind >= 1
    assert r[leader.name].reachable and r[leader.name].role == "leader"
    assert r[survivor.name].reachable and r[survivor.name].role == "follower"


def test_member_list_names_every_voter(cluster: Cluster) -> None:
    """MemberList answers with every voter's name, Raft and client address."""
    with cluster.client() as c:
        members = c.member_list()
    assert sorted(m.name for m in members) == ["n1", "n2", "n3"]
    assert {m.client_address for m in members} == set(cluster.endpoints)
