"""Cluster status assembly: every member's own Status merged with the leader's view.

Pure (no I/O): the node gathers the answers, ``combine_status`` builds the
``ClusterStatusResponse``. What nobody knows is ``UNKNOWN`` (-1, documented).
"""

from __future__ import annotations

from mcpctl._proto.mcp.v1 import cluster_pb2 as cluster
from mcpctl._proto.mcp.v1 import kv_pb2 as kv
from mcpctl.server.peers import MemberInfo

# What the status messages say for a number nobody knows (documented: -1).
UNKNOWN = -1


def combine_status(
    header: kv.ResponseHeader,
    members: list[MemberInfo],
    answers: dict[str, cluster.StatusResponse | str],
) -> cluster.ClusterStatusResponse:
    """Merge each member's own Status with the leader's view of replication.

    The leader is the reachable member that says it leads, at the highest
    term. Without one, what only a leader knows (entries behind, lag, last
    contact) is -1 (unknown); so are entries behind and lag of a member whose
    match index the leader has not heard yet (right after an election).
    """
    leaders = [a for a in answers.values() if not isinstance(a, str) and a.role == "leader"]
    leader = max(leaders, key=lambda a: a.term) if leaders else None
    progress = {p.member_name: p for p in leader.peers} if leader else {}
    out = cluster.ClusterStatusResponse(header=header, leader=leader.member_name if leader else "")
    for m in members:
        row = out.members.add(member_name=m.name, endpoint=m.client, raft_address=m.raft)
        answer = answers.get(m.name, "no answer")
        backlog = 0
        if isinstance(answer, str):
            row.reachable = False
            row.error = answer
        else:
            row.reachable = True
            row.role = answer.role
            row.term = answer.term
            row.commit_index = answer.commit_index
            row.applied_index = answer.applied_index
            row.revision = answer.revision
            backlog = max(0, answer.commit_index - answer.applied_index)
        if leader is None:
            row.entries_behind = row.lag_ms = row.last_contact_ms = -1
        elif m.name == leader.member_name:
            row.entries_behind = backlog
            row.lag_ms = leader.apply_lag_ms
            row.last_contact_ms = 0
        elif m.name in progress:
            p = progress[m.name]
            # -1: the leader has not heard this member's match index yet.
            row.entries_behind = p.entries_behind + backlog if p.entries_behind >= 0 else UNKNOWN
            own_lag = answer.apply_lag_ms if not isinstance(answer, str) else 0
            row.lag_ms = max(p.lag_ms, own_lag) if p.lag_ms >= 0 else UNKNOWN
            row.last_contact_ms = p.last_contact_ms
        else:
            row.entries_behind = row.lag_ms = row.last_contact_ms = -1
    return out
