"""The operator's side of the fleet: list instances with their lease's time
left, drain and undrain (the CLI's ``instances``/``drain``/``undrain`` and the
console's Fleet page use these).

Operator state lives under ``/mcp/operator/instances/<model>/<id>`` with no
lease: a drain outlives the instance re-registering (or being restarted with
the same id). Undrain back to the defaults deletes the key.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mcpctl.errors import CompareFailed, LeaseNotFound, McpError
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
    operator_state,
)
from mcpctl.fleet.select import Instance
from mcpctl.mcp.schema import SchemaError

if TYPE_CHECKING:
    from mcpctl.client import Client

# Read-modify-write attempts when another operator writes the same key meanwhile.
_UPDATE_ATTEMPTS = 3


@dataclass(frozen=True, slots=True)
class Row:
    """One instance as ``mcpctl instances`` shows it."""

    instance: Instance | None  # None: the value is not a valid registration
    model: str
    id: str
    ttl_s: int | None  # the lease's time left (None: unknown)
    problem: str = ""

    def json(self) -> dict[str, Any]:
        i = self.instance
        base: dict[str, Any] = {"model": self.model, "id": self.id, "ttl": self.ttl_s}
        if i is None:
            return {**base, "invalid": self.problem}
        load = i.info.load
        return {
            **base,
            "endpoint": i.endpoint,
            "healthy": i.healthy,
            "in_flight": load.in_flight,
            "queue": load.queue,
            "latency_ms": load.latency_ms,
            "weight": i.weight,
            "enabled": i.operator.enabled,
            "draining": i.operator.draining,
            "lease": f"{i.lease:016x}",
            "zone": i.info.zone,
            "version": i.info.version,
        }


def list_instances(client: Client, model: str | None = None) -> list[Row]:
    """Every registered instance (of ``model``), by model and id, with the
    time left on its lease (one TimeToLive per instance)."""
    prefix = keys.model_prefix(model) if model else keys.INSTANCES
    found = client.get(prefix, prefix=True)
    ops = client.get(keys.OPERATOR + (f"{model}/" if model else ""), prefix=True)
    operator: dict[tuple[str, str], OperatorState] = {}
    for kv in ops.kvs:
        where = keys.split(kv.key, keys.OPERATOR)
        if where is not None:
            try:
                operator[where] = decode_operator(kv.key, kv.value)
            except SchemaError:
                operator[where] = UNREADABLE_OPERATOR
    rows = []
    for kv in found.kvs:
        where = keys.split(kv.key)
        if where is None or (model and where[0] != model):
            continue
        ttl = _ttl_left(client, kv.lease)
        try:
            info = decode_instance(kv.key, kv.value)
        except SchemaError as e:
            rows.append(Row(None, *where, ttl, "; ".join(e.problems)))
            continue
        state = operator.get(where, DEFAULT_OPERATOR)
        rows.append(Row(Instance(*where, info, state, kv.lease, kv.mod_revision), *where, ttl))
    return sorted(rows, key=lambda r: (r.model, r.id))


def _ttl_left(client: Client, lease: int) -> int | None:
    if not lease:
        return None
    try:
        return client.time_to_live(lease).ttl
    except LeaseNotFound:
        return 0
    except McpError:  # no leader right now: unknown, not made up
        return None


def set_operator(
    client: Client, model: str, instance_id: str, **changes: Any
) -> tuple[OperatorState, int]:
    """Change an instance's operator state (``draining=``, ``enabled=``,
    ``weight=``); the new state and the revision written."""
    key = keys.operator_key(check_model(model), check_id(instance_id))
    for _ in range(_UPDATE_ATTEMPTS):
        got = client.get(key)
        current = decode_operator(key, got.kvs[0].value) if got.kvs else DEFAULT_OPERATOR
        new = operator_state({**current.model_dump(), **changes})
        if not got.kvs and new == DEFAULT_OPERATOR:
            return new, got.header.revision
        if new == DEFAULT_OPERATOR:
            deleted = client.delete(key)
            return new, deleted.header.revision
        with contextlib.suppress(CompareFailed):
            rev = got.kvs[0].mod_revision if got.kvs else 0  # 0: must not exist
            written = client.put(key, encode(new), expected_mod_revision=rev)
            return new, written.header.revision
    raise CompareFailed(f"{key} kept changing; try again")


__all__ = ["Row", "list_instances", "set_operator"]
