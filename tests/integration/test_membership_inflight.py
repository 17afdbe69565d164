"""One membership change at a time: a second change while the first has not
committed is refused with a clear FAILED_PRECONDITION, on a real one-member
node in this process. (PySyncObj 0.3.17 does not enforce this itself: its
in-flight change index is never set; the node does.)"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from mcpctl._proto.mcp.v1 import cluster_pb2 as cluster
from mcpctl.errors import FailedPrecondition, OutcomeUnknown
from mcpctl.raft.status import Role
from mcpctl.server import config
from mcpctl.server.app import build_node, build_raft
from tests.cluster import free_ports

SECRET = "membership-inflight-test-secret"


def test_second_change_while_one_is_in_flight_is_refused(tmp_path: Path) -> None:
    """Adding a member that is not running to a one-member cluster cannot commit
    (2 of 2 needed); while it is pending, another change is refused with a reason.
    The public MemberAdd refuses even the first one: below quorum."""
    raft_port, client_port = free_ports(2)
    cfg = config.load(
        None,
        env={},
        overrides={
            "name": "n1",
            "data_dir": str(tmp_path / "data"),
            "cluster.members": [
                {
                    "name": "n1",
                    "raft": f"127.0.0.1:{raft_port}",
                    "client": f"127.0.0.1:{client_port}",
                }
            ],
            "cluster.secret": SECRET,
        },
    )
    raft = build_raft(cfg, SECRET)
    assert raft.wait_bound()
    try:
        deadline = time.monotonic() + 30
        while raft.status.role != Role.LEADER and time.monotonic() < deadline:
            time.sleep(0.02)
        assert raft.status.role == Role.LEADER

        async def scenario() -> None:
            node = build_node(cfg, raft, SECRET).node
            with pytest.raises(FailedPrecondition, match="below quorum"):
                await node.member_add(
                    cluster.MemberAddRequest(
                        name="n2", raft_address="127.0.0.1:1", client_address="127.0.0.1:2"
                    ),
                    5.0,
                )
            # Below the public API: the Raft change itself, which cannot commit.
            with pytest.raises(OutcomeUnknown):
                await node._change(True, "127.0.0.1:1", 1.0)
            # It is still in flight: every further change is refused with a reason.
            for call in (
                node.member_add(
                    cluster.MemberAddRequest(
                        name="n3", raft_address="127.0.0.1:3", client_address="127.0.0.1:4"
                    ),
                    5.0,
                ),
                node.member_remove(cluster.MemberRemoveRequest(name="n1"), 5.0),
            ):
                with pytest.raises(FailedPrecondition, match="another membership change"):
                    await call
            await node.peers.close()

        asyncio.run(scenario())
    finally:
        raft.destroy()
