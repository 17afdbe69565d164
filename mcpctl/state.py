"""The pure, deterministic state machine of mcp-config.

``Store.apply(request) -> Applied`` is the only way the state changes. It
reads no clock, no randomness and no sockets: time travels inside the
request (``ts_ms``, set by the proposer), so every replica that applies the
same log reaches the same state, byte for byte (``to_bytes``).

Guarantees kept here (and unit-tested without a network):

- one cluster-wide ``revision``, +1 per committed write (put, delete that
  removed something, txn that wrote something); a txn is one revision;
- per key ``create_revision``, ``mod_revision``, ``version``;
- a bounded history of recent revisions (by count and bytes) that serves
  reads at past revisions and watch resume; anything older answers
  ``Compacted`` with the oldest revision still available (``compact_revision``);
- at-most-once writes: a request id seen before *from the same identity*
  returns the first outcome, if the retry is the same request (same
  operation, keys, values and options); another request under a used id is
  INVALID_ARGUMENT, never a silent OK;
- failures (compare failed, compacted) are *results*, never exceptions
  escaping ``apply``: the caller runs on the Raft tick thread.

Requests are assumed well-formed (``mcpctl.validate`` runs before proposing);
checks that depend on the state happen here.
"""

from __future__ import annotations

import bisect
import hashlib
from collections import OrderedDict, deque
from collections.abc import Iterator
from dataclasses import dataclass, field

from mcpctl import limits
from mcpctl._proto.mcp.v1 import kv_pb2 as kv
from mcpctl._proto.mcp.v1 import raft_pb2 as raft
from mcpctl.errors import Compacted, CompareFailed, InvalidArgument, McpError

Response = (
    kv.PutResponse
    | kv.DeleteRangeResponse
    | kv.TxnResponse
    | kv.CompactionResponse
    | raft.MemberRecord
)

_PUT = kv.Event.PUT
_DELETE = kv.Event.DELETE


@dataclass(frozen=True, slots=True)
class Applied:
    """The outcome of applying one request."""

    revision: int  # store revision after the request
    result: Response | McpError
    # The history entry this request created (None when nothing was written).
    written: raft.HistoryRevision | None = None
    duplicate: bool = False


@dataclass(frozen=True, slots=True)
class HistoryLimits:
    revisions_max: int = limits.HISTORY_REVISIONS_MAX_DEFAULT
    bytes_max: int = limits.HISTORY_BYTES_MAX_DEFAULT
    dedupe_max: int = limits.DEDUPE_ENTRIES_MAX

    def __post_init__(self) -> None:
        assert self.revisions_max >= 1
        assert self.bytes_max >= 1
        assert self.dedupe_max >= 0


@dataclass(slots=True)
class _Span:
    """A key, or every key under a prefix."""

    key: bytes
    prefix: bool

    def matches(self, key: bytes) -> bool:
        return key.startswith(self.key) if self.prefix else key == self.key


@dataclass(slots=True)
class Store:
    """The replicated key/value state. See the module docstring."""

    bounds: HistoryLimits = field(default_factory=HistoryLimits)
    revision: int = 0
    compact_revision: int = 0
    applied_ts_ms: int = 0
    _kvs: dict[bytes, kv.KeyValue] = field(default_factory=dict)
    _keys: list[bytes] = field(default_factory=list)  # sorted view of _kvs
    _history: deque[raft.HistoryRevision] = field(default_factory=deque)
    _history_bytes: int = 0
    # (identity, request id) -> first outcome, oldest first.
    _dedupe: OrderedDict[tuple[str, str], raft.DedupeEntry] = field(default_factory=OrderedDict)
    # The member directory: name -> record (tombstones kept, so a removed
    # member can tell). Bounded by the Raft membership, not by clients.
    _members: dict[str, raft.MemberRecord] = field(default_factory=dict)

    # ------------------------------------------------------------------ writes
    def apply(self, request: raft.InternalRequest) -> Applied:
        """Apply one request; never raises for a request that passed validation."""
        if request.ts_ms > self.applied_ts_ms:
            self.applied_ts_ms = request.ts_ms
        which = request.WhichOneof("request")
        if which == "compaction":
            return self._compact(request.compaction.revision)
        if which == "member":
            record = raft.MemberRecord()
            record.CopyFrom(request.member)
            self._members[record.name] = record
            return Applied(self.revision, record)
        if which is None:
            return Applied(self.revision, InvalidArgument("empty request"))
        op: kv.PutRequest | kv.DeleteRangeRequest | kv.TxnRequest = getattr(request, which)
        fingerprint = b""
        if op.request_id:
            fingerprint = _fingerprint(which, op)
            seen = self._dedupe.get((request.identity, op.request_id))
            if seen is not None:
                return self._replay(which, seen, fingerprint)
        pending = raft.HistoryRevision(
            revision=self.revision + 1, ts_ms=request.ts_ms, identity=request.identity
        )
        result: Response | McpError
        if which == "put":
            result = self._put(request.put, pending)
        elif which == "delete_range":
            result = self._delete(request.delete_range, pending)
        else:
            result = self._txn(request.txn, pending)
        written = None
        if pending.events:
            written = pending
            self.revision = pending.revision
            self._remember(pending)
        if op.request_id and not isinstance(result, McpError):
            self._record(request.identity, op.request_id, fingerprint, result)
        return Applied(self.revision, result, written)

    def _put(self, req: kv.PutRequest, pending: raft.HistoryRevision) -> Response | McpError:
        prev = self._kvs.get(req.key)
        if req.HasField("expected_mod_revision"):
            actual = prev.mod_revision if prev is not None else 0
            if actual != req.expected_mod_revision:
                return CompareFailed(
                    f"key {_show(req.key)}: mod_revision is {actual}, "
                    f"expected {req.expected_mod_revision}"
                )
        self._write(req.key, req.value, pending)
        resp = kv.PutResponse()
        if req.prev_kv and prev is not None:
            resp.prev_kv.CopyFrom(prev)
        return resp

    def _delete(
        self, req: kv.DeleteRangeRequest, pending: raft.HistoryRevision
    ) -> kv.DeleteRangeResponse:
        resp = kv.DeleteRangeResponse()
        for key in list(self._iter_keys(_Span(req.key, req.prefix))):
            prev = self._kvs.pop(key)
            del self._keys[bisect.bisect_left(self._keys, key)]
            pending.events.add(
                type=_DELETE,
                kv=kv.KeyValue(key=key, mod_revision=pending.revision),
                prev_kv=prev,
            )
            resp.deleted += 1
            if req.prev_kv:
                resp.prev_kvs.append(prev)
        return resp

    def _txn(self, req: kv.TxnRequest, pending: raft.HistoryRevision) -> Response | McpError:
        succeeded = all(self._compare(c) for c in req.compare)
        ops = req.success if succeeded else req.failure
        # All-or-nothing: refuse before writing anything. validate() already
        # forbids this; the check keeps a stray proposal from half-applying.
        if any(
            op.WhichOneof("request") == "request_put"
            and op.request_put.HasField("expected_mod_revision")
            for op in ops
        ):
            return InvalidArgument("txn: use compares instead of expected_mod_revision")
        resp = kv.TxnResponse(succeeded=succeeded)
        # The reads of one txn share one answer-size budget, as one Range does:
        # 128 whole-store reads must not build 128 copies of the store (on every
        # member: apply runs everywhere, though only one member answers).
        read_bytes_left = limits.RANGE_RESPONSE_BYTES_MAX
        for op in ops:
            which = op.WhichOneof("request")
            out = resp.responses.add()
            if which == "request_put":
                put = self._put(op.request_put, pending)
                assert isinstance(put, kv.PutResponse)
                out.response_put.CopyFrom(put)
            elif which == "request_delete_range":
                out.response_delete_range.CopyFrom(self._delete(op.request_delete_range, pending))
            elif which == "request_range":
                # Reads inside a txn see the txn's earlier writes (as in etcd).
                rng = op.request_range
                got = self._range_current(rng, max(read_bytes_left, 0))
                read_bytes_left -= got.ByteSize()
                out.response_range.CopyFrom(got)
        return resp

    def _compare(self, c: kv.Compare) -> bool:
        if c.target == kv.Compare.COUNT:
            actual = sum(1 for _ in self._iter_keys(_Span(c.key, c.prefix)))
            return _holds(c.result, actual, c.count)
        if c.prefix:
            return all(
                self._compare_one(self._kvs[k], c) for k in self._iter_keys(_Span(c.key, True))
            )
        return self._compare_one(self._kvs.get(c.key), c)

    @staticmethod
    def _compare_one(cur: kv.KeyValue | None, c: kv.Compare) -> bool:
        target = c.target
        actual: int | bytes
        wanted: int | bytes
        if target == kv.Compare.VERSION:
            actual, wanted = (cur.version if cur else 0), c.version
        elif target == kv.Compare.CREATE:
            actual, wanted = (cur.create_revision if cur else 0), c.create_revision
        elif target == kv.Compare.MOD:
            actual, wanted = (cur.mod_revision if cur else 0), c.mod_revision
        else:
            actual, wanted = (cur.value if cur else b""), c.value
        return _holds(c.result, actual, wanted)

    def _write(self, key: bytes, value: bytes, pending: raft.HistoryRevision) -> None:
        prev = self._kvs.get(key)
        new = kv.KeyValue(
            key=key,
            value=value,
            create_revision=prev.create_revision if prev is not None else pending.revision,
            mod_revision=pending.revision,
            version=prev.version + 1 if prev is not None else 1,
        )
        if prev is None:
            bisect.insort(self._keys, key)
            pending.events.add(type=_PUT, kv=new)
        else:
            pending.events.add(type=_PUT, kv=new, prev_kv=prev)
        self._kvs[key] = new

    def _compact(self, revision: int) -> Applied:
        if revision > self.revision:
            return Applied(
                self.revision,
                InvalidArgument(
                    f"compaction revision {revision} is in the future "
                    f"(current revision {self.revision})"
                ),
            )
        if revision < self.compact_revision:
            return Applied(self.revision, Compacted(revision, self.compact_revision))
        while self._history and self._history[0].revision < revision:
            self._drop_oldest()
        self.compact_revision = revision
        return Applied(self.revision, kv.CompactionResponse())

    # ----------------------------------------------------------------- history
    def _remember(self, entry: raft.HistoryRevision) -> None:
        self._history.append(entry)
        self._history_bytes += entry.ByteSize()
        # The newest revision always stays, even when it alone is over
        # bytes_max: dropping it would move compact_revision past the current
        # revision and make the latest state unreadable (Compacted).
        while len(self._history) > self.bounds.revisions_max or (
            len(self._history) > 1 and self._history_bytes > self.bounds.bytes_max
        ):
            self._drop_oldest()
        assert len(self._history) <= self.bounds.revisions_max

    def _drop_oldest(self) -> None:
        old = self._history.popleft()
        self._history_bytes -= old.ByteSize()
        self.compact_revision = max(self.compact_revision, old.revision + 1)

    def _record(self, identity: str, request_id: str, fingerprint: bytes, result: Response) -> None:
        entry = raft.DedupeEntry(
            request_id=request_id,
            revision=self.revision,
            identity=identity,
            fingerprint=fingerprint,
        )
        if isinstance(result, kv.TxnResponse):
            entry.succeeded = result.succeeded
        elif isinstance(result, kv.DeleteRangeResponse):
            entry.deleted = result.deleted
        self._dedupe[(identity, request_id)] = entry
        while len(self._dedupe) > self.bounds.dedupe_max:
            self._dedupe.popitem(last=False)

    def _replay(self, which: str, entry: raft.DedupeEntry, fingerprint: bytes) -> Applied:
        """A retried request: answer with the first attempt's outcome, write nothing.

        The replayed response carries what was recorded (revision, txn
        succeeded, deleted count), not prev_kv or txn read results. A
        different request under the same id is refused: answering it with
        the first outcome would report a write that never happened.
        """
        if entry.fingerprint != fingerprint:
            return Applied(
                self.revision,
                InvalidArgument(
                    f"request_id {entry.request_id!r} was already used for a different "
                    "request; a retry must repeat the same request, a new request "
                    "needs a new id"
                ),
            )
        result: Response
        if which == "put":
            result = kv.PutResponse()
        elif which == "delete_range":
            result = kv.DeleteRangeResponse(deleted=entry.deleted)
        else:
            result = kv.TxnResponse(succeeded=entry.succeeded)
        return Applied(entry.revision, result, duplicate=True)

    def changes(self, key: bytes, prefix: bool, limit: int) -> tuple[list[kv.HistoryEntry], bool]:
        """A key's (or prefix's) changes still in history, newest first; and
        whether more than ``limit`` matched."""
        span = _Span(key, prefix)
        out: list[kv.HistoryEntry] = []
        for entry in reversed(self._history):
            for ev in reversed(entry.events):
                if span.matches(ev.kv.key):
                    if len(out) >= limit:
                        return out, True
                    out.append(
                        kv.HistoryEntry(
                            revision=entry.revision,
                            ts_ms=entry.ts_ms,
                            event=ev,
                            identity=entry.identity,
                        )
                    )
        return out, False

    def history_since(self, start_revision: int) -> Iterator[raft.HistoryRevision]:
        """Revisions >= start_revision still in history, oldest first.

        Raises ``Compacted`` when events at start_revision are gone.
        """
        if start_revision < self.compact_revision:
            raise Compacted(start_revision, self.compact_revision)
        if not self._history or start_revision > self._history[-1].revision:
            return iter(())
        first = self._history[0].revision
        # History revisions are not contiguous (reads and no-op deletes create
        # none), so search rather than index.
        idx = _bisect_revision(self._history, max(start_revision, first))
        return (self._history[i] for i in range(idx, len(self._history)))

    # ------------------------------------------------------------------ reads
    def range(self, req: kv.RangeRequest, response_bytes_max: int) -> kv.RangeResponse:
        """Read at the latest or a past revision. Raises InvalidArgument/Compacted."""
        revision = req.revision or self.revision
        if revision > self.revision:
            raise InvalidArgument(
                f"revision {revision} is in the future (current revision {self.revision})"
            )
        if revision < self.compact_revision:
            raise Compacted(revision, self.compact_revision)
        if revision == self.revision:
            return self._range_current(req, response_bytes_max)
        return self._range_past(req, revision, response_bytes_max)

    def _range_current(
        self, req: kv.RangeRequest, response_bytes_max: int = limits.RANGE_RESPONSE_BYTES_MAX
    ) -> kv.RangeResponse:
        span = _Span(req.key, req.prefix)
        return _fill(req, (self._kvs[k] for k in self._iter_keys(span)), response_bytes_max)

    def _range_past(
        self, req: kv.RangeRequest, revision: int, response_bytes_max: int
    ) -> kv.RangeResponse:
        span = _Span(req.key, req.prefix)
        view = {k: self._kvs[k] for k in self._iter_keys(span)}
        for entry in reversed(self._history):
            if entry.revision <= revision:
                break
            for ev in reversed(entry.events):
                if not span.matches(ev.kv.key):
                    continue
                if ev.HasField("prev_kv"):
                    view[ev.kv.key] = ev.prev_kv
                else:
                    view.pop(ev.kv.key, None)
        return _fill(req, (view[k] for k in sorted(view)), response_bytes_max)

    def _iter_keys(self, span: _Span) -> Iterator[bytes]:
        if not span.prefix:
            if span.key in self._kvs:
                yield span.key
            return
        keys = self._keys
        i = bisect.bisect_left(keys, span.key)
        while i < len(keys) and keys[i].startswith(span.key):
            yield keys[i]
            i += 1

    def get(self, key: bytes) -> kv.KeyValue | None:
        return self._kvs.get(key)

    def members(self) -> list[raft.MemberRecord]:
        """The member directory, tombstones included, by name."""
        return [self._members[name] for name in sorted(self._members)]

    def __len__(self) -> int:
        return len(self._kvs)

    # --------------------------------------------------------------- snapshot
    def to_bytes(self) -> bytes:
        snap = raft.Snapshot(
            revision=self.revision,
            compact_revision=self.compact_revision,
            applied_ts_ms=self.applied_ts_ms,
            kvs=[self._kvs[k] for k in self._keys],
            history=list(self._history),
            dedupe=list(self._dedupe.values()),
            members=self.members(),
        )
        return snap.SerializeToString(deterministic=True)

    @classmethod
    def from_bytes(cls, data: bytes, history_limits: HistoryLimits | None = None) -> Store:
        snap = raft.Snapshot.FromString(data)
        store = cls(bounds=history_limits or HistoryLimits())
        store.revision = snap.revision
        store.compact_revision = snap.compact_revision
        store.applied_ts_ms = snap.applied_ts_ms
        store._kvs = {item.key: item for item in snap.kvs}
        store._keys = sorted(store._kvs)
        for entry in snap.history:
            store._remember(entry)
        for d in snap.dedupe:
            store._dedupe[(d.identity, d.request_id)] = d
        for m in snap.members:
            store._members[m.name] = m
        return store


# 128 bits: a collision between two requests of one identity under one id is
# out of reach.
_FINGERPRINT_BYTES = 16


def _fingerprint(which: str, op: kv.PutRequest | kv.DeleteRangeRequest | kv.TxnRequest) -> bytes:
    """What a retry must repeat: the operation with every field (the request id
    too, which is the same in both by construction). Deterministic
    serialization, so every replica computes the same bytes."""
    digest = hashlib.sha256(which.encode())
    digest.update(b"\x00")
    digest.update(op.SerializeToString(deterministic=True))
    return digest.digest()[:_FINGERPRINT_BYTES]


def _holds(result: int, actual: int | bytes, wanted: int | bytes) -> bool:
    if result == kv.Compare.EQUAL:
        return actual == wanted
    if result == kv.Compare.NOT_EQUAL:
        return actual != wanted
    if result == kv.Compare.GREATER:
        return actual > wanted  # type: ignore[operator]
    return actual < wanted  # type: ignore[operator]


def _fill(
    req: kv.RangeRequest, items: Iterator[kv.KeyValue], response_bytes_max: int
) -> kv.RangeResponse:
    resp = kv.RangeResponse()
    size = 0
    for item in items:
        resp.count += 1
        if req.count_only or resp.more:
            continue
        if (req.limit and len(resp.kvs) >= req.limit) or size >= response_bytes_max:
            resp.more = True
            continue
        if req.keys_only:
            resp.kvs.add(
                key=item.key,
                create_revision=item.create_revision,
                mod_revision=item.mod_revision,
                version=item.version,
            )
            size += len(item.key) + 32
        else:
            resp.kvs.append(item)
            size += len(item.key) + len(item.value) + 32
    return resp


def _bisect_revision(history: deque[raft.HistoryRevision], revision: int) -> int:
    lo, hi = 0, len(history)
    while lo < hi:
        mid = (lo + hi) // 2
        if history[mid].revision < revision:
            lo = mid + 1
        else:
            hi = mid
    return lo


def _show(key: bytes) -> str:
    return repr(key.decode("utf-8", "replace"))


__all__ = ["Applied", "HistoryLimits", "McpError", "Store"]
