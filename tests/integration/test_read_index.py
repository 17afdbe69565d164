"""Linearizable reads by ReadIndex on a real 3-node cluster (mcpctl/raft/readindex.py).

- reads write nothing to the Raft log: an idle cluster read many times, on the
  leader and on a follower, keeps its commit and applied index (and term);
- a follower's linearizable read sees a write acknowledged just before
  (through the leader or the other follower);
- a deposed leader serves no stale read: tests/chaos/test_read_index_partition.py
  (a real network cut). A SIGSTOP version cannot show it on one host: the new
  leader's messages wait in the paused leader's socket, and it steps down as
  soon as it resumes, before any read reaches it.
"""

from __future__ import annotations

import threading

import pytest

from mcpctl.client import Client
from tests.cluster import Cluster, wait_for

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
        for i in range(200):
            writer = on_leader if i % 2 else on_f2
            put = writer.put("/ri/seq", str(i))
            got = on_f1.get("/ri/seq")
            assert got.first is not None and got.first.text == str(i), (i, got.first)
            assert got.first.mod_revision == put.revision
