"""Linearizable reads by ReadIndex on a real 3-node cluster (mcpctl/raft/readindex.py).

- reads write nothing to the Raft log: an idle cluster read many times, on the
  leader and on a follower, keeps its commit and applied index (and term);
- a follower's linearizable read sees a write acknowledged just before
  (through the leader or the other follower);
- a leader paused (SIGSTOP) and deposed meanwhile, resumed while the new
  majority is paused, serves no stale read (it cannot confirm a round).
"""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from mcpctl.client import Client
from mcpctl.errors import McpError
from tests.cluster import Cluster, running_cluster, wait_for

pytestmark = pytest.mark.cluster

READS = 200


def _log_position(cluster: Cluster) -> dict[str, tuple[int, int, int]]:
    out = {}
    for node in cluster.nodes:
        st = cluster.status(node)
        out[node.name] = (st.commit_index, st.applied_index, st.term)
    return out


def _settled(cluster: Cluster) -> dict[str, tuple[int, int, int]]:
    """The log positions once every member agrees (the last write's commit
    index reached the followers with the next heartbeat)."""

    def agreed() -> dict[str, tuple[int, int, int]] | None:
        pos = _log_position(cluster)
        return pos if len(set(pos.values())) == 1 else None

    return wait_for("every member at one commit index", agreed)


def test_linearizable_reads_do_not_grow_the_raft_log(cluster: Cluster) -> None:
    """Many linearizable gets (sequential and concurrent) on the leader and on a
    follower: the commit and applied indexes (and the term) are the same before and after
    on every member (a barrier entry per read batch would add at least one per
    sequential read)."""
    leader = cluster.leader()
    follower = next(n for n in cluster.nodes if n is not leader)
    with cluster.client(leader) as c:
        c.put("/ri/idle", "v")
    before = _settled(cluster)
    for node in (leader, follower):
        with Client([node.endpoint], timeout=5.0, attempts_max=1) as c:
            for _ in range(READS):
                got = c.get("/ri/idle")
                assert got.first is not None and got.first.text == "v"

            def burst(c: Client = c) -> None:
                for _ in range(READS // 4):
                    c.get("/ri/idle")

            threads = [threading.Thread(target=burst) for _ in range(4)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(60)
    after = _log_position(cluster)
    assert after == before, (before, after)


def test_follower_reads_see_the_write_acknowledged_just_before(cluster: Cluster) -> None:
    """A write acknowledged by the leader (or by the other follower) is seen by the
    very next linearizable read on a follower, every time."""
    leader = cluster.leader()
    f1, f2 = (n for n in cluster.nodes if n is not leader)
    with (
        Client([leader.endpoint], timeout=5.0, attempts_max=1) as on_leader,
        Client([f2.endpoint], timeout=5.0, attempts_max=1) as on_f2,
        Client([f1.endpoint], timeout=5.0, attempts_max=1) as on_f1,
    ):
        for i in range(60):
            writer = on_leader if i % 2 else on_f2
            put = writer.put("/ri/seq", str(i))
            got = on_f1.get("/ri/seq")
            assert got.first is not None and got.first.text == str(i), (i, got.first)
            assert got.first.mod_revision == put.revision


def test_a_paused_deposed_leader_serves_no_stale_read(tmp_path: Path) -> None:
    """SIGSTOP the leader; the others elect a new leader and acknowledge a write;
    SIGSTOP them too and SIGCONT the old leader. It still believes it leads
    (leader fallback set to 30 s here, so it does not step down on its own) and
    its store has the old value, but a linearizable read on it must not return
    that value: the read index round needs a majority answering *after* the
    read arrived. It fails (UNAVAILABLE) instead; once the others are back, the
    member serves the new value. (With the majority round skipped, or a
    time-based leader lease, the read returns the stale value.)"""
    with running_cluster(tmp_path, raft={"leader_fallback_ms": 30_000}) as cluster:
        cluster.wait_ready()
        old = cluster.leader()
        others = [n for n in cluster.nodes if n is not old]
        with cluster.client(old) as c:
            c.put("/ri/paused", "before")
        cluster.pause(old)
        try:
            new = cluster.leader(others)
            with Client([new.endpoint], timeout=10.0) as c:
                c.put("/ri/paused", "after")
            for node in others:
                cluster.pause(node)
            cluster.resume(old)
            with Client([old.endpoint], timeout=10.0, attempts_max=1) as c:
                local = c.get("/ri/paused", serializable=True).first
                assert local is not None and local.text == "before"  # its store is stale
                with pytest.raises(McpError) as err:
                    got = c.get("/ri/paused").first
                    pytest.fail(f"a deposed leader served a linearizable read: {got}")
                assert err.value.code in ("UNAVAILABLE", "DEADLINE_EXCEEDED"), err.value
        finally:
            for node in cluster.nodes:
                cluster.resume(node)
        with Client([old.endpoint], timeout=5.0, attempts_max=1) as c:

            def fresh() -> bool | None:
                try:
                    got = c.get("/ri/paused").first
                except McpError:
                    return None
                return True if got is not None and got.text == "after" else None

            wait_for("the old leader to serve the new value", fresh, timeout_s=30)
