"""A small asyncio load generator over real gRPC (for burst tests)."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from dataclasses import dataclass, field

import grpc

from mcpctl._proto.mcp.v1 import kv_pb2 as kv
from mcpctl._proto.mcp.v1 import kv_pb2_grpc as kv_grpc

ATTEMPTS_MAX = 20


@dataclass
class BurstResult:
    acked: int = 0
    failed: int = 0
    errors: Counter[str] = field(default_factory=Counter)


async def put_burst(
    endpoints: list[str], *, total: int, concurrency: int, value_bytes: int = 256
) -> BurstResult:
    """``total`` puts over ``/burst/<i % 1000>``, spread over every endpoint.

    Each put carries a request id and is retried (bounded) on UNAVAILABLE or
    DEADLINE_EXCEEDED, so a retry after an unknown outcome is applied once.
    """
    channels = [grpc.aio.insecure_channel(e) for e in endpoints]
    stubs = [kv_grpc.KVStub(ch) for ch in channels]
    result = BurstResult()
    value = b"x" * value_bytes
    next_index = iter(range(total))

    async def worker(w: int) -> None:
        for i in next_index:
            req = kv.PutRequest(
                key=f"/burst/{i % 1000}".encode(), value=value, request_id=uuid.uuid4().hex
            )
            for attempt in range(ATTEMPTS_MAX):
                stub = stubs[(w + attempt) % len(stubs)]
                try:
                    await stub.Put(req, timeout=10)
                    result.acked += 1
                    break
                except grpc.aio.AioRpcError as e:
                    result.errors[e.code().name] += 1
                    if e.code() not in (
                        grpc.StatusCode.UNAVAILABLE,
                        grpc.StatusCode.DEADLINE_EXCEEDED,
                        grpc.StatusCode.RESOURCE_EXHAUSTED,
                    ):
                        result.failed += 1
                        break
                    await asyncio.sleep(0.05 * (attempt + 1))
            else:
                result.failed += 1

    try:
        await asyncio.gather(*(worker(w) for w in range(concurrency)))
    finally:
        for ch in channels:
            await ch.close(None)
    return result
