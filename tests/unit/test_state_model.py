"""Model-based test: Store against a plain-dict model of etcd-like semantics.

Hypothesis drives random sequences of puts (plain and compare-and-swap),
deletes (key and prefix), txns, reads at the latest and at past revisions,
explicit compactions, snapshot round trips and retried request ids (two
identities share a few ids, so ids collide across clients and across
different requests). After every step the store must agree with the model:
revision, compact revision, keys, the exact history entries (events with
prev_kv), and the exact response of every request.

The model is deliberately naive: it keeps a full copy of the key/value dict
for every revision, rebuilds each history entry from its own view of the
write, and drops history with the same count/bytes rule as documented in
mcpctl.state. Keys come from a tiny alphabet (/a, /a/b, /a/c, /b) so writes,
prefix deletes and compares collide often; limits are tiny so compaction and
dedupe eviction happen within a few steps.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from dataclasses import dataclass, field

from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from mcpctl import errors, limits, validate
from mcpctl._proto.mcp.v1 import kv_pb2 as kv
from mcpctl._proto.mcp.v1 import raft_pb2 as raft
from mcpctl.state import Applied, HistoryLimits, Store

BOUNDS = HistoryLimits(revisions_max=5, bytes_max=400, dedupe_max=3)
RESPONSE_BYTES_MAX = limits.RANGE_RESPONSE_BYTES_MAX

KEYS = [b"/a", b"/a/b", b"/a/c", b"/b"]
PREFIXES = [b"", b"/a", b"/a/", b"/b"]
# (key, prefix) pairs that pass validation: an empty key needs prefix.
SPANS = [(k, False) for k in KEYS] + [(p, True) for p in PREFIXES]
VALUES = [b"", b"1", b"2", b"x" * 200]
REQUEST_IDS = ["", "", "r1", "r2", "r3", "r4", "r5"]
# Two clients share the few ids: an id is per identity.
IDENTITIES = ["alice", "bob"]

keys = st.sampled_from(KEYS)
spans = st.sampled_from(SPANS)
values = st.sampled_from(VALUES)
request_ids = st.sampled_from(REQUEST_IDS)
identities = st.sampled_from(IDENTITIES)
timestamps = st.integers(min_value=0, max_value=1_000)
range_limits = st.sampled_from([0, 0, 1, 2])

TARGET_FIELD = {
    kv.Compare.VERSION: "version",
    kv.Compare.CREATE: "create_revision",
    kv.Compare.MOD: "mod_revision",
}


@st.composite
def compares(draw: st.DrawFn) -> kv.Compare:
    target = draw(st.sampled_from([kv.Compare.VERSION, kv.Compare.CREATE, kv.Compare.MOD]))
    result = draw(
        st.sampled_from(
            [kv.Compare.EQUAL, kv.Compare.NOT_EQUAL, kv.Compare.GREATER, kv.Compare.LESS]
        )
    )
    c = kv.Compare(key=draw(keys), result=result)
    if draw(st.booleans()):
        c.target = kv.Compare.VALUE
        c.value = draw(values)
    else:
        c.target = target
        setattr(c, TARGET_FIELD[target], draw(st.integers(min_value=0, max_value=8)))
    return c


@st.composite
def request_ops(draw: st.DrawFn) -> kv.RequestOp:
    kind = draw(st.sampled_from(["put", "delete", "range"]))
    if kind == "put":
        put = kv.PutRequest(key=draw(keys), value=draw(values), prev_kv=draw(st.booleans()))
        return kv.RequestOp(request_put=put)
    key, prefix = draw(spans)
    if kind == "delete":
        dr = kv.DeleteRangeRequest(key=key, prefix=prefix, prev_kv=draw(st.booleans()))
        return kv.RequestOp(request_delete_range=dr)
    rr = kv.RangeRequest(
        key=key,
        prefix=prefix,
        limit=draw(range_limits),
        keys_only=draw(st.booleans()),
        count_only=draw(st.booleans()),
    )
    return kv.RequestOp(request_range=rr)


def _written_span(op: kv.RequestOp) -> tuple[bytes, bool] | None:
    if op.WhichOneof("request") == "request_put":
        return (op.request_put.key, False)
    if op.WhichOneof("request") == "request_delete_range":
        return (op.request_delete_range.key, op.request_delete_range.prefix)
    return None


def _overlaps(a: tuple[bytes, bool], b: tuple[bytes, bool]) -> bool:
    return a[0] == b[0] or (a[1] and b[0].startswith(a[0])) or (b[1] and a[0].startswith(b[0]))


def disjoint(ops: list[kv.RequestOp]) -> list[kv.RequestOp]:
    """Drop writes that touch a key an earlier write of the branch touched."""
    kept: list[kv.RequestOp] = []
    written: list[tuple[bytes, bool]] = []
    for op in ops:
        span = _written_span(op)
        if span is not None:
            if any(_overlaps(span, w) for w in written):
                continue
            written.append(span)
        kept.append(op)
    return kept


# ---------------------------------------------------------------------- model
@dataclass
class Expected:
    """What the model says Store.apply must return."""

    revision: int
    result: kv.PutResponse | kv.DeleteRangeResponse | kv.TxnResponse | kv.CompactionResponse
    written: raft.HistoryRevision | None = None
    duplicate: bool = False


@dataclass
class ExpectedError:
    """A failure result: the error class (and compact_revision for Compacted)."""

    revision: int
    error: type[errors.McpError]
    compact_revision: int | None = None


@dataclass
class Model:
    """A dict per revision, a FIFO history with the store's bounds, a FIFO dedupe."""

    bounds: HistoryLimits
    revision: int = 0
    compact_revision: int = 0
    applied_ts_ms: int = 0
    kvs: dict[bytes, kv.KeyValue] = field(default_factory=dict)
    snapshots: dict[int, dict[bytes, kv.KeyValue]] = field(default_factory=lambda: {0: {}})
    history: deque[raft.HistoryRevision] = field(default_factory=deque)
    history_bytes: int = 0
    # (identity, request id) -> (the request, revision, txn succeeded, deleted count)
    dedupe: OrderedDict[tuple[str, str], tuple[object, int, bool, int]] = field(
        default_factory=OrderedDict
    )

    # -- requests
    def apply(self, request: raft.InternalRequest) -> Expected | ExpectedError:
        self.applied_ts_ms = max(self.applied_ts_ms, request.ts_ms)
        which = request.WhichOneof("request")
        if which == "compaction":
            return self._compact(request.compaction.revision)
        assert which is not None
        op = request.put if which == "put" else getattr(request, which)
        seen = self.dedupe.get((request.identity, op.request_id))
        if op.request_id and seen is not None:
            first, revision, succeeded, deleted = seen
            if first != op:  # another request under a used id
                return ExpectedError(self.revision, errors.InvalidArgument)
            return self._replay(which, revision, succeeded, deleted)
        pending = raft.HistoryRevision(
            revision=self.revision + 1, ts_ms=request.ts_ms, identity=request.identity
        )
        result: kv.PutResponse | kv.DeleteRangeResponse | kv.TxnResponse
        if which == "put":
            req = request.put
            if req.HasField("expected_mod_revision"):
                old = self.kvs.get(req.key)
                if (old.mod_revision if old else 0) != req.expected_mod_revision:
                    return ExpectedError(self.revision, errors.CompareFailed)
            result = self._put(req, pending)
        elif which == "delete_range":
            result = self._delete(request.delete_range, pending)
        else:
            result = self._txn(request.txn, pending)
        written = None
        if pending.events:
            written = pending
            self.revision = pending.revision
            self.snapshots[self.revision] = dict(self.kvs)
            self._remember(pending)
        if op.request_id:
            succeeded = isinstance(result, kv.TxnResponse) and result.succeeded
            deleted = result.deleted if isinstance(result, kv.DeleteRangeResponse) else 0
            first = type(op)()
            first.CopyFrom(op)
            self.dedupe[(request.identity, op.request_id)] = (
                first,
                self.revision,
                succeeded,
                deleted,
            )
            while len(self.dedupe) > self.bounds.dedupe_max:
                self.dedupe.popitem(last=False)
        return Expected(self.revision, result, written)

    def _replay(
        self, which: str, revision: int, succeeded: bool, deleted: int
    ) -> Expected | ExpectedError:
        if which == "put":
            return Expected(revision, kv.PutResponse(), duplicate=True)
        if which == "delete_range":
            return Expected(revision, kv.DeleteRangeResponse(deleted=deleted), duplicate=True)
        return Expected(revision, kv.TxnResponse(succeeded=succeeded), duplicate=True)

    def _put(self, req: kv.PutRequest, pending: raft.HistoryRevision) -> kv.PutResponse:
        old = self.kvs.get(req.key)
        new = kv.KeyValue(
            key=req.key,
            value=req.value,
            create_revision=old.create_revision if old else pending.revision,
            mod_revision=pending.revision,
            version=old.version + 1 if old else 1,
        )
        self.kvs[req.key] = new
        event = pending.events.add(type=kv.Event.PUT, kv=new)
        if old is not None:
            event.prev_kv.CopyFrom(old)
        return kv.PutResponse(prev_kv=old if req.prev_kv else None)

    def _delete(
        self, req: kv.DeleteRangeRequest, pending: raft.HistoryRevision
    ) -> kv.DeleteRangeResponse:
        resp = kv.DeleteRangeResponse()
        for key in _matching(self.kvs, req.key, req.prefix):
            old = self.kvs.pop(key)
            pending.events.add(
                type=kv.Event.DELETE,
                kv=kv.KeyValue(key=key, mod_revision=pending.revision),
                prev_kv=old,
            )
            resp.deleted += 1
            if req.prev_kv:
                resp.prev_kvs.append(old)
        return resp

    def _txn(self, req: kv.TxnRequest, pending: raft.HistoryRevision) -> kv.TxnResponse:
        succeeded = all(self._holds(c) for c in req.compare)
        resp = kv.TxnResponse(succeeded=succeeded)
        for op in req.success if succeeded else req.failure:
            which = op.WhichOneof("request")
            if which == "request_put":
                resp.responses.add(response_put=self._put(op.request_put, pending))
            elif which == "request_delete_range":
                deleted = self._delete(op.request_delete_range, pending)
                resp.responses.add(response_delete_range=deleted)
            else:
                resp.responses.add(response_range=_fill(op.request_range, self.kvs))
        return resp

    def _holds(self, c: kv.Compare) -> bool:
        cur = self.kvs.get(c.key)
        actual: int | bytes
        wanted: int | bytes
        if c.target == kv.Compare.VALUE:
            actual, wanted = (cur.value if cur else b""), c.value
        else:
            name = TARGET_FIELD[c.target]
            actual, wanted = (getattr(cur, name) if cur else 0), getattr(c, name)
        if c.result == kv.Compare.EQUAL:
            return actual == wanted
        if c.result == kv.Compare.NOT_EQUAL:
            return actual != wanted
        if c.result == kv.Compare.GREATER:
            return actual > wanted  # type: ignore[operator]
        return actual < wanted  # type: ignore[operator]

    def _compact(self, revision: int) -> Expected | ExpectedError:
        if revision > self.revision:
            return ExpectedError(self.revision, errors.InvalidArgument)
        if revision < self.compact_revision:
            return ExpectedError(self.revision, errors.Compacted, self.compact_revision)
        while self.history and self.history[0].revision < revision:
            self._drop_oldest()
        self.compact_revision = revision
        return Expected(self.revision, kv.CompactionResponse())

    def _remember(self, entry: raft.HistoryRevision) -> None:
        self.history.append(entry)
        self.history_bytes += entry.ByteSize()
        while len(self.history) > self.bounds.revisions_max or (
            len(self.history) > 1 and self.history_bytes > self.bounds.bytes_max
        ):
            self._drop_oldest()

    def _drop_oldest(self) -> None:
        old = self.history.popleft()
        self.history_bytes -= old.ByteSize()
        self.compact_revision = max(self.compact_revision, old.revision + 1)

    # -- reads
    def range(self, req: kv.RangeRequest) -> kv.RangeResponse | ExpectedError:
        revision = req.revision or self.revision
        if revision > self.revision:
            return ExpectedError(self.revision, errors.InvalidArgument)
        if revision < self.compact_revision:
            return ExpectedError(self.revision, errors.Compacted, self.compact_revision)
        return _fill(req, self.snapshots[revision])


def _matching(state: dict[bytes, kv.KeyValue], key: bytes, prefix: bool) -> list[bytes]:
    return sorted(k for k in state if (k.startswith(key) if prefix else k == key))


def _fill(req: kv.RangeRequest, state: dict[bytes, kv.KeyValue]) -> kv.RangeResponse:
    matches = _matching(state, req.key, req.prefix)
    resp = kv.RangeResponse(count=len(matches))
    if req.count_only:
        return resp
    shown = matches[: req.limit] if req.limit else matches
    resp.more = len(shown) < len(matches)
    for key in shown:
        item = state[key]
        if req.keys_only:
            item = kv.KeyValue(
                key=item.key,
                create_revision=item.create_revision,
                mod_revision=item.mod_revision,
                version=item.version,
            )
        resp.kvs.append(item)
    return resp


# ----------------------------------------------------------- the state machine
def check_applied(actual: Applied, expected: Expected | ExpectedError) -> None:
    assert actual.revision == expected.revision
    if isinstance(expected, ExpectedError):
        assert type(actual.result) is expected.error, actual.result
        assert actual.written is None
        if isinstance(actual.result, errors.Compacted):
            assert actual.result.compact_revision == expected.compact_revision
        return
    assert not isinstance(actual.result, errors.McpError), actual.result
    assert actual.result == expected.result
    assert actual.written == expected.written
    assert actual.duplicate is expected.duplicate


def _describe(request: raft.InternalRequest, expected: Expected | ExpectedError) -> str:
    """A label for hypothesis' statistics (--hypothesis-show-statistics)."""
    which = request.WhichOneof("request")
    if isinstance(expected, ExpectedError):
        return f"{which}: {expected.error.kind}"
    if expected.duplicate:
        return f"{which}: duplicate"
    if isinstance(expected.result, kv.TxnResponse):
        return f"txn: succeeded={expected.result.succeeded} wrote={expected.written is not None}"
    return f"{which}: wrote={expected.written is not None}"


class StoreMachine(RuleBasedStateMachine):
    """Every rule applies one request to both Store and Model and compares."""

    def __init__(self) -> None:
        super().__init__()
        self.store = Store(bounds=BOUNDS)
        self.model = Model(bounds=BOUNDS)
        self.last_write: raft.InternalRequest | None = None

    def _apply(self, request: raft.InternalRequest) -> None:
        floor = self.model.compact_revision
        expected = self.model.apply(request)
        check_applied(self.store.apply(request), expected)
        event(_describe(request, expected))
        if self.model.compact_revision != floor:
            event("compact_revision moved")
        if request.WhichOneof("request") != "compaction":
            self.last_write = request

    def _range(self, req: kv.RangeRequest) -> None:
        validate.check_range(req)
        expected = self.model.range(req)
        try:
            actual = self.store.range(req, RESPONSE_BYTES_MAX)
        except errors.McpError as err:
            event(f"range: {err.kind}")
            assert isinstance(expected, ExpectedError), err
            assert type(err) is expected.error
            if isinstance(err, errors.Compacted):
                assert err.compact_revision == expected.compact_revision
            return
        assert actual == expected

    # -- writes
    @rule(
        key=keys,
        value=values,
        request_id=request_ids,
        prev_kv=st.booleans(),
        ts=timestamps,
        who=identities,
    )
    def put(
        self, key: bytes, value: bytes, request_id: str, prev_kv: bool, ts: int, who: str
    ) -> None:
        req = kv.PutRequest(key=key, value=value, request_id=request_id, prev_kv=prev_kv)
        validate.check_put(req, limits.VALUE_BYTES_MAX_DEFAULT)
        self._apply(raft.InternalRequest(ts_ms=ts, put=req, identity=who))

    @rule(
        data=st.data(),
        key=keys,
        value=values,
        request_id=request_ids,
        ts=timestamps,
        who=identities,
    )
    def put_if_mod(
        self, data: st.DataObject, key: bytes, value: bytes, request_id: str, ts: int, who: str
    ) -> None:
        cur = self.model.kvs.get(key)
        mod = cur.mod_revision if cur else 0
        guesses = sorted({0, mod, mod + 1, max(mod - 1, 0), self.model.revision})
        expected_mod = data.draw(st.sampled_from(guesses), label="expected_mod_revision")
        req = kv.PutRequest(
            key=key, value=value, request_id=request_id, expected_mod_revision=expected_mod
        )
        validate.check_put(req, limits.VALUE_BYTES_MAX_DEFAULT)
        self._apply(raft.InternalRequest(ts_ms=ts, put=req, identity=who))

    @rule(span=spans, request_id=request_ids, prev_kv=st.booleans(), ts=timestamps, who=identities)
    def delete(
        self, span: tuple[bytes, bool], request_id: str, prev_kv: bool, ts: int, who: str
    ) -> None:
        key, prefix = span
        req = kv.DeleteRangeRequest(key=key, prefix=prefix, prev_kv=prev_kv, request_id=request_id)
        validate.check_delete(req)
        self._apply(raft.InternalRequest(ts_ms=ts, delete_range=req, identity=who))

    @rule(
        compare=st.lists(compares(), max_size=2),
        success=st.lists(request_ops(), max_size=4),
        failure=st.lists(request_ops(), max_size=3),
        request_id=request_ids,
        ts=timestamps,
        who=identities,
    )
    def txn(
        self,
        compare: list[kv.Compare],
        success: list[kv.RequestOp],
        failure: list[kv.RequestOp],
        request_id: str,
        ts: int,
        who: str,
    ) -> None:
        req = kv.TxnRequest(
            compare=compare,
            success=disjoint(success),
            failure=disjoint(failure),
            request_id=request_id,
        )
        validate.check_txn(req, limits.VALUE_BYTES_MAX_DEFAULT)
        self._apply(raft.InternalRequest(ts_ms=ts, txn=req, identity=who))

    @rule(ts=timestamps)
    def retry_last_write(self, ts: int) -> None:
        """A client retry: the very same request again (deduplicated if it had an id)."""
        if self.last_write is None:
            return
        retry = raft.InternalRequest()
        retry.CopyFrom(self.last_write)
        retry.ts_ms = ts
        self._apply(retry)

    @rule(data=st.data())
    def compact(self, data: st.DataObject) -> None:
        revision = data.draw(st.integers(0, self.model.revision + 2), label="compact")
        req = kv.CompactionRequest(revision=revision)
        validate.check_compaction(req)
        self._apply(raft.InternalRequest(compaction=req))

    # -- reads
    @rule(
        span=spans,
        limit=range_limits,
        keys_only=st.booleans(),
        count_only=st.booleans(),
    )
    def range_latest(
        self, span: tuple[bytes, bool], limit: int, keys_only: bool, count_only: bool
    ) -> None:
        key, prefix = span
        self._range(
            kv.RangeRequest(
                key=key, prefix=prefix, limit=limit, keys_only=keys_only, count_only=count_only
            )
        )

    @rule(data=st.data(), span=spans, limit=range_limits, keys_only=st.booleans())
    def range_past(
        self, data: st.DataObject, span: tuple[bytes, bool], limit: int, keys_only: bool
    ) -> None:
        # Up to two past the current revision: those must be refused.
        revision = data.draw(st.integers(1, self.model.revision + 2), label="revision")
        key, prefix = span
        self._range(
            kv.RangeRequest(
                key=key, prefix=prefix, revision=revision, limit=limit, keys_only=keys_only
            )
        )

    # -- snapshots
    @rule()
    def snapshot_round_trip(self) -> None:
        data = self.store.to_bytes()
        self.store = Store.from_bytes(data, BOUNDS)
        assert self.store.to_bytes() == data

    # -- invariants
    @invariant()
    def agrees_with_model(self) -> None:
        store, model = self.store, self.model
        assert (store.revision, store.compact_revision) == (model.revision, model.compact_revision)
        assert store.applied_ts_ms == model.applied_ts_ms
        assert 0 <= store.compact_revision <= store.revision
        assert len(store) == len(model.kvs)
        everything = kv.RangeRequest(key=b"", prefix=True)
        assert store.range(everything, RESPONSE_BYTES_MAX) == _fill(everything, model.kvs)
        assert list(store.history_since(store.compact_revision)) == list(model.history)

    @invariant()
    def history_below_the_floor_is_compacted(self) -> None:
        floor = self.store.compact_revision
        if floor == 0:
            return
        try:
            self.store.history_since(floor - 1)
        except errors.Compacted as err:
            assert err.compact_revision == floor
        else:
            raise AssertionError(f"history_since({floor - 1}) did not raise Compacted")


StoreMachine.TestCase.settings = settings(
    max_examples=300,
    stateful_step_count=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestStoreAgainstModel = StoreMachine.TestCase
