"""A Range answer sent as bytes (``Store.range_wire`` behind the shared header's
bytes, ``Node.range_wire``) is the very encoding of the message the store's
``range`` answers with that header: same fields, canonical order."""

from __future__ import annotations

import pytest

from mcpctl._proto.mcp.v1 import kv_pb2 as kv
from mcpctl._proto.mcp.v1 import raft_pb2 as raft
from mcpctl.state import Store
from mcpctl.state.records import framed

HEADER = kv.ResponseHeader(cluster_id=7, member_id=9, member_name="node-1", revision=0, raft_term=3)


def _store() -> Store:
    store = Store()
    for i in range(5):
        key = f"/a/k{i}".encode()
        store.apply(raft.InternalRequest(put=kv.PutRequest(key=key, value=b"v" * 40 * i)))
    store.apply(raft.InternalRequest(put=kv.PutRequest(key=b"/a/k1", value=b"changed")))
    return store


@pytest.mark.parametrize(
    "req",
    [
        kv.RangeRequest(key=b"/a/k1"),
        kv.RangeRequest(key=b"/a/none"),
        kv.RangeRequest(key=b"/a/", prefix=True),
        kv.RangeRequest(key=b"/a/", prefix=True, limit=2),
        kv.RangeRequest(key=b"/a/", prefix=True, keys_only=True),
        kv.RangeRequest(key=b"/a/", prefix=True, count_only=True),
        kv.RangeRequest(key=b"/a/k1", revision=2),  # a past revision
    ],
    ids=["key", "absent", "prefix", "limit", "keys_only", "count_only", "past"],
)
def test_range_bytes_are_the_encoding_of_the_answer(req: kv.RangeRequest) -> None:
    store = _store()
    header = kv.ResponseHeader()
    header.CopyFrom(HEADER)
    header.revision = store.revision
    wire = framed(b"\x0a", header.SerializeToString()) + store.range_wire(req, 1 << 20)
    expected = store.range(req, 1 << 20)
    expected.header.CopyFrom(header)
    assert wire == expected.SerializeToString()
    assert kv.RangeResponse.FromString(wire) == expected


@pytest.mark.parametrize("key", [b"/a/k1", b"/a/k4", b"/a/none"])
@pytest.mark.parametrize("limit", [0, 1, 5])
def test_one_key_answers_as_the_general_path_does(key: bytes, limit: int) -> None:
    """A read of one key at the current revision takes a short path; its bytes are
    those of the general one (here: a prefix that matches that key only)."""
    store = _store()
    one = store.range_wire(kv.RangeRequest(key=key, limit=limit), 1 << 20)
    general = store.range_wire(kv.RangeRequest(key=key, prefix=True, limit=limit), 1 << 20)
    assert one == general
    assert one == store.range_wire(kv.RangeRequest(key=key, limit=limit), 1)  # the byte cap
