"""Status right after an election (issue #19, item 3): a follower whose match
index the new leader has not heard yet is reported as unknown (-1 in the API,
null in `-w json`), not as behind by the whole log and lagging by the
cluster's age. No network: the adapter function, the combining and the printer."""

from __future__ import annotations

from mcpctl._proto.mcp.v1 import cluster_pb2 as cluster
from mcpctl._proto.mcp.v1 import kv_pb2 as kv
from mcpctl.raft.status import IndexClock, peer_progress
from mcpctl.server.cluster_status import combine_status
from mcpctl.server.peers import MemberInfo
from mcpctl.status_view import status_json

LOG_START_S = 100.0
NOW_S = 155.0


def clock_with_log(last_index: int) -> IndexClock:
    clock = IndexClock()
    for i in range(1, last_index + 1):
        clock.record(i, LOG_START_S + i * 0.01)
    return clock


def test_match_index_zero_after_election_is_unknown_not_the_whole_log() -> None:
    """PySyncObj starts every match index at 0 when a leader is elected."""
    p = peer_progress(
        clock_with_log(2189), "127.0.0.1:1", 0, 2189, NOW_S, contact_age_s=0.0, connected=True
    )
    assert p.match_index is None and p.entries_behind is None and p.lag_s is None


def test_a_heard_match_index_gives_entries_behind_and_lag() -> None:
    clock = clock_with_log(2189)
    behind = peer_progress(
        clock, "127.0.0.1:1", 2180, 2189, NOW_S, contact_age_s=0.0, connected=True
    )
    assert behind.match_index == 2180 and behind.entries_behind == 9
    assert behind.lag_s is not None and behind.lag_s > 0
    caught_up = peer_progress(
        clock, "127.0.0.1:1", 2189, 2189, NOW_S, contact_age_s=0.0, connected=True
    )
    assert caught_up.entries_behind == 0 and caught_up.lag_s == 0.0


def test_combined_status_and_json_show_unknown_for_an_unheard_member() -> None:
    members = [MemberInfo(f"n{i}", f"127.0.0.1:{i}", f"127.0.0.1:{10 + i}") for i in (1, 2, 3)]
    leader = cluster.StatusResponse(
        member_name="n2",
        role="leader",
        term=3,
        commit_index=2190,
        applied_index=2190,
        peers=[
            cluster.PeerProgress(member_name="n1", entries_behind=-1, lag_ms=-1),
            cluster.PeerProgress(member_name="n3", entries_behind=-1, lag_ms=-1),
        ],
    )
    # Up, not heard by the new leader yet, applying its last two entries.
    follower = cluster.StatusResponse(
        member_name="n3",
        role="follower",
        term=3,
        commit_index=2190,
        applied_index=2188,
        apply_lag_ms=5,
    )
    answers: dict[str, cluster.StatusResponse | str] = {
        "n1": "unavailable: connection refused",
        "n2": leader,
        "n3": follower,
    }
    rows = {m.member_name: m for m in combine_status(kv.ResponseHeader(), members, answers).members}
    assert (rows["n1"].entries_behind, rows["n1"].lag_ms) == (-1, -1)
    assert (rows["n3"].entries_behind, rows["n3"].lag_ms) == (-1, -1)
    shown = status_json(rows["n1"], "n2")
    assert shown["entries_behind"] is None and shown["lag_ms"] is None
    assert shown["health"] == "unreachable"
    shown = status_json(rows["n3"], "n2")
    assert shown["entries_behind"] is None and shown["lag_ms"] is None
