"""``WatchStream``: a watch that resumes on another member without a gap.

Its own rules (not the unary ones of ``_rules``): it retries ``Internal``
too, resumes for up to ``WATCH_RESUME_ATTEMPTS_MAX`` failures in a row, and
only its first connection can have a deadline (``connect_timeout_s``).
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import grpc

from mcpctl import limits
from mcpctl.client._rules import error_of, not_connected
from mcpctl.client._values import Event, Header, WatchBatch
from mcpctl.errors import DeadlineExceeded, Internal, McpError, Unavailable

if TYPE_CHECKING:  # imported lazily at run time: `mcpctl get` should start fast
    from mcpctl._proto.mcp.v1 import watch_pb2 as watchpb
    from mcpctl.client._client import Client


class WatchStream:
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

    def __init__(
        self,
        client: Client,
        request: watchpb.WatchRequest,
        *,
        connect_timeout_s: float | None = None,
    ) -> None:
        self._client = client
        self._request = request
        self.next_revision = request.start_revision  # 0 = from "now"
        self._call: Any = None
        self._closed = threading.Event()
        self._connect_timeout_s = connect_timeout_s

    def close(self) -> None:
        self._closed.set()
        call = self._call
        if call is not None:
            call.cancel()

    def __enter__(self) -> WatchStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __iter__(self) -> Iterator[WatchBatch]:
        failures = 0
        refused = 0  # attempts in a row whose connection was never made
        backoff = limits.CLIENT_BACKOFF_S_MIN
        from mcpctl._proto.mcp.v1 import watch_pb2 as watchpb

        connected = False  # a member has answered this stream once
        last: McpError | None = None
        timeout_s = self._connect_timeout_s
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while not self._closed.is_set():
            req = watchpb.WatchRequest()
            req.CopyFrom(self._request)
            req.start_revision = self.next_revision
            endpoint = self._client._endpoint()
            # Until the first answer, the deadline cancels a call that hangs
            # (an endpoint that takes the connection and never answers).
            timer: threading.Timer | None = None
            wait_s = (
                limits.CLIENT_TIMEOUT_S_DEFAULT if deadline is None else deadline - time.monotonic()
            )
            try:
                if not self._client._connect(endpoint, wait_s):
                    # Never sent: nothing listens there (or no connection in time).
                    err: McpError = not_connected(endpoint)
                    last = err
                    refused += 1
                    if (
                        deadline is not None
                        and not connected
                        and refused >= len(self._client.endpoints)
                    ):
                        raise err  # nothing listens at any endpoint
                else:
                    refused = 0
                    call = self._call = self._client._watch_stub(endpoint).Watch(
                        req, metadata=self._client._metadata
                    )
                    if not connected and deadline is not None:
                        timer = threading.Timer(max(0.0, deadline - time.monotonic()), call.cancel)
                        timer.daemon = True
                        timer.start()
                    for msg in call:
                        if timer is not None:
                            timer.cancel()
                        connected = True
                        failures = 0
                        backoff = limits.CLIENT_BACKOFF_S_MIN
                        if msg.progress and msg.header.revision < self.next_revision - 1:
                            # A member behind what this stream already delivered
                            # (after a resume): its bookmark would go backwards.
                            continue
                        yield self._advance(msg)
                    if self._closed.is_set():
                        return
                    err = Unavailable("the member ended the watch")
            except grpc.RpcError as e:
                if self._closed.is_set():
                    return
                if not connected and deadline is not None and time.monotonic() >= deadline:
                    # The timer cancelled this call: the error worth showing is the last one.
                    raise self._no_answer(timeout_s, last) from None
                err, from_server = error_of(e)
                self._client._connections.seen(endpoint, from_server)
                last = err
                if not isinstance(err, Unavailable | DeadlineExceeded | Internal):
                    raise err from None
            finally:
                if timer is not None:
                    timer.cancel()
            failures += 1
            if failures >= limits.WATCH_RESUME_ATTEMPTS_MAX:
                raise err
            self._client._current += 1
            pause = backoff * random.uniform(0.5, 1.0)
            if not connected and deadline is not None:
                pause = min(pause, max(0.0, deadline - time.monotonic()))
            self._closed.wait(pause)
            backoff = min(backoff * 2, limits.CLIENT_BACKOFF_S_MAX)
            if not connected and deadline is not None and time.monotonic() >= deadline:
                raise self._no_answer(timeout_s, last)

    def _no_answer(self, timeout_s: float | None, last: McpError | None) -> DeadlineExceeded:
        """The first connection did not come within ``connect_timeout_s``."""
        return DeadlineExceeded(
            f"no watch established within {timeout_s or 0:.1f}s "
            f"from {', '.join(self._client.endpoints)}"
            + (f" (last error: {last.message})" if last else "")
        )

    def _advance(self, msg: watchpb.WatchResponse) -> WatchBatch:
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
