"""The pure parts of the etcd API, without a network: key spans, Range answers,
and txn planning over a real Store (guards, etcd's compare rules)."""

from __future__ import annotations

import pytest

from mcpctl import limits
from mcpctl._proto.etcd.etcdserverpb import rpc_pb2 as rpc
from mcpctl._proto.mcp.v1 import kv_pb2 as kv
from mcpctl._proto.mcp.v1 import raft_pb2 as raft
from mcpctl.errors import McpError
from mcpctl.server.etcd import ranges, txn
from mcpctl.server.etcd.convert import KeySpan, prefix_end, storable_cut
from mcpctl.state import Store
from mcpctl.state.keyspace import Span

R = rpc.RangeRequest
C = rpc.Compare


def test_prefix_end_as_etcd() -> None:
    assert prefix_end(b"/a/") == b"/a0"
    assert prefix_end(b"a\xff") == b"b"
    assert prefix_end(b"\xff\xff") == b"\x00"
    assert prefix_end(b"") == b"\x00"


def test_key_spans() -> None:
    single = KeySpan.of(b"/a", b"")
    assert single.single and single.contains(b"/a") and not single.contains(b"/ab")
    assert single.cover() == Span(b"/a", False)
    pre = KeySpan.of(b"/a/", b"/a0")
    assert pre.cover() == Span(b"/a/", True) and pre.store_prefix() == b"/a/"
    assert pre.contains(b"/a/x") and not pre.contains(b"/a0")
    rng = KeySpan.of(b"/a/b", b"/a/d")
    assert rng.cover() == Span(b"/a/", True) and rng.store_prefix() is None
    assert rng.contains(b"/a/c") and not rng.contains(b"/a/d")
    every = KeySpan.of(b"\x00", b"\x00")
    assert every.cover() == Span(b"", True) and every.store_prefix() == b""
    from_key = KeySpan.of(b"/m", b"\x00")
    assert from_key.contains(b"/z") and not from_key.contains(b"/a")
    assert from_key.store_prefix() is None
    with pytest.raises(McpError, match="etcdserver: key is not provided"):
        KeySpan.of(b"", b"")


def test_storable_cut_keeps_a_valid_utf8_start() -> None:
    assert storable_cut(b"/a\xc3\xa9") == b"/a\xc3\xa9"
    assert storable_cut(b"/a\xc3") == b"/a"
    assert storable_cut(b"/a\x00b") == b"/a"


def _kv(key: bytes, value: bytes, create: int, mod: int, version: int) -> kv.KeyValue:
    return kv.KeyValue(
        key=key, value=value, create_revision=create, mod_revision=mod, version=version
    )


ITEMS = [
    _kv(b"/a", b"3", 1, 6, 3),
    _kv(b"/b", b"1", 2, 2, 1),
    _kv(b"/c", b"2", 3, 5, 2),
    _kv(b"/d", b"0", 4, 4, 1),
]


def test_range_answer_count_limit_sort_filters() -> None:
    span = KeySpan.of(b"/a", b"/d")
    got = ranges.answer(R(limit=2), span, ITEMS)
    assert [i.key for i in got.kvs] == [b"/a", b"/b"] and got.count == 3 and got.more
    got = ranges.answer(R(sort_target=R.VALUE), span, ITEMS)  # target set: ascending
    assert [i.value for i in got.kvs] == [b"1", b"2", b"3"]
    got = ranges.answer(R(sort_target=R.MOD, sort_order=R.DESCEND, limit=1), span, ITEMS)
    assert [i.key for i in got.kvs] == [b"/a"] and got.more and got.count == 3
    got = ranges.answer(R(min_mod_revision=3, max_create_revision=2), span, ITEMS)
    assert [i.key for i in got.kvs] == [b"/a"] and got.count == 3  # count before filters
    got = ranges.answer(R(keys_only=True), span, ITEMS)
    assert all(i.value == b"" for i in got.kvs) and got.kvs[0].version == 3
    got = ranges.answer(R(count_only=True, limit=1), span, ITEMS)
    assert not got.kvs and got.count == 3 and not got.more
    got = ranges.answer(R(), span, ITEMS, response_bytes_max=40)
    assert len(got.kvs) == 1 and got.more


def _store(*puts: tuple[bytes, bytes]) -> Store:
    s = Store()
    for key, value in puts:
        s.apply(raft.InternalRequest(put=kv.PutRequest(key=key, value=value)))
    return s


def _run(s: Store, req: rpc.TxnRequest) -> rpc.TxnResponse | None:
    """Plan, apply the guarded txn; None when the guard failed (the caller would re-plan)."""
    plan = txn.plan(s, req)
    result = s.apply(raft.InternalRequest(txn=plan.request)).result
    assert isinstance(result, kv.TxnResponse)
    return (
        plan.answer(result, rpc.ResponseHeader(revision=s.revision)) if result.succeeded else None
    )


def test_txn_compares_follow_etcd() -> None:
    s = _store((b"/k", b"a"))
    put = rpc.RequestOp(request_put=rpc.PutRequest(key=b"/k", value=b"b"))
    # A VALUE compare on a missing key is false in etcd (ours would say "" == "").
    missing = rpc.TxnRequest(compare=[C(key=b"/nope", target=C.VALUE, value=b"")], success=[put])
    got = _run(s, missing)
    assert got is not None and not got.succeeded and not got.responses
    # An empty range compares as one zero key-value: VERSION = 0 holds.
    empty = C(key=b"/x", range_end=b"/y", target=C.VERSION, version=0)
    got = _run(s, rpc.TxnRequest(compare=[empty], success=[put]))
    assert got is not None and got.succeeded and got.responses[0].response_put.header.revision == 2
    lease = C(key=b"/k", target=C.LEASE, result=C.EQUAL, lease=0)
    got = _run(s, rpc.TxnRequest(compare=[lease]))
    assert got is not None and got.succeeded


def test_a_write_between_plan_and_apply_fails_the_guard() -> None:
    s = _store((b"/r/a", b"1"), (b"/r/b", b"2"))
    compare = C(key=b"/r/", range_end=b"/r0", target=C.VALUE, result=C.GREATER, value=b"0")
    req = rpc.TxnRequest(compare=[compare])
    plan = txn.plan(s, req)
    assert plan.succeeded
    s.apply(raft.InternalRequest(put=kv.PutRequest(key=b"/r/c", value=b"")))  # now false
    result = s.apply(raft.InternalRequest(txn=plan.request)).result
    assert isinstance(result, kv.TxnResponse) and not result.succeeded  # re-planned by the caller
    assert not txn.plan(s, req).succeeded


def test_delete_of_a_byte_range_is_one_delete_per_key_guarded() -> None:
    s = _store((b"/d/a", b"1"), (b"/d/b", b"2"), (b"/d/c", b"3"))
    d = rpc.DeleteRangeRequest(key=b"/d/a", range_end=b"/d/c", prev_kv=True)
    got = _run(s, rpc.TxnRequest(success=[rpc.RequestOp(request_delete_range=d)]))
    assert got is not None
    resp = got.responses[0].response_delete_range
    assert resp.deleted == 2 and [p.key for p in resp.prev_kvs] == [b"/d/a", b"/d/b"]
    assert s.get(b"/d/c") is not None and s.get(b"/d/a") is None


def test_txn_refusals_are_etcds() -> None:
    put = rpc.RequestOp(request_put=rpc.PutRequest(key=b"/k", value=b"1"))
    dup = rpc.TxnRequest(success=[put, put])
    with pytest.raises(McpError, match="duplicate key given in txn request"):
        txn.check(dup)
    deep = rpc.TxnRequest()
    for _ in range(limits.ETCD_TXN_DEPTH_MAX + 1):
        deep = rpc.TxnRequest(success=[rpc.RequestOp(request_txn=deep)])
    with pytest.raises(McpError, match="nested deeper") as e:
        txn.check(deep)
    assert e.value.code == "UNIMPLEMENTED"
    # A nested compare of a key written earlier in the same txn: refused with a sentence.
    s = _store()
    inner = rpc.TxnRequest(compare=[C(key=b"/k", target=C.VERSION, version=1)])
    both = rpc.TxnRequest(success=[put, rpc.RequestOp(request_txn=inner)])
    with pytest.raises(McpError, match="wrote before it"):
        txn.plan(s, both)
    with pytest.raises(McpError, match="too many operations"):
        txn.check(rpc.TxnRequest(success=[put] * 129))
    ignore = rpc.RequestOp(request_put=rpc.PutRequest(key=b"/k", ignore_value=True))
    with pytest.raises(McpError, match="etcdserver: key not found"):
        txn.plan(s, rpc.TxnRequest(success=[ignore]))
