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

The store owns the keys, the revision counter and the member directory, and
composes the parts with a job of their own: the history ring (``history``),
the dedupe table (``dedupe``) and the lease table (``leases``). A revoke or an
expiry deletes keys and writes a revision, so it runs here.
"""

from __future__ import annotations

import bisect
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field

from mcpctl import limits, validate
from mcpctl._proto.mcp.v1 import kv_pb2 as kv
from mcpctl._proto.mcp.v1 import raft_pb2 as raft
from mcpctl.errors import (
    Compacted,
    CompareFailed,
    Internal,
    InvalidArgument,
    LeaseNotFound,
    McpError,
)
from mcpctl.state.applied import Applied, Response
from mcpctl.state.dedupe import DedupeTable, replay, request_fingerprint
from mcpctl.state.history import History, HistoryLimits
from mcpctl.state.keyspace import Span, compare_one, fill, fill_wire, holds, show
from mcpctl.state.leases import (
    LEASE_COMMANDS,
    LEASE_EXPIRY_IDENTITY,
    LeaseInfo,
    LeaseTable,
    is_fenced,
)
from mcpctl.state.records import Revision, Version, event_key, framed, messages
from mcpctl.state.snapshot_wire import load_snapshot, snapshot_bytes


@dataclass(slots=True)
class Store:
    """The replicated key/value state. See the module docstring."""

    bounds: HistoryLimits = field(default_factory=HistoryLimits)
    revision: int = 0
    applied_ts_ms: int = 0
    # One Version per key, shared with the history (records.py).
    _kvs: dict[bytes, Version] = field(default_factory=dict)
    _keys: list[bytes] = field(default_factory=list)  # sorted view of _kvs
    # The encoded bytes of the current key-values (kept by _write and _remove),
    # so that a size report is not a walk of every key under the store's lock.
    live_bytes: int = 0
    _history: History = field(init=False)
    _dedupe: DedupeTable = field(init=False)
    # The member directory: name -> record (tombstones kept, so a removed
    # member can tell). Bounded by the Raft membership, not by clients.
    _members: dict[str, raft.MemberRecord] = field(default_factory=dict)
    # Every key with KeyValue.lease = L is attached to lease L and nothing
    # else is (kept by _write, _remove and _revoke).
    _leases: LeaseTable = field(default_factory=LeaseTable)

    def __post_init__(self) -> None:
        self._history = History(self.bounds)
        self._dedupe = DedupeTable(self.bounds.dedupe_max)

    @property
    def compact_revision(self) -> int:
        """The oldest revision still readable; older ones answer Compacted."""
        return self._history.compact_revision

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
        if which in LEASE_COMMANDS:
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
            fingerprint = request_fingerprint(which, op)
            seen = self._dedupe.get(request.identity, op.request_id)
            if seen is not None:
                return replay(which, op.request_id, seen, fingerprint, self.revision)
        pending: list[Version | None] = []
        result: Response | McpError
        if which == "put":
            result = self._put(request.put, pending)
        elif which == "delete_range":
            result = self._delete(request.delete_range, pending)
        else:
            result = self._txn(request.txn, pending)
        written = self._commit(pending, request.ts_ms, request.identity)
        if op.request_id and not isinstance(result, McpError):
            self._dedupe.record(request.identity, op.request_id, fingerprint, result, self.revision)
        return Applied(self.revision, result, written)

    def _commit(
        self, pending: list[Version | None], ts_ms: int, identity: str
    ) -> raft.HistoryRevision | None:
        """Close the revision the events in ``pending`` wrote (None: nothing written)."""
        if not pending:
            return None
        # The new versions hold this very int: share it rather than hold equal copies.
        first = pending[0]
        if first is None:
            first = next((v for v in pending[0::2] if v), None)
        self.revision = self.revision + 1 if first is None else first.mod_revision
        entry = Revision(self.revision, ts_ms, sys.intern(identity), tuple(pending))
        wire = entry.wire()
        entry.nbytes = len(wire)
        message = raft.HistoryRevision.FromString(wire)
        self._history.remember(entry, message)
        return message

    def _put(self, req: kv.PutRequest, pending: list[Version | None]) -> Response | McpError:
        prev = self._kvs.get(req.key)
        if req.HasField("expected_mod_revision"):
            actual = prev.mod_revision if prev is not None else 0
            if actual != req.expected_mod_revision:
                return CompareFailed(
                    f"key {show(req.key)}: mod_revision is {actual}, "
                    f"expected {req.expected_mod_revision}"
                )
        refused = self._leases.check_attach([req])
        if refused is not None:
            return refused
        self._write(req, pending)
        resp = kv.PutResponse()
        if req.prev_kv and prev is not None:
            resp.prev_kv.MergeFromString(prev.blob)
        return resp

    def _delete(
        self, req: kv.DeleteRangeRequest, pending: list[Version | None]
    ) -> kv.DeleteRangeResponse:
        resp = kv.DeleteRangeResponse()
        for key in list(self._iter_keys(Span(req.key, req.prefix))):
            prev = self._remove(key, pending)
            resp.deleted += 1
            if req.prev_kv:
                resp.prev_kvs.add().MergeFromString(prev.blob)
        return resp

    def _txn(self, req: kv.TxnRequest, pending: list[Version | None]) -> Response | McpError:
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
        refused = self._leases.check_attach(
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
            actual = sum(1 for _ in self._iter_keys(Span(c.key, c.prefix)))
            return holds(c.result, actual, c.count)
        if c.prefix:
            return all(compare_one(self._kvs[k], c) for k in self._iter_keys(Span(c.key, True)))
        return compare_one(self._kvs.get(c.key), c)

    def _write(self, req: kv.PutRequest, pending: list[Version | None]) -> None:
        """Put one key; the caller checked the lease with check_attach."""
        key = req.key
        prev = self._kvs.get(key)
        if prev is not None:
            key = prev.key  # the key table's own bytes: one object per key, not per version
        revision = self.revision + 1
        new = Version.new(
            key,
            req.value,
            prev.create_revision if prev is not None else revision,
            revision,
            prev.version + 1 if prev is not None else 1,
            req.lease,
        )
        # A put without a lease detaches the key; with another lease, moves it.
        if prev is not None and prev.lease and prev.lease != req.lease:
            self._leases.detach(prev.lease, key)
        if req.lease:
            self._leases.attach(req.lease, key)
        if prev is None:
            bisect.insort(self._keys, key)
        self.live_bytes += len(new.blob) - (len(prev.blob) if prev is not None else 0)
        pending += (new, prev)
        self._kvs[key] = new

    def _remove(self, key: bytes, pending: list[Version | None]) -> Version:
        """Delete one existing key (and detach it from its lease); returns it."""
        prev = self._kvs.pop(key)
        del self._keys[bisect.bisect_left(self._keys, key)]
        self.live_bytes -= len(prev.blob)
        if prev.lease:
            self._leases.detach(prev.lease, key)
        pending += (None, prev)
        return prev

    # ------------------------------------------------------------------ leases
    def _lease_command(self, request: raft.InternalRequest, entry_term: int | None) -> Applied:
        which = request.WhichOneof("request")
        if which == "lease_grant":
            return Applied(self.revision, self._leases.grant(request.lease_grant))
        if which == "lease_revoke":
            lease_id = request.lease_revoke.id
            if lease_id not in self._leases:
                return Applied(self.revision, LeaseNotFound())
            written = self._revoke(lease_id, request.ts_ms, request.identity)
            return Applied(
                self.revision, kv.LeaseRevokeResponse(), written, leases_ended=(lease_id,)
            )
        if which == "lease_expire":
            return self._expire(request, entry_term)
        return Applied(self.revision, self._leases.checkpoint(request.lease_checkpoint, entry_term))

    def _revoke(self, lease_id: int, ts_ms: int, identity: str) -> raft.HistoryRevision | None:
        """Delete the lease's keys in ONE revision (none when it has no keys) and the lease."""
        pending: list[Version | None] = []
        for key in self._leases.keys_of(lease_id):
            self._remove(key, pending)
        self._leases.remove(lease_id)
        return self._commit(pending, ts_ms, identity)

    def _expire(self, request: raft.InternalRequest, entry_term: int | None) -> Applied:
        req = request.lease_expire
        try:
            validate.check_lease_expire(req)
        except McpError as err:
            return Applied(self.revision, err)
        fenced = is_fenced(req.proposer_term, entry_term)
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
        return Applied(
            self.revision, resp, expired=tuple(written), leases_ended=tuple(resp.expired)
        )

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
        self._history.compact(revision)
        return Applied(self.revision, kv.CompactionResponse())

    # ----------------------------------------------------------------- history
    def changes(self, key: bytes, prefix: bool, limit: int) -> tuple[list[kv.HistoryEntry], bool]:
        """A key's (or prefix's) changes still in history, newest first; and
        whether more than ``limit`` matched."""
        return self._history.changes(key, prefix, limit)

    def history_since(self, start_revision: int) -> Iterator[raft.HistoryRevision]:
        """Revisions >= start_revision still in history, oldest first.

        Raises ``Compacted`` when events at start_revision are gone.
        """
        return self._history.since(start_revision)

    # ------------------------------------------------------------------ reads
    def range(self, req: kv.RangeRequest, response_bytes_max: int) -> kv.RangeResponse:
        """Read at the latest or a past revision. Raises InvalidArgument/Compacted."""
        return kv.RangeResponse.FromString(self.range_wire(req, response_bytes_max))

    def range_wire(self, req: kv.RangeRequest, response_bytes_max: int) -> bytes:
        """``range``'s answer as wire bytes without a header (the server puts its own
        in front): nothing parsed here to be encoded again for the client."""
        revision = req.revision or self.revision
        if revision > self.revision:
            raise InvalidArgument(
                f"revision {revision} is in the future (current revision {self.revision})"
            )
        if revision < self.compact_revision:
            raise Compacted(revision, self.compact_revision)
        if revision == self.revision and not (req.prefix or req.count_only or req.keys_only):
            found = self._kvs.get(req.key)  # one key (most reads): what fill_wire makes of it
            return b"" if found is None else framed(b"\x12", found.blob) + b"\x20\x01"
        span = Span(req.key, req.prefix)
        if revision == self.revision:
            items = (self._kvs[k] for k in self._iter_keys(span))
            return fill_wire(req, items, response_bytes_max)
        view = self._view_past(span, revision)
        return fill_wire(req, (view[k] for k in sorted(view)), response_bytes_max)

    def _range_current(
        self, req: kv.RangeRequest, response_bytes_max: int = limits.RANGE_RESPONSE_BYTES_MAX
    ) -> kv.RangeResponse:
        span = Span(req.key, req.prefix)
        return fill(req, (self._kvs[k] for k in self._iter_keys(span)), response_bytes_max)

    def items(self, span: Span, revision: int) -> list[kv.KeyValue]:
        """The span's key-values as of ``revision``, in key order; the caller
        checked the revision (not compacted, not in the future)."""
        if revision >= self.revision:
            return messages(self._kvs[k] for k in self._iter_keys(span))
        view = self._view_past(span, revision)
        return messages(view[k] for k in sorted(view))

    def _view_past(self, span: Span, revision: int) -> dict[bytes, Version]:
        view = {k: self._kvs[k] for k in self._iter_keys(span)}
        for entry in self._history.newest_first():
            if entry.revision <= revision:
                break
            ev = entry.events
            for i in range(len(ev) - 2, -1, -2):
                new, prev = ev[i], ev[i + 1]
                key = event_key(new, prev)
                if not span.matches(key):
                    continue
                if prev is not None:
                    view[key] = prev
                else:
                    view.pop(key, None)
        return view

    def _iter_keys(self, span: Span) -> Iterator[bytes]:
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
        item = self._kvs.get(key)
        return None if item is None else item.message()

    def lease(self, lease_id: int) -> LeaseInfo | None:
        """The lease with this id, or None."""
        return self._leases.info(lease_id)

    def lease_ttl_s(self, lease_id: int) -> int | None:
        """The lease's granted TTL, or None (cheap: no key list)."""
        return self._leases.ttl_s(lease_id)

    def lease_count(self) -> int:
        return len(self._leases)

    def leases(self) -> list[int]:
        """Every live lease id, ascending."""
        return self._leases.ids()

    def leases_remaining_ms(self) -> list[tuple[int, int]]:
        """(id, last checkpointed remaining TTL in ms) of every lease, by id:
        what a new leader seeds its expiry clock from."""
        return self._leases.remaining_ms()

    def members(self) -> list[raft.MemberRecord]:
        """The member directory, tombstones included, by name."""
        return [self._members[name] for name in sorted(self._members)]

    def __len__(self) -> int:
        return len(self._kvs)

    # --------------------------------------------------------------- snapshot
    def to_bytes(self) -> bytes:
        """The ``raft.Snapshot`` bytes (deterministic: equal stores, equal bytes)."""
        return snapshot_bytes(
            raft.Snapshot(
                revision=self.revision,
                compact_revision=self.compact_revision,
                applied_ts_ms=self.applied_ts_ms,
            ),
            [self._kvs[k] for k in self._keys],
            self._history.entries(),
            self._dedupe.wires(),
            raft.Snapshot(
                members=self.members(),
                leases=self._leases.records(),
            ),
        )

    @classmethod
    def from_bytes(cls, data: bytes, history_limits: HistoryLimits | None = None) -> Store:
        snap = raft.Snapshot.FromString(data)
        store = cls(bounds=history_limits or HistoryLimits())
        store.revision = snap.revision
        store._history.compact_revision = snap.compact_revision
        store.applied_ts_ms = snap.applied_ts_ms
        kvs, history = load_snapshot(snap)
        store._kvs = {item.key: item for item in kvs}
        store._keys = sorted(store._kvs)
        store.live_bytes = sum(len(item.blob) for item in kvs)
        for entry in history:
            store._history.remember(entry)
        for d in snap.dedupe:
            store._dedupe.load(d)
        for m in snap.members:
            store._members[m.name] = m
        for rec in snap.leases:
            store._leases.load(rec)
        for item in kvs:  # attachments travel as KeyValue.lease
            if not item.lease:
                continue
            if item.lease not in store._leases:
                raise Internal(
                    f"snapshot: key {show(item.key)} is attached to lease {item.lease}, "
                    "which the snapshot does not hold"
                )
            store._leases.attach(item.lease, item.key)
        return store
