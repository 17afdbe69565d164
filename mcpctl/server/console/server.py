"""Serve the console from inside a node: uvicorn on the node's own asyncio loop.

Why the node's loop and not a thread: every ``Node`` call the console makes
(linearizable reads, history, cluster status, apply) is a coroutine tied to
that loop (the proposer resolves its futures there, the peers' gRPC channels
and the membership lock live there). A console thread with its own loop
would have to hand each call back to the node's loop anyway, and add a
thread fighting for the GIL. Raft itself never runs on this loop (PySyncObj
ticks on its own thread), so the console can only delay gRPC requests by its
own per-request work, which is small and bounded: pages are capped, bodies
are capped, and the live status is computed once per tick for every open
page together (``StatusFeed``).

uvicorn runs with its signal handling off (the node owns SIGTERM/SIGINT), no
lifespan, no logging setup of its own, and a socket this module binds, so a
port in use is a one-line start-up error like every other listener's.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass

import uvicorn

from mcpctl import limits
from mcpctl.server.auth import Guard
from mcpctl.server.console.api import build_app, snapshot
from mcpctl.server.console.feed import FeedLimits, StatusFeed
from mcpctl.server.leases import Leases
from mcpctl.server.metrics import RpcMetrics
from mcpctl.server.node import Node
from mcpctl.server.peers import PEER_STATUS_TIMEOUT_S

# How long start-up waits for uvicorn to be listening.
START_WAIT_S = 5.0
# Idle keep-alive connections are closed after this long.
KEEP_ALIVE_S = 5


class ConsoleStartupError(Exception):
    """The console cannot listen; the message is one line naming the key."""


class _NodeServer(uvicorn.Server):
    """uvicorn without its signal handlers: the node's own handlers stop it."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@dataclass
class Console:
    """A running console: its port (useful with port 0) and how to stop it."""

    port: int
    feed: StatusFeed
    _server: _NodeServer
    _task: asyncio.Task[None]

    @property
    def url(self) -> str:
        return f"http://{self._server.config.host}:{self.port}/"

    async def stop(self) -> None:
        await self.feed.close()  # ends the status streams, so connections can close
        self._server.should_exit = True
        try:
            await asyncio.wait_for(self._task, limits.CONSOLE_STOP_GRACE_S + 2.0)
        except TimeoutError:
            self._task.cancel()


def bind(address: str) -> socket.socket:
    host, _, port = address.rpartition(":")
    host = host.strip("[]")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, int(port)))
    except OSError as e:
        sock.close()
        raise ConsoleStartupError(
            f"console.listen: cannot listen on {address}: {e.strerror}"
        ) from None
    sock.setblocking(False)
    return sock


async def start_console(
    address: str,
    node: Node,
    guard: Guard,
    *,
    metrics: RpcMetrics | None = None,
    feed_limits: FeedLimits | None = None,
    leases: Leases | None = None,
) -> Console:
    """Bind ``address`` (host:port, port 0 for any) and serve the console on this loop."""
    fl = feed_limits or FeedLimits()
    # A silent member must not stall the stream: overlapping computations cover its wait.
    assert (fl.in_flight_max - 1) * fl.tick_s > PEER_STATUS_TIMEOUT_S, "console limits"
    sock = bind(address)
    port = sock.getsockname()[1]
    feed = StatusFeed(lambda: snapshot(node), fl)
    config = uvicorn.Config(
        build_app(node, guard, feed, metrics, leases),
        host=address.rpartition(":")[0].strip("[]"),
        port=port,
        http="h11",
        ws="none",
        lifespan="off",
        log_config=None,
        access_log=False,
        server_header=False,
        limit_concurrency=limits.CONSOLE_CONNECTIONS_MAX,
        timeout_keep_alive=KEEP_ALIVE_S,
        timeout_graceful_shutdown=limits.CONSOLE_STOP_GRACE_S,
        h11_max_incomplete_event_size=64 * limits.KIB,
    )
    server = _NodeServer(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    deadline = time.monotonic() + START_WAIT_S
    while not server.started:
        if task.done() or time.monotonic() > deadline:
            server.should_exit = True
            sock.close()
            raise ConsoleStartupError(f"console.listen: could not start on {address}")
        await asyncio.sleep(0.01)
    return Console(port, feed, server, task)
