"""The live fleet as a template sees it (``reads.instances``, docs/render.md).

Decoding and the rules are the fleet's own (``mcpctl.fleet``): registrations
under ``/mcp/instances/<model>/<id>`` through ``schema.decode_instance``,
operator state under ``/mcp/operator/instances/<model>/<id>`` through
``schema.decode_operator`` (one that cannot be read counts as a drain, as for
pickers), each instance a ``select.Instance`` (effective weight, ``available``)
and ``serving`` what ``select.candidates`` would pick from. Nothing here
re-states a rule; it only turns instances into plain dicts for Jinja.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any
from urllib.parse import urlsplit

from mcpctl.client import KeyValue
from mcpctl.fleet import keys
from mcpctl.fleet.schema import (
    DEFAULT_OPERATOR,
    UNREADABLE_OPERATOR,
    OperatorState,
    decode_instance,
    decode_operator,
)
from mcpctl.fleet.select import Instance, candidates
from mcpctl.mcp.schema import SchemaError

_DEFAULT_PORTS = {"http": 80, "https": 443}


def decode(kvs: Iterable[KeyValue]) -> tuple[list[Instance], dict[str, str]]:
    """The instances among ``kvs`` (other keys are ignored), by model and id,
    and the keys skipped -> why (a value that is not a valid registration, or
    a key that is not ``<model>/<id>``). An unreadable operator state is kept
    as a drain and also listed."""
    regs: dict[tuple[str, str], KeyValue] = {}
    operator: dict[tuple[str, str], OperatorState] = {}
    invalid: dict[str, str] = {}
    for kv in kvs:
        if kv.key.startswith(keys.OPERATOR):
            where = keys.split(kv.key, keys.OPERATOR)
            if where is None:
                invalid[kv.key] = "not /mcp/operator/instances/<model>/<id>"
                continue
            try:
                operator[where] = decode_operator(kv.key, kv.value)
            except SchemaError as e:
                invalid[kv.key] = f"{'; '.join(e.problems)} (taken as draining)"
                operator[where] = UNREADABLE_OPERATOR
        elif kv.key.startswith(keys.INSTANCES):
            where = keys.split(kv.key)
            if where is None:
                invalid[kv.key] = "not /mcp/instances/<model>/<id>"
            else:
                regs[where] = kv
    found = []
    for where, kv in sorted(regs.items()):
        try:
            info = decode_instance(kv.key, kv.value)
        except SchemaError as e:
            invalid[kv.key] = "; ".join(e.problems)
            continue
        state = operator.get(where, DEFAULT_OPERATOR)
        found.append(Instance(*where, info, state, kv.lease, kv.mod_revision))
    return found, invalid


def host_port(endpoint: str) -> tuple[str, int]:
    """Host and port of an ``http(s)://`` endpoint (the scheme's port when the
    URL gives none); an IPv6 host without its brackets."""
    url = urlsplit(endpoint)
    port = url.port or _DEFAULT_PORTS.get(url.scheme.lower(), 0)
    return url.hostname or "", port


def as_dict(i: Instance) -> dict[str, Any]:
    """What a template sees of one instance (docs/render.md, "instances")."""
    host, port = host_port(i.endpoint)
    info, load = i.info, i.info.load
    return {
        "id": i.id,
        "model": i.model,
        "key": keys.instance_key(i.model, i.id),
        "endpoint": i.endpoint,
        "host": host,
        "port": port,
        # host:port as nginx, Envoy and HAProxy take it (an IPv6 host in brackets).
        "address": f"[{host}]:{port}" if ":" in host else f"{host}:{port}",
        "weight": i.weight,  # effective: the operator's override, else the instance's
        "enabled": i.operator.enabled,
        "draining": i.operator.draining,
        "available": i.available,
        "healthy": i.healthy,
        "in_flight": load.in_flight,
        "queue": load.queue,
        "latency_ms": load.latency_ms,
        "capacity": info.capacity,
        "zone": info.zone,
        "tags": dict(info.tags),
        "version": info.version,
        "started_at": info.started_at,
        "lease": f"{i.lease:016x}",
    }


def by_model(
    instances: Sequence[Instance], protect_threshold: float
) -> tuple[dict[str, list[dict[str, Any]]], dict[str, list[dict[str, Any]]]]:
    """``instances`` and ``serving`` of the template context: model -> every
    registered instance, and model -> the ones a picker would choose from
    (``select.candidates``; maybe empty), both by id."""
    grouped: dict[str, list[Instance]] = {}
    for i in instances:
        grouped.setdefault(i.model, []).append(i)
    every: dict[str, list[dict[str, Any]]] = {}
    serving: dict[str, list[dict[str, Any]]] = {}
    for model, members in sorted(grouped.items()):
        members.sort(key=lambda i: i.id)
        dicts = {i.id: as_dict(i) for i in members}
        every[model] = list(dicts.values())
        serving[model] = [dicts[i.id] for i in candidates(members, protect_threshold)]
    return every, serving


__all__ = ["as_dict", "by_model", "decode", "host_port"]
