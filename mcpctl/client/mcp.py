"""``McpClient``: the SDK for the MCP layer, on top of a ``mcpctl.client.Client``.

``apply`` / ``export`` / ``rollback`` call ``mcp.v1.Config``; ``history``
calls ``KV.History``. Every call goes through the wrapped client's retry
loop (endpoints in turn, one deadline, bearer token, TLS): writes carry a
request id, so a retry after an unknown outcome is applied at most once.

::

    with Client(endpoints) as c:
        mcp = McpClient(c)
        plan = mcp.apply(text, dry_run=True)            # the diff at plan.read_revision
        mcp.apply(text, expected_revision=plan.read_revision)   # exactly that diff, or
                                                                # CompareFailed
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from mcpctl.client._client import Client
from mcpctl.client._results import HistoryEntry, HistoryResult
from mcpctl.client._values import Header, new_request_id
from mcpctl.mcp.plan import Change, Op

if TYPE_CHECKING:  # imported lazily at run time: `mcpctl get` should not load them
    from mcpctl._proto.mcp.v1 import config_pb2 as config
    from mcpctl._proto.mcp.v1 import config_pb2_grpc as config_grpc

_OPS: dict[int, Op] = {0: "add", 1: "change", 2: "delete"}


def change_of(ch: config.ConfigChange) -> Change:
    op = _OPS[ch.op]
    return Change(
        op,
        ch.key.decode("utf-8", "replace"),
        None if op == "add" else ch.prev_value,
        None if op == "delete" else ch.value,
    )


@dataclass(frozen=True, slots=True)
class WriteResult:
    """What an apply or rollback did (or, with ``dry_run``, would do)."""

    header: Header
    changes: list[Change]
    # The revision the changes were computed against.
    read_revision: int
    # The revision written; 0 for a dry run or when there was nothing to change.
    revision: int
    dry_run: bool


@dataclass(frozen=True, slots=True)
class ExportResult:
    header: Header
    document: str
    revision: int


class McpClient:
    """MCP-layer calls through ``client`` (which it does not own or close)."""

    def __init__(self, client: Client) -> None:
        self._client = client

    def _stub(self, endpoint: str) -> config_grpc.ConfigStub:
        from mcpctl._proto.mcp.v1 import config_pb2_grpc as config_grpc

        # A stub is a thin view of the client's cached channel.
        return config_grpc.ConfigStub(self._client._channel(endpoint))

    def apply(
        self,
        document: str,
        *,
        dry_run: bool = False,
        expected_revision: int = 0,
        request_id: str | None = None,
        timeout: float | None = None,
    ) -> WriteResult:
        """Validate ``document`` and make /mcp/ hold it, in one txn.

        ``expected_revision``: compute the diff against that revision and write
        only if nothing under /mcp/ changed since (else ``CompareFailed``).
        """
        from mcpctl._proto.mcp.v1 import config_pb2 as config

        req = config.ApplyRequest(
            document=document,
            dry_run=dry_run,
            expected_revision=expected_revision,
            # Only writes carry an id: it tells the retry loop a write may be in flight.
            request_id="" if dry_run else (request_id or new_request_id()),
        )
        resp: config.ApplyResponse = self._client._call(
            lambda e: self._stub(e).Apply, req, timeout=timeout
        )
        return _write_result(resp, dry_run)

    def export(self, *, revision: int = 0, timeout: float | None = None) -> ExportResult:
        """The config under /mcp/ (as of ``revision``; 0 = latest) as a YAML document."""
        from mcpctl._proto.mcp.v1 import config_pb2 as config

        resp: config.ExportResponse = self._client._call(
            lambda e: self._stub(e).Export, config.ExportRequest(revision=revision), timeout=timeout
        )
        return ExportResult(Header.of(resp.header), resp.document, resp.revision)

    def rollback(
        self,
        key: str,
        *,
        to_revision: int,
        prefix: bool = False,
        dry_run: bool = False,
        request_id: str | None = None,
        timeout: float | None = None,
    ) -> WriteResult:
        """Write ``key`` (every key under it, with ``prefix``) back as it was at
        ``to_revision``, as one new revision. ``Compacted`` when that is gone."""
        from mcpctl._proto.mcp.v1 import config_pb2 as config

        req = config.RollbackRequest(
            key=key.encode("utf-8"),
            prefix=prefix,
            to_revision=to_revision,
            dry_run=dry_run,
            request_id="" if dry_run else (request_id or new_request_id()),
        )
        resp: config.RollbackResponse = self._client._call(
            lambda e: self._stub(e).Rollback, req, timeout=timeout
        )
        return _write_result(resp, dry_run)

    def history(
        self, key: str, *, prefix: bool = False, limit: int = 0, timeout: float | None = None
    ) -> HistoryResult:
        """A key's (or prefix's) changes still in history, newest first."""
        return self._client.history(key, prefix=prefix, limit=limit, timeout=timeout)


def _write_result(
    resp: config.ApplyResponse | config.RollbackResponse, dry_run: bool
) -> WriteResult:
    return WriteResult(
        Header.of(resp.header),
        [change_of(ch) for ch in resp.changes],
        resp.read_revision,
        resp.revision,
        dry_run,
    )


__all__ = [
    "Change",
    "ExportResult",
    "HistoryEntry",
    "HistoryResult",
    "McpClient",
    "WriteResult",
]
