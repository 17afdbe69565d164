"""The checkers on hand-made histories: each must pass a correct history and
name the violation in a broken one (a checker that never fails proves nothing)."""

from __future__ import annotations

import math

from tests.chaos import checks, linearize
from tests.chaos.checks import FaultRecord, MemberFinal
from tests.chaos.history import Op, OpType, Result
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
