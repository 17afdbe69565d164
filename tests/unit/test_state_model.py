"""Model-based test: Store against a plain-dict model of etcd-like semantics.

Hypothesis drives random sequences of puts (plain and compare-and-swap),
deletes (key and prefix), txns, reads at the latest and at past revisions,
explicit compactions, snapshot round trips and retried request ids (two
identities share a few ids, so ids collide across clients and across
different requests), and leases: grants, puts with a lease (known or not),
revokes, and expiries and checkpoints whose proposer term may or may not
match their entry's term. After every step the store must agree with the
model: revision, compact revision, keys, the exact history entries (events
with prev_kv), the exact response of every request, and the leases; and
every key's lease exists and lists the key, and no lease lists a missing key.

The model is deliberately naive: it keeps a full copy of the key/value dict
for every revision, rebuilds each history entry from its own view of the
write, and drops history with the same count/bytes rule as documented in
mcpctl.state. Keys come from a tiny alphabet (/a, /a/b, /a/c, /b) so writes,
prefix deletes and compares collide often; limits are tiny so compaction and
dedupe eviction happen within a few steps. The model keeps no attachment
lists: a lease's keys are the keys whose KeyValue.lease names it.
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
# 0 = no lease; 9 is never granted (the put must fail).
LEASE_IDS = [1, 2, 3]
PUT_LEASES = [0, 0, 0, 1, 2, 3, 9]
TERMS = [1, 2]

keys = st.sampled_from(KEYS)
spans = st.sampled_from(SPANS)
values = st.sampled_from(VALUES)
request_ids = st.sampled_from(REQUEST_IDS)
identities = st.sampled_from(IDENTITIES)
timestamps = st.integers(min_value=0, max_value=1_000)
range_limits = st.sampled_from([0, 0, 1, 2])
lease_ids = st.sampled_from(LEASE_IDS)
put_leases = st.sampled_from(PUT_LEASES)
terms = st.sampled_from(TERMS)

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
        put = kv.PutRequest(
            key=draw(keys), value=draw(values), prev_kv=draw(st.booleans()), lease=draw(put_leases)
        )
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
    result: (
        kv.PutResponse
        | kv.DeleteRangeResponse
        | kv.TxnResponse
        | kv.CompactionResponse
        | kv.LeaseGrantResponse
        | kv.LeaseRevokeResponse
        | raft.LeaseExpireResponse
        | raft.LeaseCheckpointResponse
    )
    written: raft.HistoryRevision | None = None
    duplicate: bool = False
    expired: tuple[raft.HistoryRevision, ...] = ()


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
    # lease id -> [granted ttl_s, checkpointed remaining_ms]
    leases: dict[int, list[int]] = field(default_factory=dict)

    # -- requests
    def apply(
        self, request: raft.InternalRequest, entry_term: int | None = None
    ) -> Expected | ExpectedError:
        self.applied_ts_ms = max(self.applied_ts_ms, request.ts_ms)
        which = request.WhichOneof("request")
        if which == "compaction":
            return self._compact(request.compaction.revision)
        if which is not None and which.startswith("lease_"):
            return self._lease(request, entry_term)
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
            if req.lease and req.lease not in self.leases:
                return ExpectedError(self.revision, errors.LeaseNotFound)
            result = self._put(req, pending)
        elif which == "delete_range":
            result = self._delete(request.delete_range, pending)
        else:
            succeeded = all(self._holds(c) for c in request.txn.compare)
            taken = request.txn.success if succeeded else request.txn.failure
            if any(
                branch_op.WhichOneof("request") == "request_put"
                and branch_op.request_put.lease
                and branch_op.request_put.lease not in self.leases
                for branch_op in taken
            ):
                return ExpectedError(self.revision, errors.LeaseNotFound)
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
            lease=req.lease,
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

    def _lease(
        self, request: raft.InternalRequest, entry_term: int | None
    ) -> Expected | ExpectedError:
        which = request.WhichOneof("request")
        if which == "lease_grant":
            grant = request.lease_grant
            if grant.id in self.leases:
                return ExpectedError(self.revision, errors.LeaseExists)
            self.leases[grant.id] = [grant.ttl, grant.ttl * 1000]
            return Expected(self.revision, kv.LeaseGrantResponse(id=grant.id, ttl=grant.ttl))
        if which == "lease_revoke":
            lease_id = request.lease_revoke.id
            if lease_id not in self.leases:
                return ExpectedError(self.revision, errors.LeaseNotFound)
            written = self._revoke(lease_id, request.ts_ms, request.identity)
            return Expected(self.revision, kv.LeaseRevokeResponse(), written)
        if which == "lease_expire":
            expire = request.lease_expire
            if expire.proposer_term != entry_term:
                return Expected(self.revision, raft.LeaseExpireResponse(fenced=True))
            resp = raft.LeaseExpireResponse()
            entries: list[raft.HistoryRevision] = []
            for lease_id in expire.ids:
                if lease_id not in self.leases:
                    resp.skipped.append(lease_id)
                    continue
                resp.expired.append(lease_id)
                entry = self._revoke(lease_id, request.ts_ms, "lease-expiry")
                if entry is not None:
                    entries.append(entry)
            return Expected(self.revision, resp, expired=tuple(entries))
        cp = request.lease_checkpoint
        if cp.proposer_term != entry_term:
            return Expected(self.revision, raft.LeaseCheckpointResponse(fenced=True))
        done = raft.LeaseCheckpointResponse()
        for item in cp.checkpoints:
            if item.id not in self.leases:
                done.skipped.append(item.id)
                continue
            ttl_s = self.leases[item.id][0]
            self.leases[item.id][1] = min(item.remaining_ms, ttl_s * 1000)
            done.recorded.append(item.id)
        return Expected(self.revision, done)

    def _revoke(self, lease_id: int, ts_ms: int, identity: str) -> raft.HistoryRevision | None:
        """Delete the keys whose lease is this one, at one revision; drop the lease."""
        del self.leases[lease_id]
        pending = raft.HistoryRevision(revision=self.revision + 1, ts_ms=ts_ms, identity=identity)
        for key in sorted(k for k, v in self.kvs.items() if v.lease == lease_id):
            old = self.kvs.pop(key)
            pending.events.add(
                type=kv.Event.DELETE,
                kv=kv.KeyValue(key=key, mod_revision=pending.revision),
                prev_kv=old,
            )
        if not pending.events:
            return None
        self.revision = pending.revision
        self.snapshots[self.revision] = dict(self.kvs)
        self._remember(pending)
        return pending

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
    assert actual.expired == expected.expired
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
    if isinstance(expected.result, raft.LeaseExpireResponse | raft.LeaseCheckpointResponse):
        return f"{which}: fenced={expected.result.fenced} wrote={len(expected.expired)}"
    return f"{which}: wrote={expected.written is not None}"


class StoreMachine(RuleBasedStateMachine):
    """Every rule applies one request to both Store and Model and compares."""

    def __init__(self) -> None:
        super().__init__()
        self.store = Store(bounds=BOUNDS)
        self.model = Model(bounds=BOUNDS)
        self.last_write: raft.InternalRequest | None = None

    def _apply(self, request: raft.InternalRequest, entry_term: int | None = None) -> None:
        floor = self.model.compact_revision
        expected = self.model.apply(request, entry_term)
        check_applied(self.store.apply(request, entry_term=entry_term), expected)
        event(_describe(request, expected))
        if self.model.compact_revision != floor:
            event("compact_revision moved")
        if request.WhichOneof("request") in {"put", "delete_range", "txn"}:
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
        lease=put_leases,
    )
    def put(
        self,
        key: bytes,
        value: bytes,
        request_id: str,
        prev_kv: bool,
        ts: int,
        who: str,
        lease: int,
    ) -> None:
        req = kv.PutRequest(
            key=key, value=value, request_id=request_id, prev_kv=prev_kv, lease=lease
        )
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

    # -- leases
    @rule(lease_id=lease_ids, ttl_s=st.sampled_from([1, 10]))
    def grant(self, lease_id: int, ttl_s: int) -> None:
        req = kv.LeaseGrantRequest(id=lease_id, ttl=ttl_s)
        validate.check_lease_grant(req)
        self._apply(raft.InternalRequest(lease_grant=req))

    @rule(data=st.data(), key=keys, value=values, ts=timestamps)
    def put_on_live_lease(self, data: st.DataObject, key: bytes, value: bytes, ts: int) -> None:
        """Attach to (or move between) leases that exist, so revokes and expiries delete keys."""
        if not self.model.leases:
            return
        lease = data.draw(st.sampled_from(sorted(self.model.leases)), label="lease")
        req = kv.PutRequest(key=key, value=value, lease=lease)
        validate.check_put(req, limits.VALUE_BYTES_MAX_DEFAULT)
        self._apply(raft.InternalRequest(ts_ms=ts, put=req))

    @rule(lease_id=st.sampled_from([*LEASE_IDS, 9]), ts=timestamps)
    def revoke(self, lease_id: int, ts: int) -> None:
        req = kv.LeaseRevokeRequest(id=lease_id)
        validate.check_lease_revoke(req)
        self._apply(raft.InternalRequest(ts_ms=ts, identity="op", lease_revoke=req))

    @rule(ids=st.lists(lease_ids, max_size=3), term=terms, entry_term=terms, ts=timestamps)
    def expire(self, ids: list[int], term: int, entry_term: int, ts: int) -> None:
        req = raft.LeaseExpireRequest(ids=ids, proposer_term=term)
        validate.check_lease_expire(req)
        self._apply(raft.InternalRequest(ts_ms=ts, lease_expire=req), entry_term)

    @rule(
        items=st.lists(st.tuples(lease_ids, st.sampled_from([0, 500, 20_000])), max_size=3),
        term=terms,
        entry_term=terms,
    )
    def checkpoint(self, items: list[tuple[int, int]], term: int, entry_term: int) -> None:
        req = raft.LeaseCheckpointRequest(proposer_term=term)
        for lease_id, remaining_ms in items:
            req.checkpoints.add(id=lease_id, remaining_ms=remaining_ms)
        validate.check_lease_checkpoint(req)
        self._apply(raft.InternalRequest(lease_checkpoint=req), entry_term)

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
        assert store.live_bytes == sum(v.ByteSize() for v in model.kvs.values())
        everything = kv.RangeRequest(key=b"", prefix=True)
        assert store.range(everything, RESPONSE_BYTES_MAX) == _fill(everything, model.kvs)
        assert list(store.history_since(store.compact_revision)) == list(model.history)

    @invariant()
    def leases_agree_with_model(self) -> None:
        model = sorted((i, lease[1]) for i, lease in self.model.leases.items())
        assert self.store.leases_remaining_ms() == model

    @invariant()
    def every_key_and_its_lease_agree(self) -> None:
        """Every key's lease exists and lists the key; no lease lists a missing key
        (or a key that names another lease)."""
        everything = self.store.range(kv.RangeRequest(key=b"", prefix=True), RESPONSE_BYTES_MAX)
        for item in everything.kvs:
            if item.lease:
                info = self.store.lease(item.lease)
                assert info is not None and item.key in info.keys, (item, info)
        for lease_id in self.store.leases():
            info = self.store.lease(lease_id)
            assert info is not None
            for key in info.keys:
                held = self.store.get(key)
                assert held is not None and held.lease == lease_id, (lease_id, key, held)

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
