"""The watch checker (tests/watchcheck.py) itself: hand-made histories that break
each watch promise must be caught, and one that keeps them all must pass.

No network: streams are built message by message from a small reference
history (a put per revision, with one three-key txn at revision 4).
"""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from mcpctl._proto.mcp.v1 import kv_pb2, watch_pb2
from tests.watchcheck import (
    Ev,
    EventType,
    Kind,
    Outcome,
    Promise,
    Reference,
    StreamRecord,
    Violation,
    WriteLog,
    assert_ok,
    check_reference,
    check_stream,
    count_check,
)

PUT = EventType.PUT
DELETE = EventType.DELETE


def ev(revision: int, key: str, value: str = "", type_: EventType = PUT) -> Ev:
    return Ev(revision, key, type_, value.encode() if type_ is PUT else b"")


# Revisions 1..8: /a, /b, /a, txn(/t/1, /t/2, /t/3), /b, delete /a, /a, /c.
HISTORY = [
    ev(1, "/a", "a1"),
    ev(2, "/b", "b1"),
    ev(3, "/a", "a2"),
    ev(4, "/t/1", "x"),
    ev(4, "/t/2", "y"),
    ev(4, "/t/3", "z"),
    ev(5, "/b", "b2"),
    ev(6, "/a", type_=DELETE),
    ev(7, "/a", "a3"),
    ev(8, "/c", "c1"),
]
FINAL = 8


def reference() -> Reference:
    return Reference.of(HISTORY, start=1, final=FINAL)


def at(*revisions: int) -> list[Ev]:
    return [e for e in HISTORY if e.revision in revisions]


def record(
    messages: Sequence[tuple[Kind, int, Sequence[Ev]]],
    *,
    key: str = "",
    prefix: bool = True,
    start: int = 1,
) -> StreamRecord:
    rec = StreamRecord("s", key, prefix=prefix, start_revision=start)
    for kind, revision, events in messages:
        rec.add(kind, revision, events, "n1")
    return rec


def created(revision: int = 0) -> tuple[Kind, int, list[Ev]]:
    return (Kind.CREATED, revision, [])


def events(*revisions: int) -> tuple[Kind, int, list[Ev]]:
    evs = at(*revisions)
    return (Kind.EVENTS, evs[-1].revision, evs)


def progress(revision: int) -> tuple[Kind, int, list[Ev]]:
    return (Kind.PROGRESS, revision, [])


def promises(violations: list[Violation]) -> set[Promise]:
    return {v.promise for v in violations}


# ----------------------------------------------------------- a good stream
def test_a_stream_that_keeps_every_promise_passes() -> None:
    """A complete, ordered stream of whole revisions with a reconnect and bookmarks passes."""
    rec = record(
        [
            created(0),
            events(1, 2),
            events(3),
            progress(3),
            created(3),  # reconnect (the SDK resumes at 4)
            events(4, 5),
            events(6),
            events(7, 8),
            progress(8),
        ]
    )
    assert_ok(check_stream(rec, reference(), through=FINAL))
    assert count_check(rec, reference(), through=FINAL) == []


def test_a_filtered_stream_from_a_start_revision_passes() -> None:
    """A key watch from revision 3 owes only that key's events from 3 on (incl. the delete)."""
    a = [e for e in HISTORY if e.key == "/a" and e.revision >= 3]
    rec = record(
        [created(8), (Kind.EVENTS, 6, a[:2]), (Kind.EVENTS, 7, a[2:]), progress(8)],
        key="/a",
        prefix=False,
        start=3,
    )
    assert_ok(check_stream(rec, reference(), through=FINAL))


def test_an_explicit_resume_at_the_next_revision_passes() -> None:
    """Closing and reopening with start_revision = last + 1 is a clean resume."""
    rec = record([created(2), events(1, 2)])
    rec.reconnect(3)
    for kind, revision, evs in [created(5), events(3), events(4, 5)]:
        rec.add(kind, revision, evs, "n2")
    assert rec.connections == 2
    assert_ok(check_stream(rec, reference(), through=5))


# ------------------------------------------------------------- violations
def test_out_of_order_events_are_caught() -> None:
    """ORDERED: a revision lower than one already delivered."""
    rec = record([created(), events(1), events(3), events(2), events(4, 5, 6, 7, 8)])
    assert Promise.ORDERED in promises(check_stream(rec, reference()))


def test_out_of_order_within_one_message_is_caught() -> None:
    """ORDERED: revisions going down inside a message."""
    evs = at(2) + at(1)
    rec = record([created(), (Kind.EVENTS, 1, evs)])
    assert Promise.ORDERED in promises(check_stream(rec, reference()))


def test_a_header_that_is_not_the_last_event_revision_is_caught() -> None:
    """ORDERED: an events message's header names its last event's revision."""
    rec = record([created(), (Kind.EVENTS, 5, at(1, 2))])
    assert Promise.ORDERED in promises(check_stream(rec, reference()))


def test_a_duplicate_event_is_caught() -> None:
    """UNIQUE: the same (revision, key) twice on one stream."""
    rec = record([created(), events(1, 2), events(2, 3)])
    assert Promise.UNIQUE in promises(check_stream(rec, reference()))


def test_a_gap_is_caught() -> None:
    """RELIABLE: a revision owed between the start and the last event is missing."""
    rec = record([created(), events(1, 2), events(4, 5, 6, 7, 8)])
    found = check_stream(rec, reference())
    assert Promise.RELIABLE in promises(found)
    assert any("(3, '/a')" in v.detail for v in found)


def test_a_gap_before_a_bookmark_is_caught() -> None:
    """RELIABLE: a bookmark promises everything up to it; a matching event below it is missing."""
    rec = record([created(), events(1, 2, 3, 4, 5, 6, 7), progress(8)])
    assert Promise.RELIABLE in promises(check_stream(rec, reference()))


def test_a_stream_that_stops_short_is_caught() -> None:
    """RELIABLE: with ``through``, a stream must have reached that revision."""
    rec = record([created(), events(1, 2, 3)])
    assert check_stream(rec, reference()) == []
    assert Promise.RELIABLE in promises(check_stream(rec, reference(), through=FINAL))
    assert count_check(rec, reference(), through=FINAL) != []


def test_an_event_that_never_happened_is_caught() -> None:
    """RELIABLE: a delivered event whose value is not the committed one."""
    wrong = Ev(2, "/b", PUT, b"not-b1")
    rec = record([created(), (Kind.EVENTS, 1, at(1)), (Kind.EVENTS, 2, [wrong])])
    assert Promise.RELIABLE in promises(check_stream(rec, reference()))


def test_an_event_outside_the_filter_is_caught() -> None:
    """RELIABLE: a key watch must not deliver other keys."""
    rec = record([created(), events(1, 2)], key="/a", prefix=False)
    assert Promise.RELIABLE in promises(check_stream(rec, reference()))


def test_a_txn_split_over_two_messages_is_caught() -> None:
    """ATOMIC: the three events of revision 4 arrive in two messages."""
    four = at(4)
    rec = record(
        [
            created(),
            events(1, 2, 3),
            (Kind.EVENTS, 4, four[:2]),
            (Kind.EVENTS, 4, four[2:]),
            events(5, 6, 7, 8),
        ]
    )
    assert Promise.ATOMIC in promises(check_stream(rec, reference(), through=FINAL))


def test_a_txn_with_an_event_missing_is_caught() -> None:
    """ATOMIC: a message carries only part of a revision (and the rest never comes)."""
    rec = record([created(), events(1, 2, 3), (Kind.EVENTS, 4, at(4)[:2]), events(5)])
    assert Promise.ATOMIC in promises(check_stream(rec, reference()))


def test_a_resume_that_replays_is_caught() -> None:
    """RESUMABLE: after a reconnect the stream starts again below what it had."""
    rec = record([created(), events(1, 2, 3), created(3), events(2, 3, 4)])
    assert Promise.RESUMABLE in promises(check_stream(rec, reference()))


def test_a_resume_that_skips_is_caught() -> None:
    """RESUMABLE: after a reconnect the stream goes on past the next revision."""
    rec = record([created(), events(1, 2, 3), created(5), events(6, 7)])
    assert Promise.RESUMABLE in promises(check_stream(rec, reference()))


def test_a_client_resume_from_the_wrong_revision_is_caught() -> None:
    """RESUMABLE: a client that reopens at last + 2 leaves a hole."""
    rec = record([created(2), events(1, 2)])
    rec.reconnect(4)
    for kind, revision, evs in [created(5), events(4, 5)]:
        rec.add(kind, revision, evs, "n2")
    assert Promise.RESUMABLE in promises(check_stream(rec, reference()))


def test_a_bookmark_below_a_received_event_is_caught() -> None:
    """BOOKMARKABLE: a progress revision lower than an event already sent."""
    rec = record([created(), events(1, 2, 3, 4, 5), progress(3)])
    assert Promise.BOOKMARKABLE in promises(check_stream(rec, reference()))


# --------------------------------------------------- reference and write log
def logged(*writes: tuple[int | None, Outcome, list[Ev]]) -> WriteLog:
    log = WriteLog()
    for revision, outcome, evs in writes:
        log.record([e.change for e in evs], outcome, revision)
    return log


def full_log() -> list[tuple[int | None, Outcome, list[Ev]]]:
    return [(r, Outcome.OK, at(r)) for r in range(1, FINAL + 1)]


def test_a_reference_that_matches_the_write_log_passes() -> None:
    """Every acked write at its revision, an unknown-outcome write that did apply: fine."""
    writes = full_log()
    writes[4] = (None, Outcome.UNKNOWN, at(5))
    writes.append((None, Outcome.UNKNOWN, [ev(99, "/never", "x")]))  # did not apply: fine
    assert check_reference(reference(), logged(*writes)) == []


def test_a_lost_acknowledged_write_is_caught() -> None:
    """HISTORY: an acked write missing from its revision."""
    writes = full_log()
    writes.append((5, Outcome.OK, [ev(5, "/lost", "v")]))
    assert Promise.HISTORY in promises(check_reference(reference(), logged(*writes)))


def test_a_write_reported_failed_that_applied_is_caught() -> None:
    """HISTORY: a write the client was told was not applied shows up in the history."""
    writes = full_log()
    writes[7] = (None, Outcome.FAILED, at(8))
    found = check_reference(reference(), logged(*writes))
    assert Promise.HISTORY in promises(found)
    assert any("not applied was applied" in v.detail for v in found)


def test_a_revision_nobody_wrote_is_caught() -> None:
    """HISTORY: a revision in the history that no logged write explains."""
    writes = full_log()[:-1]
    assert Promise.HISTORY in promises(check_reference(reference(), logged(*writes)))


def test_a_hole_in_the_reference_is_caught() -> None:
    """HISTORY: every revision is a write, so the reference has no missing revision."""
    holed = Reference.of([e for e in HISTORY if e.revision != 5], start=1, final=FINAL)
    assert Promise.HISTORY in promises(check_reference(holed))


# -------------------------------------------------------------- recording
def test_records_from_raw_responses_and_sdk_batches_agree() -> None:
    """A raw WatchResponse is recorded with the revision, key, type and value of each event."""
    rec = StreamRecord("raw", "/a", prefix=False, start_revision=0)
    rec.add_response(
        watch_pb2.WatchResponse(created=True, header=kv_pb2.ResponseHeader(revision=2))
    )
    msg = watch_pb2.WatchResponse(header=kv_pb2.ResponseHeader(revision=6, member_name="n3"))
    msg.events.add(
        type=kv_pb2.Event.PUT,
        kv=kv_pb2.KeyValue(key=b"/a", value=b"a2", mod_revision=3),
        prev_kv=kv_pb2.KeyValue(key=b"/a", value=b"a1", mod_revision=1),
    )
    msg.events.add(type=kv_pb2.Event.DELETE, kv=kv_pb2.KeyValue(key=b"/a", mod_revision=6))
    rec.add_response(msg)
    assert rec.effective_start == 3
    assert [m.kind for m in rec.messages] == [Kind.CREATED, Kind.EVENTS]
    assert rec.events == [ev(3, "/a", "a2"), ev(6, "/a", type_=DELETE)]
    assert rec.events[0].prev_value == b"a1"
    assert rec.messages[1].member == "n3"
    assert_ok(check_stream(rec, reference(), through=6))


def test_wait_covered_fails_with_the_reason_a_stream_ended() -> None:
    """A wait on a stream that ended short reports how it ended instead of hanging."""
    from mcpctl.errors import Compacted

    rec = record([created(), events(1)])
    rec.finish(Compacted(1, 4))
    with pytest.raises(TimeoutError, match="FAILED_PRECONDITION"):
        rec.wait_covered(FINAL, timeout_s=5.0)
