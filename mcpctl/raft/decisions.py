"""The Raft decisions we add to PySyncObj, as pure functions (table-tested).

``syncobj.RaftSyncObj`` and ``node.RaftNode`` gather the facts from PySyncObj
and act; what to do with them is decided here, with no clock, socket or
PySyncObj object in sight (tests/unit/test_raft_decisions.py):

- pre-vote: when a member whose election timer ran out asks the others
  first, whether another member says yes, and when enough said yes;
- next index: a successful ack never moves a follower's next index back;
- fast election: a follower whose connection to the leader *closed* elects
  after a short, ranked delay instead of the whole election timeout;
- leader reachable: whether a proposal sent from here can reach a leader;
- restored: whether a restarted member has applied what it had before;
- read index: when a voter answers a probe, when a round is confirmed, and
  when a leader's commit index may serve as a read index.
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import Enum

# (last log term, last log index): compared as a tuple, term first (Raft §5.4.1).
LogPosition = tuple[int, int]


class PrevoteStep(Enum):
    """What a follower does on a tick, as far as pre-vote is concerned."""

    WAIT = "wait"  # its timer has not run out (or PySyncObj would not campaign anyway)
    ASK = "ask"  # ask the others; push its own timer back meanwhile
    CAMPAIGN = "campaign"  # a majority said yes lately: let PySyncObj's election go ahead


def prevote_step(
    *,
    is_leader: bool,
    timer_expired: bool,
    connected_to_anyone: bool,
    has_others: bool,
    transfer_in_progress: bool,
    since_prevote_won_s: float,
    prevote_valid_s: float,
) -> PrevoteStep:
    """Before PySyncObj makes this member a candidate (a new term, which deposes a
    live leader), it asks the others; a leadership transfer skips the question."""
    if is_leader or not timer_expired or not connected_to_anyone:
        return PrevoteStep.WAIT
    if not has_others or transfer_in_progress:
        return PrevoteStep.WAIT
    if since_prevote_won_s < prevote_valid_s:
        return PrevoteStep.CAMPAIGN
    return PrevoteStep.ASK


def hears_live_leader(
    *,
    is_leader: bool,
    leader_known: bool,
    leader_connected: bool,
    since_leader_heard_s: float,
    election_timeout_min_s: float,
) -> bool:
    """This member heard a live leader lately (being the leader counts): it then
    refuses pre-votes. A closed connection to the leader counts as not hearing."""
    if is_leader:
        return True
    return leader_known and leader_connected and since_leader_heard_s < election_timeout_min_s


def prevote_granted(
    *,
    hears_leader: bool,
    candidate_term: int,
    current_term: int,
    candidate_log: LogPosition,
    own_log: LogPosition,
) -> bool:
    """Yes only when no live leader is heard, the candidate's next term is newer
    than ours and its log is at least as up to date (the vote rule, asked early)."""
    return not hears_leader and candidate_term > current_term and candidate_log >= own_log


def prevote_won(grants: int, others: int) -> bool:
    """A majority of the voters (this member counts itself) said yes."""
    return grants + 1 > (others + 1) / 2


def next_index_after_success(before: int | None, after: int | None) -> int | None:
    """The follower's next index after PySyncObj handled a *successful* ack.

    0.3.17 sets ``nextIndex = ack`` on every success: an ack for entry N that
    arrives after N+1 was sent moves it back, and N+1 is sent again (the
    follower then truncates and re-appends applied entries). Raft only needs it
    to fall on a failed ack: on success it never goes back.
    """
    if before is None or after is None:
        return after
    return max(before, after)


def leader_connection_closed(
    *,
    is_follower: bool,
    leader: str | None,
    previous_leader: str | None,
    was_connected: bool,
    is_connected: bool,
) -> bool:
    """The same leader as on the previous tick, whose connection was up and is now
    closed: its process is gone or restarting (a partition or a paused process
    keeps the connection open)."""
    return (
        is_follower
        and leader is not None
        and previous_leader == leader
        and was_connected
        and not is_connected
    )


def leader_gone_election_delay_s(
    rank: int, *, first_s: float, step_s: float, jitter_s: float
) -> float:
    """How soon a follower elects after its leader's connection closed: a first
    delay plus a step per follower ranked before it (so the survivors do not
    split the vote), plus the jitter drawn by the caller."""
    return first_s + rank * step_s + jitter_s


def leader_reachable(
    *,
    is_leader: bool,
    leader_known: bool,
    leader_connected: bool,
    since_leader_heard_s: float,
    election_timeout_max_s: float,
) -> bool:
    """A proposal from here can reach a leader: this member leads, or its link to
    the leader is up and the leader's AppendEntries arrived within the election
    timeout (PySyncObj drops a forward on a dead link without a word)."""
    if not leader_known:
        return False
    if is_leader:
        return True
    return leader_connected and since_leader_heard_s <= election_timeout_max_s


def leader_has_quorum_contact(contact_ages_s: Sequence[float], window_s: float) -> bool:
    """A leader heard from a majority (itself included) within ``window_s``.

    With ``window_s`` the minimum election timeout, no other member can have
    been elected meanwhile: a new leader needs a majority's votes, and a
    follower that answered this leader within the window has not timed out
    yet (Raft's leader lease argument, clocks running at about the same
    rate). A leader cut off from the majority fails this within the window,
    while PySyncObj still calls it leader for up to ``leaderFallbackTimeout``.
    """
    heard = 1 + sum(1 for age in contact_ages_s if age <= window_s)
    return heard > (len(contact_ages_s) + 1) / 2


def restored(
    *,
    applied_index: int,
    last_log_index_at_start: int,
    heard_commit_index: int | None,
    heard_commit_term: int | None,
    current_term: int,
) -> bool:
    """A restarted member has applied at least what it had applied before it stopped.

    Everything it had applied is in its snapshot and journal, so it is restored
    once it has applied (a) up to the last log index it found at start, or (b)
    when that tail is never committed (a new leader dropped it), up to a
    commit index heard from a leader since start whose entry is of the current
    term: that leader's log holds every entry committed before its term
    (leader completeness). The commit index PySyncObj restored from disk
    proves nothing: it is saved once a second.
    """
    if applied_index >= last_log_index_at_start:
        return True
    if heard_commit_index is None or not 0 < heard_commit_index <= applied_index:
        return False
    return heard_commit_term == current_term


def read_probe_answered(probe_term: int, current_term: int) -> bool:
    """A voter answers a leader's read index probe only while its own term is not
    above the probe's: the answer proves it had not moved to a newer term (so
    had voted in no newer election) when it sent it."""
    return probe_term >= current_term


def read_round_confirmed(acks: int, others: int) -> bool:
    """A read index round is confirmed by a majority of the voters (the leader
    counts itself) answering a probe of that round or a later one."""
    return acks + 1 > (others + 1) / 2


def read_index_known(commit_term: int | None, current_term: int) -> bool:
    """A leader's commit index is a valid read index only once it has committed an
    entry of its own term (its first, the election no-op): before that it may
    lag entries an earlier leader committed (Raft thesis §6.4)."""
    return commit_term == current_term
