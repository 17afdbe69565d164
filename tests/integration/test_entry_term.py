"""The lease fence reaches the store through the real Raft adapter.

A lease expiry or checkpoint applies only when its proposer term equals the
term of the log entry carrying it (docs/leases.md, "The fence"). The pure
store is table-tested for that; this test checks the other half, on a real
single-member PySyncObj: the adapter hands the store the term of the entry
being applied — on the live path and again when the journal is replayed at
a restart, so every member (and every restart) reaches the same state.
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
from mcpctl.raft.status import ProposeError, RaftSettings, Role
from mcpctl.state import HistoryLimits
from tests.cluster import free_ports, wait_for

SECRET = "entry-term-test-secret"


def start(data_dir: Path, port: int) -> RaftNode:
    node = RaftNode(
        RaftSettings(
            self_address=f"127.0.0.1:{port}",
            bind_address=f"127.0.0.1:{port}",
            partner_addresses=[],
            data_dir=data_dir,
            secret=SECRET,
        ),
        HistoryLimits(),
    )
    assert node.wait_bound()
    wait_for("leader", lambda: (node.status.role == Role.LEADER and node.status.restored) or None)
    return node


def propose(node: RaftNode, *requests: raft.InternalRequest) -> list[Any]:
    done = threading.Event()
    out: list[Any] = []

    def callback(results: Any, err: ProposeError) -> None:
        out.extend([results, err])
        done.set()

    node.propose(raft.InternalBatch(requests=list(requests)), callback)
    assert done.wait(10.0), "proposal not answered"
    results, err = out
    assert err == ProposeError.SUCCESS
    return list(results)


def checkpoint(term: int, lease_id: int, remaining_ms: int) -> raft.InternalRequest:
    return raft.InternalRequest(
        lease_checkpoint=raft.LeaseCheckpointRequest(
            checkpoints=[raft.LeaseCheckpoint(id=lease_id, remaining_ms=remaining_ms)],
            proposer_term=term,
        )
    )


def remaining_ms(node: RaftNode, lease_id: int) -> int:
    info = node.consumer.read(lambda s: s.lease(lease_id))
    assert info is not None
    return int(info.remaining_ms)


@pytest.fixture
def data_dir(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path / "member"


def test_fence_uses_the_entry_term_live_and_on_journal_replay(data_dir: Path) -> None:
    (port,) = free_ports(1)
    node = start(data_dir, port)
    try:
        first_term = node.status.term
        grant = raft.InternalRequest(lease_grant=kv.LeaseGrantRequest(id=7, ttl=60))
        propose(node, grant)
        (ours,) = propose(node, checkpoint(first_term, 7, 30_000))
        assert ours.result == raft.LeaseCheckpointResponse(recorded=[7])
        assert remaining_ms(node, 7) == 30_000
    finally:
        assert node.destroy()

    # Restarted: the journal is replayed with each entry's own term (a replay with
    # the node's current term would fence the checkpoint above and diverge).
    node = start(data_dir, port)
    try:
        term = node.status.term
        assert term > first_term
        assert remaining_ms(node, 7) == 30_000
        (stale,) = propose(node, checkpoint(first_term, 7, 1_000))  # a deposed leader's
        (future,) = propose(node, checkpoint(term + 1, 7, 2_000))
        assert stale.result == raft.LeaseCheckpointResponse(fenced=True)
        assert future.result == raft.LeaseCheckpointResponse(fenced=True)
        assert remaining_ms(node, 7) == 30_000
        (ours,) = propose(node, checkpoint(term, 7, 20_000))
        assert ours.result == raft.LeaseCheckpointResponse(recorded=[7])
        assert remaining_ms(node, 7) == 20_000
    finally:
        assert node.destroy()
