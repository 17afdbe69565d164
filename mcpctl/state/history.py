"""The history ring: the store's most recent revisions, bounded by count and bytes.

It serves reads at past revisions, watch resume (``since``) and a key's
changes (``changes``). Anything older than ``compact_revision`` is gone and
answers ``Compacted`` with the oldest revision still available. The newest
revision always stays, so the latest state is never compacted away.

It holds compact ``Revision`` records whose events point at the store's
``Version`` objects (records.py); messages are built when asked for. The byte
bound counts each revision's serialized ``HistoryRevision`` size, as before.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field

from mcpctl import limits
from mcpctl._proto.mcp.v1 import kv_pb2 as kv
from mcpctl._proto.mcp.v1 import raft_pb2 as raft
from mcpctl.errors import Compacted
from mcpctl.state.keyspace import Span
from mcpctl.state.records import Revision, event_key


@dataclass(frozen=True, slots=True)
class HistoryLimits:
    revisions_max: int = limits.HISTORY_REVISIONS_MAX_DEFAULT
    bytes_max: int = limits.HISTORY_BYTES_MAX_DEFAULT
    dedupe_max: int = limits.DEDUPE_ENTRIES_MAX

    def __post_init__(self) -> None:
        assert self.revisions_max >= 1
        assert self.bytes_max >= 1
        assert self.dedupe_max >= 0


@dataclass(slots=True)
class History:
    """The revisions still held, oldest first, and the compaction floor."""

    bounds: HistoryLimits
    compact_revision: int = 0
    _history: deque[Revision] = field(default_factory=deque)
    _history_bytes: int = 0
    # The newest revisions' messages (at most HISTORY_MESSAGES_CACHED), by revision.
    _messages: dict[int, raft.HistoryRevision] = field(default_factory=dict)

    def remember(self, entry: Revision, message: raft.HistoryRevision | None = None) -> None:
        """Keep a revision; ``entry.nbytes`` is set (its serialized size).
        ``message``: the same revision as a message, when the caller built it."""
        self._history.append(entry)
        self._history_bytes += entry.nbytes
        if message is not None:
            self._messages[entry.revision] = message
            if len(self._messages) > limits.HISTORY_MESSAGES_CACHED:
                del self._messages[next(iter(self._messages))]
        # The newest revision always stays, even when it alone is over
        # bytes_max: dropping it would move compact_revision past the current
        # revision and make the latest state unreadable (Compacted).
        while len(self._history) > self.bounds.revisions_max or (
            len(self._history) > 1 and self._history_bytes > self.bounds.bytes_max
        ):
            self._drop_oldest()
        assert len(self._history) <= self.bounds.revisions_max

    def compact(self, revision: int) -> None:
        """Drop every revision below ``revision``; the caller checked the bounds."""
        while self._history and self._history[0].revision < revision:
            self._drop_oldest()
        self.compact_revision = revision

    def _drop_oldest(self) -> None:
        old = self._history.popleft()
        self._history_bytes -= old.nbytes
        self._messages.pop(old.revision, None)
        self.compact_revision = max(self.compact_revision, old.revision + 1)

    def changes(self, key: bytes, prefix: bool, limit: int) -> tuple[list[kv.HistoryEntry], bool]:
        """A key's (or prefix's) changes still in history, newest first; and
        whether more than ``limit`` matched."""
        span = Span(key, prefix)
        out: list[kv.HistoryEntry] = []
        for entry in reversed(self._history):
            ev = entry.events
            for i in range(len(ev) - 2, -1, -2):
                new, prev = ev[i], ev[i + 1]
                if span.matches(event_key(new, prev)):
                    if len(out) >= limit:
                        return out, True
                    out.append(kv.HistoryEntry.FromString(entry.entry_wire(new, prev)))
        return out, False

    def since(self, start_revision: int) -> Iterator[raft.HistoryRevision]:
        """Revisions >= start_revision still in history, oldest first.

        Raises ``Compacted`` when events at start_revision are gone.
        """
        if start_revision < self.compact_revision:
            raise Compacted(start_revision, self.compact_revision)
        if not self._history or start_revision > self._history[-1].revision:
            return iter(())
        first = self._history[0].revision
        # History revisions are not contiguous (reads and no-op deletes create
        # none), so search rather than index.
        idx = _bisect_revision(self._history, max(start_revision, first))
        return (self._message(self._history[i]) for i in range(idx, len(self._history)))

    def _message(self, entry: Revision) -> raft.HistoryRevision:
        message = self._messages.get(entry.revision)
        if message is None:
            message = raft.HistoryRevision.FromString(entry.wire())
        return message

    def newest_first(self) -> Iterator[Revision]:
        return reversed(self._history)

    def entries(self) -> list[Revision]:
        """Every revision held, oldest first (for a snapshot)."""
        return list(self._history)


def _bisect_revision(history: deque[Revision], revision: int) -> int:
    lo, hi = 0, len(history)
    while lo < hi:
        mid = (lo + hi) // 2
        if history[mid].revision < revision:
            lo = mid + 1
        else:
            hi = mid
    return lo
