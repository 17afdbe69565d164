"""Small pieces of the tick thread's housekeeping, apart so they can be unit-tested.

``TickCalls``: calls waiting to run on the tick thread, bounded and loud at
the limit. ``close_overdue``: closes connections PySyncObj would leave open
forever (it checks a connection's timeout only when the connection has an
event).
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
