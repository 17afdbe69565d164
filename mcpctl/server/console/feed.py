"""The status feed behind the console's live pages: ONE cluster status per tick,
shared by every open stream.

- A computation starts every ``tick_s`` while at least one stream is open (an
  idle node computes nothing). A member that does not answer holds its
  computation for up to the peer status deadline, so computations overlap:
  at most ``in_flight_max`` at once, and a result older than one already
  published is dropped, so streams see snapshots in order.
- Each stream has a small queue; when a stream is slow the oldest snapshot is
  dropped (status is a level, not an event: only the newest matters). A
  send never waits for a stream.
- At most ``streams_max`` streams (``ResourceExhausted`` beyond), and the last
  ``samples_max`` lag samples are kept so a page that opens draws the last
  few minutes at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import structlog

from mcpctl import limits
from mcpctl.errors import ResourceExhausted

log = structlog.get_logger("mcpctl.server.console")

Snapshot = dict[str, Any]


@dataclass(frozen=True, slots=True)
class FeedLimits:
    tick_s: float = limits.CONSOLE_TICK_S
    in_flight_max: int = limits.CONSOLE_STATUS_IN_FLIGHT_MAX
    streams_max: int = limits.CONSOLE_STREAMS_MAX
    samples_max: int = limits.CONSOLE_SAMPLES_MAX
    queue_max: int = limits.CONSOLE_STREAM_QUEUE_MAX


@dataclass(eq=False)
class Stream:
    """One open stream: snapshots to send, ``None`` when the feed closes."""

    queue: asyncio.Queue[Snapshot | None] = field(default_factory=asyncio.Queue)
    dropped: int = 0


def sample_of(snapshot: Snapshot) -> Snapshot:
    """What the chart keeps of a snapshot: the time and each member's lag."""
    return {
        "ts_ms": snapshot["ts_ms"],
        "lag_ms": {m["id"]: m["lag_ms"] for m in snapshot["members"]},
        "reachable": {m["id"]: m["reachable"] for m in snapshot["members"]},
    }


class StatusFeed:
    """Computes ``compute()`` once per tick while streams are open; fans it out."""

    def __init__(
        self,
        compute: Callable[[], Awaitable[Snapshot]],
        feed_limits: FeedLimits | None = None,
    ) -> None:
        self._compute = compute
        self.limits = feed_limits or FeedLimits()
        assert self.limits.queue_max >= 1 and self.limits.in_flight_max >= 1
        self._streams: set[Stream] = set()
        self._samples: deque[Snapshot] = deque(maxlen=self.limits.samples_max)
        self._loop_task: asyncio.Task[None] | None = None
        self._in_flight: set[asyncio.Task[None]] = set()
        self._started_seq = 0
        self._published_seq = 0
        self._closed = False
        # Counters for tests and the docs' measurements.
        self.computed = 0
        self.failed = 0

    @property
    def streams(self) -> int:
        return len(self._streams)

    def samples(self) -> list[Snapshot]:
        return list(self._samples)

    def open(self) -> Stream:
        if self._closed:
            raise ResourceExhausted("the console is stopping")
        if len(self._streams) >= self.limits.streams_max:
            raise ResourceExhausted(
                f"at most {self.limits.streams_max} status streams per member; "
                "close a console tab or use another member"
            )
        stream = Stream(asyncio.Queue(maxsize=self.limits.queue_max))
        self._streams.add(stream)
        if self._loop_task is None or self._loop_task.done():
            self._loop_task = asyncio.create_task(self._run())
        return stream

    def close_stream(self, stream: Stream) -> None:
        self._streams.discard(stream)

    async def close(self) -> None:
        """End every stream (each gets ``None``) and stop computing."""
        self._closed = True
        for stream in list(self._streams):
            _offer(stream, None)
        self._streams.clear()
        tasks = [t for t in (self._loop_task, *self._in_flight) if t is not None]
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t

    async def _run(self) -> None:
        while self._streams:
            if len(self._in_flight) < self.limits.in_flight_max:
                self._started_seq += 1
                task = asyncio.create_task(self._one(self._started_seq))
                self._in_flight.add(task)
                task.add_done_callback(self._in_flight.discard)
            await asyncio.sleep(self.limits.tick_s)

    async def _one(self, seq: int) -> None:
        try:
            snapshot = await self._compute()
        except asyncio.CancelledError:
            raise
        except Exception:
            self.failed += 1
            log.exception("console status failed")
            return
        self.computed += 1
        if seq <= self._published_seq:
            return  # a later computation finished first
        self._published_seq = seq
        snapshot["seq"] = seq
        self.publish(snapshot)

    def publish(self, snapshot: Snapshot) -> None:
        self._samples.append(sample_of(snapshot))
        for stream in list(self._streams):
            _offer(stream, snapshot)


def _offer(stream: Stream, item: Snapshot | None) -> None:
    """Queue ``item`` without waiting: drop the oldest when the stream is behind."""
    while True:
        try:
            stream.queue.put_nowait(item)
            return
        except asyncio.QueueFull:
            with contextlib.suppress(asyncio.QueueEmpty):
                stream.queue.get_nowait()
                stream.dropped += 1


def now_ms() -> int:
    return int(time.time() * 1000)
