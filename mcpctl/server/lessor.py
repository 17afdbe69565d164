"""The leader's lease clock (docs/leases.md): deadlines, keepalives, expiries, checkpoints.

Pure: no threads, no sockets, no clock of its own. Every method that needs
the time takes ``now`` (seconds on a monotonic clock), so the rules below are
unit-tested with a fake clock (tests/unit/test_lessor.py). ``LeaseClock``
(mcpctl/server/lease_clock.py) drives it on the leader.

- Only a leader runs it, for one term (``term``): ``promote`` starts it, after
  the caller saw its term's first entry applied; ``demote`` drops it. A
  clock that is not running answers nothing (``running`` is False).
- On promotion every lease's deadline is now + its checkpointed remaining TTL
  (the store's ``leases_remaining_ms``) + ``grace_s``, which covers the time a
  cut-off old leader may still have renewed it and the election after it:
  no lease expires because the leader changed.
- The grace is not checkpointed: a checkpoint records what is left of the
  remaining TTL *without* the grace (``base``), so a lease whose owner died
  gets less back at every election, never its full TTL again (etcd #9395,
  #17132), and expires after at most one grace once its checkpoint reaches 0.
- A keepalive renews in memory: deadline = base = now + the granted TTL.
- Expiry: ``take_expired`` hands out leases whose deadline passed, earliest
  first, at most ``expire_batch_max`` per command and ``expires_per_s`` on
  average (a token bucket, burst one command): an expiry storm after a long
  outage is spread out (etcd #8097). A lease handed out is *expiring*: a
  keepalive no longer renews it; ``expire_failed`` puts it back.
- Checkpoints: ``take_checkpoint`` at most once per ``checkpoint_interval_s``,
  at most ``checkpoint_batch_max`` leases, those whose recorded value is off
  by at least ``checkpoint_drift_ms_min``, largest drift first.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Iterable
from dataclasses import dataclass

from mcpctl import limits


def lease_grace_s(leader_fallback_s: float, election_timeout_max_s: float) -> float:
    """What a new leader adds to every lease's remaining TTL (module docstring)."""
    return leader_fallback_s + election_timeout_max_s + limits.LEASE_GRACE_MARGIN_S


def lease_ttl_min_s(election_timeout_max_s: float) -> int:
    """The smallest TTL granted (a smaller one is raised to it)."""
    return max(1, math.ceil(limits.LEASE_TTL_MIN_ELECTION_TIMEOUTS * election_timeout_max_s))


@dataclass(frozen=True, slots=True)
class LessorTimings:
    grace_s: float
    checkpoint_interval_s: float = limits.LEASE_CHECKPOINT_INTERVAL_S
    checkpoint_drift_ms_min: int = limits.LEASE_CHECKPOINT_DRIFT_MS_MIN
    checkpoint_batch_max: int = limits.LEASE_CHECKPOINT_BATCH_MAX
    expires_per_s: float = limits.LEASE_EXPIRES_PER_S
    expire_batch_max: int = limits.LEASE_EXPIRE_BATCH_MAX

    def __post_init__(self) -> None:
        assert self.grace_s >= 0 and self.checkpoint_interval_s > 0 and self.expires_per_s > 0
        assert 1 <= self.expire_batch_max <= limits.LEASE_EXPIRE_BATCH_MAX
        assert 1 <= self.checkpoint_batch_max <= limits.LEASE_CHECKPOINT_BATCH_MAX


@dataclass(slots=True)
class _Clock:
    ttl_s: int
    base: float  # when the remaining TTL (without grace) runs out: what checkpoints record
    deadline: float  # when the lease expires (base + grace after a promotion)
    checkpointed_ms: int  # what the store holds
    expiring: bool = False


class Lessor:
    """The lease clock of one leader term. See the module docstring."""

    def __init__(self, timings: LessorTimings) -> None:
        self.timings = timings
        self.term: int | None = None
        self._leases: dict[int, _Clock] = {}
        # (deadline, id); stale entries (renewed, ended) are skipped when popped.
        self._heap: list[tuple[float, int]] = []
        self._tokens = 0.0
        self._tokens_at = 0.0
        self._checkpoint_at = 0.0

    @property
    def running(self) -> bool:
        return self.term is not None

    def __len__(self) -> int:
        return len(self._leases)

    # -- leadership -----------------------------------------------------------------
    def promote(self, term: int, now: float, leases: Iterable[tuple[int, int, int]]) -> None:
        """Start the clock for ``term``: ``leases`` are (id, granted TTL s, checkpointed ms)."""
        assert term > 0
        self.demote()
        self.term = term
        grace = self.timings.grace_s
        for lease_id, ttl_s, remaining_ms in leases:
            base = now + remaining_ms / 1000
            self._leases[lease_id] = _Clock(ttl_s, base, base + grace, remaining_ms)
        self._heap = [(c.deadline, i) for i, c in self._leases.items()]
        heapq.heapify(self._heap)
        self._tokens, self._tokens_at = float(self.timings.expire_batch_max), now
        self._checkpoint_at = now + self.timings.checkpoint_interval_s

    def demote(self) -> None:
        """Drop the clock: another leader's clock decides from now on."""
        self.term = None
        self._leases.clear()
        self._heap.clear()

    # -- what the log says ----------------------------------------------------------
    def granted(self, lease_id: int, ttl_s: int, now: float) -> None:
        """A grant was applied (the lease starts with its full TTL)."""
        if not self.running or lease_id in self._leases:
            return
        self._leases[lease_id] = _Clock(ttl_s, now + ttl_s, now + ttl_s, ttl_s * 1000)
        self._push(lease_id)

    def ended(self, lease_ids: Iterable[int]) -> None:
        """Leases revoked or expired (their heap entries go stale)."""
        for lease_id in lease_ids:
            self._leases.pop(lease_id, None)

    # -- clients --------------------------------------------------------------------
    def renew(self, lease_id: int, ttl_s: int, now: float) -> int | None:
        """A keepalive for a lease the store has: its TTL from now, or None when it
        is expiring (its expiry is proposed; the lease is as good as gone)."""
        assert self.running
        clock = self._leases.get(lease_id)
        if clock is None:  # granted, but the grant's event has not reached us yet
            clock = self._leases[lease_id] = _Clock(ttl_s, now, now, ttl_s * 1000)
        if clock.expiring:
            return None
        clock.base = clock.deadline = now + clock.ttl_s
        self._push(lease_id)
        return clock.ttl_s

    def remaining_s(self, lease_id: int, now: float) -> float | None:
        """Seconds until the lease expires on this clock (None: not on it)."""
        assert self.running
        clock = self._leases.get(lease_id)
        if clock is None:
            return None
        return 0.0 if clock.expiring else max(0.0, clock.deadline - now)

    # -- what the clock proposes ----------------------------------------------------------
    def take_expired(self, now: float) -> list[int]:
        """Leases past their deadline, earliest first, within the batch and rate
        limits; they are expiring until ``ended`` or ``expire_failed``."""
        if not self.running:
            return []
        t = self.timings
        burst = float(t.expire_batch_max)
        self._tokens = min(burst, self._tokens + (now - self._tokens_at) * t.expires_per_s)
        self._tokens_at = now
        room = min(t.expire_batch_max, int(self._tokens))
        taken: list[int] = []
        while self._heap and len(taken) < room and self._heap[0][0] <= now:
            deadline, lease_id = heapq.heappop(self._heap)
            clock = self._leases.get(lease_id)
            if clock is None or clock.expiring or clock.deadline != deadline:
                continue  # stale entry
            clock.expiring = True
            taken.append(lease_id)
        self._tokens -= len(taken)
        self._compact_heap()
        return taken

    def expire_failed(self, lease_ids: Iterable[int]) -> None:
        """An expiry that did not commit: those leases are due again."""
        for lease_id in lease_ids:
            clock = self._leases.get(lease_id)
            if clock is not None and clock.expiring:
                clock.expiring = False
                self._push(lease_id)

    def take_checkpoint(self, now: float) -> list[tuple[int, int]]:
        """(id, remaining ms) to checkpoint now, or [] (not due, nothing drifted)."""
        t = self.timings
        if not self.running or now < self._checkpoint_at:
            return []
        self._checkpoint_at = now + t.checkpoint_interval_s
        drifted: list[tuple[int, int, int]] = []
        for lease_id, clock in self._leases.items():
            if clock.expiring:
                continue
            remaining_ms = min(clock.ttl_s * 1000, max(0, round((clock.base - now) * 1000)))
            drift = abs(clock.checkpointed_ms - remaining_ms)
            if drift >= t.checkpoint_drift_ms_min:
                drifted.append((drift, lease_id, remaining_ms))
        drifted.sort(key=lambda d: (-d[0], d[1]))
        return [(lease_id, ms) for _, lease_id, ms in drifted[: t.checkpoint_batch_max]]

    def checkpointed(self, checkpoints: Iterable[tuple[int, int]]) -> None:
        """A checkpoint committed: the store now holds these remaining TTLs."""
        for lease_id, remaining_ms in checkpoints:
            clock = self._leases.get(lease_id)
            if clock is not None:
                clock.checkpointed_ms = remaining_ms

    # -- the heap ---------------------------------------------------------------------
    def _push(self, lease_id: int) -> None:
        heapq.heappush(self._heap, (self._leases[lease_id].deadline, lease_id))
        self._compact_heap()

    def _compact_heap(self) -> None:
        """Renewals leave stale entries: rebuild when they outnumber the live ones."""
        if len(self._heap) <= 2 * len(self._leases) + 1024:
            return
        self._heap = [(c.deadline, i) for i, c in self._leases.items() if not c.expiring]
        heapq.heapify(self._heap)
