"""structlog set-up: JSON lines (or console under ``dev``), node name on every line.

Standard-library loggers (PySyncObj, grpc) go through the same processors, so
every line of a node's output has one shape. Request context (method, peer,
identity) rides on one ``RequestInfo`` per RPC in a context variable, set by
the RPC layer and read only when a line is written (``request_fields``): a
request that logs nothing pays one ``ContextVar.set``, not structlog's binds
(which copy the context) nor a ``peer()`` call.
"""

from __future__ import annotations

import asyncio
import contextvars
import datetime
import json
import logging
import sys
from collections.abc import Callable
from typing import Any, Literal

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger


class RequestInfo:
    """The RPC being handled, as its log lines name it: ``method``, ``peer``
    (asked of gRPC on first use), ``identity`` (once authenticated)."""

    __slots__ = ("_peer", "_peer_of", "identity", "method")

    def __init__(self, method: str, peer_of: Callable[[], str]) -> None:
        self.method = method
        self._peer_of: Callable[[], str] | None = peer_of
        self._peer = ""
        self.identity: str | None = None

    @property
    def peer(self) -> str:
        if self._peer_of is not None:
            peer_of, self._peer_of = self._peer_of, None
            try:
                self._peer = peer_of()
            except Exception:  # the call is gone: log without its peer
                self._peer = ""
        return self._peer

    def fields(self) -> dict[str, str]:
        out = {"method": self.method, "peer": self.peer}
        if self.identity is not None:
            out["identity"] = self.identity
        return out


current_request: contextvars.ContextVar[RequestInfo | None] = contextvars.ContextVar(
    "mcp_request", default=None
)


def request_fields() -> dict[str, Any]:
    """The request context of a line: structlog's bound variables, then the RPC's."""
    fields = structlog.contextvars.get_contextvars()
    info = current_request.get()
    if info is not None:
        for k, v in info.fields().items():
            fields.setdefault(k, v)
    return fields


def merge_request(_: WrappedLogger, __: str, event: EventDict) -> EventDict:
    """structlog processor: the RPC's method, peer and identity on its lines."""
    info = current_request.get()
    if info is not None:
        for k, v in info.fields().items():
            event.setdefault(k, v)
    return event


def configure(
    level: str = "info",
    fmt: Literal["json", "console"] = "json",
    node: str | None = None,
) -> None:
    def add_node(_: WrappedLogger, __: str, event: EventDict) -> EventDict:
        if node is not None:
            event.setdefault("node", node)
        return event

    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        merge_request,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        add_node,
    ]
    renderer: Processor = (
        structlog.processors.JSONRenderer()
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=sys.stdout.isatty())
    )
    numeric = getattr(logging, level.upper())
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[*shared, structlog.processors.format_exc_info],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                renderer,
            ],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(numeric)
    audit.configure(handler if fmt == "json" and numeric <= logging.INFO else None, node)


class AuditLog:
    """The ``mcpctl.audit`` logger: one line per applied write.

    With JSON logs the lines skip structlog's processor chain (it cost ~12% of
    a leader's main thread at put c64): each line is the same JSON object the
    chain would render (timestamp, level, logger, node, the request's bound
    context, then the fields), and the lines of one event-loop turn are
    written with one write and one flush. Otherwise (console logs, tests
    without ``configure``) it is a plain structlog logger.
    """

    def __init__(self) -> None:
        self._logger = structlog.get_logger("mcpctl.audit")
        self._handler: logging.StreamHandler[Any] | None = None
        self._node: str | None = None
        self._pending: list[dict[str, Any]] = []

    def configure(self, handler: logging.StreamHandler[Any] | None, node: str | None) -> None:
        self._flush()
        self._handler, self._node = handler, node

    def info(self, event: str, **fields: Any) -> None:
        if self._handler is None:
            self._logger.info(event, **fields)
            return
        line: dict[str, Any] = {"timestamp": None, "level": "info", "logger": "mcpctl.audit"}
        if self._node is not None:
            line["node"] = self._node
        line.update(request_fields())
        line["event"] = event
        line.update(fields)
        self._pending.append(line)
        if len(self._pending) == 1:
            try:
                asyncio.get_running_loop().call_soon(self._flush)
            except RuntimeError:  # not on an event loop: write now
                self._flush()

    def _flush(self) -> None:
        if not self._pending or self._handler is None:
            self._pending.clear()
            return
        now = datetime.datetime.now(tz=datetime.UTC).isoformat().replace("+00:00", "Z")
        for line in self._pending:
            line["timestamp"] = now
        text = "".join(json.dumps(line, default=repr) + "\n" for line in self._pending)
        self._pending.clear()
        handler = self._handler
        with handler.lock or _NO_LOCK:
            handler.stream.write(text)
            handler.stream.flush()


class _NoLock:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


_NO_LOCK = _NoLock()
audit = AuditLog()
