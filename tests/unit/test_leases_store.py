"""Leases in the pure store (docs/leases.md): grant, attach, detach, move,
revoke, the fenced expiry and checkpoint, snapshots and limits.

Each test drives ``Store.apply`` with raw ``InternalRequest`` messages, as the
Raft log carries them, with ``entry_term`` standing for the term of the log
entry; no network, no clock.
"""

from __future__ import annotations

import pytest

from mcpctl import errors, limits, validate
from mcpctl._proto.mcp.v1 import kv_pb2 as kv
from mcpctl._proto.mcp.v1 import raft_pb2 as raft
from mcpctl.state import LEASE_EXPIRY_IDENTITY, Applied, LeaseInfo, Store

RESPONSE_BYTES_MAX = limits.RANGE_RESPONSE_BYTES_MAX


# ------------------------------------------------------------------ helpers
def grant(lease_id: int, ttl_s: int = 10) -> raft.InternalRequest:
    return raft.InternalRequest(lease_grant=kv.LeaseGrantRequest(id=lease_id, ttl=ttl_s))


def revoke(lease_id: int, identity: str = "alice", ts_ms: int = 0) -> raft.InternalRequest:
    return raft.InternalRequest(
        ts_ms=ts_ms, identity=identity, lease_revoke=kv.LeaseRevokeRequest(id=lease_id)
    )


def expire(*ids: int, term: int, ts_ms: int = 0) -> raft.InternalRequest:
    req = raft.LeaseExpireRequest(ids=ids, proposer_term=term)
    return raft.InternalRequest(ts_ms=ts_ms, identity="node-1", lease_expire=req)


def checkpoint(term: int, **remaining_ms: int) -> raft.InternalRequest:
    req = raft.LeaseCheckpointRequest(proposer_term=term)
    for name, ms in remaining_ms.items():
        req.checkpoints.add(id=int(name.lstrip("l")), remaining_ms=ms)
    return raft.InternalRequest(lease_checkpoint=req)


def put(key: str, value: str = "v", lease: int = 0, request_id: str = "") -> raft.InternalRequest:
    req = kv.PutRequest(key=key.encode(), value=value.encode(), lease=lease, request_id=request_id)
    return raft.InternalRequest(put=req)


def delete(key: str, prefix: bool = False) -> raft.InternalRequest:
    return raft.InternalRequest(delete_range=kv.DeleteRangeRequest(key=key.encode(), prefix=prefix))


def op_put(key: str, lease: int = 0) -> kv.RequestOp:
    return kv.RequestOp(request_put=kv.PutRequest(key=key.encode(), value=b"t", lease=lease))


def ok(applied: Applied) -> Applied:
    assert not isinstance(applied.result, errors.McpError), applied.result
    return applied


def keys_of(store: Store) -> dict[str, int]:
    """Every key with the lease it reports (0 = none)."""
    got = store.range(kv.RangeRequest(key=b"", prefix=True), RESPONSE_BYTES_MAX)
    return {item.key.decode(): item.lease for item in got.kvs}


def attached(store: Store, lease_id: int) -> list[str]:
    info = store.lease(lease_id)
    assert info is not None
    return [k.decode() for k in info.keys]


def store_with(*lease_ids: int) -> Store:
    store = Store()
    for lease_id in lease_ids:
        ok(store.apply(grant(lease_id)))
    return store


# -------------------------------------------------------------------- grant
def test_grant_records_id_ttl_and_full_remaining() -> None:
    """Grant: a lease with the node-chosen id, its TTL, remaining = TTL, no keys, no revision."""
    store = Store()
    applied = ok(store.apply(grant(7, ttl_s=10)))
    assert applied.result == kv.LeaseGrantResponse(id=7, ttl=10)
    assert applied.writes == () and store.revision == 0
    assert store.lease(7) == LeaseInfo(id=7, ttl_s=10, remaining_ms=10_000, keys=())
    assert store.leases() == [7]
    assert store.lease(8) is None


def test_grant_of_an_existing_id_fails_with_etcds_text() -> None:
    """Grant: a duplicate id is refused ("lease already exists") and the lease is unchanged."""
    store = store_with(7)
    applied = store.apply(grant(7, ttl_s=99))
    assert isinstance(applied.result, errors.LeaseExists)
    assert applied.result.message == "lease already exists"
    assert applied.result.code == "FAILED_PRECONDITION"
    assert store.lease(7) == LeaseInfo(7, 10, 10_000, ())


@pytest.mark.parametrize("ttl_s", [0, -1, limits.LEASE_TTL_S_MAX + 1])
def test_grant_ttl_outside_its_range_is_refused(ttl_s: int) -> None:
    """Grant: TTL must be 1..LEASE_TTL_S_MAX (raising to the minimum is the node's job)."""
    store = Store()
    applied = store.apply(grant(7, ttl_s=ttl_s))
    assert isinstance(applied.result, errors.InvalidArgument)
    assert store.leases() == []


def test_grant_ttl_at_its_bounds_is_granted() -> None:
    """Grant: TTL 1 and LEASE_TTL_S_MAX are both accepted (the limit is inclusive)."""
    store = Store()
    ok(store.apply(grant(1, ttl_s=1)))
    ok(store.apply(grant(2, ttl_s=limits.LEASE_TTL_S_MAX)))
    assert store.lease(2) == LeaseInfo(2, limits.LEASE_TTL_S_MAX, limits.LEASE_TTL_S_MAX * 1000, ())


@pytest.mark.parametrize("lease_id", [0, -5])
def test_grant_needs_an_id_chosen_by_the_node(lease_id: int) -> None:
    """Grant: the store has no randomness; an id <= 0 reaching it is refused."""
    applied = Store().apply(grant(lease_id))
    assert isinstance(applied.result, errors.InvalidArgument)


def test_leases_max_is_the_last_grant_that_succeeds() -> None:
    """LEASES_MAX: exactly that many leases can exist; one more is RESOURCE_EXHAUSTED."""
    store = Store()
    for lease_id in range(1, limits.LEASES_MAX + 1):
        ok(store.apply(grant(lease_id)))
    applied = store.apply(grant(limits.LEASES_MAX + 1))
    assert isinstance(applied.result, errors.ResourceExhausted)
    assert len(store.leases()) == limits.LEASES_MAX
    ok(store.apply(revoke(1)))
    ok(store.apply(grant(limits.LEASES_MAX + 1)))


# --------------------------------------------------------- attach / detach
def test_put_with_lease_attaches_and_reports_it() -> None:
    """Attach: the key lists the lease (reads, events, history) and the lease lists the key."""
    store = store_with(7)
    applied = ok(store.apply(put("/a", lease=7)))
    assert applied.written is not None
    assert applied.written.events[0].kv.lease == 7
    assert keys_of(store) == {"/a": 7}
    assert attached(store, 7) == ["/a"]
    assert store.get(b"/a") is not None and store.get(b"/a").lease == 7  # type: ignore[union-attr]


def test_put_without_lease_detaches() -> None:
    """Detach: a put without a lease on a leased key detaches it (etcd semantics)."""
    store = store_with(7)
    ok(store.apply(put("/a", lease=7)))
    applied = ok(store.apply(put("/a", "2")))
    assert applied.written is not None
    assert applied.written.events[0].prev_kv.lease == 7
    assert applied.written.events[0].kv.lease == 0
    assert keys_of(store) == {"/a": 0}
    assert attached(store, 7) == []


def test_put_with_another_lease_moves_the_key() -> None:
    """Move: a put with another lease detaches from the old one and attaches to the new."""
    store = store_with(7, 8)
    ok(store.apply(put("/a", lease=7)))
    ok(store.apply(put("/a", lease=8)))
    assert keys_of(store) == {"/a": 8}
    assert (attached(store, 7), attached(store, 8)) == ([], ["/a"])
    ok(store.apply(revoke(7)))
    assert keys_of(store) == {"/a": 8}


def test_delete_detaches() -> None:
    """Detach: deleting a key (alone or by prefix) removes it from its lease."""
    store = store_with(7)
    for key in ("/a", "/p/1", "/p/2"):
        ok(store.apply(put(key, lease=7)))
    ok(store.apply(delete("/a")))
    assert attached(store, 7) == ["/p/1", "/p/2"]
    ok(store.apply(delete("/p/", prefix=True)))
    assert attached(store, 7) == []


def test_put_with_unknown_lease_writes_nothing() -> None:
    """Unknown lease: NOT_FOUND "lease not found", no revision, no key, no history."""
    store = store_with(7)
    ok(store.apply(put("/a", "1")))
    before = store.to_bytes()
    applied = store.apply(put("/a", "2", lease=8, request_id="r1"))
    assert isinstance(applied.result, errors.LeaseNotFound)
    assert applied.result.message == "lease not found"
    assert applied.result.code == "NOT_FOUND"
    assert applied.writes == () and applied.revision == 1
    assert store.to_bytes() == before
    # The failed put was not remembered: the same request id applies once the lease exists.
    ok(store.apply(grant(8)))
    assert ok(store.apply(put("/a", "2", lease=8, request_id="r1"))).revision == 2


def test_txn_with_unknown_lease_fails_whole() -> None:
    """Txn: one put naming an unknown lease fails the whole txn; nothing is written."""
    store = store_with(7)
    ok(store.apply(put("/keep", "1")))
    before = store.to_bytes()
    txn = kv.TxnRequest(
        success=[
            op_put("/a", lease=7),
            kv.RequestOp(request_delete_range=kv.DeleteRangeRequest(key=b"/keep")),
            op_put("/b", lease=99),
        ]
    )
    applied = store.apply(raft.InternalRequest(txn=txn))
    assert isinstance(applied.result, errors.LeaseNotFound)
    assert applied.writes == ()
    assert store.to_bytes() == before


def test_txn_puts_with_leases_attach_at_one_revision() -> None:
    """Txn: puts with leases attach at the txn's one revision; only the chosen branch counts."""
    store = store_with(7)
    txn = kv.TxnRequest(
        compare=[kv.Compare(key=b"/x", target=kv.Compare.VERSION, version=0)],
        success=[op_put("/a", lease=7), op_put("/b", lease=7)],
        failure=[op_put("/c", lease=99)],  # not taken: its unknown lease does not matter
    )
    applied = ok(store.apply(raft.InternalRequest(txn=txn)))
    assert applied.revision == 1
    assert attached(store, 7) == ["/a", "/b"]


def test_lease_keys_max_is_the_last_key_attached() -> None:
    """LEASE_KEYS_MAX: that many keys attach; one more is RESOURCE_EXHAUSTED and nothing is written;
    re-putting an attached key does not count twice."""
    store = store_with(7)
    for i in range(limits.LEASE_KEYS_MAX):
        ok(store.apply(put(f"/k/{i:04}", lease=7)))
    before = store.to_bytes()
    applied = store.apply(put("/k/one-more", lease=7))
    assert isinstance(applied.result, errors.ResourceExhausted)
    assert store.to_bytes() == before
    ok(store.apply(put("/k/0000", "again", lease=7)))
    assert len(attached(store, 7)) == limits.LEASE_KEYS_MAX
    # A txn that would go past the limit fails whole.
    txn = kv.TxnRequest(success=[op_put("/k/0001", lease=0), op_put("/k/new", lease=7)])
    applied = store.apply(raft.InternalRequest(txn=txn))
    assert isinstance(applied.result, errors.ResourceExhausted)
    assert keys_of(store)["/k/0001"] == 7


def test_negative_lease_on_put_is_invalid() -> None:
    """Validation: PutRequest.lease is 0 (none) or a lease id."""
    with pytest.raises(errors.InvalidArgument):
        validate.check_put(kv.PutRequest(key=b"/a", lease=-1), limits.VALUE_BYTES_MAX_DEFAULT)


# ------------------------------------------------------------------ revoke
def test_revoke_deletes_every_key_in_one_revision() -> None:
    """Revoke: every attached key deleted in ONE revision (one history entry, so watchers
    get one message), recorded with the revoker's identity; the lease is gone."""
    store = store_with(7, 8)
    for key in ("/b", "/a", "/c"):
        ok(store.apply(put(key, lease=7)))
    ok(store.apply(put("/other", lease=8)))
    applied = ok(store.apply(revoke(7, identity="bob", ts_ms=1234)))
    assert applied.result == kv.LeaseRevokeResponse()
    entry = applied.written
    assert entry is not None and applied.writes == (entry,)
    assert (entry.revision, entry.identity, entry.ts_ms) == (5, "bob", 1234)
    assert [(ev.type, ev.kv.key, ev.prev_kv.lease) for ev in entry.events] == [
        (kv.Event.DELETE, b"/a", 7),
        (kv.Event.DELETE, b"/b", 7),
        (kv.Event.DELETE, b"/c", 7),
    ]
    assert list(store.history_since(5)) == [entry]
    assert keys_of(store) == {"/other": 8}
    assert store.leases() == [8]


def test_revoke_unknown_lease_is_not_found() -> None:
    """Revoke: an unknown id is NOT_FOUND "lease not found" and changes nothing."""
    store = store_with(7)
    before = store.to_bytes()
    applied = store.apply(revoke(9))
    assert isinstance(applied.result, errors.LeaseNotFound)
    assert store.to_bytes() == before


def test_revoke_of_a_lease_without_keys_writes_no_revision() -> None:
    """Revoke: no keys means nothing deleted, so no revision (as a delete of nothing)."""
    store = store_with(7)
    applied = ok(store.apply(revoke(7)))
    assert applied.writes == () and store.revision == 0 and store.leases() == []


def test_revoked_keys_stay_readable_in_the_past_and_compact_normally() -> None:
    """History: a revoke is a normal revision: past reads see the keys, compaction drops it."""
    store = store_with(7)
    ok(store.apply(put("/a", lease=7)))
    ok(store.apply(revoke(7)))
    past = store.range(kv.RangeRequest(key=b"/a", revision=1), RESPONSE_BYTES_MAX)
    assert [(i.key, i.lease) for i in past.kvs] == [(b"/a", 7)]
    ok(store.apply(raft.InternalRequest(compaction=kv.CompactionRequest(revision=2))))
    assert [e.revision for e in store.history_since(2)] == [2]
    with pytest.raises(errors.Compacted):
        store.range(kv.RangeRequest(key=b"/a", revision=1), RESPONSE_BYTES_MAX)


# ------------------------------------------------------------------ expire
def test_expiry_with_matching_term_revokes_one_revision_per_lease() -> None:
    """Expiry fence, matching term: applied; each lease is its own revision (as etcd's revoke
    per lease), identity "lease-expiry"; unknown ids are skipped, not an error."""
    store = store_with(7, 8, 9)
    ok(store.apply(put("/a", lease=7)))
    ok(store.apply(put("/b", lease=8)))
    ok(store.apply(put("/c", lease=8)))
    applied = ok(store.apply(expire(7, 42, 9, 8, term=3, ts_ms=500), entry_term=3))
    assert applied.result == raft.LeaseExpireResponse(expired=[7, 9, 8], skipped=[42])
    assert applied.written is None
    assert [(e.revision, e.identity, e.ts_ms) for e in applied.writes] == [
        (4, LEASE_EXPIRY_IDENTITY, 500),
        (5, LEASE_EXPIRY_IDENTITY, 500),
    ]
    assert [[ev.kv.key for ev in e.events] for e in applied.writes] == [[b"/a"], [b"/b", b"/c"]]
    assert applied.revision == store.revision == 5
    assert keys_of(store) == {} and store.leases() == []


def test_expiry_with_stale_term_is_dropped() -> None:
    """Expiry fence, stale term: a deposed leader's expiry, appended by a newer leader
    (entry term 4 != proposer term 3), changes nothing and says fenced."""
    store = store_with(7)
    ok(store.apply(put("/a", lease=7)))
    before = store.to_bytes()
    applied = store.apply(expire(7, term=3), entry_term=4)
    assert applied.result == raft.LeaseExpireResponse(fenced=True)
    assert applied.writes == () and applied.revision == 1
    # (applied_ts_ms, the lag clock, advances for every entry; ts 0 keeps it still here)
    assert store.to_bytes() == before
    assert attached(store, 7) == ["/a"]


def test_expiry_from_a_newer_term_than_its_entry_is_dropped_too() -> None:
    """Expiry fence: only equality applies; proposer_term > entry term cannot be honest."""
    store = store_with(7)
    assert store.apply(expire(7, term=5), entry_term=4).result == raft.LeaseExpireResponse(
        fenced=True
    )
    assert store.leases() == [7]


def test_expiry_without_entry_term_applies_nothing() -> None:
    """Expiry fence: an adapter that does not pass the entry's term gets Internal, not an expiry."""
    store = store_with(7)
    applied = store.apply(expire(7, term=3))
    assert isinstance(applied.result, errors.Internal)
    assert store.leases() == [7]


def test_expiry_of_revoked_lease_is_skipped() -> None:
    """Expiry: a lease revoked meanwhile is skipped (not an error), no revision."""
    store = store_with(7)
    ok(store.apply(revoke(7)))
    applied = ok(store.apply(expire(7, term=2), entry_term=2))
    assert applied.result == raft.LeaseExpireResponse(skipped=[7])
    assert applied.writes == () and store.revision == 0


def test_expire_batch_max_is_the_largest_command() -> None:
    """LEASE_EXPIRE_BATCH_MAX: that many ids apply; one more: INVALID_ARGUMENT, none expired."""
    n = limits.LEASE_EXPIRE_BATCH_MAX
    store = store_with(*range(1, n + 2))
    applied = store.apply(expire(*range(1, n + 2), term=1), entry_term=1)
    assert isinstance(applied.result, errors.InvalidArgument)
    assert len(store.leases()) == n + 1
    ok(store.apply(expire(*range(1, n + 1), term=1), entry_term=1))
    assert store.leases() == [n + 1]


# -------------------------------------------------------------- checkpoint
def test_checkpoint_with_matching_term_records_remaining() -> None:
    """Checkpoint fence, matching term: remaining TTLs recorded (capped at the granted TTL),
    unknown ids skipped; no revision; a new leader seeds its clock from them."""
    store = store_with(7, 8)
    applied = ok(store.apply(checkpoint(3, l7=4_000, l9=1, l8=99_000), entry_term=3))
    assert applied.result == raft.LeaseCheckpointResponse(recorded=[7, 8], skipped=[9])
    assert applied.writes == () and store.revision == 0
    assert store.leases_remaining_ms() == [(7, 4_000), (8, 10_000)]


def test_checkpoint_with_stale_term_is_dropped() -> None:
    """Checkpoint fence, stale term: a deposed leader must not shorten TTLs."""
    store = store_with(7)
    before = store.to_bytes()
    applied = store.apply(checkpoint(3, l7=1), entry_term=4)
    assert applied.result == raft.LeaseCheckpointResponse(fenced=True)
    assert store.to_bytes() == before
    assert store.leases_remaining_ms() == [(7, 10_000)]


def test_checkpoint_batch_max_is_the_largest_command() -> None:
    """LEASE_CHECKPOINT_BATCH_MAX: that many apply; one more: INVALID_ARGUMENT, none recorded."""
    n = limits.LEASE_CHECKPOINT_BATCH_MAX
    store = store_with(1)
    too_many = raft.LeaseCheckpointRequest(proposer_term=2)
    for _ in range(n + 1):
        too_many.checkpoints.add(id=1, remaining_ms=5)
    applied = store.apply(raft.InternalRequest(lease_checkpoint=too_many), entry_term=2)
    assert isinstance(applied.result, errors.InvalidArgument)
    assert store.leases_remaining_ms() == [(1, 10_000)]
    del too_many.checkpoints[n:]
    ok(store.apply(raft.InternalRequest(lease_checkpoint=too_many), entry_term=2))
    assert store.leases_remaining_ms() == [(1, 5)]


# ---------------------------------------------------------------- snapshot
def test_snapshot_round_trip_keeps_leases_remaining_and_attachments() -> None:
    """Snapshot: leases, checkpointed remaining TTLs and attachments survive to_bytes/from_bytes,
    byte for byte, and the restored store revokes exactly as the original would."""
    store = store_with(7, 8)
    ok(store.apply(put("/a", lease=7)))
    ok(store.apply(put("/b", lease=7)))
    ok(store.apply(put("/c", lease=8)))
    ok(store.apply(put("/d")))
    ok(store.apply(checkpoint(2, l7=2_500), entry_term=2))
    data = store.to_bytes()
    restored = Store.from_bytes(data)
    assert restored.to_bytes() == data
    assert restored.lease(7) == LeaseInfo(7, 10, 2_500, (b"/a", b"/b"))
    assert restored.lease(8) == LeaseInfo(8, 10, 10_000, (b"/c",))
    assert keys_of(restored) == {"/a": 7, "/b": 7, "/c": 8, "/d": 0}
    a, b = ok(store.apply(revoke(7))), ok(restored.apply(revoke(7)))
    assert a == b and store.to_bytes() == restored.to_bytes()


def test_snapshot_with_a_key_on_a_missing_lease_is_refused() -> None:
    """Snapshot: a key attached to a lease the snapshot lacks is corruption, not silently kept."""
    snap = raft.Snapshot(revision=1, kvs=[kv.KeyValue(key=b"/a", mod_revision=1, lease=5)])
    with pytest.raises(errors.Internal, match="lease 5"):
        Store.from_bytes(snap.SerializeToString())
