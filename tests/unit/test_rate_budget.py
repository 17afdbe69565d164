"""An identity's rate limit is for the whole cluster (issue #19): each member
enforces its share, rate/voters and burst/voters, so calling every member in
turn buys no more than calling one. Time is an argument: no sleeps."""

from __future__ import annotations

import pytest

from mcpctl.errors import ResourceExhausted
from mcpctl.server import auth

OPS = auth.Identity("ops", auth.ADMIN)


def member_guard(voters: list[int], rate_per_s: float, burst: float) -> auth.Guard:
    """One member's guard; ``voters[0]`` is Raft's voter count (mutable)."""
    return auth.Guard(enabled=True, rate_per_s=rate_per_s, burst=burst, voters=lambda: voters[0])


def admitted(guard: auth.Guard, calls: int) -> int:
    ok = 0
    for _ in range(calls):
        try:
            guard.limit(OPS)
            ok += 1
        except ResourceExhausted:
            pass
    return ok


def test_three_members_admit_one_burst_between_them() -> None:
    """A token calling each of three members in turn gets the configured burst in
    total (2 per member), not three bursts."""
    voters = [3]
    members = [member_guard(voters, rate_per_s=0.001, burst=6) for _ in range(3)]
    assert sum(admitted(g, 10) for g in members) == 6
    for g in members:
        rate, burst = g.share()
        assert rate == pytest.approx(0.001 / 3) and burst == 2.0


def test_the_share_follows_the_membership() -> None:
    """When Raft's voter count changes, the bucket is resized (saved tokens above the
    new burst are dropped); a single member keeps the whole budget; the share
    never drops below one request of burst."""
    voters = [1]
    g = member_guard(voters, rate_per_s=0.001, burst=6)
    assert g.share() == (0.001, 6.0)
    assert admitted(g, 1) == 1  # bucket created with 6, now 5
    voters[0] = 3
    assert admitted(g, 10) == 2  # resized to burst 2
    voters[0] = 10
    assert g.share()[1] == 1.0
    voters[0] = 0  # no status yet: as one member
    assert g.share() == (0.001, 6.0)


def test_resize_keeps_the_refill_earned_at_the_old_rate() -> None:
    bucket = auth.TokenBucket(rate=10, burst=4, now=0.0)
    for _ in range(4):
        assert bucket.take(now=0.0) == 0.0
    bucket.resize(rate=1, burst=2, now=0.1)  # 1 token earned at 10/s
    assert bucket.take(now=0.1) == 0.0
    assert bucket.take(now=0.1) == pytest.approx(1.0)
