"""``WatchStream`` of the asyncio client: ``async for batch in client.watch(...)``.

The rules are the sync stream's, run from the same objects
(``mcpctl.client._watch``): ``WatchCursor`` resumes from the next revision
needed, so no event is lost or repeated across members; ``WatchRetry``
decides retries (``Internal`` too, ``WATCH_RESUME_ATTEMPTS_MAX`` failures in a
row, backoff with jitter); ``connect_timeout_s`` bounds only the first
connection, and with it a stream that no endpoint takes fails at once.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import grpc

from mcpctl import limits
from mcpctl.client._rules import ClientClosed, error_of, not_connected
from mcpctl.client._values import WatchBatch
from mcpctl.client._watch import WatchBase, WatchRetry, no_answer
from mcpctl.errors import McpError, Unavailable

if TYPE_CHECKING:
    from mcpctl._proto.mcp.v1 import watch_pb2 as watchpb
    from mcpctl.aio._client import Client


# What a grpc.aio stream's read() returns at its end (not in grpc's stubs).
EOF: Any = grpc.aio.EOF  # type: ignore[attr-defined]


class WatchStream(WatchBase):
    """Iterate ``WatchBatch``es with ``async for``; ``close()`` (or leaving an
    ``async with``) ends it. One iteration per stream."""

    _client: Client
    _closed: asyncio.Event

    def __init__(
        self,
        client: Client,
        request: watchpb.WatchRequest,
        *,
        connect_timeout_s: float | None = None,
    ) -> None:
        super().__init__(client, request, connect_timeout_s, asyncio.Event())

    async def __aenter__(self) -> WatchStream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()

    def __aiter__(self) -> AsyncIterator[WatchBatch]:
        return self._batches()

    async def _batches(self) -> AsyncIterator[WatchBatch]:
        client = self._client
        loop = asyncio.get_running_loop()
        retry = WatchRetry(len(client.endpoints), client._timing.uniform)
        connected = False  # a member has answered this stream once
        last: McpError | None = None
        timeout_s = self._connect_timeout_s
        deadline = None if timeout_s is None else loop.time() + timeout_s
        while not self._closed.is_set():
            endpoint = client._endpoint()
            bounded = not connected and deadline is not None
            wait_s = deadline - loop.time() if deadline is not None and bounded else None
            sent = await client._connect(
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
                    while True:
                        if not connected and deadline is not None:
                            # Until the first answer, the deadline ends a call that hangs.
                            msg = await asyncio.wait_for(
                                call.read(), max(0.0, deadline - loop.time())
                            )
                        else:
                            msg = await call.read()
                        if msg is EOF:
                            break
                        connected = True
                        retry.answered()
                        batch = self._cursor.advance(msg)
                        if batch is not None:
                            yield batch
                    if self._closed.is_set():
                        return
                    err = Unavailable("the member ended the watch")
            except TimeoutError:
                self._call.cancel()
                raise no_answer(timeout_s, client.endpoints, last) from None
            except asyncio.CancelledError:
                if self._closed.is_set():  # close() cancelled the call
                    return
                if client.closed:  # the client's close() did, with its channels
                    raise ClientClosed("this client was closed while the watch ran") from None
                raise
            except grpc.RpcError as e:
                if self._closed.is_set():
                    return
                if client.closed:
                    raise ClientClosed("this client was closed while the watch ran") from None
                err, from_server = error_of(e)
            last = err
            pause = retry.failed(err, sent=sent, fail_fast=bounded)
            client._endpoints.failed(endpoint, from_server)
            if bounded and deadline is not None:
                pause = min(pause, max(0.0, deadline - loop.time()))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._closed.wait(), pause)
            if bounded and deadline is not None and loop.time() >= deadline:
                raise no_answer(timeout_s, client.endpoints, last)
