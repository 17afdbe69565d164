"""The index clock behind time-based replication lag (``IndexClock`` in
mcpctl/raft/status.py): how long the oldest entry a member lacks has waited,
measured on this member's clock, in bounded memory."""

from __future__ import annotations

import pytest

from mcpctl.raft.status import IndexClock


def test_age_is_that_of_the_first_index_above_what_the_member_has() -> None:
    """A member at index i lacks i+1 first: its lag is how long ago i+1 appeared."""
    clock = IndexClock()
    clock.record(10, now=100.0)  # indexes up to 10 appeared at 100
    clock.record(20, now=103.0)  # 11..20 at 103
    assert clock.age_after(5, now=105.0) == pytest.approx(5.0)  # lacks 6 (from 100)
    assert clock.age_after(10, now=105.0) == pytest.approx(2.0)  # lacks 11 (from 103)
    assert clock.age_after(20, now=105.0) == 0.0  # has everything


def test_a_record_that_does_not_grow_the_log_is_ignored() -> None:
    """Only growth is recorded: the time an index first appeared never moves later."""
    clock = IndexClock()
    clock.record(10, now=100.0)
    clock.record(10, now=150.0)
    clock.record(7, now=160.0)  # a truncated log does not rewrite history
    clock.record(15, now=170.0)
    assert clock.age_after(9, now=200.0) == pytest.approx(100.0)  # lacks 10 (from 100)
    assert clock.age_after(10, now=200.0) == pytest.approx(30.0)  # 11..15 appeared at 170


def test_memory_is_bounded_and_the_oldest_records_go_first() -> None:
    """At LAG_RECORDS_MAX records the oldest half is dropped: ages are then capped
    at the oldest record kept, never made up."""
    clock = IndexClock(records_max=4)
    for i in range(1, 6):
        clock.record(i, now=float(i))
    # 5 records > 4: keep the newest 2 (indexes 4 and 5, at 4.0 and 5.0).
    assert clock.age_after(0, now=10.0) == pytest.approx(6.0)  # capped at index 4's time
    assert clock.age_after(4, now=10.0) == pytest.approx(5.0)
    assert clock.age_after(5, now=10.0) == 0.0
