"""The request context of a unary RPC (errors.rpc + logs.RequestInfo), through a real
grpc.aio server on 127.0.0.1: lines written while a request is handled name its
method, peer and identity; nothing of it outlives the request; refusals are
logged with the identity and code; ``forwarded()`` reads the request's metadata."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
import structlog

from mcpctl._proto.mcp.v1 import kv_pb2 as kv
from mcpctl._proto.mcp.v1 import kv_pb2_grpc as kv_grpc
from mcpctl.server import auth, logs
from mcpctl.server.app import SERVICES
from mcpctl.server.errors import forwarded, rpc
from mcpctl.server.peers import FORWARDED_KEY
from mcpctl.server.registry import add_service, routes_of

TOKEN = "s3cret-token"
log = structlog.get_logger("test.rpc")


class LoggingKV:
    """KV whose Range writes one log line and an audit line, and says what it saw."""

    def __init__(self, guard: auth.Guard) -> None:
        self.guard = guard
        self.metrics = None

    @rpc
    async def Range(self, request: kv.RangeRequest, timeout_s: float) -> kv.RangeResponse:
        log.info("inside", key=request.key.decode())
        logs.audit.info("read", keys=[request.key.decode()])
        seen = json.dumps({"forwarded": forwarded(), **logs.request_fields()})
        return kv.RangeResponse(kvs=[kv.KeyValue(key=request.key, value=seen.encode())])

    async def _unused(self, request: Any, timeout_s: float) -> Any:
        raise AssertionError("not called")

    Put = DeleteRange = Txn = History = Compact = rpc(_unused)


@pytest.fixture
def lines() -> Iterator[io.StringIO]:
    """Log lines as the node writes them (JSON through logs.configure), into a buffer."""
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    logs.configure("info", "json", node="n1")
    stream = io.StringIO()
    handler = root.handlers[0]
    assert isinstance(handler, logging.StreamHandler)
    handler.setStream(stream)
    logs.audit.configure(handler, "n1")
    try:
        yield stream
    finally:
        logs.audit.configure(None, None)
        root.handlers[:], _ = saved
        root.setLevel(saved[1])
        structlog.reset_defaults()


async def _serve_and_call(metadata: tuple[tuple[str, str], ...]) -> kv.RangeResponse:
    guard = auth.Guard(
        enabled=True, tokens={auth.hash_token(TOKEN): auth.Identity("deployer", auth.READONLY)}
    )
    server = grpc.aio.server()
    add_service(server, LoggingKV(guard), SERVICES[0])
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = kv_grpc.KVStub(channel)
            resp: kv.RangeResponse = await stub.Range(
                kv.RangeRequest(key=b"/a"), metadata=metadata, timeout=10
            )
            log.info("after")
            return resp
    finally:
        await server.stop(None)


def _parsed(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines() if line.startswith("{")]


def test_lines_of_a_request_name_method_peer_identity_and_nothing_leaks(
    lines: io.StringIO,
) -> None:
    resp = asyncio.run(_serve_and_call((("authorization", f"Bearer {TOKEN}"),)))
    seen = json.loads(resp.kvs[0].value)
    assert seen["method"] == "Range" and seen["identity"] == "deployer"
    assert seen["peer"].startswith("ipv4:127.0.0.1:") and seen["forwarded"] is False
    by_event = {o["event"]: o for o in _parsed(lines)}
    inside, audit, after = by_event["inside"], by_event["read"], by_event["after"]
    for line in (inside, audit):
        assert (line["method"], line["identity"], line["node"]) == ("Range", "deployer", "n1")
        assert line["peer"] == seen["peer"]
    assert audit["logger"] == "mcpctl.audit" and audit["keys"] == ["/a"]
    assert not {"method", "peer", "identity"} & after.keys()


def test_forwarded_reads_the_request_metadata(lines: io.StringIO) -> None:
    metadata = (("authorization", f"Bearer {TOKEN}"), (FORWARDED_KEY, "n2"))
    resp = asyncio.run(_serve_and_call(metadata))
    assert json.loads(resp.kvs[0].value)["forwarded"] is True


def test_a_refused_request_is_logged_with_its_code_and_method(lines: io.StringIO) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as e:
        asyncio.run(_serve_and_call((("authorization", "Bearer wrong"),)))
    assert e.value.code() == grpc.StatusCode.UNAUTHENTICATED
    refused = [o for o in _parsed(lines) if o["event"] == "rpc"]
    assert [(o["code"], o["method"]) for o in refused] == [("UNAUTHENTICATED", "Range")]
    assert refused[0]["peer"].startswith("ipv4:127.0.0.1:")
    assert "identity" not in refused[0]  # nobody was authenticated


def test_one_routing_table_per_server_and_a_path_only_once() -> None:
    """Every service of a server lands in its one generic handler (no registered
    methods: grpc.aio would wait on one pending request per method for each call)."""

    async def check() -> None:
        server = grpc.aio.server()
        add_service(server, LoggingKV(auth.Guard()), SERVICES[0])
        table = routes_of(server).handlers
        assert set(table) == {f"/mcp.v1.KV/{m.name}" for m in SERVICES[0].methods}
        with pytest.raises(ValueError, match="registered twice"):
            add_service(server, LoggingKV(auth.Guard()), SERVICES[0])
        assert routes_of(grpc.aio.server()).handlers == {}  # another server, its own table

    asyncio.run(check())
