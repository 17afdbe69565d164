"""A member that stops says so: every call ends with our error, none with a bare CANCELLED.

``InFlight`` holds the calls in flight on one gRPC server (the ``rpc`` and
``rpc_stream`` wrappers enter and leave it; ``registry.add_service`` hands it
to each servicer). ``serve``'s stop sequence (docs/operations.md) is:

1. refuse: every new call is answered UNAVAILABLE, "member stopping; retry
   another member", with the ``mcp-error`` trailer (``registry.Routes.refuse``
   swaps the routing table: nothing is checked per call while serving);
2. ``end_streams``: every open stream (mcp.v1 and etcd Watch, KeepAlive,
   LeaseKeepAlive, a Snapshot) ends with that same answer, whatever it waits on;
3. ``finish_calls``: unary calls in flight get up to ``limits.stop_grace_ms``
   to finish; one still running then ends ``OutcomeUnknown`` (a write may
   have been applied), never CANCELLED;

then grpc's ``server.stop`` finds nothing of ours left to cancel.

The answer to a call is sent from outside its task (``context.abort`` from
the stopping task: grpc.aio sends the status on the call even while the
call's own task waits for a request or for flow control; the wait for it is
bounded by ``STOP_ANSWER_WAIT_S``). A stream's task is then cancelled so its
handler unwinds (closing hub watchers, keepalive counters); a unary call's
handler is left to finish, its late answer dropped (the call is ``done()``,
which ``errors.rpc`` checks before answering an error).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import grpc
import structlog

from mcpctl import limits
from mcpctl.errors import STOPPING, McpError, OutcomeUnknown, Unavailable
from mcpctl.server.errors import abort

log = structlog.get_logger("mcpctl.server")

# How often finish_calls looks whether the unary calls in flight are done.
FINISH_POLL_S = 0.01


def member_stopping() -> Unavailable:
    """The answer of a stopping member to a new call or an open stream."""
    return Unavailable(STOPPING)


def cut_short() -> OutcomeUnknown:
    """The answer to a unary call still running when the stop's grace ends."""
    return OutcomeUnknown(
        f"{STOPPING}: the call did not finish within the stop's grace "
        "(a write may have been applied)"
    )


class InFlight:
    """The calls in flight on one server: unary calls by context, streams by
    context -> the task serving them."""

    __slots__ = ("calls", "stopping", "streams")

    def __init__(self) -> None:
        self.stopping = False
        # Unary calls: their contexts only (asyncio.current_task() per call
        # costs more than the rest of this bookkeeping; a call answered from
        # outside is done(), and its handler's late result or error is dropped).
        self.calls: set[Any] = set()
        self.streams: dict[Any, asyncio.Task[Any] | None] = {}

    def enter_call(self, context: Any) -> None:
        """A unary call starts: a stop waits for it; refused once the stop began."""
        if self.stopping:
            raise member_stopping()
        self.calls.add(context)

    def enter_stream(self, context: Any) -> None:
        """A stream starts: it is ended at stop; refused once the stop began."""
        if self.stopping:
            raise member_stopping()
        self.streams[context] = asyncio.current_task()

    async def end_streams(self) -> int:
        """End every open stream with ``member_stopping()``; returns how many."""
        self.stopping = True
        return await _end(self.streams, member_stopping())

    async def finish_calls(self, grace_s: float) -> int:
        """Wait up to ``grace_s`` for the unary calls in flight; end those
        still running with ``cut_short()``. Returns how many were cut."""
        self.stopping = True
        deadline = time.monotonic() + grace_s
        while self.calls and time.monotonic() < deadline:
            await asyncio.sleep(FINISH_POLL_S)
        cut = dict.fromkeys(self.calls)
        self.calls.clear()
        return await _end(cut, cut_short())


async def _end(calls: dict[Any, asyncio.Task[Any] | None], error: McpError) -> int:
    """Answer each call ``error`` from here, then cancel its task (if known)."""
    ending = list(calls.items())
    calls.clear()
    if not ending:
        return 0

    async def end(context: Any, task: asyncio.Task[Any] | None) -> None:
        try:
            # Bounded: the status waits behind messages a client does not read.
            async with asyncio.timeout(limits.STOP_ANSWER_WAIT_S):
                await abort(context, error)
        except grpc.aio.AbortError:
            pass  # the status is sent: abort raises to end the caller
        except TimeoutError:
            log.info("a client does not read what it was sent; its call is left to grpc's stop")
        except Exception:  # already answered (its own error, or done): nothing to say
            log.debug("call already answered", exc_info=True)
        if task is not None and not task.done():
            task.cancel()

    await asyncio.gather(*(end(c, t) for c, t in ending))
    return len(ending)
