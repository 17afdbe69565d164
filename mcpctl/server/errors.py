"""The one place where exceptions become gRPC statuses.

``rpc`` wraps every servicer method: it sets the request context for logs
(one context variable, read only when a line is written),
computes the time left, turns a request that failed to decode into
INVALID_ARGUMENT, maps ``McpError`` subclasses through their ``code`` (with
trailing metadata so the client rebuilds the same class), and turns anything
else into INTERNAL after logging it: a node never crashes on client input.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

import grpc
import structlog
from google.protobuf.message import DecodeError, Message

from mcpctl import limits
from mcpctl.errors import DeadlineExceeded, Internal, InvalidArgument, McpError
from mcpctl.server import auth
from mcpctl.server.logs import RequestInfo, current_request
from mcpctl.server.peers import FORWARDED_KEY

if TYPE_CHECKING:
    from mcpctl.server.stopping import InFlight

log = structlog.get_logger("mcpctl.rpc")

Req = TypeVar("Req")
Resp = TypeVar("Resp")


class BadRequest:
    """Stands in for a request whose bytes did not decode."""

    def __init__(self, error: str) -> None:
        self.error = error


def safe_deserializer(cls: type[Message]) -> Callable[[bytes], Message | BadRequest]:
    def parse(data: bytes) -> Message | BadRequest:
        try:
            return cls.FromString(data)
        except (DecodeError, ValueError) as e:
            return BadRequest(f"request does not decode as {cls.DESCRIPTOR.full_name}: {e}")

    return parse


def forwarded() -> bool:
    """True when another member forwarded the request being handled."""
    info = current_request.get()
    if not isinstance(info, _Call):
        return False
    return any(m[0] == FORWARDED_KEY for m in info.context.invocation_metadata() or ())


class _Call(RequestInfo):
    """The RPC being handled: what its log lines name, and its gRPC context
    (metadata is asked of it only by the few handlers that look)."""

    __slots__ = ("context",)

    def __init__(self, method: str, context: Any) -> None:
        super().__init__(method, context.peer)
        self.context = context


def _admit(servicer: Any, call: _Call, request: Any) -> None:
    """Decode check, then authenticate/authorize/rate-limit; sets the identity."""
    if isinstance(request, BadRequest):
        raise InvalidArgument(request.error)
    guard: auth.Guard | None = getattr(servicer, "guard", None)
    if guard is not None:
        # Without auth the metadata is not looked at: not asked of gRPC either.
        enabled = getattr(guard, "enabled", True)
        metadata = (call.context.invocation_metadata() or ()) if enabled else ()
        identity = guard.authenticate(metadata)
        # Set before admit: a PERMISSION_DENIED or RESOURCE_EXHAUSTED line
        # names who was refused.
        auth.current_identity.set(identity)
        call.identity = identity.name
        guard.admit(identity, call.method, request)


def status_code(err: McpError) -> grpc.StatusCode:
    return getattr(grpc.StatusCode, err.code, grpc.StatusCode.UNKNOWN)


async def abort(context: Any, err: McpError) -> None:
    """End the call with ``err``: its status, message and trailer (raises AbortError)."""
    await context.abort(
        status_code(err), err.message, trailing_metadata=tuple(err.metadata().items())
    )


def rpc(
    method: Callable[[Any, Req, float], Awaitable[Resp]],
) -> Callable[[Any, Req, grpc.aio.ServicerContext[Req, Resp]], Awaitable[Resp]]:
    """Wrap ``method(self, request, timeout_s)`` as a gRPC handler."""
    name = method.__name__

    @functools.wraps(method)
    async def handler(
        self: Any, request: Req, context: grpc.aio.ServicerContext[Req, Resp]
    ) -> Resp:
        started = time.monotonic()
        remaining = context.time_remaining()
        timeout_s = limits.CLIENT_TIMEOUT_S_DEFAULT if remaining is None else remaining
        call = _Call(name, context)
        token = current_request.set(call)
        code = "OK"
        # The server's calls in flight (a stopping member waits for them).
        in_flight: InFlight | None = getattr(self, "in_flight", None)
        try:
            if in_flight is not None:
                in_flight.enter_call(context)
            _admit(self, call, request)
            if timeout_s <= 0:
                raise DeadlineExceeded("deadline passed before the request started")
            return await method(self, request, timeout_s)
        except McpError as e:
            code = e.code
            if context.done():  # deadline passed or cancelled: nobody to answer
                raise asyncio.CancelledError from None
            await abort(context, e)
        except Exception:
            code = "INTERNAL"
            log.exception("request failed")
            if context.done():
                raise asyncio.CancelledError from None
            await context.abort(grpc.StatusCode.INTERNAL, "internal error (logged on the node)")
        finally:
            if in_flight is not None:
                in_flight.calls.discard(context)
            elapsed_s = time.monotonic() - started
            metrics = getattr(self, "metrics", None)
            if metrics is not None:
                metrics.observe(name, code, elapsed_s)
            if code not in ("OK", "FAILED_PRECONDITION"):
                log.info("rpc", code=code, ms=round(elapsed_s * 1000, 3))
            current_request.reset(token)
        raise AssertionError("unreachable: abort raises")

    return handler


def rpc_stream(
    method: Callable[[Any, Req], AsyncIterator[Resp]],
) -> Callable[[Any, Req, grpc.aio.ServicerContext[Req, Resp]], AsyncIterator[Resp]]:
    """Wrap ``method(self, request)`` (an async generator) as a streaming handler."""
    name = method.__name__

    @functools.wraps(method)
    async def handler(
        self: Any, request: Req, context: grpc.aio.ServicerContext[Req, Resp]
    ) -> AsyncIterator[Resp]:
        call = _Call(name, context)
        current_request.set(call)
        # Streams also publish their connection (the watch limits count per peer).
        auth.current_peer.set(call.peer)
        error: McpError | None = None
        # Open streams are ended by a stopping member (mcpctl.server.stopping).
        in_flight: InFlight | None = getattr(self, "in_flight", None)
        try:
            if in_flight is not None:
                in_flight.enter_stream(context)
            _admit(self, call, request)
            async for item in method(self, request):
                yield item
        except McpError as e:
            error = e
        except grpc.aio.AbortError:
            raise  # answered from outside (a stopping member, mcpctl.server.stopping)
        except Exception:
            log.exception("stream failed")
            error = Internal("internal error (logged on the node)")
        finally:
            if in_flight is not None:
                in_flight.streams.pop(context, None)
            if error is not None:  # while method, peer and identity are still bound
                log.info("stream ended", code=error.code, reason=error.message)
            # Not reset(token): an async generator may be closed from another context.
            current_request.set(None)
        if error is not None and not context.done():  # done: answered from outside
            await abort(context, error)

    return handler
