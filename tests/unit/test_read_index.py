"""ReadIndex's rounds and asks (mcpctl/raft/readindex.py) against a fake port: no
PySyncObj, no sockets, a clock the test moves. The real thing runs in
tests/integration/test_read_index.py."""

from __future__ import annotations

from typing import Any

import pytest

from mcpctl import limits
from mcpctl.errors import ResourceExhausted
from mcpctl.raft import decisions
from mcpctl.raft.readindex import ASK, PROBE, PROBE_ACK, REPLY, ReadError, ReadIndex, ReadView

LEADER = ReadView(
    is_leader=True,
    term=3,
    leader="n1",
    leader_connected=True,
    voters=("n2", "n3"),
    commit_index=10,
    commit_term=3,
    applied=10,
)
FOLLOWER = LEADER._replace(is_leader=False, voters=("n1", "n3"))


class Port:
    def __init__(self, view: ReadView) -> None:
        self.view = view
        self.sent: list[tuple[Any, dict[str, Any]]] = []
        self.wakes = 0

    def read_view(self) -> ReadView:
        return self.view

    def read_send(self, node: Any, message: dict[str, Any]) -> bool:
        self.sent.append((node, message))
        return True

    def read_wake(self) -> None:
        self.wakes += 1

    def take(self, kind: str) -> list[tuple[Any, dict[str, Any]]]:
        out = [(n, m) for n, m in self.sent if m["type"] == kind]
        self.sent = [(n, m) for n, m in self.sent if m["type"] != kind]
        return out


class Clock:
    now = 100.0

    def __call__(self) -> float:
        return self.now


def make(view: ReadView, **kwargs: Any) -> tuple[ReadIndex, Port, Clock, list[ReadError]]:
    port, clock = Port(view), Clock()
    ri = ReadIndex(port, clock=clock, **kwargs)
    return ri, port, clock, []


def test_concurrent_reads_share_one_round_confirmed_by_a_majority() -> None:
    ri, port, clock, got = make(LEADER)
    for _ in range(3):
        ri.submit(got.append)
    assert port.wakes == 1  # one wake for the batch
    ri.step()
    probes = port.take(PROBE)
    assert [n for n, _ in probes] == ["n2", "n3"] and ri.rounds == 1
    ri.submit(got.append)  # arrives during the round: waits for the next one
    ri.step()
    assert not got and not port.take(PROBE)
    seq = probes[0][1]["seq"]
    ri.on_message("n3", {"type": PROBE_ACK, "term": 3, "seq": seq})  # self + n3: a majority
    ri.step()
    assert got == [ReadError.SUCCESS] * 3
    # The next round gathers reads for 1 ms per read the last one carried.
    assert not port.take(PROBE)
    clock.now += 3 * limits.READ_INDEX_GAP_S_PER_READ
    ri.step()
    assert len(port.take(PROBE)) == 2 and ri.rounds == 2  # the next round left


def test_the_gap_after_a_busy_round_grows_with_its_reads_up_to_its_max() -> None:
    ri, _, clock, got = make(LEADER._replace(voters=()))  # rounds confirm at once
    ri.submit(got.append)
    ri.step()
    ri.submit(got.append)
    ri.step()  # one read at a time: no gap
    assert ri.rounds == 2
    ri.submit(got.append)
    ri.submit(got.append)
    ri.step()  # two reads: the next round waits 2 ms
    ri.submit(got.append)
    ri.step()
    assert ri.rounds == 3  # held back; the tick's poll waits only until it may start
    assert ri.poll_wait(0.01) == pytest.approx(2 * limits.READ_INDEX_GAP_S_PER_READ)
    clock.now += 2 * limits.READ_INDEX_GAP_S_PER_READ
    assert ri.poll_wait(0.01) == 0.0
    ri.step()
    assert ri.rounds == 4
    for _ in range(100):
        ri.submit(got.append)
    clock.now += 1.0
    ri.step()  # 100 reads: the gap is at its max
    ri.submit(got.append)
    clock.now += limits.READ_INDEX_GAP_S_MAX - 0.0001
    ri.step()
    assert ri.rounds == 5
    clock.now += 0.0002
    ri.step()
    assert ri.rounds == 6 and len(got) == 106


def test_an_answer_to_an_older_round_or_term_does_not_confirm() -> None:
    ri, port, _, got = make(LEADER)
    ri.submit(got.append)
    ri.step()
    seq = port.take(PROBE)[0][1]["seq"]
    ri.on_message("n2", {"type": PROBE_ACK, "term": 3, "seq": seq - 1})
    ri.on_message("n3", {"type": PROBE_ACK, "term": 2, "seq": seq})
    ri.step()
    assert not got


def test_a_read_is_served_only_once_the_index_is_applied() -> None:
    ri, port, _, got = make(LEADER._replace(commit_index=12, applied=11))
    ri.submit(got.append)
    ri.step()
    ri.on_message("n2", {"type": PROBE_ACK, "term": 3, "seq": port.take(PROBE)[0][1]["seq"]})
    ri.step()
    assert not got
    port.view = port.view._replace(applied=12)
    ri.step()
    assert got == [ReadError.SUCCESS]


def test_a_new_leader_waits_for_its_first_commit_of_its_term() -> None:
    """Before its term's first entry commits, the commit index may lag entries an
    earlier leader committed: no round starts."""
    ri, port, _, got = make(LEADER._replace(commit_term=2))
    ri.submit(got.append)
    ri.step()
    assert not port.take(PROBE)
    port.view = port.view._replace(commit_index=11, commit_term=3)
    ri.step()
    assert port.take(PROBE)[0][1]["term"] == 3


def test_losing_leadership_or_the_term_fails_the_round() -> None:
    for lost in (LEADER._replace(term=4), LEADER._replace(is_leader=False)):
        ri, port, _, got = make(LEADER)
        ri.submit(got.append)
        ri.step()
        port.view = lost
        ri.step()
        assert got == [ReadError.NOT_LEADER]


def test_a_voter_answers_a_probe_only_when_its_term_is_not_newer() -> None:
    ri, port, _, _ = make(FOLLOWER)
    ri.on_message("n1", {"type": PROBE, "term": 3, "seq": 7})
    ri.on_message("n1", {"type": PROBE, "term": 2, "seq": 8})  # a deposed leader's
    assert port.take(PROBE_ACK) == [("n1", {"type": PROBE_ACK, "term": 3, "seq": 7})]


def test_a_follower_asks_the_leader_and_serves_once_applied() -> None:
    f, fport, _, got = make(FOLLOWER._replace(applied=8))
    leader, lport, _, _ = make(LEADER)
    f.submit(got.append)
    f.submit(got.append)
    f.step()
    ((to, ask),) = fport.take(ASK)
    assert to == "n1"
    leader.on_message("n2", ask)
    leader.step()
    leader.on_message("n3", {"type": PROBE_ACK, "term": 3, "seq": lport.take(PROBE)[0][1]["seq"]})
    leader.step()
    ((to, reply),) = lport.take(REPLY)
    assert to == "n2" and reply["index"] == 10
    f.on_message("n1", reply)
    f.step()
    assert not got  # applied 8 < 10
    fport.view = fport.view._replace(applied=10)
    f.step()
    assert got == [ReadError.SUCCESS] * 2


def test_a_follower_fails_its_ask_when_the_leader_changes_or_its_link_drops() -> None:
    for changed in (
        FOLLOWER._replace(leader="n3"),
        FOLLOWER._replace(leader_connected=False),
        FOLLOWER._replace(term=4),
    ):
        f, port, _, got = make(FOLLOWER)
        f.submit(got.append)
        f.step()
        port.view = changed
        f.step()
        assert got == [ReadError.LEADER_CHANGED]


def test_a_follower_without_a_reachable_leader_fails_at_once() -> None:
    f, port, _, got = make(FOLLOWER._replace(leader=None, leader_connected=False))
    f.submit(got.append)
    f.step()
    assert got == [ReadError.NO_LEADER] and not port.sent


def test_a_member_that_does_not_lead_answers_an_ask_not_leader() -> None:
    f, port, _, _ = make(FOLLOWER)
    f.on_message("n3", {"type": ASK, "id": 5})
    assert port.take(REPLY) == [("n3", {"type": REPLY, "id": 5, "error": "NOT_LEADER"})]


def test_limits_pending_reads_asks_held_and_the_wait() -> None:
    ri, _, clock, got = make(LEADER._replace(commit_term=2), pending_max=2)
    ri.submit(got.append)
    ri.submit(got.append)
    with pytest.raises(ResourceExhausted):
        ri.submit(got.append)
    ri.step()  # no round can start (this term's first entry is not committed)
    clock.now += 11.0  # past READ_INDEX_WAIT_S_MAX
    ri.step()
    assert got == [ReadError.TIMED_OUT] * 2
    ri.submit(got.append)  # room again

    leader, lport, _, _ = make(LEADER, asks_max=1)
    leader.on_message("n2", {"type": ASK, "id": 1})
    leader.on_message("n3", {"type": ASK, "id": 1})
    assert lport.take(REPLY) == [("n3", {"type": REPLY, "id": 1, "error": "BUSY"})]


def test_a_cluster_of_one_confirms_at_once() -> None:
    ri, port, _, got = make(LEADER._replace(voters=()))
    ri.submit(got.append)
    ri.step()
    assert got == [ReadError.SUCCESS] and not port.sent


@pytest.mark.parametrize(
    ("acks", "others", "confirmed"),
    [(0, 0, True), (0, 2, False), (1, 2, True), (1, 3, False), (2, 4, True), (1, 4, False)],
)
def test_read_round_confirmed_by_a_majority(acks: int, others: int, confirmed: bool) -> None:
    assert decisions.read_round_confirmed(acks, others) is confirmed


def test_read_decisions() -> None:
    assert decisions.read_probe_answered(3, 3) and decisions.read_probe_answered(4, 3)
    assert not decisions.read_probe_answered(2, 3)
    assert decisions.read_index_known(3, 3)
    assert not decisions.read_index_known(2, 3) and not decisions.read_index_known(None, 3)


def test_a_read_submitted_while_a_step_drains_does_not_silence_later_wakes() -> None:
    """A read submitted from another thread while ``step`` drains the incoming reads
    sets the wake flag after ``step`` cleared it; once everything is served, the
    next (idle) step must clear it again, or every later read waits out a whole
    tick period instead of waking the tick thread."""
    port = Port(LEADER._replace(voters=()))  # a cluster of one: rounds confirm at once
    done: list[ReadError] = []

    class Racing:
        """The clock ``step`` reads right after clearing the flag: another read arrives."""

        armed = False

        def __call__(self) -> float:
            if self.armed:
                self.armed = False
                ri.submit(done.append)
            return 100.0

    clock = Racing()
    ri = ReadIndex(port, clock=clock)
    ri.submit(done.append)
    clock.armed = True
    ri.step()
    assert done == [ReadError.SUCCESS, ReadError.SUCCESS]
    ri.step()  # the racing read's wake-up: nothing left to do
    wakes = port.wakes
    ri.submit(done.append)
    assert port.wakes == wakes + 1


def test_reads_arriving_while_a_round_is_in_flight_or_held_do_not_wake_the_tick() -> None:
    """Only a read that can start a round wakes the tick thread: one arriving
    while a round is in flight is gathered by the step the round's answer wakes,
    one arriving while the gap holds reads back by the poll's timeout."""
    ri, port, clock, got = make(LEADER)
    ri.submit(got.append)
    ri.submit(got.append)
    assert port.wakes == 1
    ri.step()
    seq = port.take(PROBE)[0][1]["seq"]
    for _ in range(5):  # a round is in flight
        ri.submit(got.append)
    assert port.wakes == 1
    assert ri.poll_wait(0.01) == 0.01  # the answer wakes it
    ri.on_message("n2", {"type": PROBE_ACK, "term": 3, "seq": seq})
    ri.step()  # round confirmed; the five wait out the gap of the two
    assert got == [ReadError.SUCCESS] * 2 and not port.take(PROBE)
    ri.submit(got.append)  # held back by the gap: the poll's timeout starts the round
    assert port.wakes == 1
    assert ri.poll_wait(0.01) == pytest.approx(2 * limits.READ_INDEX_GAP_S_PER_READ)
    clock.now += 2 * limits.READ_INDEX_GAP_S_PER_READ
    ri.step()
    assert len(port.take(PROBE)) == 2 and ri.rounds == 2


def test_a_read_that_did_not_wake_because_a_round_was_ending_is_not_left_waiting() -> None:
    """``submit`` saw the round in flight (no wake) while the step was ending it:
    the poll that follows does not wait, so the read is not held a tick period."""
    ri, port, _, got = make(LEADER._replace(voters=()))  # rounds confirm at once
    ri.submit(got.append)
    ri.step()
    assert got == [ReadError.SUCCESS] and ri.poll_wait(0.01) == 0.01
    ri._round = object()  # type: ignore[assignment]  # as submit saw it
    ri.submit(got.append)
    ri._round = None  # the step ended the round; the read is in _incoming
    wakes = port.wakes
    assert ri.poll_wait(0.01) == 0.0 and port.wakes == wakes
    ri.step()
    assert got == [ReadError.SUCCESS] * 2
