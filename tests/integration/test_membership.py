"""Runtime membership on a real cluster: add a fourth member, it catches up,
remove it again; unsafe changes are refused with a message saying why."""

from __future__ import annotations

import subprocess
from pathlib import Path

import grpc
import pytest

from mcpctl._proto.mcp.v1 import cluster_pb2 as cluster_pb
from mcpctl._proto.mcp.v1 import cluster_pb2_grpc as cluster_grpc
from mcpctl.errors import FailedPrecondition, InvalidArgument, NotFound
from tests.cluster import Cluster, NodeProc, running_cluster, wait_for

pytestmark = pytest.mark.cluster


def names(c: Cluster) -> list[str]:
    with c.client(*[n for n in c.nodes if n.running]) as client:
        return sorted(m.name for m in client.member_list())


def stops_by_itself(node: NodeProc, within_s: float = 15.0) -> int:
    """The exit code of a removed member, which stops once it learns it was removed."""
    assert node.proc is not None
    try:
        return node.proc.wait(within_s)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{node.name} still runs {within_s} s after; its log:\n{node.log_text()}")


def test_add_a_fourth_member_it_catches_up_from_a_snapshot_then_remove_it(
    tmp_path: Path,
) -> None:
    """member add + start: the new member gets everything (the leader has compacted
    its log, so through a snapshot), takes part in commits; member remove: it
    is gone from the member list and stops serving by itself."""
    with running_cluster(tmp_path, raft={"compaction_min_entries": 100}) as cluster:
        with cluster.client() as c:
            for i in range(300):
                c.put(f"/before/{i % 40}", str(i))
            expected = {kv.key: kv.text for kv in c.get("/before/", prefix=True).kvs}
        n4 = cluster.new_member("n4")
        with cluster.client(*cluster.nodes[:3]) as c:
            after_add = c.member_add("n4", f"127.0.0.1:{n4.raft_port}", n4.endpoint)
        assert sorted(m.name for m in after_add) == ["n1", "n2", "n3", "n4"]
        cluster.start(n4)
        cluster.wait_ready([n4])
        with cluster.client(n4) as c:
            got = c.get("/before/", prefix=True, serializable=True)
            assert {kv.key: kv.text for kv in got.kvs} == expected
        assert "snapshot installed" in n4.log_text()
        # With 4 voters the quorum is 3: with one old member down, n4 must ack.
        cluster.kill(cluster.nodes[2])
        with cluster.client(cluster.nodes[0], cluster.nodes[1], n4) as c:
            c.put("/needs-n4", "yes")
        cluster.start(cluster.nodes[2])
        cluster.wait_ready(cluster.nodes[:3])
        with cluster.client(*cluster.nodes[:3]) as c:
            after_remove = c.member_remove("n4")
        assert sorted(m.name for m in after_remove) == ["n1", "n2", "n3"]
        assert stops_by_itself(n4) == 0
        assert "removed from the cluster" in n4.log_text()
        assert names(cluster) == ["n1", "n2", "n3"]
        with cluster.client(*cluster.nodes[:3]) as c:
            assert c.put("/after-remove", "x").revision > 0


def test_a_member_that_has_not_applied_its_removal_is_not_removed_yet(
    tmp_path: Path,
) -> None:
    """member remove of a member that is up but frozen (SIGSTOP): the leader
    cannot hear it applied its tombstone, and once the removal is appended it
    would send it nothing more, so it refuses (retry) and the member stays a
    voter. Resumed, the member applies its tombstone and stops by itself; the
    retried remove goes through."""
    with running_cluster(tmp_path) as cluster:
        n4 = cluster.new_member("n4")
        with cluster.client(*cluster.nodes[:3]) as c:
            c.member_add("n4", f"127.0.0.1:{n4.raft_port}", n4.endpoint)
        cluster.start(n4)
        cluster.wait_ready([n4])
        leader = cluster.leader()
        cluster.pause(n4)
        # One call, straight to the leader (the SDK would retry until its
        # deadline), with a short deadline (the leader waits half of it):
        # PySyncObj drops a connection it has read nothing from for 3.5 s, and
        # a member whose connection is down counts as down, not waited for.
        with grpc.insecure_channel(leader.endpoint) as channel:
            remove = cluster_grpc.ClusterStub(channel).MemberRemove
            with pytest.raises(grpc.RpcError) as refused:
                remove(cluster_pb.MemberRemoveRequest(name="n4"), timeout=2.5)
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "not applied its removal notice" in (refused.value.details() or "")
        with cluster.client(*cluster.nodes[:3]) as c:
            assert sorted(m.name for m in c.member_list()) == ["n1", "n2", "n3", "n4"]
            cluster.resume(n4)
            assert stops_by_itself(n4) == 0
            assert sorted(m.name for m in c.member_remove("n4")) == ["n1", "n2", "n3"]
            assert c.put("/after-remove", "x").revision > 0
        assert "removed from the cluster" in n4.log_text()


def test_a_member_removed_while_it_could_not_hear_the_leader_stops_once_it_can(
    tmp_path: Path,
) -> None:
    """member remove of a member frozen (SIGSTOP) past PySyncObj's 3.5 s
    connection timeout: the leader counts it as down and removes it without
    its tombstone. Resumed, it hears no leader, asks the other members, finds a
    leader with quorum that no longer lists it, and stops by itself instead of
    running on as a lone candidate."""
    with running_cluster(tmp_path) as cluster:
        n4 = cluster.new_member("n4")
        with cluster.client(*cluster.nodes[:3]) as c:
            c.member_add("n4", f"127.0.0.1:{n4.raft_port}", n4.endpoint)
        cluster.start(n4)
        cluster.wait_ready([n4])
        cluster.pause(n4)
        with cluster.client(*cluster.nodes[:3], timeout=30.0) as c:
            assert sorted(m.name for m in c.member_remove("n4")) == ["n1", "n2", "n3"]
        cluster.resume(n4)
        assert stops_by_itself(n4, within_s=40.0) == 0
        assert "no longer a voter" in n4.log_text()
        with cluster.client(*cluster.nodes[:3]) as c:
            assert c.put("/after-remove", "x").revision > 0


def test_removing_the_leader_hands_leadership_over_first(cluster: Cluster) -> None:
    """member remove of the current leader: it hands over, the rest elect, and the
    removed member stops; the two left still take writes."""
    leader = cluster.leader()
    with cluster.client(*[n for n in cluster.nodes if n is not leader]) as c:
        # The leader refuses a removal it cannot prove safe: wait until it has
        # heard from both followers (right after start-up it may not have yet).
        wait_for(
            "the leader to hear from every member",
            lambda: all(
                m.reachable and 0 <= m.last_contact_ms <= 1000 for m in c.cluster_status().members
            ),
        )
        members = c.member_remove(leader.name)
        assert sorted(m.name for m in members) == sorted(
            n.name for n in cluster.nodes if n is not leader
        )
        assert leader.proc is not None and leader.proc.wait(15) == 0
        assert c.put("/two-left", "ok").revision > 0


def test_unsafe_or_bad_changes_are_refused_with_a_reason(cluster: Cluster) -> None:
    """Refused: removing below quorum, adding while a member is down (quorum),
    a duplicate name or address, an unknown name, a bad address."""
    leader = cluster.leader()
    with cluster.client() as c:
        with pytest.raises(FailedPrecondition, match="already"):
            c.member_add("n1", "127.0.0.1:1", "127.0.0.1:2")
        with pytest.raises(FailedPrecondition, match="already a member"):
            c.member_add("n9", f"127.0.0.1:{leader.raft_port}", "127.0.0.1:2")
        with pytest.raises(NotFound):
            c.member_remove("nobody")
        with pytest.raises(InvalidArgument):
            c.member_add("n9", "not-an-address", "127.0.0.1:2")
    down = next(n for n in cluster.nodes if n is not leader)
    cluster.kill(down)
    up = [n for n in cluster.nodes if n.running]
    with cluster.client(*up) as c:
        wait_for(
            "the leader to notice the member is down",
            lambda: (
                not next(
                    m for m in c.cluster_status().members if m.member_name == down.name
                ).reachable
            ),
        )
        with pytest.raises(FailedPrecondition, match="below quorum"):
            c.member_add("n4", "127.0.0.1:1", "127.0.0.1:2")
        other = next(n for n in up if n is not leader)
        with pytest.raises(FailedPrecondition, match="below quorum"):
            c.member_remove(other.name)
        # Nothing changed.
        assert sorted(m.name for m in c.member_list()) == ["n1", "n2", "n3"]
