"""etcd's JSON gateway (``/v3/kv/range`` ...) on an HTTP port of the node: off by
default (``etcd_gateway.listen``), for APISIX, Patroni, etcd3gw and curl.

Like etcd's grpc-gateway it is a client of the node's own gRPC port: each
request body is etcd's JSON request (proto3 JSON: field names as in the
.proto, int64 as strings, bytes base64), sent to the etcd API, and the answer
is written back as JSON; so auth (an ``Authorization`` header carries the
token), limits, metrics and audit are exactly the gRPC path's. Errors answer
grpc-gateway's HTTP status and ``{"error", "code", "message"}``. Streams
(``/v3/watch``, ``/v3/lease/keepalive``) answer newline-separated
``{"result": ...}`` objects. Bodies are bounded by ``ETCD_GATEWAY_BODY_BYTES_MAX``.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import grpc
from google.protobuf import json_format, message_factory
from google.protobuf.message import Message
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from mcpctl import limits
from mcpctl._proto.etcd.etcdserverpb import rpc_pb2 as rpc
from mcpctl.server.etcd.cluster import ETCD_API_VERSION

# URL path under /v3/ -> (service, method), as etcd's gateway maps them.
UNARY = {
    "kv/range": ("KV", "Range"),
    "kv/put": ("KV", "Put"),
    "kv/deleterange": ("KV", "DeleteRange"),
    "kv/txn": ("KV", "Txn"),
    "kv/compaction": ("KV", "Compact"),
    "lease/grant": ("Lease", "LeaseGrant"),
    "lease/revoke": ("Lease", "LeaseRevoke"),
    "kv/lease/revoke": ("Lease", "LeaseRevoke"),
    "lease/timetolive": ("Lease", "LeaseTimeToLive"),
    "kv/lease/timetolive": ("Lease", "LeaseTimeToLive"),
    "lease/leases": ("Lease", "LeaseLeases"),
    "kv/lease/leases": ("Lease", "LeaseLeases"),
    "cluster/member/list": ("Cluster", "MemberList"),
    "maintenance/status": ("Maintenance", "Status"),
    "maintenance/alarm": ("Maintenance", "Alarm"),
    "auth/authenticate": ("Auth", "Authenticate"),
}
STREAMS = {"watch": ("Watch", "Watch"), "lease/keepalive": ("Lease", "LeaseKeepAlive")}
# grpc-gateway's HTTP status for each gRPC code.
HTTP_STATUS = {
    grpc.StatusCode.CANCELLED: 499,
    grpc.StatusCode.UNKNOWN: 500,
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.FAILED_PRECONDITION: 400,
    grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.INTERNAL: 500,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DATA_LOSS: 500,
}
CALL_TIMEOUT_S = float(limits.CLIENT_TIMEOUT_S_DEFAULT)


def _types(service: str, method: str) -> tuple[type[Message], type[Message]]:
    m = rpc.DESCRIPTOR.services_by_name[service].methods_by_name[method]
    return (
        message_factory.GetMessageClass(m.input_type),
        message_factory.GetMessageClass(m.output_type),
    )


def _json(msg: Message) -> dict[str, Any]:
    return json_format.MessageToDict(msg, preserving_proto_field_name=True)


def _error(code: grpc.StatusCode, message: str) -> JSONResponse:
    body = {"error": message, "code": code.value[0], "message": message}
    return JSONResponse(body, status_code=HTTP_STATUS.get(code, 500))


def _metadata(request: Request) -> tuple[tuple[str, str], ...]:
    """etcd's gateway passes the Authorization header on as the token."""
    token = request.headers.get("authorization")
    if not token:
        return ()
    if token.lower().startswith("bearer "):
        return (("authorization", token),)
    return (("token", token),)


class Gateway:
    def __init__(self, channel: grpc.aio.Channel) -> None:
        self._channel = channel

    async def _body(self, request: Request, cls: type[Message]) -> Message | JSONResponse:
        data = b""
        async for chunk in request.stream():
            data += chunk
            if len(data) > limits.ETCD_GATEWAY_BODY_BYTES_MAX:
                return _error(
                    grpc.StatusCode.RESOURCE_EXHAUSTED,
                    f"request body over {limits.ETCD_GATEWAY_BODY_BYTES_MAX} bytes "
                    "(ETCD_GATEWAY_BODY_BYTES_MAX)",
                )
        msg = cls()
        try:
            json_format.Parse(data or b"{}", msg, ignore_unknown_fields=True)
        except (json_format.ParseError, ValueError) as e:
            return _error(grpc.StatusCode.INVALID_ARGUMENT, f"request body: {e}")
        return msg

    async def version(self, request: Request) -> Response:
        return JSONResponse({"etcdserver": ETCD_API_VERSION, "etcdcluster": ETCD_API_VERSION})

    async def dispatch(self, request: Request) -> Response:
        if request.path_params["path"] in STREAMS:
            return await self.stream(request)
        return await self.unary(request)

    async def unary(self, request: Request) -> Response:
        path = request.path_params["path"]
        if path not in UNARY:
            return _error(grpc.StatusCode.UNIMPLEMENTED, f"/v3/{path} is not served")
        req_cls, resp_cls = _types(*UNARY[path])
        body = await self._body(request, req_cls)
        if isinstance(body, Response):
            return body
        service, method = UNARY[path]
        call = self._channel.unary_unary(
            f"/etcdserverpb.{service}/{method}",
            request_serializer=req_cls.SerializeToString,
            response_deserializer=resp_cls.FromString,
        )
        try:
            resp = await call(body, timeout=CALL_TIMEOUT_S, metadata=_metadata(request))
        except grpc.aio.AioRpcError as e:
            return _error(e.code(), e.details() or "")
        return JSONResponse(_json(resp))

    async def stream(self, request: Request) -> Response:
        path = request.path_params["path"]
        req_cls, resp_cls = _types(*STREAMS[path])
        body = await self._body(request, req_cls)
        if isinstance(body, Response):
            return body
        service, method = STREAMS[path]
        call = self._channel.stream_stream(
            f"/etcdserverpb.{service}/{method}",
            request_serializer=req_cls.SerializeToString,
            response_deserializer=resp_cls.FromString,
        )(None, metadata=_metadata(request))  # requests are written with call.write()
        await call.write(body)
        one = path == "lease/keepalive"  # one request, one answer
        first = await call.read()
        if not isinstance(first, Message):  # ended before answering: its status
            return _error(await call.code(), (await call.details()) or "")

        async def lines() -> AsyncIterator[bytes]:
            try:
                msg: Any = first
                while isinstance(msg, Message):
                    yield json.dumps({"result": _json(msg)}).encode() + b"\n"
                    if one:
                        return
                    msg = await call.read()
            finally:
                call.cancel()

        return StreamingResponse(lines(), media_type="application/json")


def build_app(channel: grpc.aio.Channel) -> Starlette:
    gw = Gateway(channel)
    return Starlette(
        routes=[
            Route("/version", gw.version, methods=["GET"]),
            Route("/v3/{path:path}", gw.dispatch, methods=["POST"]),
        ]
    )


class GatewayStartupError(Exception):
    """The gateway cannot listen; the message is one line naming the key."""


class GatewayServer:
    """The gateway's uvicorn on the node's loop (as the console's), and its channel."""

    def __init__(self, server: Any, task: Any, channel: grpc.aio.Channel, port: int) -> None:
        self._server = server
        self._task = task
        self._channel = channel
        self.port = port

    async def stop(self) -> None:
        import asyncio

        self._server.should_exit = True
        try:
            await asyncio.wait_for(self._task, limits.CONSOLE_STOP_GRACE_S + 2.0)
        except TimeoutError:
            self._task.cancel()
        await self._channel.close(None)


async def start_gateway(address: str, target: str) -> GatewayServer:
    """Serve the gateway on ``address`` (host:port), calling the gRPC port at ``target``."""
    import asyncio
    import time

    import uvicorn

    from mcpctl.server.console.server import ConsoleStartupError, _NodeServer, bind

    try:
        sock = bind(address)
    except ConsoleStartupError as e:
        raise GatewayStartupError(str(e).replace("console.listen", "etcd_gateway.listen")) from None
    port = sock.getsockname()[1]
    channel = grpc.aio.insecure_channel(target)
    config = uvicorn.Config(
        build_app(channel),
        host=address.rpartition(":")[0].strip("[]"),
        port=port,
        http="h11",
        ws="none",
        lifespan="off",
        log_config=None,
        access_log=False,
        server_header=False,
        limit_concurrency=limits.ETCD_GATEWAY_CONNECTIONS_MAX,
        timeout_keep_alive=5,
        timeout_graceful_shutdown=limits.CONSOLE_STOP_GRACE_S,
        h11_max_incomplete_event_size=64 * limits.KIB,
    )
    server = _NodeServer(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    deadline = time.monotonic() + 5.0
    while not server.started:
        if task.done() or time.monotonic() > deadline:
            server.should_exit = True
            sock.close()
            await channel.close(None)
            raise GatewayStartupError(f"etcd_gateway.listen: could not start on {address}")
        await asyncio.sleep(0.01)
    return GatewayServer(server, task, channel, port)
