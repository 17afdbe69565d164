"""etcd's Txn over the store's, optimistically (pure: runs under the store's lock).

etcd's compares differ from ours (byte ranges, the LEASE target, a VALUE
compare on a missing key is false, an empty range compares as one zero
key-value), and its writes take byte ranges and ``ignore_value``/
``ignore_lease``. So ``plan`` evaluates the compares exactly as etcd does on
the store as it is now (revision R), picks the branch, and turns it into one
store txn *guarded* by compares the store can check: every key it looked at
still has the mod_revision it saw (a range: nothing under the covering prefix
changed since R and no key came or went). When the guard fails something
changed since R: the caller plans again (``ETCD_TXN_ATTEMPTS_MAX``). So the
txn is atomic and its compares hold at the revision it commits at, as in etcd.

A nested txn (``request_txn``) is planned the same way, its compares evaluated
on the same state and guarded, its branch's ops flattened into the one store
txn in order. Its compares must not touch keys the txn wrote before it (the
state planned on does not have those writes yet): UNIMPLEMENTED, with the
sentence.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from mcpctl import limits, validate
from mcpctl._proto.etcd.etcdserverpb import rpc_pb2 as rpc
from mcpctl._proto.mcp.v1 import kv_pb2 as kv
from mcpctl.errors import InvalidArgument, McpError
from mcpctl.server.etcd import ranges
from mcpctl.server.etcd.convert import KeySpan, key_value
from mcpctl.server.etcd.errors import (
    DUPLICATE_KEY,
    EMPTY_KEY,
    KEY_NOT_FOUND,
    LEASE_PROVIDED,
    TOO_MANY_OPS,
    VALUE_PROVIDED,
    error,
    unimplemented,
)
from mcpctl.state import Store
from mcpctl.state.keyspace import Span

_C = rpc.Compare
Answer = Callable[[Iterator[kv.ResponseOp]], rpc.ResponseOp]


@dataclass
class Plan:
    """One attempt: the guarded store txn and how to answer from its responses."""

    succeeded: bool
    request: kv.TxnRequest = field(default_factory=kv.TxnRequest)
    answers: list[Answer] = field(default_factory=list)
    # What the planned ops write, in order (a nested txn may not compare these).
    written: list[KeySpan] = field(default_factory=list)
    _guarded: set[tuple[bytes, bool]] = field(default_factory=set)

    def answer(self, resp: kv.TxnResponse, head: rpc.ResponseHeader) -> rpc.TxnResponse:
        """etcd's answer. As etcd's, each op's response has a header whose revision is
        the store's at that op: the one before the txn until its first change, the
        txn's after; a nested txn's own header has revision 0."""
        ops = iter(resp.responses)
        out = rpc.TxnResponse(header=head, succeeded=self.succeeded)
        out.responses.extend(a(ops) for a in self.answers)
        base = head.revision - (1 if _stamp(out, head, 0, False, dry=True) else 0)
        _stamp(out, head, base, False)
        return out

    def guard_key(self, store: Store, key: bytes) -> None:
        """The key must still have the mod_revision it has now (0: still absent)."""
        if (key, False) in self._guarded or not _storable(key):
            return
        self._guarded.add((key, False))
        cur = store.get(key)
        self.request.compare.add(
            target=kv.Compare.MOD,
            result=kv.Compare.EQUAL,
            key=key,
            mod_revision=cur.mod_revision if cur else 0,
        )

    def guard_span(self, store: Store, span: KeySpan) -> None:
        """Nothing under the span's covering prefix may change before the txn applies."""
        if span.single:
            self.guard_key(store, span.key)
            return
        prefix = span.guard_prefix()
        if (prefix, True) in self._guarded:
            return
        self._guarded.add((prefix, True))
        count = len(store.items(Span(prefix, True), store.revision))
        self.request.compare.add(
            target=kv.Compare.MOD,
            result=kv.Compare.LESS,
            key=prefix,
            prefix=True,
            mod_revision=store.revision + 1,
        )
        self.request.compare.add(
            target=kv.Compare.COUNT, result=kv.Compare.EQUAL, key=prefix, prefix=True, count=count
        )


def check(req: rpc.TxnRequest, depth: int = 0) -> None:
    """etcd's checks before anything is read (nested txns too)."""
    if depth > limits.ETCD_TXN_DEPTH_MAX:
        raise unimplemented(f"txns nested deeper than {limits.ETCD_TXN_DEPTH_MAX} are not served")
    if (
        len(req.compare) > limits.TXN_COMPARES_MAX
        or len(req.success) > limits.TXN_OPS_MAX
        or len(req.failure) > limits.TXN_OPS_MAX
    ):
        raise error(TOO_MANY_OPS)
    for op in [*req.success, *req.failure]:
        which = op.WhichOneof("request")
        if which == "request_txn":
            check(op.request_txn, depth + 1)
            continue
        if which is None:
            continue
        inner = getattr(op, which)
        if not inner.key:
            raise error(EMPTY_KEY)
        if which == "request_range" and inner.revision:
            raise unimplemented(
                "a range inside a txn reads at the txn's revision; a revision is not served there"
            )
    for c in req.compare:
        if not c.key:
            raise error(EMPTY_KEY)
    for branch in (req.success, req.failure):
        _check_writes(branch)


def _stamp(
    txn: rpc.TxnResponse, head: rpc.ResponseHeader, base: int, changed: bool, dry: bool = False
) -> bool:
    """Set the op responses' headers (see ``Plan.answer``); whether anything changed."""
    for op in txn.responses:
        which = op.WhichOneof("response")
        if which is None:
            continue
        if which == "response_txn":
            if not dry:
                op.response_txn.header.CopyFrom(head)
                op.response_txn.header.revision = 0
            changed = _stamp(op.response_txn, head, base, changed, dry)
            continue
        if which == "response_put" or (
            which == "response_delete_range" and op.response_delete_range.deleted
        ):
            changed = True
        if not dry:
            h = getattr(op, which).header
            h.CopyFrom(head)
            h.revision = base + (1 if changed else 0)
    return changed


def _check_writes(ops: Iterable[rpc.RequestOp]) -> None:
    """etcd's rule: a put's key is put once and is in no deleted range of the branch."""
    puts: set[bytes] = set()
    deletes: list[KeySpan] = []
    for op in ops:
        which = op.WhichOneof("request")
        if which == "request_put":
            if op.request_put.key in puts:
                raise error(DUPLICATE_KEY)
            puts.add(op.request_put.key)
        elif which == "request_delete_range":
            d = op.request_delete_range
            deletes.append(KeySpan.of(d.key, d.range_end))
    if any(span.contains(key) for span in deletes for key in puts):
        raise error(DUPLICATE_KEY)


def plan(store: Store, req: rpc.TxnRequest) -> Plan:
    p = Plan(succeeded=True)
    p.succeeded = _branch(store, p, req, p.answers)
    if len(p.request.compare) > limits.TXN_COMPARES_MAX:
        raise error(TOO_MANY_OPS)
    n_ops = len(p.request.success)
    if n_ops > limits.TXN_OPS_MAX:
        raise InvalidArgument(
            f"mcp-config: this txn writes {n_ops} keys, over TXN_OPS_MAX ({limits.TXN_OPS_MAX}); "
            "a delete over a byte range that is not a prefix counts one op per key"
        )
    return p


def _branch(store: Store, p: Plan, req: rpc.TxnRequest, answers: list[Answer]) -> bool:
    """Evaluate ``req``'s compares, plan the branch taken into ``p``; whether they held."""
    succeeded = True
    for c in req.compare:
        span = KeySpan.of(c.key, c.range_end)
        if any(_overlap(span, w) for w in p.written):
            # The store's state here is before the txn's earlier writes.
            raise unimplemented(
                "a nested txn comparing keys that the same txn wrote before it is not served"
            )
        p.guard_span(store, span)
        if succeeded and not _holds(c, _items(store, span)):
            succeeded = False
    for op in req.success if succeeded else req.failure:
        which = op.WhichOneof("request")
        if which == "request_range":
            _range(store, p, op.request_range, answers)
        elif which == "request_put":
            _put(store, p, op.request_put, answers)
        elif which == "request_delete_range":
            _delete(store, p, op.request_delete_range, answers)
        elif which == "request_txn":
            _nested(store, p, op.request_txn, answers)
    return succeeded


def _nested(store: Store, p: Plan, req: rpc.TxnRequest, answers: list[Answer]) -> None:
    inner: list[Answer] = []
    succeeded = _branch(store, p, req, inner)

    def answer(ops: Iterator[kv.ResponseOp]) -> rpc.ResponseOp:
        out = rpc.TxnResponse(succeeded=succeeded)
        for a in inner:
            out.responses.append(a(ops))
        return rpc.ResponseOp(response_txn=out)

    answers.append(answer)


def _overlap(a: KeySpan, b: KeySpan) -> bool:
    """Whether two spans share a key (conservative for spans the store cannot hold)."""
    if a.end is None:
        return b.contains(a.key)
    if b.end is None:
        return a.contains(b.key)
    return (not b.end or a.key < b.end) and (not a.end or b.key < a.end)


def _items(store: Store, span: KeySpan) -> list[kv.KeyValue]:
    return [i for i in store.items(span.cover(), store.revision) if span.contains(i.key)]


def _storable(key: bytes) -> bool:
    try:
        validate.check_key(key)
    except McpError:
        return False
    return True


def _holds(c: rpc.Compare, items: list[kv.KeyValue]) -> bool:
    if not items:
        if c.target == _C.VALUE:
            return False  # as etcd: a missing key has no value to compare
        items = [kv.KeyValue()]
    return all(_compare_one(c, i) for i in items)


def _compare_one(c: rpc.Compare, item: kv.KeyValue) -> bool:
    actual: int | bytes
    wanted: int | bytes
    if c.target == _C.VERSION:
        actual, wanted = item.version, c.version
    elif c.target == _C.CREATE:
        actual, wanted = item.create_revision, c.create_revision
    elif c.target == _C.MOD:
        actual, wanted = item.mod_revision, c.mod_revision
    elif c.target == _C.VALUE:
        actual, wanted = item.value, c.value
    else:
        actual, wanted = item.lease, c.lease
    if c.result == _C.EQUAL:
        return actual == wanted
    if c.result == _C.NOT_EQUAL:
        return actual != wanted
    if c.result == _C.GREATER:
        return actual > wanted  # type: ignore[operator]
    return actual < wanted  # type: ignore[operator]


def _range(store: Store, p: Plan, r: rpc.RangeRequest, answers: list[Answer]) -> None:
    span = KeySpan.of(r.key, r.range_end)
    if span.single and not _storable(span.key):
        answers.append(lambda ops: rpc.ResponseOp(response_range=rpc.RangeResponse()))
        return
    if span.single:
        p.request.success.add().request_range.CopyFrom(kv.RangeRequest(key=span.key))
    else:
        prefix = span.guard_prefix()
        p.request.success.add().request_range.CopyFrom(kv.RangeRequest(key=prefix, prefix=True))

    def answer(ops: Iterator[kv.ResponseOp]) -> rpc.ResponseOp:
        got = next(ops).response_range
        return rpc.ResponseOp(response_range=ranges.answer(r, span, got.kvs))

    answers.append(answer)


def _put(store: Store, p: Plan, put: rpc.PutRequest, answers: list[Answer]) -> None:
    if put.ignore_value and put.value:
        raise error(VALUE_PROVIDED)
    if put.ignore_lease and put.lease:
        raise error(LEASE_PROVIDED)
    value, lease = put.value, put.lease
    if put.ignore_value or put.ignore_lease:
        cur = store.get(put.key)
        if cur is None:
            raise error(KEY_NOT_FOUND)
        p.guard_key(store, put.key)
        value = cur.value if put.ignore_value else value
        lease = cur.lease if put.ignore_lease else lease
    p.request.success.add().request_put.CopyFrom(
        kv.PutRequest(key=put.key, value=value, lease=lease, prev_kv=put.prev_kv)
    )
    p.written.append(KeySpan(put.key, None))

    def answer(ops: Iterator[kv.ResponseOp]) -> rpc.ResponseOp:
        got = next(ops).response_put
        out = rpc.PutResponse()
        if got.HasField("prev_kv"):
            out.prev_kv.CopyFrom(key_value(got.prev_kv))
        return rpc.ResponseOp(response_put=out)

    answers.append(answer)


def _delete(store: Store, p: Plan, d: rpc.DeleteRangeRequest, answers: list[Answer]) -> None:
    span = KeySpan.of(d.key, d.range_end)
    p.written.append(span)
    prefix = span.store_prefix()
    if span.single and not _storable(span.key):
        n = 0
    elif span.single or prefix is not None:
        n = 1
        p.request.success.add().request_delete_range.CopyFrom(
            kv.DeleteRangeRequest(
                key=span.key if prefix is None else prefix,
                prefix=prefix is not None,
                prev_kv=d.prev_kv,
            )
        )
    else:
        p.guard_span(store, span)
        keys = [i.key for i in _items(store, span)]
        n = len(keys)
        for key in keys:
            p.request.success.add().request_delete_range.CopyFrom(
                kv.DeleteRangeRequest(key=key, prev_kv=d.prev_kv)
            )

    def answer(ops: Iterator[kv.ResponseOp]) -> rpc.ResponseOp:
        out = rpc.DeleteRangeResponse()
        for _ in range(n):
            got = next(ops).response_delete_range
            out.deleted += got.deleted
            out.prev_kvs.extend(key_value(i) for i in got.prev_kvs)
        return rpc.ResponseOp(response_delete_range=out)

    answers.append(answer)
