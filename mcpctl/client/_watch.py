"""``WatchStream``: a watch that resumes on another member without a gap.

Its own rules (not the unary ones of ``_rules``): it retries ``Internal``
too, resumes for up to ``WATCH_RESUME_ATTEMPTS_MAX`` failures in a row, and
only its first connection can have a deadline (``connect_timeout_s``).

``WatchCursor`` (where to resume) and ``WatchRetry`` (whether and when to
retry) are those rules without I/O; ``mcpctl.aio`` runs the same two.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import grpc

from mcpctl import limits
from mcpctl.client._rules import ClientClosed, error_of, not_connected
from mcpctl.client._values import Event, Header, WatchBatch
from mcpctl.errors import DeadlineExceeded, Internal, McpError, Unavailable

if TYPE_CHECKING:  # imported lazily at run time: `mcpctl get` should start fast
    from mcpctl._proto.mcp.v1 import watch_pb2 as watchpb
    from mcpctl.client._client import Client


class WatchCursor:
    """Where a watch resumes: the next revision it needs, moved by each answer."""

    def __init__(self, request: watchpb.WatchRequest) -> None:
        self._request = request
        self.next_revision = request.start_revision  # 0 = from "now"

    def request(self) -> watchpb.WatchRequest:
        """The request that (re)opens the watch from ``next_revision``."""
        from mcpctl._proto.mcp.v1 import watch_pb2 as watchpb

        req = watchpb.WatchRequest()
        req.CopyFrom(self._request)
        req.start_revision = self.next_revision
        return req

    def advance(self, msg: watchpb.WatchResponse) -> WatchBatch | None:
        """The batch ``msg`` brings, or None for a bookmark to skip: a member
        behind what this stream already delivered (after a resume) would move
        it backwards."""
        if msg.progress and msg.header.revision < self.next_revision - 1:
            return None
        header = Header.of(msg.header)
        if msg.created:
            if self.next_revision == 0:
                self.next_revision = header.revision + 1
        elif msg.events:
            self.next_revision = max(self.next_revision, msg.events[-1].kv.mod_revision + 1)
        elif msg.progress:
            self.next_revision = max(self.next_revision, header.revision + 1)
        return WatchBatch(
            header, [Event.of(e) for e in msg.events], created=msg.created, progress=msg.progress
        )


class WatchRetry:
    """Failures in a row and the backoff of one watch stream."""

    def __init__(
        self, endpoints: int, uniform: Callable[[float, float], float] = random.uniform
    ) -> None:
        self._endpoints = endpoints
        self._uniform = uniform
        self.failures = 0
        self.refused = 0  # attempts in a row whose connection was never made
        self.backoff_s = limits.CLIENT_BACKOFF_S_MIN

    def answered(self) -> None:
        """A member answered: the count of failures starts again."""
        self.failures = 0
        self.backoff_s = limits.CLIENT_BACKOFF_S_MIN

    def failed(self, err: McpError, *, sent: bool, fail_fast: bool) -> float:
        """The pause before resuming after ``err``; raises ``err`` when it is the
        answer (not retryable, too many failures in a row, or, with
        ``fail_fast``, no endpoint took a connection)."""
        if not isinstance(err, Unavailable | DeadlineExceeded | Internal):
            raise err
        self.refused = 0 if sent else self.refused + 1
        if fail_fast and self.refused >= self._endpoints:
            raise err  # nothing listens at any endpoint
        self.failures += 1
        if self.failures >= limits.WATCH_RESUME_ATTEMPTS_MAX:
            raise err
        pause = self.backoff_s * self._uniform(0.5, 1.0)
        self.backoff_s = min(self.backoff_s * 2, limits.CLIENT_BACKOFF_S_MAX)
        return pause


class WatchBase:
    """What the watch streams of both clients hold: the client, the cursor, the
    open call and a closed flag (a ``threading.Event`` or an ``asyncio.Event``)."""

    def __init__(
        self,
        client: Any,
        request: watchpb.WatchRequest,
        connect_timeout_s: float | None,
        closed: Any,
    ) -> None:
        self._client = client
        self._cursor = WatchCursor(request)
        self._call: Any = None
        self._closed = closed
        self._connect_timeout_s = connect_timeout_s

    @property
    def next_revision(self) -> int:
        return self._cursor.next_revision

    def close(self) -> None:
        """End the stream (from any thread for the sync client)."""
        self._closed.set()
        call = self._call
        if call is not None:
            call.cancel()


def no_answer(timeout_s: float | None, endpoints: list[str], last: McpError | None) -> McpError:
    """The first connection did not come within ``connect_timeout_s``."""
    return DeadlineExceeded(
        f"no watch established within {timeout_s or 0:.1f}s from {', '.join(endpoints)}"
        + (f" (last error: {last.message})" if last else "")
    )


class WatchStream(WatchBase):
    """Iterate ``WatchBatch``es; resumes on another member after a failure.

    The stream remembers the next revision it needs; when a member fails
    (UNAVAILABLE, a dropped connection), it reopens the watch on the next
    endpoint from that revision, so no event is lost or repeated. It gives
    up after ``WATCH_RESUME_ATTEMPTS_MAX`` consecutive failed attempts
    (backoff with jitter, capped at ``CLIENT_BACKOFF_S_MAX``) and raises
    ``Compacted`` when the history it needs is gone. ``close()`` ends it
    from any thread.

    ``connect_timeout_s`` (None: no bound) bounds only the first connection,
    like one call of ``Client``: if no member has answered the watch by then,
    ``DeadlineExceeded`` is raised, and when no endpoint takes a connection
    at all the stream fails at once with ``Unavailable``. Once the first
    answer arrived, reconnects follow the rule above.
    """

    _client: Client
    _closed: threading.Event

    def __init__(
        self,
        client: Client,
        request: watchpb.WatchRequest,
        *,
        connect_timeout_s: float | None = None,
    ) -> None:
        super().__init__(client, request, connect_timeout_s, threading.Event())

    def __enter__(self) -> WatchStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __iter__(self) -> Iterator[WatchBatch]:
        client = self._client
        retry = WatchRetry(len(client.endpoints))
        connected = False  # a member has answered this stream once
        last: McpError | None = None
        timeout_s = self._connect_timeout_s
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while not self._closed.is_set():
            endpoint = client._endpoint()
            bounded = not connected and deadline is not None
            wait_s = deadline - time.monotonic() if deadline is not None and bounded else None
            # Until the first answer, the deadline cancels a call that hangs
            # (an endpoint that takes the connection and never answers).
            timer: threading.Timer | None = None
            sent = client._connect(
                endpoint, limits.CLIENT_TIMEOUT_S_DEFAULT if wait_s is None else wait_s
            )
            from_server = False
            try:
                if not sent:
                    err: McpError = not_connected(endpoint)
                else:
                    call = self._call = client._watch_stub(endpoint).Watch(
                        self._cursor.request(), metadata=client._metadata
                    )
                    if wait_s is not None:
                        timer = threading.Timer(max(0.0, wait_s), call.cancel)
                        timer.daemon = True
                        timer.start()
                    for msg in call:
                        if timer is not None:
                            timer.cancel()
                        connected = True
                        retry.answered()
                        batch = self._cursor.advance(msg)
                        if batch is not None:
                            yield batch
                    if self._closed.is_set():
                        return
                    err = Unavailable("the member ended the watch")
            except grpc.RpcError as e:
                if self._closed.is_set():
                    return
                if client.closed:
                    raise ClientClosed("this client was closed while the watch ran") from None
                if bounded and deadline is not None and time.monotonic() >= deadline:
                    # The timer cancelled this call: the error worth showing is the last one.
                    raise no_answer(timeout_s, client.endpoints, last) from None
                err, from_server = error_of(e)
            finally:
                if timer is not None:
                    timer.cancel()
            last = err
            pause = retry.failed(err, sent=sent, fail_fast=bounded)
            client._endpoints.failed(endpoint, from_server)
            if bounded and deadline is not None:
                pause = min(pause, max(0.0, deadline - time.monotonic()))
            self._closed.wait(pause)
            if bounded and deadline is not None and time.monotonic() >= deadline:
                raise no_answer(timeout_s, client.endpoints, last)
