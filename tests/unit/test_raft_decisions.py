"""The Raft decisions we add to PySyncObj, as tables (mcpctl/raft/decisions.py).

Modelled on etcd-io/raft's testdata/prevote.txt: each row is a situation and
what the member must do in it, with a comment saying why. No PySyncObj, no
sockets, no clocks. Plus the two guards of ``mcpctl.raft``: ``install()``
refuses any PySyncObj but the one its patches were written for, and the
tick thread's call queue refuses (loudly) instead of dropping calls.
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import Callable

import pytest
from pysyncobj import SyncObj, tcp_server
from pysyncobj.tcp_connection import TcpConnection
from structlog.testing import capture_logs

from mcpctl.errors import Unavailable
from mcpctl.raft import decisions, syncobj
from mcpctl.raft.decisions import PrevoteStep
from mcpctl.raft.housekeeping import TickCalls, close_overdue
from mcpctl.raft.inventory import INVENTORY

# -- pre-vote: when to ask -------------------------------------------------------------
# leader, timer expired, connected to anyone, has others, transfer, since won, expected
STEP_ROWS = [
    (False, True, True, True, False, 99.0, PrevoteStep.ASK),  # timer ran out: ask first
    (True, True, True, True, False, 99.0, PrevoteStep.WAIT),  # a leader never campaigns
    (False, False, True, True, False, 99.0, PrevoteStep.WAIT),  # timer still running
    (False, True, False, True, False, 99.0, PrevoteStep.WAIT),  # alone: PySyncObj waits too
    (False, True, True, False, False, 99.0, PrevoteStep.WAIT),  # one-member cluster
    (False, True, True, True, True, 99.0, PrevoteStep.WAIT),  # a transfer skips pre-vote
    (False, True, True, True, False, 0.5, PrevoteStep.CAMPAIGN),  # won 0.5 s ago: go
    (False, True, True, True, False, 1.0, PrevoteStep.ASK),  # won too long ago: ask again
]


@pytest.mark.parametrize(
    ("leader", "expired", "connected", "others", "transfer", "since_won", "expected"), STEP_ROWS
)
def test_prevote_step(
    leader: bool,
    expired: bool,
    connected: bool,
    others: bool,
    transfer: bool,
    since_won: float,
    expected: PrevoteStep,
) -> None:
    assert (
        decisions.prevote_step(
            is_leader=leader,
            timer_expired=expired,
            connected_to_anyone=connected,
            has_others=others,
            transfer_in_progress=transfer,
            since_prevote_won_s=since_won,
            prevote_valid_s=1.0,
        )
        == expected
    )


# -- pre-vote: whether a member says yes -------------------------------------------------
# hears leader, candidate term, our term, candidate log (term, index), our log, granted
GRANT_ROWS = [
    (False, 5, 4, (4, 10), (4, 10), True),  # no leader heard, newer term, same log: yes
    (True, 5, 4, (4, 10), (4, 10), False),  # a live leader is heard: no (the paused follower)
    (False, 4, 4, (4, 10), (4, 10), False),  # not a newer term: no
    (False, 5, 4, (4, 9), (4, 10), False),  # shorter log of the same term: no
    (False, 5, 4, (3, 20), (4, 10), False),  # longer log but older last term: no
    (False, 5, 4, (4, 11), (4, 10), True),  # longer log: yes
    (False, 5, 4, (5, 1), (4, 10), True),  # newer last term beats a longer log: yes
]


@pytest.mark.parametrize(("hears", "term", "ours", "theirs", "mine", "granted"), GRANT_ROWS)
def test_prevote_granted(
    hears: bool,
    term: int,
    ours: int,
    theirs: tuple[int, int],
    mine: tuple[int, int],
    granted: bool,
) -> None:
    assert (
        decisions.prevote_granted(
            hears_leader=hears,
            candidate_term=term,
            current_term=ours,
            candidate_log=theirs,
            own_log=mine,
        )
        is granted
    )


# leader, leader known, connected, since heard, hears
HEARS_ROWS = [
    (True, False, False, 99.0, True),  # the leader hears itself
    (False, True, True, 0.1, True),  # heard 0.1 s ago over a live link
    (False, True, True, 0.5, False),  # not within the minimum election timeout
    (False, True, False, 0.1, False),  # its connection closed: not heard
    (False, False, False, 0.1, False),  # no leader known
]


@pytest.mark.parametrize(("leader", "known", "connected", "since", "hears"), HEARS_ROWS)
def test_hears_live_leader(
    leader: bool, known: bool, connected: bool, since: float, hears: bool
) -> None:
    assert (
        decisions.hears_live_leader(
            is_leader=leader,
            leader_known=known,
            leader_connected=connected,
            since_leader_heard_s=since,
            election_timeout_min_s=0.5,
        )
        is hears
    )


@pytest.mark.parametrize(
    ("grants", "others", "won"),
    [
        (1, 2, True),  # 3 voters: itself + 1 = 2 of 3
        (0, 2, False),  # itself alone is 1 of 3
        (1, 3, False),  # 4 voters: 2 of 4 is no majority
        (2, 3, True),  # 3 of 4
        (2, 4, True),  # 3 of 5
        (1, 4, False),  # 2 of 5
    ],
)
def test_prevote_won_needs_a_majority_of_voters(grants: int, others: int, won: bool) -> None:
    assert decisions.prevote_won(grants, others) is won


# -- next index ------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("before", "after", "kept"),
    [
        (12, 11, 12),  # a late ack for 10 must not rewind 12 to 11 (the re-send / wedge)
        (12, 13, 13),  # an ack moves it forward
        (12, 12, 12),
        (None, 5, 5),  # a follower PySyncObj just started tracking
        (7, None, None),  # a follower PySyncObj dropped stays dropped
    ],
)
def test_a_successful_ack_never_moves_next_index_back(
    before: int | None, after: int | None, kept: int | None
) -> None:
    assert decisions.next_index_after_success(before, after) == kept


# -- fast election after the leader's connection closed ------------------------------------
# follower, leader, previous leader, was connected, is connected, elect soon
CLOSED_ROWS = [
    (True, "a", "a", True, False, True),  # the same leader's link just closed: elect soon
    (True, "a", "a", False, False, False),  # it was already closed: the timeout decides
    (True, "a", "a", True, True, False),  # still connected (a partition looks like this)
    (True, "a", "b", True, False, False),  # a new leader: not the one that was connected
    (False, "a", "a", True, False, False),  # a candidate or leader does not
    (True, None, "a", True, False, False),  # no leader known
]


@pytest.mark.parametrize(("follower", "leader", "previous", "was", "now", "soon"), CLOSED_ROWS)
def test_leader_connection_closed(
    follower: bool, leader: str | None, previous: str | None, was: bool, now: bool, soon: bool
) -> None:
    assert (
        decisions.leader_connection_closed(
            is_follower=follower,
            leader=leader,
            previous_leader=previous,
            was_connected=was,
            is_connected=now,
        )
        is soon
    )


def test_election_delay_steps_by_rank_so_survivors_do_not_split_the_vote() -> None:
    delays = [
        decisions.leader_gone_election_delay_s(rank, first_s=0.02, step_s=0.15, jitter_s=0.05)
        for rank in range(3)
    ]
    assert delays == pytest.approx([0.07, 0.22, 0.37])


# -- leader reachable (proposals) and restored (reads) ---------------------------------------
# leader, known, connected, since heard, reachable
REACH_ROWS = [
    (True, True, False, 99.0, True),  # the leader proposes to itself
    (False, True, True, 0.2, True),
    (False, True, True, 1.5, False),  # silent past the election timeout (cut off)
    (False, True, False, 0.2, False),  # link down: a forward would be dropped
    (False, False, True, 0.2, False),  # no leader
]


@pytest.mark.parametrize(("leader", "known", "connected", "since", "reachable"), REACH_ROWS)
def test_leader_reachable(
    leader: bool, known: bool, connected: bool, since: float, reachable: bool
) -> None:
    assert (
        decisions.leader_reachable(
            is_leader=leader,
            leader_known=known,
            leader_connected=connected,
            since_leader_heard_s=since,
            election_timeout_max_s=1.0,
        )
        is reachable
    )


# applied, last index at start, heard commit, its term, current term, restored
RESTORED_ROWS = [
    (150, 150, None, None, 3, True),  # replayed the whole journal it had
    (100, 150, None, None, 3, False),  # journal replayed up to a stale commit index: not yet
    (100, 150, 100, 3, 3, True),  # its tail was dropped; a current-term commit at 100 heard
    (100, 150, 100, 2, 3, False),  # heard commit of an older term proves nothing
    (100, 150, 120, 3, 3, False),  # heard commit not applied yet
    (0, 0, None, None, 1, True),  # a new member with an empty log
]


@pytest.mark.parametrize(("applied", "floor", "heard", "heard_term", "term", "ok"), RESTORED_ROWS)
def test_restored(
    applied: int, floor: int, heard: int | None, heard_term: int | None, term: int, ok: bool
) -> None:
    assert (
        decisions.restored(
            applied_index=applied,
            last_log_index_at_start=floor,
            heard_commit_index=heard,
            heard_commit_term=heard_term,
            current_term=term,
        )
        is ok
    )


# -- install(): exactly the PySyncObj the patches were written for ---------------------------
@pytest.fixture
def fresh_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(syncobj, "_installed", False)
    monkeypatch.setattr(tcp_server, "TcpConnection", TcpConnection)


def test_install_refuses_another_pysyncobj_version(
    fresh_install: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(importlib.metadata, "version", lambda name: "0.3.18")
    with pytest.raises(syncobj.PySyncObjMismatch, match=r"pysyncobj 0\.3\.18 is installed"):
        syncobj.install()
    assert tcp_server.TcpConnection is not syncobj._HandshakeBoundedConnection


def test_install_refuses_a_pysyncobj_without_a_patched_name(
    fresh_install: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delattr(SyncObj, "_checkCommandsToApply")
    with pytest.raises(syncobj.PySyncObjMismatch, match="_checkCommandsToApply"):
        syncobj.install()


def test_install_patches_only_when_called(fresh_install: None) -> None:
    assert tcp_server.TcpConnection is not syncobj._HandshakeBoundedConnection
    syncobj.install()
    assert tcp_server.TcpConnection is syncobj._HandshakeBoundedConnection


def test_every_inventory_entry_says_where_and_why() -> None:
    for item in INVENTORY:
        file, _, line = item.where.partition(":")
        assert file.endswith(".py") and line.isdigit() and item.why, item


# -- the tick thread's call queue -----------------------------------------------------------
def test_tick_calls_refuse_loudly_at_the_limit_and_never_drop_one() -> None:
    ran: list[int] = []
    calls = TickCalls(calls_max=2)

    def call(i: int) -> Callable[[], None]:
        return lambda: ran.append(i)

    calls.push(call(1))
    calls.push(call(2))
    with capture_logs() as logs, pytest.raises(Unavailable, match="2 calls waiting"):
        calls.push(call(3))
    assert [e["event"] for e in logs] == ["raft tick thread is behind; call refused"]
    assert calls.run_all() == 2 and ran == [1, 2]  # the oldest were kept, in order
    calls.push(call(4))
    assert calls.run_all() == 1 and ran == [1, 2, 4]


# -- a leader's contact with a majority (what it may answer as final) -------------------------
@pytest.mark.parametrize(
    ("ages", "contact"),
    [
        ([0.05, 0.05], True),  # both followers answered just now
        ([0.05, 3.0], True),  # one of two: with itself, 2 of 3
        ([3.0, 3.0], False),  # cut off from both: no majority (PySyncObj still says leader)
        ([0.5, 0.6], True),  # at the window's edge counts
        ([0.6, 0.6], False),
        ([0.05, 3.0, 3.0, 0.05], True),  # 5 voters: itself + 2
        ([0.05, 3.0, 3.0, 3.0], False),  # 5 voters: itself + 1
        ([], True),  # a one-member cluster is its own majority
    ],
)
def test_leader_has_quorum_contact(ages: list[float], contact: bool) -> None:
    assert decisions.leader_has_quorum_contact(ages, window_s=0.5) is contact


class FakeConnection:
    def __init__(self) -> None:
        self.closed = False

    def disconnect(self) -> None:
        self.closed = True


def test_connections_past_the_timeout_are_closed_and_gone_ones_forgotten() -> None:
    """PySyncObj checks a connection's timeout only on its events: a connect to an
    address where nobody answers, or an incoming connection that never speaks,
    would stay forever. Past the connection timeout they are closed (PySyncObj
    then dials again, with a fresh DNS answer)."""
    stuck, fresh, gone = FakeConnection(), FakeConnection(), FakeConnection()
    seen: dict[object, float] = {}
    assert close_overdue([stuck, gone], seen, now=0.0, timeout_s=3.5) == 0
    assert close_overdue([stuck, fresh], seen, now=2.0, timeout_s=3.5) == 0
    assert gone not in seen  # it connected (or went away): forgotten
    assert close_overdue([stuck, fresh], seen, now=3.6, timeout_s=3.5) == 1
    assert stuck.closed and not fresh.closed and stuck not in seen
    assert close_overdue([fresh], seen, now=5.6, timeout_s=3.5) == 1 and fresh.closed


# -- what a member's log says about its peers -------------------------------------------------
def test_peer_connection_changes_are_logged_once_each() -> None:
    """A member logs each peer's connect and disconnect (what a stalled member's log
    must show), and nothing while nothing changes."""
    from mcpctl.raft.node import RaftNode
    from mcpctl.raft.status import RaftStatus

    a, b = "10.0.0.2:7001", "10.0.0.3:7001"
    steps = [{a: False, b: False}, {a: True, b: False}, {a: True, b: False}, {a: False, b: True}]
    with capture_logs() as logs:
        previous = RaftStatus()
        for connected in steps:
            status = RaftStatus(connected=connected)
            RaftNode._log_changes(previous, status)
            previous = status
    assert [(e["event"], e["peer"]) for e in logs] == [
        ("raft peer connected", a),
        ("raft peer disconnected", a),
        ("raft peer connected", b),
    ]
