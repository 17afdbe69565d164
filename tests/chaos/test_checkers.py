"""The checkers on hand-made histories: each must pass a correct history and
name the violation in a broken one (a checker that never fails proves nothing)."""

from __future__ import annotations

import math

from tests.chaos import checks, linearize
from tests.chaos.checks import FaultRecord, MemberFinal
from tests.chaos.history import Op, OpType, Result
from tests.chaos.leases import LeaseOp, LeaseOpKind
from tests.watchcheck import Ev, EventType, Kind, Reference, StreamRecord

K = "/chaos/k0"


def put(
    client: int, value: str, t0: float, t1: float, rev: int = 0, result: Result = Result.OK
) -> Op:
    return Op(client, OpType.PUT, K, t0, t1, result, value=value, revision=rev, member="n1")


def get(client: int, seen: str | None, t0: float, t1: float, rev: int = 0) -> Op:
    return Op(
        client,
        OpType.GET,
        K,
        t0,
        t1,
        Result.OK,
        observed=seen,
        observed_revision=rev,
        observed_known=True,
        revision=max(rev, 1),
        member="n1",
    )


def cas(
    client: int,
    expect: str | None,
    value: str,
    t0: float,
    t1: float,
    *,
    succeeded: bool | None,
    result: Result = Result.OK,
    seen: str | None = None,
) -> Op:
    return Op(
        client,
        OpType.CAS,
        K,
        t0,
        t1,
        result,
        value=value,
        expect=expect,
        succeeded=succeeded,
        observed=seen,
        observed_known=succeeded is False,
        member="n1",
    )


def lin(ops: list[Op], applied: set[str] | None = None) -> linearize.KeyResult:
    values = applied if applied is not None else {op.value for op in ops if op.value}
    return linearize.check_key(K, linearize.prepare(ops, values))


# ------------------------------------------------------------ linearizability
def test_sequential_history_is_linearizable() -> None:
    ops = [put(1, "a", 0, 1), get(2, "a", 2, 3), put(1, "b", 4, 5), get(2, "b", 6, 7)]
    assert lin(ops).verdict is linearize.Verdict.OK


def test_stale_read_after_a_newer_write_completed_is_a_violation() -> None:
    ops = [put(1, "a", 0, 1), put(1, "b", 2, 3), get(2, "a", 4, 5)]
    result = lin(ops)
    assert result.verdict is linearize.Verdict.VIOLATION
    assert "get" in result.detail and "c2" in result.detail  # names the read that cannot fit


def test_a_read_concurrent_with_a_write_may_see_either_value() -> None:
    for seen in ("a", "b"):
        ops = [put(1, "a", 0, 1), put(1, "b", 2, 6), get(2, seen, 3, 4)]
        assert lin(ops).verdict is linearize.Verdict.OK, seen


def test_values_cannot_flip_back_between_two_reads() -> None:
    ops = [put(1, "a", 0, 1), put(1, "b", 2, 10), get(2, "b", 3, 4), get(3, "a", 5, 6)]
    assert lin(ops).verdict is linearize.Verdict.VIOLATION


def test_an_unknown_write_that_took_effect_may_land_any_time_after_its_call() -> None:
    unknown = put(1, "x", 1, 2, result=Result.UNKNOWN)
    ops = [put(3, "a", 0, 0.5), unknown, get(2, "a", 5, 6), get(2, "x", 7, 8)]
    assert lin(ops, {"a", "x"}).verdict is linearize.Verdict.OK


def test_an_unknown_write_that_never_took_effect_is_dropped() -> None:
    ops = [put(3, "a", 0, 0.5), put(1, "x", 1, 2, result=Result.UNKNOWN), get(2, "a", 5, 6)]
    assert lin(ops, {"a"}).verdict is linearize.Verdict.OK
    # ... and a read of it is then impossible.
    ops.append(get(2, "x", 7, 8))
    assert lin(ops, {"a"}).verdict is linearize.Verdict.VIOLATION


def test_a_failed_write_is_not_part_of_the_search() -> None:
    ops = [put(1, "a", 0, 1), put(1, "z", 2, 3, result=Result.FAIL), get(2, "a", 4, 5)]
    assert lin(ops, {"a"}).verdict is linearize.Verdict.OK


def test_cas_succeeds_only_on_the_expected_value() -> None:
    ok = [put(1, "a", 0, 1), cas(2, "a", "b", 2, 3, succeeded=True), get(1, "b", 4, 5)]
    assert lin(ok).verdict is linearize.Verdict.OK
    bad = [put(1, "a", 0, 1), cas(2, "q", "b", 2, 3, succeeded=True)]
    assert lin(bad).verdict is linearize.Verdict.VIOLATION
    from_absent = [cas(2, None, "b", 0, 1, succeeded=True), get(1, "b", 2, 3)]
    assert lin(from_absent).verdict is linearize.Verdict.OK


def test_a_failed_cas_must_have_seen_another_value_and_reports_it() -> None:
    ok = [put(1, "a", 0, 1), cas(2, "q", "b", 2, 3, succeeded=False, seen="a")]
    assert lin(ok).verdict is linearize.Verdict.OK
    wrong_branch = [put(1, "a", 0, 1), cas(2, "a", "b", 2, 3, succeeded=False, seen="a")]
    assert lin(wrong_branch).verdict is linearize.Verdict.VIOLATION
    wrong_read = [put(1, "a", 0, 1), cas(2, "q", "b", 2, 3, succeeded=False, seen="z")]
    assert lin(wrong_read).verdict is linearize.Verdict.VIOLATION


def test_two_cas_from_the_same_value_cannot_both_succeed() -> None:
    ops = [
        put(1, "a", 0, 1),
        cas(2, "a", "b", 2, 5, succeeded=True),
        cas(3, "a", "c", 2, 5, succeeded=True),
    ]
    assert lin(ops).verdict is linearize.Verdict.VIOLATION


def test_the_search_is_bounded() -> None:
    # Many concurrent writes and a read of an impossible value: a big search.
    ops = [put(i, f"v{i}", 0, 10) for i in range(14)] + [get(99, "nope", 11, 12)]
    result = linearize.check_key(K, linearize.prepare(ops, set()), steps_max=500)
    assert result.verdict is linearize.Verdict.INCONCLUSIVE


def test_prepare_gives_applied_unknown_writes_no_return() -> None:
    ops = linearize.prepare([put(1, "x", 1, 2, result=Result.UNKNOWN)], {"x"})
    assert len(ops) == 1 and math.isinf(ops[0].complete)


# ---------------------------------------------------------------- the others
def reference(*changes: tuple[int, str, str]) -> Reference:
    return Reference.of(
        [Ev(r, k, EventType.PUT, v.encode()) for r, k, v in changes],
        start=1,
        final=max(r for r, _, _ in changes),
    )


def test_trace_flags_phantom_wrong_revision_and_future_values() -> None:
    ref = reference((1, K, "a"), (2, K, "b"))
    written = checks.written_values(ref)
    ok = [put(1, "a", 0, 1, 1), put(1, "b", 2, 3, 2), get(2, "b", 4, 5, 2)]
    assert checks.check_trace(ok, written) == []
    phantom = [*ok, get(2, "zzz", 6, 7, 3)]
    assert "no committed write" in str(checks.check_trace(phantom, written))
    wrong_rev = [*ok, get(2, "a", 6, 7, 2)]
    assert "at revision 1" in str(checks.check_trace(wrong_rev, written))
    future = [put(1, "a", 0, 1, 1), put(1, "b", 9, 10, 2), get(2, "b", 4, 5, 2)]
    assert "written later" in str(checks.check_trace(future, written))


def test_durability_flags_a_lost_acked_write_and_a_diverged_member() -> None:
    ref = reference((1, K, "a"), (2, K, "b"))
    state = checks.reference_state(ref)
    digest = checks.state_digest((k, v, r) for k, (v, r) in state.items())
    ops = [put(1, "a", 0, 1, 1), put(1, "b", 2, 3, 2)]
    good = {"n1": MemberFinal(2, digest, 1)}
    assert checks.check_durability(ref, ops, 2, good) == []
    lost = [*ops, put(1, "c", 4, 5, 3)]  # acked at revision 3, not in history
    assert "outside the reference" in str(checks.check_durability(ref, lost, 2, good))
    failed_but_applied = [put(1, "a", 0, 1, 1), put(1, "b", 2, 3, result=Result.FAIL)]
    assert "not applied was applied" in str(
        checks.check_durability(ref, failed_but_applied, 2, good)
    )
    diverged = {"n1": MemberFinal(2, digest, 1), "n2": MemberFinal(2, "x", 1)}
    assert "n2's state" in str(checks.check_durability(ref, ops, 2, diverged))


def test_partition_flags_an_ack_from_the_cut_off_member_inside_the_window() -> None:
    fault = FaultRecord("partition_leader", ("n1",), 10.0, 20.0, isolated=("n1",))
    inside = put(1, "a", 11, 12, 5)  # answered by n1
    assert "acknowledged 1" in str(checks.check_partitions([inside], [fault]))
    before = put(1, "a", 9, 10.5, 5)  # invoked before the cut: may be acked
    failed = put(1, "b", 11, 12, result=Result.UNKNOWN)
    sget = Op(1, OpType.SGET, K, 11, 12, Result.OK, observed="a", member="n1")  # may be stale
    assert checks.check_partitions([before, failed, sget], [fault]) == []


def test_liveness_flags_no_write_after_a_heal() -> None:
    fault = FaultRecord("kill_leader", ("n1",), 10.0, 20.0, majority_kept=True)
    ops = [put(1, "a", 10.5, 12.0), put(1, "b", 21, 22)]
    assert checks.check_liveness(ops, [fault]) == []
    late = [put(1, "a", 10.5, 12.0), put(1, "b", 21, 40)]
    assert "healed" in str(checks.check_liveness(late, [fault]))
    nothing_during = [put(1, "b", 21, 22)]
    assert "started" in str(checks.check_liveness(nothing_during, [fault]))


def _stream(name: str, *revisions: tuple[int, str]) -> StreamRecord:
    record = StreamRecord(name, "/chaos/", prefix=True, start_revision=1)
    record.add(Kind.CREATED, 0, [], "n1")
    for r, v in revisions:
        record.add(Kind.EVENTS, r, [Ev(r, K, EventType.PUT, v.encode())], "n1")
    return record


def test_watch_check_runs_the_promises_and_compares_watchers() -> None:
    ref = reference((1, K, "a"), (2, K, "b"))
    good = [_stream("w1", (1, "a"), (2, "b")), _stream("w2", (1, "a"), (2, "b"))]
    assert checks.check_watches(good, ref, 2) == []
    gap = [_stream("w1", (2, "b"))]
    assert "reliable" in str(checks.check_watches(gap, ref, 2))
    disagree = [_stream("w1", (1, "a"), (2, "b")), _stream("w2", (1, "a"), (2, "x"))]
    assert "watchers disagree" in str(checks.check_watches(disagree, ref, 2))


def test_records_and_ops_survive_their_json_form() -> None:
    record = _stream("w1", (1, "a"), (2, "b"))
    back = checks.record_from_json(checks.record_to_json(record))
    assert back.events == record.events and back.name == "w1"
    op = put(1, "a", 0, 1, result=Result.UNKNOWN).with_complete(math.inf)
    assert Op.from_json(op.to_json()) == op


def test_unexpected_errors_are_reported() -> None:
    odd = Op(1, OpType.GET, K, 0, 1, Result.FAIL, error="internal")
    assert "unexpected" in str(checks.check_errors([odd]))
    assert checks.check_errors([Op(1, OpType.GET, K, 0, 1, Result.FAIL, error="unavailable")]) == []


# ------------------------------------------------------------------- leases
LA, LB = "/chaos-lease/keep0/1/0", "/chaos-lease/keep0/1/1"
LC = "/chaos-lease/dead0/1/0"


def attach(lease: int, key: str, value: str, rev: int) -> LeaseOp:
    return LeaseOp(
        "o", LeaseOpKind.ATTACH, 0, 0.1, Result.OK, lease=lease, key=key, value=value, revision=rev
    )


def keepalive(lease: int, sent: float, ttl: int = 3, rev: int = 0, done: float = 0) -> LeaseOp:
    return LeaseOp(
        "o",
        LeaseOpKind.KEEPALIVE,
        sent,
        done or sent + 0.01,
        Result.OK,
        lease=lease,
        ttl=ttl,
        revision=rev,
        member="n1",
    )


def revoke(lease: int, rev: int, result: Result = Result.OK) -> LeaseOp:
    # Late: its answer (at revision ``rev``) bounds nothing the tests look at.
    return LeaseOp("o", LeaseOpKind.REVOKE, 30.0, 30.1, result, lease=lease, revision=rev)


def lread(
    key: str, value: str | None, rev: int, t0: float, *, serializable: bool = False
) -> LeaseOp:
    return LeaseOp(
        "r",
        LeaseOpKind.READ,
        t0,
        t0 + 0.01,
        Result.OK,
        key=key,
        value=value,
        revision=rev,
        serializable=serializable,
        member="n2",
    )


def events(*changes: tuple[int, str, str]) -> Reference:
    """(revision, key, value) a put; value "" a delete."""
    evs = [Ev(r, k, EventType.PUT if v else EventType.DELETE, v.encode()) for r, k, v in changes]
    return Reference.of(evs, start=1, final=max(r for r, _, _ in changes))


# Lease 1 (LA, LB) expires at revision 4; lease 2 (LC) is revoked at revision 5.
LEASE_OPS = [attach(1, LA, "a", 1), attach(1, LB, "b", 2), attach(2, LC, "c", 3), revoke(2, 5)]
LEASE_REF = events((1, LA, "a"), (2, LB, "b"), (3, LC, "c"), (4, LA, ""), (4, LB, ""), (5, LC, ""))


def test_lease_ends_are_found_one_revision_per_lease() -> None:
    ends, bad = checks.check_lease_ends(LEASE_REF, LEASE_OPS)
    assert bad == []
    assert {i: (e.revision, e.keys) for i, e in ends.items()} == {
        1: (4, (LA, LB)),
        2: (5, (LC,)),
    }


def test_lease_end_flags_keys_split_mixed_leases_a_moved_revoke_and_late_writes() -> None:
    split = events((1, LA, "a"), (2, LB, "b"), (3, LA, ""), (4, LB, ""))
    assert "not all in one revision" in str(checks.check_lease_ends(split, LEASE_OPS)[1])
    mixed = events((1, LA, "a"), (2, LB, "b"), (3, LC, "c"), (4, LA, ""), (4, LB, ""), (4, LC, ""))
    assert "several leases" in str(checks.check_lease_ends(mixed, LEASE_OPS)[1])
    with_kv = events((1, LA, "a"), (2, LB, "b"), (3, LA, ""), (3, LB, ""), (3, K, "x"))
    assert "together with other changes" in str(checks.check_lease_ends(with_kv, LEASE_OPS)[1])
    moved = [*LEASE_OPS[:3], revoke(2, 6)]
    assert "deleted at revision 5" in str(checks.check_lease_ends(LEASE_REF, moved)[1])
    kept = events((1, LA, "a"), (2, LB, "b"), (3, LC, "c"), (4, LA, ""), (4, LB, ""))
    assert "never deleted" in str(checks.check_lease_ends(kept, LEASE_OPS)[1])
    late = events((1, LA, "a"), (2, LB, "b"), (3, LA, ""), (3, LB, ""), (4, LA, "a"))
    assert "which ended at revision 3" in str(checks.check_lease_ends(late, LEASE_OPS)[1])


def _alive(lease_ops: list[LeaseOp], kv_ops: list[Op]) -> list[checks.Finding]:
    ends, _ = checks.check_lease_ends(LEASE_REF, lease_ops)
    return checks.check_lease_alive(ends, lease_ops, checks.CommitBound(kv_ops, lease_ops))


def test_lease_alive_flags_an_expiry_inside_a_promised_ttl_only_when_proven() -> None:
    # A keepalive of lease 1 sent at 10.0, answered ttl 3: promised until 13.0.
    promised = [*LEASE_OPS, keepalive(1, 10.0)]
    # Revision 4 (lease 1's expiry) first reported by an answer completing at 13.5:
    # it may have committed at 13.0 or later, so nothing is proven.
    assert _alive(promised, [get(1, "x", 13.0, 13.5, rev=4)]) == []
    # ... reported by a read completing at 12.5: it committed inside the TTL.
    found = _alive(promised, [get(1, "x", 12.0, 12.5, rev=4)])
    assert "1 kept-alive leases expired" in str(found) and "lease 1 expired at revision 4" in str(
        found
    )
    # A later revision reported earlier bounds it too (revisions commit in order).
    assert _alive(promised, [get(1, "x", 11.0, 11.5, rev=7)]) != []
    # A keepalive answered by a member that had applied the expiry is itself proof.
    assert _alive([*LEASE_OPS, keepalive(1, 10.0), keepalive(2, 10.5, rev=4)], []) != []
    # A ttl-0 answer ("lease not found") promises nothing; neither does a revoked lease.
    gone = [*LEASE_OPS, keepalive(1, 10.0, ttl=0)]
    assert _alive(gone, [get(1, "x", 12.0, 12.5, rev=4)]) == []
    revoked = [*LEASE_OPS, keepalive(2, 10.0)]
    assert _alive(revoked, [get(1, "x", 12.0, 12.5, rev=5)]) == []
    # A failed revoke (the lease was already gone) does not excuse the expiry.
    failed = [*LEASE_OPS[:3], revoke(2, 0, Result.FAIL), keepalive(2, 10.0)]
    assert "lease 2 expired" in str(_alive(failed, [get(1, "x", 12.0, 12.5, rev=5)]))


def _reads(lease_ops: list[LeaseOp], kv_ops: list[Op]) -> list[checks.Finding]:
    ends, _ = checks.check_lease_ends(LEASE_REF, lease_ops)
    return checks.check_lease_reads(ends, lease_ops, checks.CommitBound(kv_ops, lease_ops))


def test_lease_reads_flag_a_key_read_after_its_lease_ended() -> None:
    committed = [get(1, "x", 19.0, 20.0, rev=4)]  # revision 4 committed by 20.0
    ok = [
        *LEASE_OPS,
        lread(LA, "a", 3, 18.0),  # before the expiry
        lread(LA, None, 4, 21.0),  # after it: absent
        lread(LA, "a", 3, 21.0, serializable=True),  # a stale serializable read may see it
    ]
    assert _reads(ok, committed) == []
    at_revision = [*LEASE_OPS, lread(LA, "a", 4, 18.0, serializable=True)]
    assert "after lease 1 ended at revision 4" in str(_reads(at_revision, committed))
    linearizable = [*LEASE_OPS, lread(LB, "b", 3, 21.0)]
    assert "linearizable read invoked after" in str(_reads(linearizable, committed))
    phantom = [*LEASE_OPS, lread(LA, "zz", 1, 1.0)]
    assert "no attach wrote" in str(_reads(phantom, committed))


def test_durability_explains_lease_writes_and_their_ends() -> None:
    state = checks.reference_state(LEASE_REF)
    digest = checks.state_digest((k, v, r) for k, (v, r) in state.items())
    members = {"n1": MemberFinal(5, digest, 0)}
    assert checks.check_durability(LEASE_REF, [], 5, members, LEASE_OPS) == []
    assert "written by no logged write" in str(checks.check_durability(LEASE_REF, [], 5, members))


def test_lease_errors_and_records() -> None:
    odd = LeaseOp("o", LeaseOpKind.GRANT, 0, 1, Result.UNKNOWN, error="internal")
    assert "unexpected lease errors" in str(checks.check_lease_errors([odd]))
    fine = LeaseOp("o", LeaseOpKind.REVOKE, 0, 1, Result.FAIL, error="lease_not_found")
    assert checks.check_lease_errors([fine]) == []
    assert LeaseOp.from_json(odd.to_json()) == odd
    assert checks.check_leases(LEASE_REF, [], []) == []
