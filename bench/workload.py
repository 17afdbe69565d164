"""The workload loop shared by every adapter: N workers, a warm-up, a fixed
measured window, latency samples, and the CPU the servers and this client
spent in that window.
"""

from __future__ import annotations

import asyncio
import math
import os
import random
import string
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import grpc

from bench.adapters import Adapter

WORKLOADS = ("put-leader", "put-follower", "get-linearizable", "get-serializable")
# Pause after a failed call so a failing server is not hammered in a hot loop.
ERROR_BACKOFF_S = 0.01
PRELOAD_CONCURRENCY = 64
PRELOAD_ATTEMPTS_MAX = 5
PRELOAD_TIMEOUT_S = 300.0
CLK_TCK = os.sysconf("SC_CLK_TCK")


def key_of(i: int) -> bytes:
    return f"/bench/k{i:05d}".encode()


def make_value(size: int, seed: int) -> bytes:
    """Printable random bytes (so a CLI can print the value it reads)."""
    alphabet = string.ascii_letters + string.digits
    rng = random.Random(seed)
    return "".join(rng.choice(alphabet) for _ in range(size)).encode()


def proc_cpu_s(pid: int) -> float:
    """utime + stime of one process, in seconds (0 if it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    # After "pid (comm)": state is fields[0]; utime, stime are stat fields 14, 15.
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def self_cpu_s() -> float:
    t = os.times()
    return t.user + t.system


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile of an ascending list (NaN when empty)."""
    if not sorted_values:
        return float("nan")
    rank = max(1, min(len(sorted_values), math.ceil(q * len(sorted_values))))
    return sorted_values[rank - 1]


@dataclass
class CellResult:
    workload: str
    concurrency: int
    endpoint: str
    duration_s: float
    ops: int
    ops_per_s: float
    p50_ms: float
    p99_ms: float
    errors: dict[str, int] = field(default_factory=dict)
    misses: int = 0
    server_cpu_us_per_op: float = float("nan")
    target_cpu_us_per_op: float = float("nan")
    client_cpu_us_per_op: float = float("nan")

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


async def preload(adapter: Adapter, endpoint: str, keys: int, value: bytes) -> dict[str, int]:
    """Write every key once (bounded retries, bounded time); return error counts."""
    errors: Counter[str] = Counter()
    pending = iter(range(keys))
    deadline = time.monotonic() + PRELOAD_TIMEOUT_S
    await adapter.connect(endpoint)

    async def worker() -> None:
        for i in pending:
            for _attempt in range(PRELOAD_ATTEMPTS_MAX):
                if time.monotonic() > deadline:
                    raise TimeoutError(f"preloading {keys} keys took over {PRELOAD_TIMEOUT_S}s")
                try:
                    await adapter.put(key_of(i), value)
                    break
                except grpc.aio.AioRpcError as e:
                    errors[e.code().name] += 1
                    await asyncio.sleep(0.1)
            else:
                raise RuntimeError(f"preload: {key_of(i)!r} failed {PRELOAD_ATTEMPTS_MAX} times")

    try:
        await asyncio.gather(*(worker() for _ in range(PRELOAD_CONCURRENCY)))
    finally:
        await adapter.disconnect()
    return dict(errors)


async def run_cell(
    adapter: Adapter,
    *,
    workload: str,
    endpoint: str,
    concurrency: int,
    keys: int,
    value: bytes,
    warmup_s: float,
    duration_s: float,
    seed: int,
) -> CellResult:
    """``concurrency`` closed-loop workers for ``warmup_s`` + ``duration_s`` seconds.

    Throughput counts calls that completed inside the measured window;
    latencies are those of calls that started inside it.
    """
    op: Callable[[bytes], Awaitable[bool | None]]
    if workload in ("put-leader", "put-follower"):

        async def op(key: bytes) -> None:
            await adapter.put(key, value)

    elif workload in ("get-linearizable", "get-serializable"):
        serializable = workload == "get-serializable"

        async def op(key: bytes) -> bool:
            return await adapter.get(key, serializable)

    else:
        raise ValueError(f"unknown workload {workload!r}")

    await adapter.connect(endpoint)
    pids = adapter.pids()
    target_pid = pids.get(endpoint)
    start = time.perf_counter()
    window_start = start + warmup_s
    window_end = window_start + duration_s
    latencies: list[float] = []
    completed = 0
    misses = 0
    errors: Counter[str] = Counter()
    cpu: dict[str, float] = {}

    def cpu_sample(tag: str) -> None:
        cpu[f"{tag}_server"] = sum(proc_cpu_s(p) for p in pids.values())
        cpu[f"{tag}_target"] = proc_cpu_s(target_pid) if target_pid else 0.0
        cpu[f"{tag}_client"] = self_cpu_s()

    async def sampler() -> None:
        await asyncio.sleep(max(0.0, window_start - time.perf_counter()))
        cpu_sample("begin")
        await asyncio.sleep(max(0.0, window_end - time.perf_counter()))
        cpu_sample("end")

    async def worker(w: int) -> None:
        nonlocal completed, misses
        rng = random.Random(seed * 1000 + w)
        while True:
            t0 = time.perf_counter()
            if t0 >= window_end:
                return
            try:
                found = await op(key_of(rng.randrange(keys)))
            except grpc.aio.AioRpcError as e:
                if t0 >= window_start:
                    errors[e.code().name] += 1
                await asyncio.sleep(ERROR_BACKOFF_S)
                continue
            t1 = time.perf_counter()
            if window_start <= t1 <= window_end:
                completed += 1
            if t0 >= window_start:
                latencies.append(t1 - t0)
                if found is False:
                    misses += 1

    try:
        await asyncio.gather(sampler(), *(worker(w) for w in range(concurrency)))
    finally:
        await adapter.disconnect()

    latencies.sort()
    ops = completed

    def per_op(tag: str) -> float:
        used = cpu[f"end_{tag}"] - cpu[f"begin_{tag}"]
        return used / ops * 1e6 if ops else float("nan")

    return CellResult(
        workload=workload,
        concurrency=concurrency,
        endpoint=endpoint,
        duration_s=duration_s,
        ops=ops,
        ops_per_s=ops / duration_s,
        p50_ms=percentile(latencies, 0.50) * 1000,
        p99_ms=percentile(latencies, 0.99) * 1000,
        errors=dict(errors),
        misses=misses,
        server_cpu_us_per_op=per_op("server"),
        target_cpu_us_per_op=per_op("target"),
        client_cpu_us_per_op=per_op("client"),
    )
