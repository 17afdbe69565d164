"""Two independent clusters with the same names report different cluster ids and member
ids; one cluster keeps its ids across a full restart, and a member added later reports
the same cluster id (issue #19, item 7). One real cluster at a time."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.cluster import Cluster, NodeProc, running_cluster

pytestmark = pytest.mark.cluster

CLIENT_TIMEOUT_S = 30.0


def header_ids(cluster: Cluster, nodes: list[NodeProc]) -> dict[str, tuple[int, int]]:
    """Each node's (cluster_id, member_id), from the header of a read it served itself."""
    out = {}
    for node in nodes:
        with cluster.client(node, timeout=CLIENT_TIMEOUT_S) as c:
            header = c.get("/", serializable=True).header
        assert header.member_name == node.name
        out[node.name] = (header.cluster_id, header.member_id)
    return out


def test_same_names_different_clusters_and_ids_survive_restart_and_member_add(
    tmp_path: Path,
) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    with running_cluster(tmp_path / "a") as a:
        first = header_ids(a, a.nodes)
        for node in a.nodes:
            a.stop(node)
        a.start_all()
        assert header_ids(a, a.nodes) == first  # a full restart keeps every id
        n4 = a.new_member("n4")
        with a.client(*a.nodes[:3], timeout=CLIENT_TIMEOUT_S) as c:
            c.member_add("n4", f"127.0.0.1:{n4.raft_port}", n4.endpoint)
        a.start(n4)
        a.wait_ready([n4])
        joined = header_ids(a, [n4])["n4"]
    cluster_ids = {c for c, _ in first.values()}
    assert len(cluster_ids) == 1, first  # every member agrees
    assert len({m for _, m in first.values()}) == 3, first
    assert joined[0] in cluster_ids and joined[1] not in {m for _, m in first.values()}

    with running_cluster(tmp_path / "b") as b:  # the same names n1..n3, cluster "test"
        other = header_ids(b, b.nodes)
    assert sorted(other) == sorted(first)
    assert {c for c, _ in other.values()}.isdisjoint(cluster_ids)
    assert {m for _, m in other.values()}.isdisjoint(m for _, m in first.values())
