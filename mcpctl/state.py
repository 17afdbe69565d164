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
- leases (docs/leases.md): id, granted TTL, last checkpointed remaining TTL
  and attached keys are replicated; a revoke or an expiry deletes every
  attached key in one revision; expiry and checkpoint commands are *fenced*:
  applied only when the proposing leader's term equals the term of the Raft
  entry that carries them (``apply(..., entry_term=)``), so a deposed leader
  can neither expire leases nor shorten their TTLs;
- failures (compare failed, compacted) are *results*, never exceptions
  escaping ``apply``: the caller runs on the Raft tick thread.

Requests are assumed well-formed (``mcpctl.validate`` runs before proposing);
checks that depend on the state happen here.
"""

from __future__ import annotations

import bisect
import hashlib
from collections import OrderedDict, deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from mcpctl import limits, validate
from mcpctl._proto.mcp.v1 import kv_pb2 as kv
from mcpctl._proto.mcp.v1 import raft_pb2 as raft
from mcpctl.errors import (
    Compacted,
    CompareFailed,
    Internal,
    InvalidArgument,
    LeaseExists,
    LeaseNotFound,
    McpError,
    ResourceExhausted,
)

Response = (
    kv.PutResponse
    | kv.DeleteRangeResponse
    | kv.TxnResponse
    | kv.CompactionResponse
    | raft.MemberRecord
    | kv.LeaseGrantResponse
    | kv.LeaseRevokeResponse
    | raft.LeaseExpireResponse
    | raft.LeaseCheckpointResponse
)

# The history identity of the revisions an expiry writes (a revoke records
# the revoker's identity instead).
LEASE_EXPIRY_IDENTITY = "lease-expiry"
_LEASE_COMMANDS = frozenset({"lease_grant", "lease_revoke", "lease_expire", "lease_checkpoint"})

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
    # A lease expiry writes one revision per expired lease (``written`` stays
    # None): these, oldest first.
    expired: tuple[raft.HistoryRevision, ...] = ()

    @property
    def writes(self) -> tuple[raft.HistoryRevision, ...]:
        """Every history entry this request created, oldest first."""
        return (self.written,) if self.written is not None else self.expired


@dataclass(frozen=True, slots=True)
class LeaseInfo:
    """A lease as the store holds it (``Store.lease``)."""

    id: int
    ttl_s: int  # granted
    remaining_ms: int  # last checkpointed (the granted TTL until the first checkpoint)
    keys: tuple[bytes, ...]  # attached, sorted


@dataclass(slots=True)
class _Lease:
    ttl_s: int
    remaining_ms: int
    keys: set[bytes] = field(default_factory=set)


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
    # Lease id -> lease. Every key with KeyValue.lease = L is in _leases[L].keys
    # and nothing else is (kept by _write, _remove and _revoke).
    _leases: dict[int, _Lease] = field(default_factory=dict)

    # ------------------------------------------------------------------ writes
    def apply(self, request: raft.InternalRequest, *, entry_term: int | None = None) -> Applied:
        """Apply one request; never raises for a request that passed validation.

        ``entry_term`` is the term of the Raft log entry that carries the
        request (every request of a batch shares its entry's term). Only the
        fenced lease commands (expire, checkpoint) read it: they apply only
        when their ``proposer_term`` equals it. Without it they change nothing
        and answer Internal (an adapter that forgot to pass it must not expire
        anything). The Raft adapter must pass it for every entry it applies,
        journal replay included; it is not the node's current term.
        """
        if request.ts_ms > self.applied_ts_ms:
            self.applied_ts_ms = request.ts_ms
        which = request.WhichOneof("request")
        if which in _LEASE_COMMANDS:
            return self._lease_command(request, entry_term)
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
        refused = self._check_attach([req])
        if refused is not None:
            return refused
        self._write(req, pending)
        resp = kv.PutResponse()
        if req.prev_kv and prev is not None:
            resp.prev_kv.CopyFrom(prev)
        return resp

    def _delete(
        self, req: kv.DeleteRangeRequest, pending: raft.HistoryRevision
    ) -> kv.DeleteRangeResponse:
        resp = kv.DeleteRangeResponse()
        for key in list(self._iter_keys(_Span(req.key, req.prefix))):
            prev = self._remove(key, pending)
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
        # An unknown or full lease fails the whole txn before anything is written.
        refused = self._check_attach(
            op.request_put for op in ops if op.WhichOneof("request") == "request_put"
        )
        if refused is not None:
            return refused
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

    def _write(self, req: kv.PutRequest, pending: raft.HistoryRevision) -> None:
        """Put one key; the caller checked the lease with _check_attach."""
        key = req.key
        prev = self._kvs.get(key)
        new = kv.KeyValue(
            key=key,
            value=req.value,
            create_revision=prev.create_revision if prev is not None else pending.revision,
            mod_revision=pending.revision,
            version=prev.version + 1 if prev is not None else 1,
            lease=req.lease,
        )
        # A put without a lease detaches the key; with another lease, moves it.
        if prev is not None and prev.lease and prev.lease != req.lease:
            self._leases[prev.lease].keys.discard(key)
        if req.lease:
            self._leases[req.lease].keys.add(key)
        if prev is None:
            bisect.insort(self._keys, key)
            pending.events.add(type=_PUT, kv=new)
        else:
            pending.events.add(type=_PUT, kv=new, prev_kv=prev)
        self._kvs[key] = new

    def _remove(self, key: bytes, pending: raft.HistoryRevision) -> kv.KeyValue:
        """Delete one existing key (and detach it from its lease); returns it."""
        prev = self._kvs.pop(key)
        del self._keys[bisect.bisect_left(self._keys, key)]
        if prev.lease:
            self._leases[prev.lease].keys.discard(key)
        pending.events.add(
            type=_DELETE,
            kv=kv.KeyValue(key=key, mod_revision=pending.revision),
            prev_kv=prev,
        )
        return prev

    def _check_attach(self, puts: Iterable[kv.PutRequest]) -> McpError | None:
        """Refuse puts naming an unknown lease, or that would take a lease past
        LEASE_KEYS_MAX keys. Deletes in the same txn are not credited."""
        adding: dict[int, set[bytes]] = {}
        for put in puts:
            if not put.lease:
                continue
            lease = self._leases.get(put.lease)
            if lease is None:
                return LeaseNotFound()
            if put.key not in lease.keys:
                adding.setdefault(put.lease, set()).add(put.key)
        for lease_id, keys in adding.items():
            if len(self._leases[lease_id].keys) + len(keys) > limits.LEASE_KEYS_MAX:
                return ResourceExhausted(
                    f"lease {lease_id}: at most {limits.LEASE_KEYS_MAX} keys per lease "
                    f"(LEASE_KEYS_MAX); {len(self._leases[lease_id].keys)} attached"
                )
        return None

    # ------------------------------------------------------------------ leases
    def _lease_command(self, request: raft.InternalRequest, entry_term: int | None) -> Applied:
        which = request.WhichOneof("request")
        if which == "lease_grant":
            return Applied(self.revision, self._grant(request.lease_grant))
        if which == "lease_revoke":
            lease_id = request.lease_revoke.id
            if lease_id not in self._leases:
                return Applied(self.revision, LeaseNotFound())
            written = self._revoke(lease_id, request.ts_ms, request.identity)
            return Applied(self.revision, kv.LeaseRevokeResponse(), written)
        if which == "lease_expire":
            return self._expire(request, entry_term)
        return Applied(self.revision, self._checkpoint(request.lease_checkpoint, entry_term))

    def _grant(self, req: kv.LeaseGrantRequest) -> kv.LeaseGrantResponse | McpError:
        if req.id <= 0:
            return InvalidArgument("lease_grant.id: the proposing node must choose an id > 0")
        if not 1 <= req.ttl <= limits.LEASE_TTL_S_MAX:
            return InvalidArgument(
                f"lease_grant.ttl: {req.ttl} s is outside 1..{limits.LEASE_TTL_S_MAX} "
                "(the node raises a TTL below the minimum before proposing)"
            )
        if req.id in self._leases:
            return LeaseExists()
        if len(self._leases) >= limits.LEASES_MAX:
            return ResourceExhausted(
                f"lease: {limits.LEASES_MAX} leases exist (LEASES_MAX); revoke one first"
            )
        self._leases[req.id] = _Lease(ttl_s=req.ttl, remaining_ms=req.ttl * 1000)
        return kv.LeaseGrantResponse(id=req.id, ttl=req.ttl)

    def _revoke(self, lease_id: int, ts_ms: int, identity: str) -> raft.HistoryRevision | None:
        """Delete the lease's keys in ONE revision (none when it has no keys) and the lease."""
        lease = self._leases[lease_id]
        pending = raft.HistoryRevision(revision=self.revision + 1, ts_ms=ts_ms, identity=identity)
        for key in sorted(lease.keys):  # sorted: a set's order differs between processes
            self._remove(key, pending)
        assert not lease.keys
        del self._leases[lease_id]
        if not pending.events:
            return None
        self.revision = pending.revision
        self._remember(pending)
        return pending

    @staticmethod
    def _fenced(proposer_term: int, entry_term: int | None) -> McpError | bool:
        """Whether a leader-clock command is stale (Internal: no entry term to judge)."""
        if entry_term is None:
            return Internal("a fenced lease command was applied without its Raft entry's term")
        return proposer_term != entry_term

    def _expire(self, request: raft.InternalRequest, entry_term: int | None) -> Applied:
        req = request.lease_expire
        try:
            validate.check_lease_expire(req)
        except McpError as err:
            return Applied(self.revision, err)
        fenced = self._fenced(req.proposer_term, entry_term)
        if isinstance(fenced, McpError):
            return Applied(self.revision, fenced)
        if fenced:
            return Applied(self.revision, raft.LeaseExpireResponse(fenced=True))
        resp = raft.LeaseExpireResponse()
        written: list[raft.HistoryRevision] = []
        for lease_id in req.ids:
            if lease_id not in self._leases:
                resp.skipped.append(lease_id)  # revoked or expired already
                continue
            entry = self._revoke(lease_id, request.ts_ms, LEASE_EXPIRY_IDENTITY)
            resp.expired.append(lease_id)
            if entry is not None:
                written.append(entry)
        return Applied(self.revision, resp, expired=tuple(written))

    def _checkpoint(
        self, req: raft.LeaseCheckpointRequest, entry_term: int | None
    ) -> raft.LeaseCheckpointResponse | McpError:
        try:
            validate.check_lease_checkpoint(req)
        except McpError as err:
            return err
        fenced = self._fenced(req.proposer_term, entry_term)
        if isinstance(fenced, McpError):
            return fenced
        if fenced:
            return raft.LeaseCheckpointResponse(fenced=True)
        resp = raft.LeaseCheckpointResponse()
        for cp in req.checkpoints:
            lease = self._leases.get(cp.id)
            if lease is None:
                resp.skipped.append(cp.id)
                continue
            # Never more than granted: a checkpoint records, it does not extend.
            lease.remaining_ms = min(cp.remaining_ms, lease.ttl_s * 1000)
            resp.recorded.append(cp.id)
        return resp

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

    def lease(self, lease_id: int) -> LeaseInfo | None:
        """The lease with this id, or None."""
        lease = self._leases.get(lease_id)
        if lease is None:
            return None
        return LeaseInfo(lease_id, lease.ttl_s, lease.remaining_ms, tuple(sorted(lease.keys)))

    def leases(self) -> list[int]:
        """Every live lease id, ascending."""
        return sorted(self._leases)

    def leases_remaining_ms(self) -> list[tuple[int, int]]:
        """(id, last checkpointed remaining TTL in ms) of every lease, by id:
        what a new leader seeds its expiry clock from."""
        return [(i, self._leases[i].remaining_ms) for i in sorted(self._leases)]

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
            leases=[
                raft.LeaseRecord(id=i, ttl_s=self._leases[i].ttl_s, remaining_ms=ms)
                for i, ms in self.leases_remaining_ms()
            ],
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
        for rec in snap.leases:
            store._leases[rec.id] = _Lease(ttl_s=rec.ttl_s, remaining_ms=rec.remaining_ms)
        for item in snap.kvs:  # attachments travel as KeyValue.lease
            if not item.lease:
                continue
            if item.lease not in store._leases:
                raise Internal(
                    f"snapshot: key {_show(item.key)} is attached to lease {item.lease}, "
                    "which the snapshot does not hold"
                )
            store._leases[item.lease].keys.add(item.key)
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


__all__ = ["LEASE_EXPIRY_IDENTITY", "Applied", "HistoryLimits", "LeaseInfo", "McpError", "Store"]
