"""The console's HTTP edge: errors to HTTP, the JSON body, browser hardening.

Errors are the ``mcpctl.errors`` classes; their gRPC code picks the HTTP
status (``HTTP_STATUS``, the one HTTP mapping) and the body is one JSON
object on one line: ``{"error": kind, "message": "...", "problems": [...]}``.
Request bodies are JSON only and at most ``CONSOLE_BODY_BYTES_MAX`` bytes
(413). ``Hardening`` adds the security headers to every response and, with
auth off, serves only loopback Host names (no DNS rebinding into a
development node).
"""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mcpctl import limits
from mcpctl.errors import InvalidArgument, McpError, ResourceExhausted
from mcpctl.server.security import is_loopback_host

# gRPC status code (McpError.code) -> HTTP status: the one HTTP mapping.
HTTP_STATUS: dict[str, int] = {
    "INVALID_ARGUMENT": 400,
    "NOT_FOUND": 404,
    "FAILED_PRECONDITION": 409,
    "UNAUTHENTICATED": 401,
    "PERMISSION_DENIED": 403,
    "RESOURCE_EXHAUSTED": 429,
    "UNAVAILABLE": 503,
    "DEADLINE_EXCEEDED": 504,
    "INTERNAL": 500,
    # etcd API errors (mcpctl/server/etcd/errors.py); the console does not raise them.
    "OUT_OF_RANGE": 400,
    "UNIMPLEMENTED": 501,
    # The SDK's ClientClosed (a call on a closed client, never sent); 499 as in
    # grpc-gateway's mapping of CANCELLED.
    "CANCELLED": 499,
}
_SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (
        b"content-security-policy",
        b"default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
        b"connect-src 'self'; frame-ancestors 'none'",
    ),
]


class RequestTooLarge(ResourceExhausted):
    """A request body over ``CONSOLE_BODY_BYTES_MAX`` (HTTP 413)."""

    kind = "request_too_large"
    http_status = 413


def http_status(err: McpError) -> int:
    return int(getattr(err, "http_status", 0)) or HTTP_STATUS.get(err.code, 500)


def error_body(err: McpError) -> dict[str, Any]:
    """``{"error", "message"}`` (one line), plus the path-naming problems when there are."""
    lines = [line.strip() for line in err.message.splitlines() if line.strip()] or [err.kind]
    message = lines[0] if len(lines) == 1 else f"{lines[0].rstrip(':')}: {'; '.join(lines[1:])}"
    body: dict[str, Any] = {"error": err.kind, "message": message}
    problems = getattr(err, "problems", None)
    if problems is None and len(lines) > 1:
        problems = lines[1:]
    if problems:
        body["problems"] = list(problems)
    return body


def error_response(err: McpError) -> JSONResponse:
    headers = {"cache-control": "no-store"}
    if err.code == "UNAUTHENTICATED":
        headers["www-authenticate"] = 'Bearer realm="mcp-config"'
    retry_ms = getattr(err, "retry_after_ms", None)
    if isinstance(retry_ms, int):
        headers["retry-after"] = str(max(1, -(-retry_ms // 1000)))
    return JSONResponse(error_body(err), status_code=http_status(err), headers=headers)


async def read_json(request: Request) -> dict[str, Any]:
    """The JSON object in the body, read at most ``CONSOLE_BODY_BYTES_MAX`` bytes."""
    cap = limits.CONSOLE_BODY_BYTES_MAX
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype != "application/json":
        raise InvalidArgument("the body must be JSON (Content-Type: application/json)")
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > cap:
        raise RequestTooLarge(f"request body of {declared} bytes is over the limit of {cap}")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > cap:
            raise RequestTooLarge(f"request body is over the limit of {cap} bytes")
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise InvalidArgument("the body is not valid JSON") from None
    if not isinstance(data, dict):
        raise InvalidArgument("the body must be a JSON object")
    return data


class Hardening:
    """ASGI middleware: security headers on every response; with auth off, only
    loopback Host names (no DNS rebinding into a development node)."""

    def __init__(self, app: ASGIApp, *, loopback_only: bool) -> None:
        self.app = app
        self.loopback_only = loopback_only

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self.loopback_only and not _loopback_host(scope):
            response = error_response(
                InvalidArgument("auth is off: the console answers only to a loopback Host")
            )
            await response(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *_SECURITY_HEADERS]
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _loopback_host(scope: Scope) -> bool:
    """Is the request's Host header ``localhost`` or a literal loopback address
    (``127.0.0.1``, ``[::1]``), with an optional port? A *name* that merely looks
    like one (``127.0.0.1.nip.io``, ``127.attacker.com``) is not: its owner can
    rebind it to 127.0.0.1, and that is the attack this guard stops."""
    hosts = [v.decode("latin-1") for k, v in scope["headers"] if k == b"host"]
    if len(hosts) != 1:
        return False
    return is_loopback_host(hosts[0])


__all__ = [
    "HTTP_STATUS",
    "Hardening",
    "RequestTooLarge",
    "error_body",
    "error_response",
    "http_status",
    "read_json",
]
