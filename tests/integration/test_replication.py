"""Replication on a real 3-node cluster: writes anywhere, reads everywhere,
failover after kill -9, catch-up after restart, full-cluster restart."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from mcpctl.client import Client
from mcpctl.errors import McpError
from tests.cluster import Cluster, NodeProc, running_cluster, wait_for

# PySyncObj drops a connection that read nothing for this long (connectionTimeout).
RAFT_CONNECTION_TIMEOUT_S = 3.5

pytestmark = pytest.mark.cluster


def test_write_on_follower_is_read_linearizably_on_another_node(cluster: Cluster) -> None:
    """A put acknowledged by a follower is visible to a default (linearizable) read elsewhere."""
    f1, f2 = cluster.followers()
    with cluster.client(f1) as c1, cluster.client(f2) as c2:
        for i in range(20):
            put = c1.put(f"/mcp/f/{i}", f"v{i}")
            got = c2.get(f"/mcp/f/{i}")
            assert got.first is not None and got.first.text == f"v{i}"
            assert got.header.revision >= put.revision
            assert got.first.mod_revision == put.revision


def test_headers_identify_cluster_member_and_term(cluster: Cluster) -> None:
    """Every response names the same cluster, its own member and a term >= 1."""
    revisions = []
    cluster_ids = set()
    for node in cluster.nodes:
        with cluster.client(node) as c:
            res = c.put(f"/h/{node.name}", "x")
            assert res.header.member_name == node.name
            assert res.header.raft_term >= 1
            cluster_ids.add(res.header.cluster_id)
            revisions.append(res.revision)
    assert len(cluster_ids) == 1
    assert revisions == sorted(revisions) and len(set(revisions)) == 3


def test_retried_request_id_is_applied_once(cluster: Cluster) -> None:
    """A write retried with the same request id (e.g. after an unknown outcome) applies once."""
    with cluster.client() as c:
        first = c.put("/dedupe", "a", request_id="req-1")
        again = c.put("/dedupe", "a", request_id="req-1")
        assert again.revision == first.revision
        got = c.get("/dedupe").first
        assert got is not None and got.text == "a" and got.version == 1


def test_kill_leader_elects_new_one_and_keeps_acknowledged_writes(cluster: Cluster) -> None:
    """kill -9 of the leader: a new leader takes over, writes go on, no acked write is lost."""
    acked: dict[str, str] = {}
    with cluster.client() as c:
        for i in range(50):
            c.put(f"/acked/{i}", f"before-{i}")
            acked[f"/acked/{i}"] = f"before-{i}"
        old = cluster.leader()
        cluster.kill(old)
        survivors = [n for n in cluster.nodes if n is not old]
        new = cluster.leader(survivors)
        assert new is not old
        for i in range(50, 100):
            c.put(f"/acked/{i}", f"after-{i}")
            acked[f"/acked/{i}"] = f"after-{i}"
        got = {kv.key: kv.text for kv in c.get("/acked/", prefix=True).kvs}
        assert got == acked

        # The killed node restarts from its data dir and catches up.
        cluster.start(old)
        cluster.wait_ready([old])
        with cluster.client(old) as on_old:
            local = on_old.get("/acked/", prefix=True, serializable=True)
            assert {kv.key: kv.text for kv in local.kvs} == acked


def test_full_cluster_restart_keeps_all_data(cluster: Cluster) -> None:
    """Stop every node (kill -9), start them again: every acknowledged write is still there."""
    with cluster.client() as c:
        for i in range(30):
            c.put(f"/keep/{i}", str(i))
        c.delete("/keep/0")
        revision = c.get("/keep/", prefix=True).header.revision
    for node in cluster.nodes:
        cluster.kill(node)
    for node in cluster.nodes:
        cluster.start(node)
    cluster.wait_ready()
    with cluster.client() as c:
        res = c.get("/keep/", prefix=True)
        assert res.count == 29
        assert res.header.revision == revision
        assert {kv.key for kv in res.kvs} == {f"/keep/{i}" for i in range(1, 30)}
        # And the cluster still takes writes at the next revision.
        assert c.put("/keep/after", "x").revision == revision + 1


def test_minority_cannot_write_or_read_linearizably(cluster: Cluster) -> None:
    """With two of three nodes down, a write ends in a bounded UNAVAILABLE, never a hang."""
    with cluster.client() as c:
        c.put("/q", "1")
    survivor = cluster.nodes[0]
    for node in cluster.nodes[1:]:
        cluster.kill(node)
    with Client([survivor.endpoint], timeout=3.0) as c:
        with pytest.raises(McpError) as write_err:
            c.put("/q", "2")
        assert write_err.value.code in ("UNAVAILABLE", "DEADLINE_EXCEEDED")
        with pytest.raises(McpError) as read_err:
            c.get("/q")
        assert read_err.value.code in ("UNAVAILABLE", "DEADLINE_EXCEEDED")
        # A serializable read still answers from local state.
        local = c.get("/q", serializable=True).first
        assert local is not None and local.text == "1"


def test_burst_of_20k_writes_leaves_every_node_acking(tmp_path: Path) -> None:
    """20k writes in a burst (with Raft log compaction during it): afterwards every
    node has applied everything and still takes part in commits."""
    import asyncio

    from tests.load import put_burst

    with running_cluster(tmp_path, raft={"compaction_min_entries": 500}) as cluster:
        leader = cluster.leader()
        done = asyncio.run(put_burst(cluster.endpoints, total=20_000, concurrency=64))
        assert done.acked == 20_000, done
        with cluster.client(leader) as c:
            revision = c.get("/burst/", prefix=True, count_only=True).header.revision
        for node in cluster.nodes:
            cluster.wait_applied(node, revision)
        # Each node must still ack: kill each other node in turn; writes must commit
        # with the remaining two (so the one we kept is acking).
        for victim in cluster.nodes:
            cluster.kill(victim)
            with cluster.client(*[n for n in cluster.nodes if n is not victim]) as c:
                c.put(f"/after-burst/{victim.name}", "ok")
            cluster.start(victim)
            cluster.wait_ready([victim])
        wait_for(
            "every node to hold all keys",
            lambda: all(cluster.status(n).keys >= 1000 + 3 for n in cluster.nodes),
        )


def test_node_down_across_log_compaction_catches_up_from_snapshot(tmp_path: Path) -> None:
    """A follower that misses writes the leader has already compacted out of its
    log is sent a snapshot, installs it and ends with exactly the leader's data."""
    with running_cluster(tmp_path, raft={"compaction_min_entries": 100}) as cluster:
        leader = cluster.leader()
        lagging = next(n for n in cluster.nodes if n is not leader)
        cluster.kill(lagging)
        with cluster.client(*[n for n in cluster.nodes if n is not lagging]) as c:
            for i in range(400):  # sequential: one Raft entry each, several compactions
                c.put(f"/snap/{i % 50}", f"v{i}")
            c.delete("/snap/0")
            expected = {kv.key: kv.text for kv in c.get("/snap/", prefix=True).kvs}
            revision = c.get("/snap/1").header.revision
        cluster.start(lagging)
        cluster.wait_applied(lagging, revision)
        assert "snapshot installed" in lagging.log_text()
        with cluster.client(lagging) as c:
            got = c.get("/snap/", prefix=True, serializable=True)
            assert {kv.key: kv.text for kv in got.kvs} == expected
            assert got.header.revision == revision


def test_sigterm_on_the_leader_hands_leadership_over(cluster: Cluster) -> None:
    """A leader stopped with SIGTERM exits 0 after another member took over, and
    writes go on without waiting for an election timeout."""
    leader = cluster.leader()
    assert cluster.stop(leader) == 0
    assert "leadership transfer did not complete" not in leader.log_text()
    survivors = [n for n in cluster.nodes if n is not leader]
    assert cluster.leader(survivors) is not leader
    with cluster.client(*survivors) as c:
        assert c.put("/after-handover", "ok").revision > 0


def test_restarting_a_follower_does_not_depose_the_leader(cluster: Cluster) -> None:
    """A follower restarted with its data waits for the leader before campaigning
    (PySyncObj has no pre-vote): the leader and the term stay the same."""
    leader = cluster.leader()
    with cluster.client() as c:
        for i in range(10):
            c.put(f"/stable/{i}", "x")
    term = cluster.status(leader).term
    for victim in [n for n in cluster.nodes if n is not leader]:
        cluster.kill(victim)
        cluster.start(victim)
        cluster.wait_ready([victim])
        with cluster.client(victim) as c:
            c.put(f"/stable/after-{victim.name}", "x")  # a full round through the leader
    assert cluster.leader() is leader
    assert all(cluster.status(n).term == term for n in cluster.nodes)


def test_leader_death_after_idle_links_elects_in_one_term(cluster: Cluster) -> None:
    """kill -9 of the leader after the cluster sat idle for longer than PySyncObj's
    connection timeout (3.5 s): both survivors see the leader's connection close and
    bring their election forward, and the first candidate wins in the next term.
    Before the keepalives, PySyncObj had silently timed out the idle link between
    the two followers, dropped the first vote request with it, and the election
    waited a whole timeout more (term + 2)."""
    leader = cluster.leader()
    term = cluster.status(leader).term
    time.sleep(RAFT_CONNECTION_TIMEOUT_S + 1.0)  # the scenario: links idle past the timeout
    cluster.kill(leader)
    survivors = [n for n in cluster.nodes if n is not leader]
    new = cluster.leader(survivors)
    assert cluster.status(new).term == term + 1
    for node in survivors:

        def noticed(node: NodeProc = node) -> bool:
            return "electing soon" in node.log_text()

        wait_for(f"{node.name} to log the closed leader connection", noticed)
    with cluster.client(*survivors) as c:
        assert c.put("/after-failover", "x").revision > 0


def test_follower_back_from_a_pause_does_not_depose_the_leader(cluster: Cluster) -> None:
    """SIGSTOP a follower for longer than the election and connection timeouts, then
    SIGCONT: its expired timer first asks the others for a pre-vote; they still hear
    the leader and say no, so the leader and the term stay. (PySyncObj alone starts
    an election at once, and the higher term deposes the healthy leader.)"""
    leader = cluster.leader()
    term = cluster.status(leader).term
    victim = next(n for n in cluster.nodes if n is not leader)
    cluster.pause(victim)
    time.sleep(RAFT_CONNECTION_TIMEOUT_S + 1.0)  # the scenario: a long pause
    cluster.resume(victim)
    with cluster.client(leader) as c:
        revision = c.put("/after-pause", "x").revision
    cluster.wait_applied(victim, revision)  # back in the cluster, caught up
    assert cluster.leader() is leader
    assert [cluster.status(n).term for n in cluster.nodes] == [term] * 3
