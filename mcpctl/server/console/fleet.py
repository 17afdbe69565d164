"""The console's Fleet page API (docs/fleet.md, docs/console.md):

- ``GET /api/fleet``: every registered instance (at most
  ``CONSOLE_KEYS_PAGE_MAX``; ``more`` says there are others) with its load,
  the operator's state and the time left on its lease, grouped by model;
- ``POST /api/fleet/drain`` ``{"model", "id", "draining": bool}``: sets or
  clears the instance's ``draining`` operator state, compare-and-swap on the
  key's revision, as ``mcpctl drain``/``undrain`` do. Needs write on the
  operator key (a token whose role cannot: PERMISSION_DENIED, HTTP 403).

Same admission as every console call (``ConsoleApi.admit``: authenticate,
authorize the equivalent KV request, rate-limit).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from mcpctl import limits
from mcpctl._proto.mcp.v1 import kv_pb2 as kv
from mcpctl.errors import CompareFailed, InvalidArgument
from mcpctl.fleet import keys
from mcpctl.fleet.registration import check_model
from mcpctl.fleet.schema import (
    DEFAULT_OPERATOR,
    UNREADABLE_OPERATOR,
    OperatorState,
    check_id,
    decode_instance,
    decode_operator,
    encode,
)
from mcpctl.mcp.schema import SchemaError
from mcpctl.server.console.http import read_json

if TYPE_CHECKING:
    from mcpctl.server.console.api import ConsoleApi


def _json(data: Any) -> JSONResponse:
    return JSONResponse(data, headers={"cache-control": "no-store"})


class FleetApi:
    """The two handlers, over the console's ``ConsoleApi`` (node, guard, leases)."""

    def __init__(self, api: ConsoleApi) -> None:
        self.api = api

    async def _range(self, request: Request, prefix: str) -> kv.RangeResponse:
        req = kv.RangeRequest(key=prefix.encode(), prefix=True, limit=limits.CONSOLE_KEYS_PAGE_MAX)
        self.api.admit(request, "Range", req)
        return await self.api.node.range(req, self.api.timeout_s)

    async def fleet(self, request: Request) -> Response:
        found = await self._range(request, keys.INSTANCES)
        ops = await self._range(request, keys.OPERATOR)
        operator: dict[tuple[str, str], OperatorState] = {}
        for item in ops.kvs:
            key = item.key.decode("utf-8", "replace")
            if (where := keys.split(key, keys.OPERATOR)) is not None:
                try:
                    operator[where] = decode_operator(key, item.value)
                except SchemaError:
                    operator[where] = UNREADABLE_OPERATOR
        models: dict[str, list[dict[str, Any]]] = {}
        for item in found.kvs:
            key = item.key.decode("utf-8", "replace")
            where = keys.split(key)
            if where is None:
                continue
            row: dict[str, Any] = {
                "id": where[1],
                "key": key,
                "ttl": await self.api._ttl_left(item.lease),
            }
            try:
                info = decode_instance(key, item.value)
            except SchemaError as e:
                row["invalid"] = "; ".join(e.problems)
            else:
                state = operator.get(where, DEFAULT_OPERATOR)
                row.update(
                    endpoint=info.endpoint,
                    healthy=info.load.healthy,
                    in_flight=info.load.in_flight,
                    queue=info.load.queue,
                    latency_ms=info.load.latency_ms,
                    weight=info.weight if state.weight is None else state.weight,
                    enabled=state.enabled,
                    draining=state.draining,
                )
            models.setdefault(where[0], []).append(row)
        return _json(
            {
                "revision": found.header.revision,
                "more": found.more,
                "models": [{"model": m, "instances": rows} for m, rows in sorted(models.items())],
            }
        )

    async def drain(self, request: Request) -> Response:
        body = await read_json(request)
        if not isinstance(body.get("draining"), bool):
            raise InvalidArgument('body: {"model": ..., "id": ..., "draining": true|false}')
        model = check_model(str(body.get("model", "")))
        ident = check_id(str(body.get("id", "")))
        key = keys.operator_key(model, ident).encode()
        self.api.admit(request, "Put", kv.PutRequest(key=key))
        got = await self.api.node.range(kv.RangeRequest(key=key), self.api.timeout_s)
        current = decode_operator(key.decode(), got.kvs[0].value) if got.kvs else DEFAULT_OPERATOR
        new = current.model_copy(update={"draining": body["draining"]})
        mod = got.kvs[0].mod_revision if got.kvs else 0
        compare = kv.Compare(
            key=key, target=kv.Compare.MOD, result=kv.Compare.EQUAL, mod_revision=mod
        )
        op = (
            kv.RequestOp(request_delete_range=kv.DeleteRangeRequest(key=key))
            if new == DEFAULT_OPERATOR
            else kv.RequestOp(request_put=kv.PutRequest(key=key, value=encode(new)))
        )
        resp = await self.api.node.txn(
            kv.TxnRequest(compare=[compare], success=[op]), self.api.timeout_s
        )
        if not resp.succeeded:
            raise CompareFailed(f"{key.decode()} changed meanwhile; try again")
        return _json({"revision": resp.header.revision, **new.model_dump()})


__all__ = ["FleetApi"]
