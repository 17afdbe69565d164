"""SDK benchmark: the sync ``Client``, ``mcpctl.aio.Client`` and a bare grpc.aio
stub, one process, against one fresh local 3-member cluster.

``python -m bench.sdk_bench [--concurrency 64] [--duration 4] [--ops get,put]``
runs, for each op (``put`` to the leader; ``get``: a serializable read of one
key on the leader) and each client, ``concurrency`` closed-loop workers
(threads for the sync client, tasks for the others) for a warm-up and a
measured window, and prints ops/s and the client's CPU per call (this
process's user+system time over the window divided by the calls completed;
the members run in their own processes). The bare stub is the floor of what
any Python client pays per call on this machine; the difference to it is the
SDK's own cost (request ids, the rules, typed results). Nothing is written.
Numbers are only as quiet as the machine: say its load next to them.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

import grpc

import mcpctl.aio
from mcpctl._proto.mcp.v1 import kv_pb2 as kv
from mcpctl._proto.mcp.v1 import kv_pb2_grpc as kv_grpc
from mcpctl.client import Client, new_request_id
from tests.cluster import running_cluster

CLIENTS = ("stub", "aio", "sync")
OPS = ("get", "put")
VALUE = b"v" * 256
CALL_TIMEOUT_S = 10.0


def _sync(
    endpoint: str, op: str, concurrency: int, warmup_s: float, duration_s: float
) -> tuple[int, float]:
    client = Client([endpoint], timeout=CALL_TIMEOUT_S)
    client.put("/bench/0", VALUE)
    stop, measuring = threading.Event(), threading.Event()
    counts = [0] * concurrency

    def worker(i: int) -> None:
        while not stop.is_set():
            if op == "put":
                client.put(f"/bench/{i}", VALUE)
            else:
                client.get("/bench/0", serializable=True)
            if measuring.is_set():
                counts[i] += 1

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(concurrency)]
    for t in threads:
        t.start()
    time.sleep(warmup_s)
    cpu0 = time.process_time()
    measuring.set()
    time.sleep(duration_s)
    measuring.clear()
    cpu_s = time.process_time() - cpu0
    stop.set()
    for t in threads:
        t.join()
    client.close()
    return sum(counts), cpu_s


async def _async(
    endpoint: str, op: str, concurrency: int, warmup_s: float, duration_s: float, stub: bool
) -> tuple[int, float]:
    call: Callable[[int], Awaitable[object]]
    if stub:
        channel = grpc.aio.insecure_channel(endpoint)
        kv_stub = kv_grpc.KVStub(channel)

        def call(i: int) -> Awaitable[object]:
            if op == "put":
                req = kv.PutRequest(
                    key=f"/bench/{i}".encode(), value=VALUE, request_id=new_request_id()
                )
                return kv_stub.Put(req, timeout=CALL_TIMEOUT_S)
            return kv_stub.Range(
                kv.RangeRequest(key=b"/bench/0", serializable=True), timeout=CALL_TIMEOUT_S
            )
    else:
        client = mcpctl.aio.Client([endpoint], timeout=CALL_TIMEOUT_S)

        def call(i: int) -> Awaitable[object]:
            if op == "put":
                return client.put(f"/bench/{i}", VALUE)
            return client.get("/bench/0", serializable=True)

    await call(0)
    state = {"measuring": False, "stop": False}
    counts = [0] * concurrency

    async def worker(i: int) -> None:
        while not state["stop"]:
            await call(i)
            if state["measuring"]:
                counts[i] += 1

    tasks = [asyncio.create_task(worker(i)) for i in range(concurrency)]
    await asyncio.sleep(warmup_s)
    cpu0 = time.process_time()
    state["measuring"] = True
    await asyncio.sleep(duration_s)
    state["measuring"] = False
    cpu_s = time.process_time() - cpu0
    state["stop"] = True
    await asyncio.gather(*tasks)
    if stub:
        await channel.close(None)
    else:
        await client.close()
    return sum(counts), cpu_s


def measure(
    endpoint: str, client: str, op: str, concurrency: int, warmup_s: float, duration_s: float
) -> tuple[float, float]:
    """ops/s and client CPU µs per call over the measured window of one cell."""
    if client == "sync":
        done, cpu_s = _sync(endpoint, op, concurrency, warmup_s, duration_s)
    else:
        done, cpu_s = asyncio.run(
            _async(endpoint, op, concurrency, warmup_s, duration_s, stub=client == "stub")
        )
    return done / duration_s, cpu_s / max(1, done) * 1e6


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.sdk_bench", description=__doc__)
    p.add_argument("--concurrency", type=int, default=64)
    p.add_argument("--duration", type=float, default=4.0, help="measured seconds per cell")
    p.add_argument("--warmup", type=float, default=1.0, help="warm-up seconds per cell")
    p.add_argument("--ops", default=",".join(OPS), help="comma-separated of get,put")
    p.add_argument("--clients", default=",".join(CLIENTS), help="comma-separated of stub,aio,sync")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as d, running_cluster(Path(d)) as cluster:
        leader = cluster.leader()
        print(f"load average before: {os.getloadavg()[0]:.1f}")
        print("| op | client | concurrency | ops/s | client CPU µs/call | load |")
        print("|---|---|---:|---:|---:|---:|")
        for op in args.ops.split(","):
            for client in args.clients.split(","):
                rate, cpu_us = measure(
                    leader.endpoint, client, op, args.concurrency, args.warmup, args.duration
                )
                load = os.getloadavg()[0]
                print(
                    f"| {op} | {client} | {args.concurrency} | {rate:,.0f} | {cpu_us:,.0f} "
                    f"| {load:.1f} |",
                    flush=True,
                )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
