"""The stop's answers (mcpctl.server.stopping), through a real grpc.aio server on
127.0.0.1 with servicers wrapped by errors.rpc / rpc_stream: open streams and new
calls are answered UNAVAILABLE "member stopping" with the trailer, a unary call in
flight finishes within the grace or ends outcome_unknown. The same with a real
cluster and SIGTERM: tests/integration/test_stop_answers.py."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest

from mcpctl._proto.mcp.v1 import cluster_pb2 as cluster
from mcpctl._proto.mcp.v1 import kv_pb2 as kv
from mcpctl._proto.mcp.v1 import kv_pb2_grpc as kv_grpc
from mcpctl._proto.mcp.v1 import watch_pb2 as watch
from mcpctl._proto.mcp.v1 import watch_pb2_grpc as watch_grpc
from mcpctl.errors import ERROR_KIND_KEY, STOPPING, Unavailable
from mcpctl.server.app import SERVICES, answer_before_stop
from mcpctl.server.errors import rpc, rpc_stream
from mcpctl.server.peers import MemberInfo, Peers
from mcpctl.server.registry import add_service, routes_of

KV_SERVICE, CLUSTER_SERVICE, WATCH_SERVICE, _ = SERVICES


class HeldKV:
    """Range waits until ``release`` is set (a write waiting for its commit)."""

    def __init__(self) -> None:
        self.guard = None
        self.metrics = None
        self.release = asyncio.Event()
        self.entered = asyncio.Event()

    @rpc
    async def Range(self, request: kv.RangeRequest, timeout_s: float) -> kv.RangeResponse:
        self.entered.set()
        await self.release.wait()
        return kv.RangeResponse(count=1)

    async def _unused(self, request: Any, timeout_s: float) -> Any:
        raise AssertionError("not called")

    Put = DeleteRange = Txn = History = Compact = rpc(_unused)


class IdleWatch:
    """A watch that sends its created message, then waits (an idle watcher)."""

    guard = None

    @rpc_stream
    async def Watch(self, request: watch.WatchRequest) -> AsyncIterator[watch.WatchResponse]:
        yield watch.WatchResponse(created=True)
        await asyncio.Event().wait()


async def _serve() -> tuple[grpc.aio.Server, HeldKV, grpc.aio.Channel]:
    server = grpc.aio.server()
    held = HeldKV()
    add_service(server, held, KV_SERVICE)
    add_service(server, IdleWatch(), WATCH_SERVICE)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    return server, held, grpc.aio.insecure_channel(f"127.0.0.1:{port}")


def _status(e: grpc.aio.AioRpcError) -> tuple[grpc.StatusCode, str | None, dict[str, Any]]:
    trailers: Any = e.trailing_metadata() or ()  # aio: plain (key, value) tuples
    return e.code(), e.details(), dict(trailers)


# Every client call has a deadline: a broken stop fails the test instead of hanging it.
T = 30.0
STOPPING_STATUS = (grpc.StatusCode.UNAVAILABLE, STOPPING, {ERROR_KIND_KEY: "unavailable"})


async def _stop_with_a_call_and_a_stream(release_within_grace: bool) -> None:
    server, held, channel = await _serve()
    try:
        stream = watch_grpc.WatchStub(channel).Watch(watch.WatchRequest(key=b"/k"), timeout=T)
        first: Any = await stream.read()
        assert first.created
        call = asyncio.ensure_future(
            kv_grpc.KVStub(channel).Range(kv.RangeRequest(key=b"/k"), timeout=T)
        )
        await held.entered.wait()
        stopping = asyncio.create_task(
            answer_before_stop(server, grace_s=60.0 if release_within_grace else 0.2)
        )
        # The open stream is answered at once.
        with pytest.raises(grpc.aio.AioRpcError) as ended:
            await stream.read()
        assert _status(ended.value) == STOPPING_STATUS
        # While the unary call is in flight, a new call is refused.
        assert routes_of(server).in_flight.stopping
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await kv_grpc.KVStub(channel).Range(kv.RangeRequest(key=b"/k"), timeout=T)
        assert _status(refused.value) == STOPPING_STATUS
        if release_within_grace:
            held.release.set()
            assert (await call).count == 1
        else:
            with pytest.raises(grpc.aio.AioRpcError) as cut:
                await call
            code, details, trailers = _status(cut.value)
            assert (code, trailers) == (
                grpc.StatusCode.UNAVAILABLE,
                {ERROR_KIND_KEY: "outcome_unknown"},
            )
            assert details is not None and details.startswith(STOPPING)
        await stopping
    finally:
        await channel.close(None)
        await server.stop(None)


def test_open_stream_and_new_calls_answered_call_in_flight_finishes() -> None:
    asyncio.run(_stop_with_a_call_and_a_stream(release_within_grace=True))


def test_call_in_flight_past_the_grace_ends_outcome_unknown() -> None:
    asyncio.run(_stop_with_a_call_and_a_stream(release_within_grace=False))


def test_nothing_in_flight_answers_at_once() -> None:
    """No call, no stream: the stop does not wait for the grace."""

    async def check() -> None:
        server, _, channel = await _serve()
        try:
            # A guard against a hang, not a timing: the grace is an hour.
            await asyncio.wait_for(answer_before_stop(server, grace_s=3600.0), timeout=60.0)
        finally:
            await channel.close(None)
            await server.stop(None)

    asyncio.run(check())


class AnyCluster:
    """A Cluster servicer none of whose methods is reached (the stop refuses first)."""

    guard = None
    PRE_ENCODED: frozenset[str] = frozenset()

    def __getattr__(self, name: str) -> Any:  # every Cluster method
        async def unused(request: Any, timeout_s: float) -> Any:
            raise AssertionError("not called")

        return unused


def test_a_call_forwarded_to_a_stopping_member_names_that_member() -> None:
    """A follower relaying "member stopping" as it is would name itself as the
    one stopping: the relayed error names the member it forwarded to."""

    async def check() -> None:
        server = grpc.aio.server()
        add_service(server, AnyCluster(), CLUSTER_SERVICE)
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        peers = Peers([])
        try:
            await answer_before_stop(server, grace_s=1.0)
            leader = MemberInfo("n9", "127.0.0.1:1", f"127.0.0.1:{port}")
            request = cluster.MemberRemoveRequest(name="n2")
            with pytest.raises(Unavailable) as relayed:
                await peers.forward(leader, "MemberRemove", request, T)
            assert str(relayed.value) == (
                "member n9, which this call was forwarded to, is stopping; retry"
            )
        finally:
            await peers.close()
            await server.stop(None)

    asyncio.run(check())
