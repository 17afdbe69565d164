"""Response headers are built once per (revision, term) and shared: every answer
still gets the revision and term of the moment, and a header handed out is a
copy nobody else sees change. The real replicated store (StoreConsumer); of the
Raft node only its published status (a real RaftStatus), swapped as the tick
thread swaps it."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

from mcpctl._proto.mcp.v1 import kv_pb2 as kv
from mcpctl._proto.mcp.v1 import raft_pb2 as raft
from mcpctl.raft.snapshot import StoreConsumer
from mcpctl.raft.status import RaftStatus
from mcpctl.server.identity import Identity
from mcpctl.server.node import Node
from mcpctl.state import HistoryLimits


class PublishedStatus:
    """What Node reads of a RaftNode: the store and the status last published."""

    def __init__(self) -> None:
        self.consumer = StoreConsumer(HistoryLimits())
        self.status = RaftStatus(term=1, restored=True)

    def put(self, key: bytes) -> None:
        req = raft.InternalRequest(put=kv.PutRequest(key=key, value=b"v"))
        self.consumer.read(lambda store: store.apply(req))

    def new_term(self, term: int) -> None:
        self.status = dataclasses.replace(self.status, term=term)


def _node() -> tuple[Node, PublishedStatus]:
    raft_node: Any = PublishedStatus()
    return Node(Identity("c", "n1", 7, 9), raft_node, proposer=None), raft_node  # type: ignore[arg-type]


def _get(node: Node, key: bytes) -> kv.RangeResponse:
    return asyncio.run(node.range(kv.RangeRequest(key=key, serializable=True), 5.0))


def test_each_answer_has_the_revision_and_term_of_its_moment() -> None:
    node, raft_node = _node()
    raft_node.put(b"/a")
    first = _get(node, b"/a").header
    assert (first.revision, first.raft_term, first.member_name) == (1, 1, "n1")
    assert (first.cluster_id, first.member_id) == (7, 9)
    raft_node.put(b"/b")
    assert _get(node, b"/a").header.revision == 2
    raft_node.new_term(3)
    assert (_get(node, b"/a").header.raft_term, node.header().raft_term) == (3, 3)
    assert node.header(1).revision == 1  # an older revision asked for explicitly


def test_a_header_handed_out_is_a_copy() -> None:
    node, raft_node = _node()
    raft_node.put(b"/a")
    given = node.header()
    given.revision = 99
    given.member_name = "changed"
    again = node.header()
    assert (again.revision, again.member_name) == (1, "n1")
    answer = _get(node, b"/a")
    answer.header.revision = 42
    assert _get(node, b"/a").header.revision == 1
