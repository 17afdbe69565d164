"""Registering servicers on a node's gRPC server, with one decode rule.

Every mcp.v1 RPC answers INVALID_ARGUMENT to bytes that do not decode (never
UNKNOWN with a traceback). ``add_service`` registers a servicer of ours from
its service descriptor; ``DecodeChecked`` wraps grpc's generated registration
of health and reflection the same way. A leaf module: servicers register
themselves through it without importing the app that builds the server.
"""

from __future__ import annotations

import inspect
import weakref
from typing import TYPE_CHECKING, Any

import grpc
from google.protobuf import message_factory
from google.protobuf.descriptor import ServiceDescriptor

from mcpctl.errors import McpError
from mcpctl.server.errors import BadRequest, abort, safe_deserializer
from mcpctl.server.stopping import InFlight


def add_service(server: grpc.aio.Server, servicer: Any, service: ServiceDescriptor) -> None:
    """Register ``servicer`` for ``service`` with decode errors turned into INVALID_ARGUMENT."""
    handlers: dict[str, grpc.RpcMethodHandler[Any, Any]] = {}
    # Methods whose behaviour yields bytes it encoded itself (e.g. Watch: shared
    # encodings): sent as they are.
    pre_encoded: frozenset[str] = getattr(servicer, "PRE_ENCODED", frozenset())
    for method in service.methods:
        req = message_factory.GetMessageClass(method.input_type)
        resp = message_factory.GetMessageClass(method.output_type)
        behaviour = getattr(servicer, method.name)
        make = _MAKERS[(method.client_streaming, method.server_streaming)]
        handlers[method.name] = make(
            behaviour,
            request_deserializer=safe_deserializer(req),
            response_serializer=_as_is if method.name in pre_encoded else resp.SerializeToString,
        )
    _register(server, service.full_name, handlers)
    # The rpc / rpc_stream wrappers enter and leave the server's calls in flight here.
    servicer.in_flight = routes_of(server).in_flight


def _as_is(data: bytes) -> bytes:
    return data


_MAKERS: dict[tuple[bool, bool], Any] = {
    (False, False): grpc.unary_unary_rpc_method_handler,
    (False, True): grpc.unary_stream_rpc_method_handler,
    (True, True): grpc.stream_stream_rpc_method_handler,
}


if TYPE_CHECKING:
    _GenericHandler = grpc.GenericRpcHandler[Any, Any]
else:  # not subscriptable at run time
    _GenericHandler = grpc.GenericRpcHandler


class Routes(_GenericHandler):
    """Every method of every service of one server, found by its path with one
    dict lookup per call.

    Deliberately *not* ``add_registered_method_handlers``: grpc.aio keeps one
    pending request-call task per registered method and, for every call that
    arrives, ``asyncio.wait``s on all of them (with ~70 methods across mcp.v1,
    the etcd API, health and reflection, that was ~50 µs of a serializable
    get, more than the rest of our handler). Unregistered, every call comes
    through one generic request and this one lookup.
    """

    def __init__(self) -> None:
        self.handlers: dict[str, grpc.RpcMethodHandler[Any, Any]] = {}
        self.in_flight = InFlight()

    def service(
        self, handler_call_details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        return self.handlers.get(handler_call_details.method)

    def refuse(self, error: McpError) -> None:
        """From now on every call but health checks is answered ``error`` (a
        stopping member): the table is swapped, nothing is checked per call."""
        self.in_flight.stopping = True
        self.handlers = {
            path: handler if path.startswith(_ALWAYS_SERVED) else _refusing(handler, error)
            for path, handler in self.handlers.items()
        }


_ROUTES: weakref.WeakKeyDictionary[grpc.aio.Server, Routes] = weakref.WeakKeyDictionary()


def routes_of(server: grpc.aio.Server) -> Routes:
    """The routing table of ``server`` (added to it as its generic handler on first use)."""
    routes = _ROUTES.get(server)
    if routes is None:
        routes = _ROUTES[server] = Routes()
        server.add_generic_rpc_handlers((routes,))
    return routes


# Served to the end: probes see NOT_SERVING (health.enter_graceful_shutdown).
_ALWAYS_SERVED = "/grpc.health.v1.Health/"


def _refusing(handler: Any, error: McpError) -> grpc.RpcMethodHandler[Any, Any]:
    """A handler of the same kind as ``handler`` that answers ``error`` (the
    request is not decoded, a request stream not read)."""
    kind = next(k for k in _HANDLER_KINDS if getattr(handler, k) is not None)

    async def answer(request: Any, context: Any) -> Any:
        await abort(context, error)

    async def answer_stream(request: Any, context: Any) -> Any:
        await abort(context, error)
        yield  # pragma: no cover (an async generator: grpc runs it on the loop)

    behaviour = answer_stream if kind.endswith("stream") else answer
    make = getattr(grpc, f"{kind}_rpc_method_handler")
    return make(behaviour)  # type: ignore[no-any-return]


def _register(
    server: grpc.aio.Server, service: str, handlers: dict[str, grpc.RpcMethodHandler[Any, Any]]
) -> None:
    table = routes_of(server).handlers
    for name, handler in handlers.items():
        path = f"/{service}/{name}"
        if path in table:
            raise ValueError(f"{path} is registered twice")
        table[path] = handler


class DecodeChecked:
    """Stands in for the server while grpc's generated ``add_*_to_server`` registers
    health or reflection: their handlers come with grpc's own deserializers, which
    answer UNKNOWN (and log a traceback) to bytes that do not decode. Each handler
    is wrapped once, here, to answer INVALID_ARGUMENT as every mcp.v1 RPC does (a
    server interceptor would do the same but cost every call, ~5% of a Get).
    """

    def __init__(self, server: grpc.aio.Server) -> None:
        self._server = server
        self.registered: list[str] = []

    def add_generic_rpc_handlers(self, generic_handlers: Any) -> None:
        """Ignored: the same handlers arrive, by name, in ``add_registered_method_handlers``."""

    def add_registered_method_handlers(
        self, service: str, handlers: dict[str, grpc.RpcMethodHandler[Any, Any]]
    ) -> None:
        _register(self._server, service, {n: _decode_checked(h) for n, h in handlers.items()})
        self.registered.append(service)


def _decode_checked(handler: Any) -> Any:
    kind = next(k for k in _HANDLER_KINDS if getattr(handler, k) is not None)
    inner = getattr(handler, kind)
    decode = handler.request_deserializer
    requests_stream = kind.startswith("stream")

    def parse(data: bytes) -> Any:
        try:
            return decode(data) if decode is not None else data
        except Exception as e:
            return BadRequest(f"request does not decode: {e}")

    async def check(request: Any, context: Any) -> Any:
        if not requests_stream:
            if isinstance(request, BadRequest):
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, request.error)
            return request

        async def checked() -> Any:
            async for item in request:
                if isinstance(item, BadRequest):
                    await context.abort(grpc.StatusCode.INVALID_ARGUMENT, item.error)
                yield item

        return checked()

    async def streaming(request: Any, context: Any) -> Any:
        async for item in inner(await check(request, context), context):
            yield item

    async def plain(request: Any, context: Any) -> Any:
        return await inner(await check(request, context), context)

    behaviour = streaming if inspect.isasyncgenfunction(inner) else plain
    make = getattr(grpc, f"{kind}_rpc_method_handler")
    return make(behaviour, parse, handler.response_serializer)


_HANDLER_KINDS = ("unary_unary", "unary_stream", "stream_unary", "stream_stream")
