"""The published Raft status is skipped on ticks where nothing it is built from
changed (``RaftNode._status_unchanged``), and is never behind on those that did.

Three real members (PySyncObj tick threads, real sockets, fsynced journals) in
this process. A check registered after ``RaftNode._on_tick`` runs at the end of
every tick on the tick thread and compares the published status with
PySyncObj's live values; a status read that were skipped after a change would
show there, on that very tick. The leader's full reads are counted against its
ticks while writes go through: followers' acks move nothing the status is
built from, so the leader reads on fewer ticks than it runs. The connection
guard (``RaftNode._guard_listener``) runs at most once per tick period too.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mcpctl._proto.mcp.v1 import kv_pb2 as kv
from mcpctl._proto.mcp.v1 import raft_pb2 as raft
from mcpctl.raft.node import RaftNode
from mcpctl.raft.status import ProposeError, RaftSettings, RaftStatus, Role
from mcpctl.state import HistoryLimits
from tests.cluster import free_ports, wait_for

SECRET = "status-publish-test-secret"
WRITES = 60


def live_view(node: RaftNode) -> tuple[Any, ...]:
    """What the status must show at the end of a tick (read on the tick thread)."""
    sync = node._sync
    leader = sync._getLeader()
    return (
        sync.raftCurrentTerm,
        leader.address if leader is not None else None,
        sync._isLeader(),
        sync.raftCommitIndex,
        sync.raftLastApplied,
        sync.last_log_index(),
        sorted(n.address for n in sync.otherNodes if sync.isNodeConnected(n)),
    )


def published_view(status: RaftStatus) -> tuple[Any, ...]:
    return (
        status.term,
        status.leader,
        status.role == Role.LEADER,
        status.commit_index,
        status.applied_index,
        status.last_log_index,
        sorted(a for a, up in status.connected.items() if up),
    )


class Watch:
    """Runs after ``_on_tick`` on every tick: counts ticks and full reads, and
    records every tick whose published status differs from the live values."""

    def __init__(self, node: RaftNode) -> None:
        self.node = node
        self.ticks = 0
        self.reads = 0
        self.guards = 0
        self.behind: list[tuple[Any, ...]] = []
        real = node._read_status

        def counted() -> RaftStatus:
            self.reads += 1
            return real()

        node._read_status = counted  # type: ignore[method-assign]
        sync = node._sync
        unknown = sync.unknown_connections

        def guarded() -> set[Any]:
            self.guards += 1
            return unknown()

        sync.unknown_connections = guarded  # type: ignore[method-assign]
        node._sync.addOnTickCallback(self.check)

    def check(self) -> None:
        self.ticks += 1
        if not self.node.restored:
            return
        live, shown = live_view(self.node), published_view(self.node.status)
        if live != shown:
            self.behind.append((live, shown))


@pytest.fixture
def members(tmp_path: Path) -> Iterator[list[RaftNode]]:
    ports = free_ports(3)
    addresses = [f"127.0.0.1:{p}" for p in ports]
    nodes: list[RaftNode] = []
    try:
        for i, address in enumerate(addresses):
            node = RaftNode(
                RaftSettings(
                    self_address=address,
                    bind_address=address,
                    partner_addresses=[a for a in addresses if a != address],
                    data_dir=tmp_path / f"m{i}",
                    secret=SECRET,
                ),
                HistoryLimits(),
            )
            nodes.append(node)
            assert node.wait_bound()
        yield nodes
    finally:
        for node in nodes:
            node.destroy()


def put(node: RaftNode, i: int) -> None:
    done = threading.Event()
    errors: list[ProposeError] = []

    def callback(results: Any, err: ProposeError) -> None:
        errors.append(err)
        done.set()

    request = raft.InternalRequest(put=kv.PutRequest(key=b"/k%d" % i, value=b"v"))
    node.propose(raft.InternalBatch(requests=[request]), callback)
    assert done.wait(10.0), "proposal not answered"
    assert errors == [ProposeError.SUCCESS]


def test_the_status_is_read_when_it_changed_and_skipped_when_not(
    members: list[RaftNode],
) -> None:
    leader = wait_for(
        "a leader, restored, every member connected",
        lambda: next(
            (
                n
                for n in members
                if n.status.role == Role.LEADER
                and all(m.restored for m in members)
                and all(n.status.connected.values())
                and len(n.status.connected) == 2
            ),
            None,
        ),
    )
    watches = [Watch(n) for n in members]
    for i in range(WRITES):
        put(leader, i)
    last = leader.status.applied_index
    wait_for(
        "every member applied the writes",
        lambda: all(m.status.applied_index >= last for m in members),
    )
    for w in watches:
        assert w.behind == [], f"published status behind the live values: {w.behind[:3]}"
    lead = watches[members.index(leader)]
    print(f"leader: {lead.reads} status reads, {lead.guards} guards in {lead.ticks} ticks")
    assert lead.reads < lead.ticks, (lead.reads, lead.ticks)
    assert lead.guards < lead.ticks, (lead.guards, lead.ticks)
