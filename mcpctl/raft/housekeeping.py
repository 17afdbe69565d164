"""Small pieces of the tick thread's housekeeping, apart so they can be unit-tested.

``TickCalls``: calls waiting to run on the tick thread, bounded and loud at
the limit. ``close_overdue``: closes connections PySyncObj would leave open
forever (it checks a connection's timeout only when the connection has an
event). ``StatusGate``: whether this tick may skip re-reading the status.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

import structlog

from mcpctl import limits
from mcpctl.errors import Unavailable

log = structlog.get_logger("mcpctl.raft.housekeeping")


def close_overdue(
    connections: Iterable[Any], first_seen: dict[Any, float], now: float, timeout_s: float
) -> int:
    """Disconnect the connections seen in ``connections`` for longer than ``timeout_s``
    (``first_seen`` remembers since when; entries no longer listed are forgotten).
    Returns how many were closed."""
    current = set(connections)
    for conn in [c for c in first_seen if c not in current]:
        del first_seen[conn]
    closed = 0
    for conn in current:
        if now - first_seen.setdefault(conn, now) > timeout_s:
            del first_seen[conn]
            conn.disconnect()  # PySyncObj forgets it, or dials again
            closed += 1
    return closed


class TickCalls:
    """Calls waiting to run on the tick thread: a bounded queue that refuses, loudly.

    Appended from any thread, run by the tick thread (deque's append and
    popleft are atomic). Past ``calls_max`` a push raises ``Unavailable`` and
    logs a warning: a call is never dropped silently.
    """

    def __init__(self, calls_max: int = limits.RAFT_TICK_CALLS_MAX) -> None:
        self._calls: deque[Callable[[], None]] = deque()
        self._calls_max = calls_max

    def push(self, fn: Callable[[], None]) -> None:
        waiting = len(self._calls)
        if waiting >= self._calls_max:
            log.warning("raft tick thread is behind; call refused", waiting=waiting)
            raise Unavailable(f"the Raft thread is behind ({waiting} calls waiting); retry")
        self._calls.append(fn)

    def run_all(self) -> int:
        """Run what is waiting, oldest first; returns how many ran."""
        ran = 0
        while self._calls:
            self._calls.popleft()()
            ran += 1
        return ran


class StatusGate:
    """Whether the published ``RaftStatus`` can stand for this tick too.

    Reading the whole status (``RaftNode._read_status``) held the GIL ~15-30 µs
    on every tick, and a leader ticks for each proposal, each follower's ack
    of an entry and of a commit index: 13% of the leader's GIL time at put c1
    (bench/profiles/README.md, issue #20). It is read again when anything it
    is built from changed (term, leader, role, commit, applied and last log
    index, the leader's contact, readiness, a peer's connection), and at
    least every ``max_age_s`` (the tick period) otherwise: its clock-based
    parts (contact ages, apply lag, leader reachable) are then no older than
    on an idle member, which ticks once per period anyway.
    """

    def __init__(self, max_age_s: float) -> None:
        self._max_age_s = max_age_s
        self._key: tuple[Any, ...] | None = None
        self._read_at = 0.0

    def unchanged(self, sync: Any, now: float) -> bool:
        """True: skip the read. False: read it (the key and time are remembered)."""
        key = (
            sync.raftCurrentTerm,
            sync._getLeader(),
            sync._isLeader(),
            sync.raftCommitIndex,
            sync.raftLastApplied,
            sync.last_log_index(),
            sync.election_deadline,
            sync.leader_heard_at,
            sync.isReady(),
            tuple(sync.isNodeConnected(n) for n in sync.otherNodes),
        )
        if key == self._key and now - self._read_at < self._max_age_s:
            return True
        self._key, self._read_at = key, now
        return False
