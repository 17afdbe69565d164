"""The console's status stream: Server-Sent Events from one ``StatusFeed`` stream.

``SseResponse`` sends ``init`` (the recent lag samples), then one ``status``
event per published snapshot, and a keepalive comment every ``KEEPALIVE_S``
when there is nothing new, and closes its stream when the client goes away.
The feed never waits for it: each stream's queue is bounded and drops its
oldest snapshot when the stream is behind (``feed``).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from mcpctl.server.console.feed import StatusFeed, Stream

# A status stream sends a comment line this often when there is nothing new,
# so proxies and the page can tell a quiet stream from a dead one.
KEEPALIVE_S = 5.0


class SseResponse(Response):
    """``text/event-stream`` of status snapshots from one feed stream.

    Sends ``init`` (the recent lag samples) and then one ``status`` event per
    published snapshot; ends when the client goes away or the feed closes.
    """

    media_type = "text/event-stream"

    def __init__(self, feed: StatusFeed, stream: Stream) -> None:
        # Not Response.__init__: it would set content-length for an empty body.
        self.status_code = 200
        self.background = None
        self.init_headers({"cache-control": "no-store", "x-accel-buffering": "no"})
        self.feed = feed
        self.stream = stream

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        gone = asyncio.Event()

        async def watch_disconnect() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass
            gone.set()

        watcher = asyncio.create_task(watch_disconnect())
        try:
            await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
            await _send_event(send, "init", {"samples": self.feed.samples()})
            while not gone.is_set():
                get = asyncio.ensure_future(self.stream.queue.get())
                wait_gone = asyncio.ensure_future(gone.wait())
                done, _ = await asyncio.wait(
                    {get, wait_gone}, timeout=KEEPALIVE_S, return_when=asyncio.FIRST_COMPLETED
                )
                wait_gone.cancel()
                if get not in done:
                    get.cancel()
                    if not gone.is_set():
                        await send(
                            {
                                "type": "http.response.body",
                                "body": b": keepalive\n\n",
                                "more_body": True,
                            }
                        )
                    continue
                item = get.result()
                if item is None:
                    break
                await _send_event(send, "status", item)
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        except OSError:
            pass  # the client went away mid-send
        finally:
            watcher.cancel()
            self.feed.close_stream(self.stream)


async def _send_event(send: Send, event: str, data: Any) -> None:
    payload = json.dumps(data, separators=(",", ":"))
    body = f"event: {event}\ndata: {payload}\n\n".encode()
    await send({"type": "http.response.body", "body": body, "more_body": True})
