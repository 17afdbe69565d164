"""The console's JSON/SSE API and static page (a Starlette app).

Every handler is the HTTP twin of a gRPC servicer method and calls the same
code: ``Guard.check`` (auth, prefix permissions, the identity's rate limit;
Config calls through ``KvEquivalentGuard``), then ``Node`` (range, history,
cluster_status) or ``mcpctl.mcp.plan`` (apply, export, rollback). Errors are
the ``mcpctl.errors`` classes; their gRPC code picks the HTTP status
(``http.HTTP_STATUS``) and the body is one JSON object on one line:
``{"error": kind, "message": "...", "problems": [...]}``. The routes are
here; the error mapping, body reading and hardening are in ``http``, the
status event stream in ``stream``.

Bounds: request bodies (``CONSOLE_BODY_BYTES_MAX``, 413), key listings and
history pages (``CONSOLE_KEYS_PAGE_MAX``, ``CONSOLE_HISTORY_PAGE_MAX``),
status streams per member (``CONSOLE_STREAMS_MAX``, 429), each call's time
(``CLIENT_TIMEOUT_S_DEFAULT``, 504).

Browser hardening: writes need ``Content-Type: application/json`` (a page on
another site cannot send that without a CORS preflight, which is never
granted), and with auth off only loopback Host names are served (so DNS
rebinding cannot reach a development node): ``http.Hardening``.
"""

from __future__ import annotations

import base64
import functools
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import structlog
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp

from mcpctl import limits, validate
from mcpctl._proto.mcp.v1 import config_pb2 as config
from mcpctl._proto.mcp.v1 import kv_pb2 as kv
from mcpctl._proto.mcp.v1 import lease_pb2 as lease_pb
from mcpctl.errors import InvalidArgument, McpError, NotFound, Unavailable
from mcpctl.fleet.keys import OPERATOR
from mcpctl.mcp import plan, schema
from mcpctl.server import auth
from mcpctl.server.console.diff import display_text, line_diff
from mcpctl.server.console.feed import Snapshot, StatusFeed, now_ms
from mcpctl.server.console.fleet import FleetApi
from mcpctl.server.console.http import Hardening, error_response, read_json
from mcpctl.server.console.stream import SseResponse
from mcpctl.server.leases import Leases
from mcpctl.server.metrics import RpcMetrics
from mcpctl.server.node import Node
from mcpctl.status_view import status_json

log = structlog.get_logger("mcpctl.server.console")

STATIC_DIR = Path(__file__).parent / "static"
_MCP_ROOT = b"/mcp/"
_FLEET_OPERATOR = OPERATOR.encode()


# -- request helpers --------------------------------------------------------------------
def _metadata(request: Request) -> list[tuple[str, Any]]:
    header = request.headers.get("authorization")
    return [(auth.AUTHORIZATION, header)] if header is not None else []


def _query_int(request: Request, name: str, default: int, lo: int, hi: int) -> int:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise InvalidArgument(f"{name}: not an integer") from None
    if not lo <= value <= hi:
        raise InvalidArgument(f"{name}: must be {lo}..{hi}")
    return value


def _query_bool(request: Request, name: str) -> bool:
    raw = request.query_params.get(name, "")
    if raw not in ("", "0", "1", "true", "false"):
        raise InvalidArgument(f"{name}: must be true or false")
    return raw in ("1", "true")


def _query_key(request: Request, name: str = "key", *, allow_empty: bool = False) -> bytes:
    raw = request.query_params.get(name)
    if raw is None or (raw == "" and not allow_empty):
        raise InvalidArgument(f"{name}: required")
    return raw.encode("utf-8")


def _field(data: dict[str, Any], name: str, kind: type, default: Any) -> Any:
    value = data.get(name, default)
    # bool is an int in Python: never accept one for the other.
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise InvalidArgument(f"{name}: expected {kind.__name__}")
    return value


def _text(value: bytes) -> dict[str, str]:
    try:
        return {"value": value.decode("utf-8")}
    except UnicodeDecodeError:
        return {"value": base64.b64encode(value).decode(), "value_encoding": "base64"}


# -- the app ------------------------------------------------------------------------------
Handler = Callable[[Request], Awaitable[Response]]


class ConsoleApi:
    """The handlers, bound to one node, its guard and its status feed."""

    def __init__(
        self, node: Node, guard: auth.Guard, feed: StatusFeed, leases: Leases | None = None
    ) -> None:
        self.node = node
        self.leases = leases
        self.guard = guard
        self.config_guard = auth.KvEquivalentGuard(guard)
        self.feed = feed
        self.timeout_s = limits.CLIENT_TIMEOUT_S_DEFAULT

    def admit(self, request: Request, method: str, req: Any, *, config_call: bool = False) -> None:
        """Authenticate, authorize and rate-limit, exactly as the gRPC servicers do."""
        guard: Any = self.config_guard if config_call else self.guard
        identity = guard.authenticate(_metadata(request))
        # Bound before admit: a refusal's log line names who was refused.
        auth.current_identity.set(identity)
        client = request.client
        auth.current_peer.set(f"http:{client.host}:{client.port}" if client else "http")
        structlog.contextvars.bind_contextvars(identity=identity.name)
        guard.admit(identity, method, req)

    # -- cluster --------------------------------------------------------------------
    async def whoami(self, request: Request) -> Response:
        identity = self.guard.authenticate(_metadata(request))
        self.guard.limit(identity)
        role = identity.role
        return _json(
            {
                "identity": identity.name,
                "role": role.name,
                "auth": self.guard.enabled,
                "member": self.node.identity.member_name,
                "can_write_mcp": role.allows(_MCP_ROOT, True, auth.Access.WRITE),
                "can_drain": role.allows(_FLEET_OPERATOR, True, auth.Access.WRITE),
            }
        )

    async def status(self, request: Request) -> Response:
        self.admit(request, "ClusterStatus", None)
        return _json(await snapshot(self.node))

    async def events(self, request: Request) -> Response:
        self.admit(request, "ClusterStatus", None)
        stream = self.feed.open()
        return SseResponse(self.feed, stream)

    # -- keys -------------------------------------------------------------------------
    async def keys(self, request: Request) -> Response:
        prefix = _query_key(request, "prefix", allow_empty=True)
        limit = _query_int(
            request, "limit", limits.CONSOLE_KEYS_PAGE_MAX, 1, limits.CONSOLE_KEYS_PAGE_MAX
        )
        req = kv.RangeRequest(key=prefix, prefix=True, keys_only=True, limit=limit)
        self.admit(request, "Range", req)
        resp = await self.node.range(req, self.timeout_s)
        return _json(
            {
                "revision": resp.header.revision,
                "more": resp.more,
                "keys": [
                    {
                        "key": item.key.decode("utf-8", "replace"),
                        "create_revision": item.create_revision,
                        "mod_revision": item.mod_revision,
                        "version": item.version,
                    }
                    for item in resp.kvs
                ],
            }
        )

    async def value(self, request: Request) -> Response:
        key = _query_key(request)
        revision = _query_int(request, "rev", 0, 0, 2**62)
        req = kv.RangeRequest(key=key, revision=revision)
        self.admit(request, "Range", req)
        resp = await self.node.range(req, self.timeout_s)
        if not resp.kvs:
            at = f" at revision {revision}" if revision else ""
            raise NotFound(f"no key {key.decode('utf-8', 'replace')!r}{at}")
        item = resp.kvs[0]
        return _json(
            {
                "key": item.key.decode("utf-8", "replace"),
                **_text(item.value),
                "create_revision": item.create_revision,
                "mod_revision": item.mod_revision,
                "version": item.version,
                "revision": resp.header.revision,
                "lease": f"{item.lease:x}" if item.lease else None,
                "lease_ttl_s": await self._ttl_left(item.lease) if not revision else None,
            }
        )

    async def _ttl_left(self, lease_id: int) -> int | None:
        """Seconds the key's lease has left on the leader's clock; None when unknown
        (no lease, it just ended, or no leader's clock is running: never a made-up number)."""
        if not lease_id or self.leases is None:
            return None
        req = lease_pb.LeaseTimeToLiveRequest(id=lease_id)
        try:
            resp = await self.leases.time_to_live(req, self.timeout_s, forwarded=False)
        except (NotFound, Unavailable):
            return None
        return int(resp.ttl)

    async def diff(self, request: Request) -> Response:
        """The line diff of a key's values at revisions ``a`` and ``b`` (absent = empty)."""
        key = _query_key(request)
        revisions = [_query_int(request, name, 0, 1, 2**62) for name in ("a", "b")]
        if 0 in revisions:
            raise InvalidArgument("a, b: both revisions are required")
        self.admit(request, "Range", kv.RangeRequest(key=key))
        texts = []
        for revision in revisions:
            resp = await self.node.range(
                kv.RangeRequest(key=key, revision=revision), self.timeout_s
            )
            texts.append(display_text(resp.kvs[0].value) if resp.kvs else "")
        ops = line_diff(texts[0], texts[1])
        return _json(
            {
                "key": key.decode("utf-8", "replace"),
                "a": revisions[0],
                "b": revisions[1],
                "lines": [[op, line] for op, line in ops],
                "added": sum(op == "+" for op, _ in ops),
                "removed": sum(op == "-" for op, _ in ops),
            }
        )

    async def history(self, request: Request) -> Response:
        key = _query_key(request)
        limit = _query_int(
            request,
            "limit",
            limits.CONSOLE_HISTORY_PAGE_DEFAULT,
            1,
            limits.CONSOLE_HISTORY_PAGE_MAX,
        )
        req = kv.HistoryRequest(key=key, prefix=_query_bool(request, "prefix"), limit=limit)
        self.admit(request, "History", req)
        resp = await self.node.history(req, self.timeout_s)
        return _json(
            {
                "revision": resp.header.revision,
                "compact_revision": resp.compact_revision,
                "more": resp.more,
                "entries": [
                    {
                        "revision": e.revision,
                        "ts_ms": e.ts_ms,
                        "identity": e.identity,
                        "type": kv.Event.EventType.Name(e.event.type),
                        "key": e.event.kv.key.decode("utf-8", "replace"),
                        "version": e.event.kv.version,
                        "value_bytes": len(e.event.kv.value),
                    }
                    for e in resp.entries
                ],
            }
        )

    # -- the MCP document ---------------------------------------------------------------
    async def mcp_view(self, request: Request) -> Response:
        self.admit(request, "Export", config.ExportRequest(), config_call=True)
        document, revision = await plan.export(self.node, 0, self.timeout_s)
        doc = schema.parse_document(document)
        return _json({"revision": revision, "document": document, "config": schema.to_data(doc)})

    async def mcp_apply(self, request: Request) -> Response:
        data = await read_json(request)
        document = _field(data, "document", str, None)
        dry_run = _field(data, "dry_run", bool, True)
        expected = _field(data, "expected_revision", int, 0)
        if not dry_run and expected <= 0:
            raise InvalidArgument(
                "expected_revision: required for a real apply (the revision the dry run showed)"
            )
        self.admit(request, "Apply", config.ApplyRequest(dry_run=dry_run), config_call=True)
        out = await plan.apply(
            self.node,
            document,
            dry_run=dry_run,
            expected_revision=expected,
            request_id=uuid.uuid4().hex,
            timeout_s=self.timeout_s,
        )
        return _json(outcome_json(out, dry_run))

    async def rollback(self, request: Request) -> Response:
        data = await read_json(request)
        key = _field(data, "key", str, None).encode("utf-8")
        validate.check_key(key, field="key")
        prefix = _field(data, "prefix", bool, False)
        to_revision = _field(data, "to_revision", int, None)
        dry_run = _field(data, "dry_run", bool, True)
        req = config.RollbackRequest(key=key, prefix=prefix, dry_run=dry_run)
        self.admit(request, "Rollback", req, config_call=True)
        out = await plan.rollback(
            self.node,
            key,
            prefix=prefix,
            to_revision=to_revision,
            dry_run=dry_run,
            request_id=uuid.uuid4().hex,
            timeout_s=self.timeout_s,
        )
        return _json(outcome_json(out, dry_run))


def outcome_json(out: Any, dry_run: bool) -> dict[str, Any]:
    """An apply/rollback outcome: the changes with their field-level diff."""

    def value(v: bytes | None) -> str | None:
        return None if v is None else v.decode("utf-8", "replace")

    return {
        "dry_run": dry_run,
        "read_revision": out.read_revision,
        "revision": out.revision,
        "changes": [
            {
                "op": ch.op,
                "key": ch.key,
                "prev_value": value(ch.prev_value),
                "value": value(ch.value),
                "fields": [
                    {"path": path, "old": old, "new": new}
                    for path, old, new in plan.field_changes(ch)
                ],
            }
            for ch in out.changes
        ],
    }


async def snapshot(node: Node) -> Snapshot:
    """The cluster status as ``mcpctl status -w json`` shows it, plus the time."""
    resp = await node.cluster_status()
    return {
        "ts_ms": now_ms(),
        "member": node.identity.member_name,
        "leader": resp.leader,
        "revision": resp.header.revision,
        "members": [status_json(m, resp.leader) for m in resp.members],
    }


def _json(data: Any, status_code: int = 200) -> JSONResponse:
    return JSONResponse(data, status_code=status_code, headers={"cache-control": "no-store"})


def _endpoint(name: str, fn: Handler, metrics: RpcMetrics | None = None) -> Handler:
    """Bind log context, map errors to HTTP (never a traceback to the client), and
    observe the latency in the node's RPC histogram as method ``console.<name>``."""
    method = f"console.{name}"

    @functools.wraps(fn)
    async def handler(request: Request) -> Response:
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(method=method)
        started = time.monotonic()
        code = "OK"
        try:
            return await fn(request)
        except McpError as e:
            code = e.code
            if e.code not in ("FAILED_PRECONDITION", "INVALID_ARGUMENT", "NOT_FOUND"):
                log.info("console request failed", code=e.code, reason=e.message.splitlines()[0])
            return error_response(e)
        except Exception:
            code = "INTERNAL"
            log.exception("console request failed")
            return _json(
                {"error": "internal", "message": "internal error (logged on the node)"}, 500
            )
        finally:
            if metrics is not None:
                # A status stream counts until its headers are sent, not its whole life.
                metrics.observe(method, code, time.monotonic() - started)

    return handler


def build_app(
    node: Node,
    guard: auth.Guard,
    feed: StatusFeed,
    metrics: RpcMetrics | None = None,
    leases: Leases | None = None,
) -> ASGIApp:
    api = ConsoleApi(node, guard, feed, leases)
    fleet = FleetApi(api)
    get, post = ["GET"], ["POST"]

    def endpoint(name: str, fn: Handler) -> Handler:
        return _endpoint(name, fn, metrics)

    routes = [
        Route("/", _index, methods=get),
        Route("/api/whoami", endpoint("whoami", api.whoami), methods=get),
        Route("/api/status", endpoint("status", api.status), methods=get),
        Route("/api/events", endpoint("events", api.events), methods=get),
        Route("/api/keys", endpoint("keys", api.keys), methods=get),
        Route("/api/kv", endpoint("kv", api.value), methods=get),
        Route("/api/history", endpoint("history", api.history), methods=get),
        Route("/api/diff", endpoint("diff", api.diff), methods=get),
        Route("/api/mcp", endpoint("mcp", api.mcp_view), methods=get),
        Route("/api/mcp/apply", endpoint("apply", api.mcp_apply), methods=post),
        Route("/api/rollback", endpoint("rollback", api.rollback), methods=post),
        Route("/api/fleet", endpoint("fleet", fleet.fleet), methods=get),
        Route("/api/fleet/drain", endpoint("fleet_drain", fleet.drain), methods=post),
        Mount("/static", StaticFiles(directory=STATIC_DIR), name="static"),
    ]
    app = Starlette(routes=routes, exception_handlers={HTTPException: _http_error})
    return Hardening(app, loopback_only=not guard.enabled)


async def _http_error(request: Request, exc: Exception) -> Response:
    """Starlette's own 404/405 as the same one-line JSON."""
    assert isinstance(exc, HTTPException)
    return _json({"error": "http", "message": exc.detail}, exc.status_code)


async def _index(request: Request) -> Response:
    return FileResponse(STATIC_DIR / "index.html", headers={"cache-control": "no-store"})


__all__ = ["ConsoleApi", "build_app", "snapshot"]
