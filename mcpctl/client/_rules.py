"""The retry and outcome rules of one logical call, in one place.

- Which errors move on: an attempt that ends ``Unavailable`` (a member down,
  without a leader, unable to confirm leadership, a dropped connection, a
  call cancelled by the member) or ``DeadlineExceeded`` moves to the next
  endpoint; every other error is the answer and is raised at once.
- Bounded: one deadline per call, at most ``attempts_max`` attempts, and
  after each round of every endpoint a pause of ``[b/2, b]`` (jitter) where
  ``b`` starts at ``CLIENT_BACKOFF_S_MIN`` and doubles up to
  ``CLIENT_BACKOFF_S_MAX``, never past the deadline.
- Nothing listens: when every endpoint in a row refused the connection, the
  call fails at once with that ``Unavailable`` (no pause, no more rounds).
- Sent or not: a client sends a request only on a channel it knows is
  connected (``Endpoints``: a call on it succeeded, or it waited for the
  channel to be ready first). An attempt whose channel did not connect was
  never sent; that is a fact the client made, not a guess from grpc's
  error text.
- Outcome: a write (a request with a request id) that may have been applied
  by some attempt ends ``OutcomeUnknown``; only a request never sent or a
  member's own ``Unavailable`` answer (its ``mcp-error`` trailer) proves it
  was not. Reads end with the last error, or ``DeadlineExceeded`` when the
  deadline passed.

``Attempts`` holds these decisions for one call; the sync ``Client`` and the
asyncio ``mcpctl.aio.Client`` run the same object, each with its own I/O.
- Mapping: ``error_of`` rebuilds the ``mcpctl.errors`` class from the status.

Nothing here reads a clock or sleeps by itself: time comes in as ``Timing``.
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import grpc

from mcpctl import limits
from mcpctl.errors import (
    ERROR_KIND_KEY,
    DeadlineExceeded,
    McpError,
    OutcomeUnknown,
    ResourceExhausted,
    Unavailable,
    from_status,
)

T = TypeVar("T")


def _wait(event: threading.Event, seconds: float | None) -> bool:
    return event.wait(seconds)


@dataclass(frozen=True, slots=True)
class Timing:
    """The clock, the pause and the jitter of the retry rules (tests pass fakes).

    ``wait(event, seconds)``: a pause that ``event`` cuts short (None: no bound),
    True when it did; the lease keeper's thread waits with it. ``asleep``: the
    pause of ``mcpctl.aio.Client``."""

    monotonic: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep
    uniform: Callable[[float, float], float] = random.uniform
    wait: Callable[[threading.Event, float | None], bool] = _wait
    asleep: Callable[[float], Awaitable[None]] = asyncio.sleep  # the asyncio client's pause


class Endpoints:
    """A client's endpoints: the one its next attempt goes to, and which have a
    channel known to be connected.

    A failed attempt moves on to the next endpoint. An endpoint is known
    connected after a call on it got an answer (a response or a member's
    error) or after its channel was seen ready; a transport failure (no
    ``mcp-error`` trailer) forgets it, so the next attempt there waits for the
    channel first. Plain int and set operations: the lease keeper's thread
    shares it safely under the GIL."""

    def __init__(self, endpoints: list[str]) -> None:
        self.all = endpoints
        self.index = 0
        self._up: set[str] = set()

    def __len__(self) -> int:
        return len(self.all)

    def current(self) -> str:
        return self.all[self.index % len(self.all)]

    def known(self, endpoint: str) -> bool:
        return endpoint in self._up

    def up(self, endpoint: str) -> None:
        self._up.add(endpoint)

    def failed(self, endpoint: str, from_server: bool) -> None:
        """An attempt on ``endpoint`` failed: move on; a member's answer proves
        the connection, a transport failure ends what is known of it."""
        self.index += 1
        if from_server:
            self._up.add(endpoint)
        else:
            self._up.discard(endpoint)


def check_lease_room(kept: int) -> None:
    """``ResourceExhausted`` when a client already keeps ``CLIENT_LEASES_MAX`` leases."""
    if kept >= limits.CLIENT_LEASES_MAX:
        raise ResourceExhausted(
            f"this client keeps {limits.CLIENT_LEASES_MAX} leases alive "
            "(CLIENT_LEASES_MAX); revoke one or use another Client"
        )


class ClientClosed(McpError):
    """A call, or a watch going on, on a client after its ``close()``. Raised by
    the client itself and never sent, so it is not in the wire tree of
    ``mcpctl.errors``."""

    code = "CANCELLED"
    kind = "client_closed"


def not_connected(endpoint: str) -> Unavailable:
    """The error of an attempt whose channel did not connect (never sent)."""
    return Unavailable(f"failed to connect to {endpoint}")


def moves_on(err: McpError) -> bool:
    """An attempt that ended with ``err`` is worth trying on the next endpoint."""
    return isinstance(err, Unavailable | DeadlineExceeded)


def error_of(e: grpc.RpcError) -> tuple[McpError, bool]:
    """The error a call ended with, and whether a node (not the transport) said it."""
    code = e.code() if hasattr(e, "code") else grpc.StatusCode.UNKNOWN
    details = (e.details() if hasattr(e, "details") else None) or str(e)
    trailers = e.trailing_metadata() if hasattr(e, "trailing_metadata") else None
    metadata: dict[str, str] = {}
    for item in trailers or ():
        entry: Any = item  # sync: a (key, value) namedtuple; aio: a plain tuple
        key, value = entry[0], entry[1]
        if isinstance(value, str):
            metadata[key] = value
    if code == grpc.StatusCode.CANCELLED and ERROR_KIND_KEY not in metadata:
        # Not our doing (a call this client cancels never gets here): the member
        # went away mid-call without answering (it crashed, or was stopped past
        # its stop grace; a graceful stop answers UNAVAILABLE "member stopping")
        # or the transport dropped it. Like a broken connection: try another
        # member; a write may have been applied.
        return Unavailable(f"the call was cancelled by the member or transport: {details}"), False
    return from_status(code.name, details, metadata), ERROR_KIND_KEY in metadata


class Attempts:
    """One logical call, step by step; its client does only the I/O::

    attempts = Attempts(endpoints, timeout_s, attempts_max, timing)
    while (endpoint := attempts.next()) is not None:
        if not connect(endpoint, attempts.remaining_s()):
            pause = attempts.failed(endpoint, not_connected(endpoint), False, sent=False)
        else:
            try:
                return attempts.answered(endpoint, call(endpoint, attempts.remaining_s()))
            except grpc.RpcError as e:
                pause = attempts.failed(endpoint, *error_of(e), sent=True)
        sleep(pause)
    raise attempts.outcome(request)
    """

    def __init__(
        self, endpoints: Endpoints, timeout_s: float, attempts_max: int, timing: Timing
    ) -> None:
        self.endpoints = endpoints
        self.timeout_s = timeout_s
        self.attempts_max = attempts_max
        self._timing = timing
        self.deadline = timing.monotonic() + timeout_s
        self.backoff_s = limits.CLIENT_BACKOFF_S_MIN
        self.made = 0  # attempts made so far
        self.stop = False  # nothing listens: no more attempts
        self.last: McpError | None = None
        self.unknown = False  # some attempt may have applied the request
        self.refused = 0  # attempts in a row whose connection was never made

    def remaining_s(self) -> float:
        return self.deadline - self._timing.monotonic()

    def next(self) -> str | None:
        """The endpoint of the next attempt; None when the call is over
        (attempts used up, deadline passed, or nothing listens)."""
        if self.stop or self.made >= self.attempts_max or self.remaining_s() <= 0:
            return None
        self.made += 1
        return self.endpoints.current()

    def answered(self, endpoint: str, response: T) -> T:
        """The attempt on ``endpoint`` got ``response``: the call's answer."""
        self.endpoints.up(endpoint)
        return response

    def failed(self, endpoint: str, err: McpError, from_server: bool, *, sent: bool) -> float:
        """Record an attempt that ended ``err``: raises it when it is the
        answer, else returns the pause before the next attempt (0: none).

        ``sent``: the request left (its channel was connected); False only
        when the client never issued it."""
        if not moves_on(err):
            if from_server:
                self.endpoints.up(endpoint)
            raise err
        self.endpoints.failed(endpoint, from_server)
        self.last = err
        # A transport failure after the request left may still have
        # delivered it; only a request never sent or the node's own
        # "unavailable" answer proves a write was not applied.
        self.unknown = self.unknown or (
            sent and (isinstance(err, OutcomeUnknown | DeadlineExceeded) or not from_server)
        )
        self.refused = 0 if sent else self.refused + 1
        # One endpoint or three, refused one after the other: nothing listens,
        # and grpc's own reconnect backoff would only replay the same failure.
        if self.refused >= len(self.endpoints):
            self.stop = True
            return 0.0
        return self.pause_s() if self.made % len(self.endpoints) == 0 else 0.0

    def pause_s(self) -> float:
        """The pause after a round of every endpoint (jitter spreads retries
        out), cut to what is left of the deadline; the next one doubles."""
        pause = self.backoff_s * self._timing.uniform(0.5, 1.0)
        self.backoff_s = min(self.backoff_s * 2, limits.CLIENT_BACKOFF_S_MAX)
        return min(pause, max(0.0, self.deadline - self._timing.monotonic()))

    def outcome(self, request: Any) -> McpError:
        """The error that ends a call no attempt answered."""
        last = self.last
        if self.unknown and bool(getattr(request, "request_id", False)):
            return OutcomeUnknown(
                f"the write may have been applied: {last.message if last else 'deadline passed'}"
            )
        if last is not None and not isinstance(last, DeadlineExceeded):
            return last
        return DeadlineExceeded(
            f"no answer within {self.timeout_s:.1f}s from {', '.join(self.endpoints.all)}"
            + (f" (last error: {last.message})" if last else "")
        )
