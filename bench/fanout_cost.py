"""Our send path's CPU per watch message without gRPC, next to the streaming floor's.

``python -m bench.fanout_cost --server mcp-config --streams 330 --rounds 200``
(run from the repository root) opens ``--streams`` prefix watches on a
``WatchHub`` over a real ``Store`` (tests/hubfake.py's ``FakeRaft``: the apply
runs inline, the hub's loop work is scheduled on the running loop) and drains
each stream as grpc.aio drains a handler's async generator (a task per stream,
``async for`` over ``WatchHub.frames``), without gRPC under it. Then one put at
a time, the next once every stream has the previous: the process CPU per
delivered message over ``--rounds`` puts (after 50 warm-up puts) is the hub's
own work per message: publish, the wake-up, the budget, the queue, the frame.
``--server grpc-floor`` drives ``bench.floor_server.FloorWatch`` (an Event and a
deque per stream, one pre-encoded message per event) the same way: the
floor's Python part. ``--wrapped`` adds one async-generator layer per stream
(what ``errors.rpc_stream`` adds around every mcp.v1 stream).

Process CPU time, one process: compare runs interleaved, with the load beside
them (``uptime``). No network, writes nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import sys
import time
from collections.abc import AsyncIterator, Callable, Sequence

from bench.floor_server import FloorWatch
from mcpctl._proto.mcp.v1 import watch_pb2 as watch
from tests.hubfake import FakeRaft, make_hub

VALUE = "x" * 256
WARMUP_ROUNDS = 50


async def _pass(stream: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    async for item in stream:
        yield item


async def cpu_per_message(server: str, streams: int, rounds: int, wrapped: bool) -> float:
    """Process CPU µs per delivered message over ``rounds`` puts."""
    loop = asyncio.get_running_loop()
    got = 0
    target = streams  # the `created` messages first
    done = asyncio.Event()
    put: Callable[[int], object]
    its: list[AsyncIterator[bytes]]
    request = watch.WatchRequest(key=b"/p/", prefix=True)
    if server == "mcp-config":
        node = FakeRaft()
        hub = make_hub(node, messages_per_s=1e9)  # the budget is consulted, never waits
        hub.attach(loop.call_soon_threadsafe)
        node.listen(hub.on_applied, hub.on_reset)
        its = [hub.frames(request) for _ in range(streams)]
        put = lambda i: node.put("/p/k", VALUE)  # noqa: E731
    else:
        floor = FloorWatch()
        its = [floor.Watch(request, None) for _ in range(streams)]  # type: ignore[arg-type]
        put = lambda i: floor.publish(b"/p/k", VALUE.encode(), i + 2)  # noqa: E731
    if wrapped:
        its = [_pass(it) for it in its]

    async def drain(it: AsyncIterator[bytes]) -> None:
        nonlocal got
        async for _ in it:
            got += 1
            if got >= target:
                done.set()

    tasks = [asyncio.create_task(drain(it)) for it in its]
    try:
        await done.wait()
        cpu0 = 0.0
        for i in range(WARMUP_ROUNDS + rounds):
            if i == WARMUP_ROUNDS:
                cpu0 = time.process_time()
            done.clear()
            target = got + streams
            put(i)
            await done.wait()
        return (time.process_time() - cpu0) / (rounds * streams) * 1e6
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.fanout_cost", description=__doc__)
    p.add_argument("--server", choices=("mcp-config", "grpc-floor"), default="mcp-config")
    p.add_argument("--streams", type=int, default=330)
    p.add_argument("--rounds", type=int, default=200)
    p.add_argument("--wrapped", action="store_true", help="one more generator layer per stream")
    args = p.parse_args(argv)
    if not (1 <= args.streams <= 5000 and 1 <= args.rounds <= 100_000):
        p.error("--streams must be in 1..5000, --rounds in 1..100000")
    gc.freeze()
    us = asyncio.run(cpu_per_message(args.server, args.streams, args.rounds, args.wrapped))
    extra = " (+1 generator layer)" if args.wrapped else ""
    print(f"{args.server}{extra}, {args.streams} streams: {us:.2f} µs CPU per message")
    return 0


if __name__ == "__main__":
    sys.exit(main())
