"""Typed values of the Raft member's state, built from PySyncObj's status in one place.

``RaftStatus`` is one consistent copy taken on the tick thread; ``PeerProgress``
is a follower as its leader sees it; ``IndexClock`` turns log indexes into
ages (replication lag); ``ProposeError`` is PySyncObj's failure reasons with
what they mean for a write. Nothing here touches PySyncObj's internals.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import IntEnum
from pathlib import Path

from pysyncobj import FAIL_REASON

from mcpctl import limits
from mcpctl.raft.journal import Durability


class Role(IntEnum):
    FOLLOWER = 0
    CANDIDATE = 1
    LEADER = 2


class ProposeError(IntEnum):
    """PySyncObj's failure reasons, with what they mean for a write."""

    SUCCESS = FAIL_REASON.SUCCESS
    QUEUE_FULL = FAIL_REASON.QUEUE_FULL
    MISSING_LEADER = FAIL_REASON.MISSING_LEADER
    DISCARDED = FAIL_REASON.DISCARDED
    NOT_LEADER = FAIL_REASON.NOT_LEADER
    LEADER_CHANGED = FAIL_REASON.LEADER_CHANGED
    REQUEST_DENIED = FAIL_REASON.REQUEST_DENIED
    UNKNOWN_OUTCOME = 7

    @property
    def maybe_applied(self) -> bool:
        """True when the entry may still commit (the client must be told)."""
        return self in (ProposeError.LEADER_CHANGED, ProposeError.UNKNOWN_OUTCOME)


@dataclass(frozen=True, slots=True)
class RaftSettings:
    self_address: str
    bind_address: str
    partner_addresses: Sequence[str]
    data_dir: Path
    secret: str
    heartbeat_s: float = 0.05
    election_timeout_min_s: float = 0.5
    election_timeout_max_s: float = 1.0
    leader_fallback_s: float = 2.0
    connection_retry_s: float = 0.2
    tick_s: float = 0.01
    compaction_min_entries: int = 20_000
    compaction_min_time_s: int = 300
    durability: Durability = Durability.FSYNC


@dataclass(frozen=True, slots=True)
class PeerProgress:
    """A follower as its leader sees it (valid only in the leader's status).

    ``match_index``, ``entries_behind`` and ``lag_s`` are None (unknown) until
    the follower has acknowledged something to this leader: PySyncObj sets
    every match index to 0 when a leader is elected, which would read as
    "the whole log behind" for a follower that is in fact up to date.
    """

    address: str
    match_index: int | None
    # Leader's last log index - match index.
    entries_behind: int | None
    # How long ago the oldest entry this follower lacks was appended by the
    # leader (leader's clock); 0 when it has everything.
    lag_s: float | None
    # Seconds since the follower last answered the leader.
    contact_age_s: float
    connected: bool


class IndexClock:
    """When each Raft log index first appeared here (this node's monotonic clock).

    One record per tick in which the last log index grew, at most
    ``LAG_RECORDS_MAX``; ``age_after(i)`` is how long ago the first index above
    ``i`` appeared (0 when there is none), i.e. how long an entry someone who
    has ``i`` lacks has been waiting. Older records are dropped at the limit,
    which caps ages at the age of the oldest record kept.
    """

    def __init__(self, records_max: int = limits.LAG_RECORDS_MAX) -> None:
        assert records_max >= 1
        self._indexes: list[int] = []
        self._times: list[float] = []
        self._records_max = records_max

    def record(self, index: int, now: float) -> None:
        if self._indexes and index <= self._indexes[-1]:
            return
        self._indexes.append(index)
        self._times.append(now)
        if len(self._indexes) > self._records_max:
            drop = len(self._indexes) - self._records_max // 2
            del self._indexes[:drop]
            del self._times[:drop]

    def age_after(self, index: int, now: float) -> float:
        i = bisect.bisect_right(self._indexes, index)
        if i >= len(self._indexes):
            return 0.0
        return max(0.0, now - self._times[i])


def peer_progress(
    clock: IndexClock,
    address: str,
    match_index: int,
    last_log_index: int,
    now: float,
    *,
    contact_age_s: float,
    connected: bool,
) -> PeerProgress:
    """A follower's progress from the leader's match index; unknown while it is 0.

    0 is what PySyncObj starts a follower at (on election, on a member added);
    a real acknowledgement is at least 1, as every log starts with entry 1.
    """
    known = match_index > 0
    return PeerProgress(
        address=address,
        match_index=match_index if known else None,
        entries_behind=max(0, last_log_index - match_index) if known else None,
        lag_s=clock.age_after(match_index, now) if known else None,
        contact_age_s=contact_age_s,
        connected=connected,
    )


@dataclass(frozen=True, slots=True)
class RaftStatus:
    """One consistent copy of the Raft state, taken on the tick thread."""

    role: Role = Role.FOLLOWER
    term: int = 0
    leader: str | None = None
    commit_index: int = 0
    applied_index: int = 0
    has_quorum: bool = False
    ready: bool = False
    last_log_index: int = 0
    # How long the oldest committed entry not yet applied here has waited.
    apply_lag_s: float = 0.0
    # Seconds since this member last heard from a leader (0 on the leader).
    leader_contact_age_s: float = 0.0
    # A leader is known and can take a proposal from here: this member leads,
    # or its link to the leader is up and it heard the leader within the
    # election timeout (a forward on a dead link is dropped).
    leader_reachable: bool = False
    # Leader only: every other voter, as the leader sees it.
    peers: tuple[PeerProgress, ...] = ()
    connected: dict[str, bool] = field(default_factory=dict)
    # All voters (addresses), this member included.
    members: tuple[str, ...] = ()
    # This member has applied at least everything it had applied before it
    # (re)started (RaftNode._check_restored): until then it serves no reads.
    restored: bool = False


StatusListener = Callable[[RaftStatus], None]


def proposal_view(status: RaftStatus) -> tuple[Role, int, str | None, bool]:
    """What decides whether a proposal in flight can still commit as proposed."""
    return (status.role, status.term, status.leader, status.leader_reachable)
