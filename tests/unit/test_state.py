"""Unit tests for the pure state machine (mcpctl.state.Store).

Each test drives ``Store.apply`` with raw ``InternalRequest`` messages (the
same bytes a Raft log would carry) and reads back through ``Store.range`` and
``Store.history_since``; no network, no clock, no sleeps.
"""

from __future__ import annotations

import pytest

from mcpctl import errors, limits
from mcpctl._proto.mcp.v1 import kv_pb2 as kv
from mcpctl._proto.mcp.v1 import raft_pb2 as raft
from mcpctl.state import Applied, HistoryLimits, Store

RESPONSE_BYTES_MAX = limits.RANGE_RESPONSE_BYTES_MAX

Row = tuple[str, str, int, int, int]  # key, value, create_revision, mod_revision, version


# ------------------------------------------------------------------ helpers
def put(
    key: str,
    value: str,
    *,
    if_mod: int | None = None,
    request_id: str = "",
    prev_kv: bool = False,
    ts_ms: int = 0,
) -> raft.InternalRequest:
    req = kv.PutRequest(
        key=key.encode(), value=value.encode(), prev_kv=prev_kv, request_id=request_id
    )
    if if_mod is not None:
        req.expected_mod_revision = if_mod
    return raft.InternalRequest(ts_ms=ts_ms, put=req)


def delete(
    key: str,
    *,
    prefix: bool = False,
    request_id: str = "",
    prev_kv: bool = False,
    ts_ms: int = 0,
) -> raft.InternalRequest:
    return raft.InternalRequest(
        ts_ms=ts_ms,
        delete_range=kv.DeleteRangeRequest(
            key=key.encode(), prefix=prefix, prev_kv=prev_kv, request_id=request_id
        ),
    )


def txn(
    compare: list[kv.Compare] | None = None,
    success: list[kv.RequestOp] | None = None,
    failure: list[kv.RequestOp] | None = None,
    *,
    request_id: str = "",
    ts_ms: int = 0,
) -> raft.InternalRequest:
    return raft.InternalRequest(
        ts_ms=ts_ms,
        txn=kv.TxnRequest(
            compare=compare or [],
            success=success or [],
            failure=failure or [],
            request_id=request_id,
        ),
    )


def op_put(key: str, value: str) -> kv.RequestOp:
    return kv.RequestOp(request_put=kv.PutRequest(key=key.encode(), value=value.encode()))


def op_del(key: str, *, prefix: bool = False) -> kv.RequestOp:
    return kv.RequestOp(request_delete_range=kv.DeleteRangeRequest(key=key.encode(), prefix=prefix))


def op_get(key: str, *, prefix: bool = False) -> kv.RequestOp:
    return kv.RequestOp(request_range=kv.RangeRequest(key=key.encode(), prefix=prefix))


def compact(revision: int) -> raft.InternalRequest:
    return raft.InternalRequest(compaction=kv.CompactionRequest(revision=revision))


def get(
    store: Store,
    key: str,
    *,
    prefix: bool = False,
    revision: int = 0,
    limit: int = 0,
    keys_only: bool = False,
    count_only: bool = False,
    response_bytes_max: int = RESPONSE_BYTES_MAX,
) -> kv.RangeResponse:
    req = kv.RangeRequest(
        key=key.encode(),
        prefix=prefix,
        revision=revision,
        limit=limit,
        keys_only=keys_only,
        count_only=count_only,
    )
    return store.range(req, response_bytes_max)


def row(item: kv.KeyValue) -> Row:
    return (
        item.key.decode(),
        item.value.decode(),
        item.create_revision,
        item.mod_revision,
        item.version,
    )


def rows(resp: kv.RangeResponse) -> list[Row]:
    return [row(item) for item in resp.kvs]


def apply_all(store: Store, requests: list[raft.InternalRequest]) -> list[Applied]:
    return [store.apply(r) for r in requests]


def history_revisions(store: Store, start: int = 0) -> list[int]:
    return [entry.revision for entry in store.history_since(start)]


def ok(applied: Applied) -> None:
    assert not isinstance(applied.result, errors.McpError), applied.result


# ------------------------------------------------------- revisions/versions
def test_fresh_store_is_empty_at_revision_zero() -> None:
    """A new store has revision 0, no keys and nothing compacted."""
    store = Store()
    assert (store.revision, store.compact_revision, len(store)) == (0, 0, 0)
    assert get(store, "", prefix=True).count == 0
    assert history_revisions(store) == []


def test_put_creates_key_with_version_one() -> None:
    """The first put of a key creates it at revision 1 with version 1."""
    store = Store()
    applied = store.apply(put("/a", "1"))
    ok(applied)
    assert applied.revision == 1
    assert store.revision == 1
    assert rows(get(store, "/a")) == [("/a", "1", 1, 1, 1)]


def test_each_put_bumps_revision_and_version_keeps_create_revision() -> None:
    """Every put is a new revision; version +1 per put, create_revision stays."""
    store = Store()
    revisions = [a.revision for a in apply_all(store, [put("/a", "1"), put("/b", "x")])]
    revisions += [a.revision for a in apply_all(store, [put("/a", "2"), put("/a", "3")])]
    assert revisions == [1, 2, 3, 4]
    assert rows(get(store, "/a")) == [("/a", "3", 1, 4, 3)]
    assert rows(get(store, "/b")) == [("/b", "x", 2, 2, 1)]


def test_put_with_same_value_still_writes() -> None:
    """A put that does not change the value is still a write (revision, version)."""
    store = Store()
    apply_all(store, [put("/a", "1"), put("/a", "1")])
    assert store.revision == 2
    assert rows(get(store, "/a")) == [("/a", "1", 1, 2, 2)]


def test_put_prev_kv_only_when_asked() -> None:
    """prev_kv is returned by put only when requested and the key existed."""
    store = Store()
    first = store.apply(put("/a", "1", prev_kv=True))
    assert isinstance(first.result, kv.PutResponse)
    assert not first.result.HasField("prev_kv")
    second = store.apply(put("/a", "2", prev_kv=True))
    assert isinstance(second.result, kv.PutResponse)
    assert row(second.result.prev_kv) == ("/a", "1", 1, 1, 1)
    third = store.apply(put("/a", "3"))
    assert isinstance(third.result, kv.PutResponse)
    assert not third.result.HasField("prev_kv")


def test_delete_of_missing_key_writes_nothing() -> None:
    """A delete that removes nothing does not bump the revision or add history."""
    store = Store()
    store.apply(put("/a", "1"))
    applied = store.apply(delete("/b"))
    assert isinstance(applied.result, kv.DeleteRangeResponse)
    assert applied.result.deleted == 0
    assert applied.written is None
    assert (applied.revision, store.revision) == (1, 1)
    assert history_revisions(store) == [1]


def test_delete_removes_key_in_one_revision() -> None:
    """Deleting a key removes it and is one new revision."""
    store = Store()
    apply_all(store, [put("/a", "1"), put("/b", "2")])
    applied = store.apply(delete("/a", prev_kv=True))
    assert isinstance(applied.result, kv.DeleteRangeResponse)
    assert applied.result.deleted == 1
    assert [row(p) for p in applied.result.prev_kvs] == [("/a", "1", 1, 1, 1)]
    assert applied.revision == 3
    assert get(store, "/a").count == 0
    assert len(store) == 1


def test_prefix_delete_is_one_revision_for_all_keys() -> None:
    """A prefix delete of several keys creates exactly one revision."""
    store = Store()
    apply_all(store, [put("/a", "1"), put("/a/b", "2"), put("/a/c", "3"), put("/b", "4")])
    applied = store.apply(delete("/a", prefix=True))
    assert isinstance(applied.result, kv.DeleteRangeResponse)
    assert applied.result.deleted == 3
    assert applied.revision == 5
    assert applied.written is not None
    assert [ev.kv.key for ev in applied.written.events] == [b"/a", b"/a/b", b"/a/c"]
    assert rows(get(store, "", prefix=True)) == [("/b", "4", 4, 4, 1)]


def test_recreate_after_delete_resets_version_and_create_revision() -> None:
    """A key re-created after a delete starts again at version 1."""
    store = Store()
    apply_all(store, [put("/a", "1"), put("/a", "2"), delete("/a"), put("/a", "3")])
    assert rows(get(store, "/a")) == [("/a", "3", 4, 4, 1)]


def test_written_history_entry_records_events_with_prev_kv() -> None:
    """The history entry of a write lists its events; delete kv has key+mod only."""
    store = Store()
    store.apply(put("/a", "1", ts_ms=10))
    updated = store.apply(put("/a", "2", ts_ms=11))
    assert updated.written is not None
    assert (updated.written.revision, updated.written.ts_ms) == (2, 11)
    [ev] = updated.written.events
    assert ev.type == kv.Event.PUT
    assert row(ev.kv) == ("/a", "2", 1, 2, 2)
    assert row(ev.prev_kv) == ("/a", "1", 1, 1, 1)
    removed = store.apply(delete("/a"))
    assert removed.written is not None
    [ev] = removed.written.events
    assert ev.type == kv.Event.DELETE
    assert ev.kv == kv.KeyValue(key=b"/a", mod_revision=3)
    assert row(ev.prev_kv) == ("/a", "2", 1, 2, 2)


def test_create_event_has_no_prev_kv() -> None:
    """Creating a key records a PUT event without prev_kv."""
    store = Store()
    applied = store.apply(put("/a", "1"))
    assert applied.written is not None
    [ev] = applied.written.events
    assert not ev.HasField("prev_kv")


def test_applied_ts_ms_is_the_largest_seen() -> None:
    """applied_ts_ms comes from requests only and never goes backwards."""
    store = Store()
    store.apply(put("/a", "1", ts_ms=100))
    store.apply(put("/a", "2", ts_ms=50))
    assert store.applied_ts_ms == 100


def test_empty_request_is_an_invalid_argument_result() -> None:
    """An InternalRequest without an op yields InvalidArgument, not an exception."""
    store = Store()
    applied = store.apply(raft.InternalRequest(ts_ms=1))
    assert isinstance(applied.result, errors.InvalidArgument)
    assert store.revision == 0


# ------------------------------------------------------ expected_mod_revision
def test_put_if_mod_zero_creates_only_when_missing() -> None:
    """expected_mod_revision=0 means create-only: it fails once the key exists."""
    store = Store()
    ok(store.apply(put("/a", "1", if_mod=0)))
    applied = store.apply(put("/a", "2", if_mod=0))
    assert isinstance(applied.result, errors.CompareFailed)
    assert "mod_revision is 1, expected 0" in applied.result.message
    assert applied.written is None
    assert (applied.revision, store.revision) == (1, 1)
    assert rows(get(store, "/a")) == [("/a", "1", 1, 1, 1)]


def test_put_if_mod_matches_current_mod_revision() -> None:
    """A CAS put succeeds only when expected_mod_revision equals the key's mod."""
    store = Store()
    apply_all(store, [put("/a", "1"), put("/b", "1")])
    stale = store.apply(put("/a", "x", if_mod=2))
    assert isinstance(stale.result, errors.CompareFailed)
    assert store.revision == 2
    fresh = store.apply(put("/a", "y", if_mod=1))
    ok(fresh)
    assert fresh.revision == 3
    assert rows(get(store, "/a")) == [("/a", "y", 1, 3, 2)]


def test_put_if_mod_nonzero_on_missing_key_fails() -> None:
    """A CAS put with expected_mod_revision>0 fails when the key does not exist."""
    store = Store()
    applied = store.apply(put("/a", "1", if_mod=1))
    assert isinstance(applied.result, errors.CompareFailed)
    assert len(store) == 0


# ------------------------------------------------------------------- ranges
def _abc_store() -> Store:
    store = Store()
    apply_all(
        store,
        [
            put("/a", "1"),  # rev 1
            put("/a/b", "2"),  # rev 2
            put("/a/c", "3"),  # rev 3
            put("/ab", "4"),  # rev 4
            put("/b", "5"),  # rev 5
        ],
    )
    return store


def test_prefix_range_returns_matching_keys_sorted() -> None:
    """A prefix range returns every key starting with the prefix bytes, sorted."""
    store = _abc_store()
    resp = get(store, "/a", prefix=True)
    assert [r[0] for r in rows(resp)] == ["/a", "/a/b", "/a/c", "/ab"]
    assert (resp.count, resp.more) == (4, False)
    assert [r[0] for r in rows(get(store, "/a/", prefix=True))] == ["/a/b", "/a/c"]


def test_single_key_range_does_not_match_longer_keys() -> None:
    """A range without prefix matches only the exact key."""
    store = _abc_store()
    assert rows(get(store, "/a")) == [("/a", "1", 1, 1, 1)]
    missing = get(store, "/c")
    assert (missing.count, list(missing.kvs)) == (0, [])


def test_empty_prefix_ranges_over_all_keys() -> None:
    """An empty key with prefix matches every key."""
    store = _abc_store()
    assert get(store, "", prefix=True).count == 5


def test_range_limit_sets_more_and_counts_all() -> None:
    """limit caps kvs; count still counts every match and more is set."""
    store = _abc_store()
    resp = get(store, "/a", prefix=True, limit=2)
    assert [r[0] for r in rows(resp)] == ["/a", "/a/b"]
    assert (resp.count, resp.more) == (4, True)


def test_range_limit_equal_to_count_has_no_more() -> None:
    """A limit equal to the number of matches does not set more."""
    store = _abc_store()
    resp = get(store, "/a", prefix=True, limit=4)
    assert (len(resp.kvs), resp.count, resp.more) == (4, 4, False)


def test_range_keys_only_omits_values_keeps_revisions() -> None:
    """keys_only returns keys and revisions but no values."""
    store = _abc_store()
    resp = get(store, "/a/", prefix=True, keys_only=True)
    assert rows(resp) == [("/a/b", "", 2, 2, 1), ("/a/c", "", 3, 3, 1)]


def test_range_count_only_returns_no_kvs() -> None:
    """count_only returns the count and no kvs (and no more flag)."""
    store = _abc_store()
    resp = get(store, "/a", prefix=True, count_only=True, limit=1)
    assert (resp.count, len(resp.kvs), resp.more) == (4, 0, False)


def test_range_response_size_cap_sets_more_but_returns_one() -> None:
    """The response byte cap stops adding keys (more=True) after at least one."""
    store = _abc_store()
    resp = get(store, "", prefix=True, response_bytes_max=1)
    assert [r[0] for r in rows(resp)] == ["/a"]
    assert (resp.count, resp.more) == (5, True)


def test_range_at_future_revision_is_invalid() -> None:
    """Reading a revision newer than the store raises InvalidArgument."""
    store = _abc_store()
    with pytest.raises(errors.InvalidArgument, match="revision 6 is in the future"):
        get(store, "/a", revision=6)


def test_range_at_current_revision_equals_latest() -> None:
    """revision=0 and revision=current give the same answer."""
    store = _abc_store()
    assert get(store, "", prefix=True, revision=5) == get(store, "", prefix=True)


# -------------------------------------------------------- past-revision reads
def test_reads_at_each_past_revision_see_the_value_then() -> None:
    """A read at revision r sees exactly the writes up to r."""
    store = Store()
    apply_all(store, [put("/a", "1"), put("/b", "x"), put("/a", "2"), put("/a", "3")])
    assert rows(get(store, "/a", revision=1)) == [("/a", "1", 1, 1, 1)]
    assert rows(get(store, "/a", revision=2)) == [("/a", "1", 1, 1, 1)]
    assert rows(get(store, "/a", revision=3)) == [("/a", "2", 1, 3, 2)]
    assert rows(get(store, "/a", revision=4)) == [("/a", "3", 1, 4, 3)]
    assert get(store, "/b", revision=1).count == 0
    assert rows(get(store, "/b", revision=2)) == [("/b", "x", 2, 2, 1)]


def test_reads_at_past_revisions_across_delete_and_recreate() -> None:
    """Past reads show a deleted key before its delete and its old incarnation."""
    store = Store()
    apply_all(
        store,
        [
            put("/a", "1"),  # 1
            put("/a", "2"),  # 2
            delete("/a"),  # 3
            put("/other", "o"),  # 4
            put("/a", "new"),  # 5
        ],
    )
    assert rows(get(store, "/a", revision=2)) == [("/a", "2", 1, 2, 2)]
    assert get(store, "/a", revision=3).count == 0
    assert get(store, "/a", revision=4).count == 0
    assert rows(get(store, "/a", revision=5)) == [("/a", "new", 5, 5, 1)]
    store.apply(delete("/a"))  # 6
    assert rows(get(store, "/a", revision=5)) == [("/a", "new", 5, 5, 1)]
    assert rows(get(store, "/a", revision=1)) == [("/a", "1", 1, 1, 1)]
    assert get(store, "/a").count == 0


def test_past_prefix_range_with_limit_and_count() -> None:
    """limit/more/count/keys_only apply to past reads as they do to current ones."""
    store = _abc_store()
    apply_all(store, [delete("/a", prefix=True), put("/a/z", "9")])  # 6, 7
    past = get(store, "/a", prefix=True, revision=3, limit=2)
    assert rows(past) == [("/a", "1", 1, 1, 1), ("/a/b", "2", 2, 2, 1)]
    assert (past.count, past.more) == (3, True)
    keys = get(store, "/a", prefix=True, revision=5, keys_only=True)
    assert [r[:2] for r in rows(keys)] == [("/a", ""), ("/a/b", ""), ("/a/c", ""), ("/ab", "")]
    assert get(store, "/a", prefix=True, revision=6, count_only=True).count == 0
    assert rows(get(store, "/a", prefix=True)) == [("/a/z", "9", 7, 7, 1)]


def test_past_read_before_a_txn_does_not_see_any_of_its_writes() -> None:
    """A read at the revision before a txn sees none of its writes."""
    store = Store()
    store.apply(put("/a", "1"))
    store.apply(txn(success=[op_put("/a", "2"), op_put("/b", "2"), op_del("/c")]))
    assert rows(get(store, "", prefix=True, revision=1)) == [("/a", "1", 1, 1, 1)]
    assert rows(get(store, "", prefix=True, revision=2)) == [
        ("/a", "2", 1, 2, 2),
        ("/b", "2", 2, 2, 1),
    ]


# ----------------------------------------------------------------------- txn
_TARGET_FIELD = {
    kv.Compare.VERSION: "version",
    kv.Compare.CREATE: "create_revision",
    kv.Compare.MOD: "mod_revision",
    kv.Compare.VALUE: "value",
}


def cmp(
    key: str,
    target: kv.Compare.CompareTarget.ValueType,
    result: kv.Compare.CompareResult.ValueType,
    operand: int | bytes,
) -> kv.Compare:
    c = kv.Compare(key=key.encode(), target=target, result=result)
    if target == kv.Compare.VALUE:
        assert isinstance(operand, bytes)
        c.value = operand
    else:
        assert isinstance(operand, int)
        setattr(c, _TARGET_FIELD[target], operand)
    return c


def _compare_store() -> Store:
    """/k: value b"m", create_revision 1, mod_revision 3, version 2."""
    store = Store()
    apply_all(store, [put("/k", "a"), put("/other", "o"), put("/k", "m")])
    assert rows(get(store, "/k")) == [("/k", "m", 1, 3, 2)]
    return store


# Per target: (operand below actual, actual, operand above actual).
_OPERANDS: dict[kv.Compare.CompareTarget.ValueType, tuple[int | bytes, ...]] = {
    kv.Compare.VERSION: (1, 2, 3),
    kv.Compare.CREATE: (0, 1, 2),
    kv.Compare.MOD: (2, 3, 4),
    kv.Compare.VALUE: (b"a", b"m", b"z"),
}
# Per result: is "actual <op> operand" true when operand is below/equal/above?
_TRUTH: dict[kv.Compare.CompareResult.ValueType, tuple[bool, bool, bool]] = {
    kv.Compare.EQUAL: (False, True, False),
    kv.Compare.NOT_EQUAL: (True, False, True),
    kv.Compare.GREATER: (True, False, False),
    kv.Compare.LESS: (False, False, True),
}
_TARGETS = [
    ("version", kv.Compare.VERSION),
    ("create", kv.Compare.CREATE),
    ("mod", kv.Compare.MOD),
    ("value", kv.Compare.VALUE),
]
_RESULTS = [
    ("eq", kv.Compare.EQUAL),
    ("ne", kv.Compare.NOT_EQUAL),
    ("gt", kv.Compare.GREATER),
    ("lt", kv.Compare.LESS),
]
_POSITIONS = ("below", "equal", "above")
_COMPARE_CASES = [
    pytest.param(target, result, operand, _TRUTH[result][i], id=f"{tname}-{rname}-{_POSITIONS[i]}")
    for tname, target in _TARGETS
    for rname, result in _RESULTS
    for i, operand in enumerate(_OPERANDS[target])
]


@pytest.mark.parametrize(("target", "result", "operand", "expected"), _COMPARE_CASES)
def test_txn_compare_targets_and_results(
    target: kv.Compare.CompareTarget.ValueType,
    result: kv.Compare.CompareResult.ValueType,
    operand: int | bytes,
    expected: bool,
) -> None:
    """Each compare target and result picks the success/failure branch correctly."""
    store = _compare_store()
    applied = store.apply(
        txn([cmp("/k", target, result, operand)], [op_put("/yes", "1")], [op_put("/no", "1")])
    )
    assert isinstance(applied.result, kv.TxnResponse)
    assert applied.result.succeeded is expected
    assert applied.revision == 4
    assert get(store, "/yes").count == (1 if expected else 0)
    assert get(store, "/no").count == (0 if expected else 1)


# A missing key equals the zero operand: only EQUAL holds.
_MISSING_TRUTH = {"eq": True, "ne": False, "gt": False, "lt": False}
_MISSING_CASES = [
    pytest.param(
        target,
        result,
        b"" if target == kv.Compare.VALUE else 0,
        _MISSING_TRUTH[rname],
        id=f"{tname}-{rname}",
    )
    for tname, target in _TARGETS
    for rname, result in _RESULTS
]


@pytest.mark.parametrize(("target", "result", "zero", "expected"), _MISSING_CASES)
def test_txn_compare_missing_key_is_zero_or_empty(
    target: kv.Compare.CompareTarget.ValueType,
    result: kv.Compare.CompareResult.ValueType,
    zero: int | bytes,
    expected: bool,
) -> None:
    """A missing key compares as version/create/mod 0 and an empty value."""
    store = _compare_store()
    applied = store.apply(txn([cmp("/missing", target, result, zero)]))
    assert isinstance(applied.result, kv.TxnResponse)
    assert applied.result.succeeded is expected


def test_txn_compare_missing_key_is_less_than_existing_values() -> None:
    """A missing key's mod 0 is LESS than 1 and its empty value LESS than b"a"."""
    store = Store()
    applied = store.apply(
        txn(
            [
                cmp("/m", kv.Compare.MOD, kv.Compare.LESS, 1),
                cmp("/m", kv.Compare.VALUE, kv.Compare.LESS, b"a"),
            ]
        )
    )
    assert isinstance(applied.result, kv.TxnResponse)
    assert applied.result.succeeded


def test_txn_compares_are_anded() -> None:
    """All compares must hold for success; one false compare runs failure."""
    store = _compare_store()
    good = cmp("/k", kv.Compare.MOD, kv.Compare.EQUAL, 3)
    bad = cmp("/k", kv.Compare.VERSION, kv.Compare.EQUAL, 99)
    both = store.apply(txn([good, good]))
    assert isinstance(both.result, kv.TxnResponse) and both.result.succeeded
    mixed = store.apply(txn([good, bad]))
    assert isinstance(mixed.result, kv.TxnResponse) and not mixed.result.succeeded


def test_txn_with_no_compares_succeeds() -> None:
    """A txn without compares always takes the success branch."""
    store = Store()
    applied = store.apply(txn(success=[op_put("/a", "1")], failure=[op_put("/b", "1")]))
    assert isinstance(applied.result, kv.TxnResponse) and applied.result.succeeded
    assert [k[0] for k in rows(get(store, "", prefix=True))] == ["/a"]


def test_txn_writes_are_one_revision() -> None:
    """All writes of a txn share one new revision and one history entry."""
    store = Store()
    apply_all(store, [put("/a", "1"), put("/d", "1")])
    applied = store.apply(
        txn(success=[op_put("/a", "2"), op_put("/b", "new"), op_del("/d"), op_del("/zz")])
    )
    ok(applied)
    assert (applied.revision, store.revision) == (3, 3)
    assert rows(get(store, "", prefix=True)) == [("/a", "2", 1, 3, 2), ("/b", "new", 3, 3, 1)]
    assert history_revisions(store) == [1, 2, 3]
    assert applied.written is not None
    assert [(ev.type, ev.kv.key) for ev in applied.written.events] == [
        (kv.Event.PUT, b"/a"),
        (kv.Event.PUT, b"/b"),
        (kv.Event.DELETE, b"/d"),
    ]
    assert isinstance(applied.result, kv.TxnResponse)
    assert [r.WhichOneof("response") for r in applied.result.responses] == [
        "response_put",
        "response_put",
        "response_delete_range",
        "response_delete_range",
    ]
    assert [r.response_delete_range.deleted for r in applied.result.responses[2:]] == [1, 0]


def test_txn_that_writes_nothing_keeps_the_revision() -> None:
    """A txn with only reads or no-op deletes does not create a revision."""
    store = Store()
    store.apply(put("/a", "1"))
    applied = store.apply(txn(success=[op_get("/a"), op_del("/missing")]))
    ok(applied)
    assert (applied.revision, store.revision, applied.written) == (1, 1, None)


def test_txn_failure_branch_writes_are_a_revision_too() -> None:
    """The failure branch's writes are applied (one revision) when compares fail."""
    store = Store()
    applied = store.apply(
        txn(
            [cmp("/a", kv.Compare.VERSION, kv.Compare.GREATER, 0)],
            [op_put("/a", "s")],
            [op_put("/a", "f"), op_put("/b", "f")],
        )
    )
    assert isinstance(applied.result, kv.TxnResponse)
    assert not applied.result.succeeded
    assert applied.revision == 1
    assert rows(get(store, "", prefix=True)) == [("/a", "f", 1, 1, 1), ("/b", "f", 1, 1, 1)]


def test_txn_reads_see_earlier_writes_of_the_same_txn() -> None:
    """A range inside a txn sees the txn's earlier puts and deletes, not later ones."""
    store = Store()
    apply_all(store, [put("/a", "old"), put("/a/x", "1")])
    applied = store.apply(
        txn(
            success=[
                op_get("/a", prefix=True),
                op_put("/a", "new"),
                op_del("/a/x"),
                op_get("/a", prefix=True),
            ]
        )
    )
    assert isinstance(applied.result, kv.TxnResponse)
    before, _, _, after = (r.response_range for r in applied.result.responses)
    assert rows(before) == [("/a", "old", 1, 1, 1), ("/a/x", "1", 2, 2, 1)]
    assert rows(after) == [("/a", "new", 1, 3, 2)]
    assert after.count == 1


def test_txn_with_expected_mod_revision_op_writes_nothing() -> None:
    """A txn op with expected_mod_revision is refused whole (no partial apply)."""
    store = Store()
    bad = op_put("/b", "x")
    bad.request_put.expected_mod_revision = 0
    applied = store.apply(txn(success=[op_put("/a", "1"), bad]))
    assert isinstance(applied.result, errors.InvalidArgument)
    assert (applied.revision, store.revision, len(store)) == (0, 0, 0)


# ---------------------------------------------------------------- compaction
def test_history_is_compacted_by_revision_count() -> None:
    """Past revisions_max, the oldest revision r is dropped: compact_revision=r+1."""
    store = Store(bounds=HistoryLimits(revisions_max=3, bytes_max=1 << 20, dedupe_max=10))
    apply_all(store, [put("/a", str(i)) for i in range(1, 6)])
    assert store.revision == 5
    assert store.compact_revision == 3
    assert history_revisions(store, 3) == [3, 4, 5]
    assert rows(get(store, "/a", revision=3)) == [("/a", "3", 1, 3, 3)]
    with pytest.raises(errors.Compacted) as info:
        get(store, "/a", revision=2)
    assert (info.value.revision, info.value.compact_revision) == (2, 3)


def test_no_compaction_within_the_revision_bound() -> None:
    """Exactly revisions_max revisions are all kept, compact_revision stays 0."""
    store = Store(bounds=HistoryLimits(revisions_max=3, bytes_max=1 << 20, dedupe_max=10))
    apply_all(store, [put("/a", str(i)) for i in range(1, 4)])
    assert store.compact_revision == 0
    assert rows(get(store, "/a", revision=1)) == [("/a", "1", 1, 1, 1)]
    assert history_revisions(store) == [1, 2, 3]


def test_history_is_compacted_by_bytes() -> None:
    """Past bytes_max, the oldest revisions are dropped until the rest fits."""
    value = "v" * 100
    store = Store()
    one = store.apply(put("/a", value))
    assert one.written is not None
    entry_bytes = one.written.ByteSize()
    # Room for two such entries, not three (later puts carry prev_kv: bigger).
    bounded = Store(bounds=HistoryLimits(revisions_max=100, bytes_max=3 * entry_bytes))
    apply_all(bounded, [put(f"/k{i}", value) for i in range(5)])
    assert bounded.revision == 5
    assert bounded.compact_revision == 4
    assert history_revisions(bounded, 4) == [4, 5]
    assert sum(e.ByteSize() for e in bounded.history_since(4)) <= 3 * entry_bytes
    with pytest.raises(errors.Compacted) as info:
        get(bounded, "/k0", revision=3)
    assert info.value.compact_revision == 4
    assert get(bounded, "/k0", revision=4).count == 1


def test_latest_revision_stays_readable_when_one_write_exceeds_bytes_max() -> None:
    """A single revision over bytes_max never compacts away the latest state."""
    store = Store(bounds=HistoryLimits(revisions_max=10, bytes_max=50, dedupe_max=10))
    store.apply(put("/small", "s"))
    applied = store.apply(put("/big", "x" * 200))
    assert applied.revision == 2
    assert store.compact_revision <= store.revision
    assert store.compact_revision == 2
    assert rows(get(store, "/big")) == [("/big", "x" * 200, 2, 2, 1)]
    assert rows(get(store, "/big", revision=2)) == [("/big", "x" * 200, 2, 2, 1)]
    assert history_revisions(store, 2) == [2]
    ok(store.apply(compact(2)))
    store.apply(put("/small", "t"))
    assert store.compact_revision == 3
    assert rows(get(store, "/small")) == [("/small", "t", 1, 3, 2)]


def test_explicit_compaction_keeps_the_compaction_revision_readable() -> None:
    """compact N: reads at >= N still work, reads below N answer Compacted(N)."""
    store = Store()
    apply_all(store, [put("/a", str(i)) for i in range(1, 6)])
    applied = store.apply(compact(3))
    assert isinstance(applied.result, kv.CompactionResponse)
    assert (applied.revision, store.revision, applied.written) == (5, 5, None)
    assert store.compact_revision == 3
    assert rows(get(store, "/a", revision=3)) == [("/a", "3", 1, 3, 3)]
    assert history_revisions(store, 3) == [3, 4, 5]
    with pytest.raises(errors.Compacted) as info:
        get(store, "/a", revision=2)
    assert info.value.compact_revision == 3


def test_explicit_compaction_at_current_revision() -> None:
    """Compacting at the current revision keeps the latest state and its events."""
    store = Store()
    apply_all(store, [put("/a", "1"), put("/a", "2")])
    ok(store.apply(compact(2)))
    assert rows(get(store, "/a")) == [("/a", "2", 1, 2, 2)]
    assert history_revisions(store, 2) == [2]


def test_compaction_in_the_future_is_refused() -> None:
    """Compacting past the current revision is InvalidArgument and changes nothing."""
    store = Store()
    store.apply(put("/a", "1"))
    before = store.to_bytes()
    applied = store.apply(compact(2))
    assert isinstance(applied.result, errors.InvalidArgument)
    assert store.to_bytes() == before


def test_compaction_below_compact_revision_answers_compacted() -> None:
    """Compacting an already compacted revision returns Compacted with the floor."""
    store = Store()
    apply_all(store, [put("/a", str(i)) for i in range(1, 6)])
    store.apply(compact(4))
    applied = store.apply(compact(2))
    assert isinstance(applied.result, errors.Compacted)
    assert (applied.result.revision, applied.result.compact_revision) == (2, 4)
    assert store.compact_revision == 4
    again = store.apply(compact(4))
    assert isinstance(again.result, kv.CompactionResponse)


def test_history_since_raises_compacted_below_the_floor() -> None:
    """history_since(start) raises Compacted(compact_revision) when start is gone."""
    store = Store(bounds=HistoryLimits(revisions_max=2, bytes_max=1 << 20, dedupe_max=10))
    apply_all(store, [put("/a", str(i)) for i in range(1, 5)])
    assert store.compact_revision == 3
    with pytest.raises(errors.Compacted) as info:
        store.history_since(2)
    assert (info.value.revision, info.value.compact_revision) == (2, 3)
    assert history_revisions(store, 3) == [3, 4]
    assert history_revisions(store, 4) == [4]
    assert history_revisions(store, 5) == []


def test_history_since_zero_returns_everything_when_uncompacted() -> None:
    """history_since(0) returns every revision when nothing was compacted."""
    store = Store()
    apply_all(store, [put("/a", "1"), delete("/nothing"), delete("/a"), put("/b", "1")])
    assert history_revisions(store, 0) == [1, 2, 3]
    assert history_revisions(store, 2) == [2, 3]


def test_compacted_error_carries_compact_revision_in_metadata() -> None:
    """Compacted exposes compact_revision as an attribute and in its metadata."""
    store = Store(bounds=HistoryLimits(revisions_max=1, bytes_max=1 << 20, dedupe_max=10))
    apply_all(store, [put("/a", "1"), put("/a", "2"), put("/a", "3")])
    with pytest.raises(errors.Compacted) as info:
        get(store, "/a", revision=1)
    assert info.value.compact_revision == 3
    assert info.value.metadata()[errors.COMPACT_REVISION_KEY] == "3"
    assert "oldest available is 3" in info.value.message


# ---------------------------------------------------------------------- dedupe
def test_duplicate_put_is_not_reapplied() -> None:
    """A put retried with the same request id returns the first revision, no write."""
    store = Store()
    first = store.apply(put("/a", "1", request_id="r1"))
    store.apply(put("/b", "1"))
    retry = store.apply(put("/a", "1", request_id="r1"))
    assert (first.duplicate, retry.duplicate) == (False, True)
    assert retry.revision == first.revision == 1
    assert retry.written is None
    assert isinstance(retry.result, kv.PutResponse)
    assert store.revision == 2
    assert rows(get(store, "/a")) == [("/a", "1", 1, 1, 1)]


def test_duplicate_delete_replays_deleted_count() -> None:
    """A retried delete answers the first attempt's deleted count and revision."""
    store = Store()
    apply_all(store, [put("/a/1", "x"), put("/a/2", "x")])
    first = store.apply(delete("/a", prefix=True, request_id="d1"))
    store.apply(put("/a/3", "x"))
    retry = store.apply(delete("/a", prefix=True, request_id="d1"))
    assert retry.duplicate
    assert isinstance(retry.result, kv.DeleteRangeResponse)
    assert (retry.revision, retry.result.deleted) == (first.revision, 2) == (3, 2)
    assert get(store, "/a/3").count == 1


def test_duplicate_txn_replays_succeeded_and_revision() -> None:
    """A retried txn answers the first outcome (succeeded flag, revision)."""
    store = Store()
    create_only = [cmp("/a", kv.Compare.VERSION, kv.Compare.EQUAL, 0)]
    first = store.apply(txn(create_only, [op_put("/a", "1")], request_id="t1"))
    retry = store.apply(txn(create_only, [op_put("/a", "1")], request_id="t1"))
    assert isinstance(retry.result, kv.TxnResponse)
    assert retry.duplicate and retry.result.succeeded
    assert retry.revision == first.revision == 1
    assert store.revision == 1
    failed = store.apply(txn(create_only, [op_put("/a", "3")], request_id="t2"))
    failed_retry = store.apply(txn(create_only, [op_put("/a", "3")], request_id="t2"))
    assert isinstance(failed.result, kv.TxnResponse) and not failed.result.succeeded
    assert isinstance(failed_retry.result, kv.TxnResponse)
    assert failed_retry.duplicate and not failed_retry.result.succeeded


def test_failed_compare_put_is_not_remembered() -> None:
    """A CAS put that failed is not recorded: its retry is evaluated again."""
    store = Store()
    store.apply(put("/a", "1"))
    first = store.apply(put("/a", "2", if_mod=0, request_id="c1"))
    retry = store.apply(put("/a", "2", if_mod=0, request_id="c1"))
    assert isinstance(first.result, errors.CompareFailed)
    assert isinstance(retry.result, errors.CompareFailed)
    assert not retry.duplicate


def test_dedupe_forgets_the_oldest_ids_past_its_bound() -> None:
    """Past dedupe_max ids, the oldest id is forgotten and would apply again."""
    store = Store(bounds=HistoryLimits(revisions_max=100, bytes_max=1 << 20, dedupe_max=2))
    apply_all(store, [put("/a", "1", request_id="r1"), put("/a", "2", request_id="r2")])
    assert store.apply(put("/a", "1", request_id="r1")).duplicate
    store.apply(put("/a", "3", request_id="r3"))  # evicts r1
    assert store.apply(put("/a", "2", request_id="r2")).duplicate
    again = store.apply(put("/a", "4", request_id="r1"))
    assert not again.duplicate
    assert again.revision == 4
    assert rows(get(store, "/a")) == [("/a", "4", 1, 4, 4)]


def test_dedupe_max_zero_remembers_nothing() -> None:
    """With dedupe_max=0 every request id is applied as new."""
    store = Store(bounds=HistoryLimits(revisions_max=10, bytes_max=1 << 20, dedupe_max=0))
    apply_all(store, [put("/a", "1", request_id="r1"), put("/a", "2", request_id="r1")])
    assert store.revision == 2


def test_requests_without_id_are_never_deduplicated() -> None:
    """An empty request id means no dedupe: identical puts both apply."""
    store = Store()
    results = apply_all(store, [put("/a", "1"), put("/a", "1")])
    assert [a.duplicate for a in results] == [False, False]
    assert store.revision == 2


# ------------------------------------------------------------------ snapshots
def _busy_store(bounds: HistoryLimits) -> Store:
    store = Store(bounds=bounds)
    apply_all(
        store,
        [
            put("/a", "1", request_id="r1", ts_ms=5),
            put("/a/b", "2", ts_ms=6),
            put("/b", "3", request_id="r2", ts_ms=7),
            delete("/a", prefix=True, request_id="r3", ts_ms=8),
            txn(
                [cmp("/b", kv.Compare.VALUE, kv.Compare.EQUAL, b"3")],
                [op_put("/b", "4"), op_put("/c", "5")],
                request_id="r4",
            ),
            put("/a", "again", ts_ms=9),
            compact(3),
        ],
    )
    return store


SNAPSHOT_BOUNDS = HistoryLimits(revisions_max=4, bytes_max=1 << 20, dedupe_max=3)


def test_snapshot_round_trip_gives_identical_bytes() -> None:
    """from_bytes(to_bytes()) restores a store that serializes identically."""
    store = _busy_store(SNAPSHOT_BOUNDS)
    data = store.to_bytes()
    restored = Store.from_bytes(data, SNAPSHOT_BOUNDS)
    assert restored.to_bytes() == data
    assert (restored.revision, restored.compact_revision, restored.applied_ts_ms) == (
        store.revision,
        store.compact_revision,
        store.applied_ts_ms,
    )
    assert (restored.revision, restored.compact_revision, restored.applied_ts_ms) == (6, 3, 9)


def test_snapshot_of_empty_store_round_trips() -> None:
    """An empty store's snapshot restores to an empty store."""
    data = Store().to_bytes()
    restored = Store.from_bytes(data)
    assert restored.to_bytes() == data
    assert (restored.revision, len(restored)) == (0, 0)


def test_restored_store_serves_the_same_reads() -> None:
    """A restored store answers current, past and compacted reads the same."""
    store = _busy_store(SNAPSHOT_BOUNDS)
    restored = Store.from_bytes(store.to_bytes(), SNAPSHOT_BOUNDS)
    for revision in range(store.compact_revision, store.revision + 1):
        assert get(restored, "", prefix=True, revision=revision) == get(
            store, "", prefix=True, revision=revision
        )
    with pytest.raises(errors.Compacted):
        get(restored, "/a", revision=store.compact_revision - 1)
    assert list(restored.history_since(3)) == list(store.history_since(3))


def test_restored_store_behaves_identically_afterwards() -> None:
    """After a round trip, the same requests give the same results and bytes."""
    store = _busy_store(SNAPSHOT_BOUNDS)
    restored = Store.from_bytes(store.to_bytes(), SNAPSHOT_BOUNDS)
    follow_up = [
        put("/b", "x", request_id="r4"),  # duplicate of the txn id
        put("/b", "y", request_id="r2"),  # duplicate of an early put
        put("/a", "z", prev_kv=True),
        delete("", prefix=True, prev_kv=True),
        put("/n", "1", request_id="r5"),
        compact(7),
    ]
    for request in follow_up:
        a, b = store.apply(request), restored.apply(request)
        assert (a.revision, a.duplicate, a.written) == (b.revision, b.duplicate, b.written)
        assert type(a.result) is type(b.result)
        assert str(a.result) == str(b.result)
        assert store.to_bytes() == restored.to_bytes()


# ---------------------------------------------------------------- determinism
def test_two_stores_applying_the_same_log_are_byte_identical() -> None:
    """Replicas applying the same requests in order reach identical snapshots."""
    bounds = HistoryLimits(revisions_max=3, bytes_max=600, dedupe_max=2)
    log = [
        put("/a", "1", request_id="x", ts_ms=1),
        put("/b", "2", ts_ms=2),
        txn(success=[op_put("/c", "3"), op_del("/a")], request_id="y"),
        delete("/b", request_id="z"),
        put("/a", "x" * 120),
        compact(4),
        put("/a", "1", request_id="x"),
    ]
    one, two = Store(bounds=bounds), Store(bounds=bounds)
    results_one = apply_all(one, log)
    results_two = apply_all(two, log)
    assert one.to_bytes() == two.to_bytes()
    assert [(a.revision, a.duplicate) for a in results_one] == [
        (a.revision, a.duplicate) for a in results_two
    ]


# ------------------------------------------------------------ prefix compares
def _succeeded(store: Store, compares: list[kv.Compare]) -> bool:
    applied = store.apply(txn(compares, [op_put("/flag", "x")]))
    assert isinstance(applied.result, kv.TxnResponse)
    return applied.result.succeeded


def test_prefix_compare_must_hold_for_every_key_under_the_prefix() -> None:
    """A prefix compare holds only if it holds for each key (vacuously for none)."""
    store = Store()
    apply_all(store, [put("/mcp/a", "1"), put("/mcp/b", "2"), put("/other", "3")])
    mod_below = kv.Compare(
        key=b"/mcp/", prefix=True, target=kv.Compare.MOD, result=kv.Compare.LESS, mod_revision=3
    )
    assert _succeeded(store, [mod_below])  # /mcp/a@1, /mcp/b@2 < 3; /other@3 not under it
    store.apply(put("/mcp/b", "changed"))
    assert not _succeeded(store, [mod_below])
    empty = kv.Compare(
        key=b"/none/", prefix=True, target=kv.Compare.VERSION, result=kv.Compare.GREATER
    )
    assert _succeeded(store, [empty])


def test_count_compare_counts_keys_under_a_prefix_or_one_key() -> None:
    """COUNT is the number of keys under the prefix (0/1 for a single key)."""
    store = Store()
    apply_all(store, [put("/mcp/a", "1"), put("/mcp/b", "2")])

    def count(key: str, n: int, *, prefix: bool = True) -> kv.Compare:
        return kv.Compare(
            key=key.encode(),
            prefix=prefix,
            target=kv.Compare.COUNT,
            result=kv.Compare.EQUAL,
            count=n,
        )

    assert _succeeded(store, [count("/mcp/", 2)])
    assert not _succeeded(store, [count("/mcp/", 3)])
    assert _succeeded(store, [count("/mcp/a", 1, prefix=False), count("/mcp/zz", 0, prefix=False)])
    store.apply(delete("/mcp/a"))
    assert _succeeded(store, [count("/mcp/", 1)])


# ---------------------------------------------------------------- key history
def test_changes_lists_a_keys_history_newest_first_with_time() -> None:
    """changes(): every event of the key still in history, newest first, with ts_ms;
    a prefix selects every key under it; limit sets `more`."""
    store = Store()
    apply_all(
        store,
        [
            put("/a", "1", ts_ms=100),
            put("/b", "x", ts_ms=150),
            put("/a", "2", ts_ms=200),
            delete("/a", ts_ms=300),
        ],
    )
    entries, more = store.changes(b"/a", False, 10)
    assert not more
    assert [(e.revision, e.ts_ms, e.event.type) for e in entries] == [
        (4, 300, kv.Event.DELETE),
        (3, 200, kv.Event.PUT),
        (1, 100, kv.Event.PUT),
    ]
    assert entries[1].event.kv.value == b"2" and entries[1].event.prev_kv.value == b"1"
    entries, more = store.changes(b"/", True, 2)
    assert more and [e.revision for e in entries] == [4, 3]
