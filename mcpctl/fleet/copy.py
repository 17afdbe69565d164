"""``FleetCopy``: the fleet as a picker knows it, built from a watched copy of
``/mcp/`` one change at a time (a load report costs one JSON parse). No I/O,
no locks: the sync ``InstancePicker`` holds its lock around it, the asyncio one
runs it on its loop.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING

from mcpctl import limits
from mcpctl.errors import NotFound
from mcpctl.fleet import keys
from mcpctl.fleet.schema import (
    DEFAULT_OPERATOR,
    UNREADABLE_OPERATOR,
    InstanceInfo,
    OperatorState,
    decode_instance,
    decode_operator,
)
from mcpctl.fleet.select import Instance
from mcpctl.mcp import layout
from mcpctl.mcp.schema import McpConfig, SchemaError

if TYPE_CHECKING:
    from mcpctl.client import KeyValue
    from mcpctl.client.watcher import Change

log = logging.getLogger("mcpctl.fleet.picker")


class FleetCopy:
    """Instances and operator state by (model, id), the instance list per model
    (built once per change of that model) and the values skipped (``invalid``)."""

    def __init__(self) -> None:
        self.infos: dict[tuple[str, str], tuple[InstanceInfo, int, int]] = {}
        self.operator: dict[tuple[str, str], OperatorState] = {}
        # model -> its instances as last built (dropped when one of them changes).
        self.pools: dict[str, list[Instance]] = {}
        self.invalid: dict[str, str] = {}
        self.config_dirty = True

    def instances(self, model: str) -> list[Instance]:
        cached = self.pools.get(model)
        if cached is None:
            cached = [
                Instance(m, i, info, self.operator.get((m, i), DEFAULT_OPERATOR), lease, rev)
                for (m, i), (info, lease, rev) in sorted(self.infos.items())
                if m == model
            ]
            self.pools[model] = cached
        return list(cached)

    def apply(self, ch: Change, kv: KeyValue | None) -> str | None:
        """One change; the model it concerns (None: not a fleet key). A change
        to any other key under /mcp/ marks the static config for a new decode."""
        if not keys.is_fleet_key(ch.key):
            self.config_dirty = True
            return None
        if (where := keys.split(ch.key, keys.INSTANCES)) is not None:
            self.pools.pop(where[0], None)
            self._instance(ch, kv, where)
        elif (where := keys.split(ch.key, keys.OPERATOR)) is not None:
            self.pools.pop(where[0], None)
            if ch.value is None:
                self.operator.pop(where, None)
            else:
                try:
                    self.operator[where] = decode_operator(ch.key, ch.value)
                except SchemaError as e:  # an unreadable drain is still a drain
                    self.skip(ch.key, e.message)
                    self.operator[where] = UNREADABLE_OPERATOR
        else:
            return None
        return where[0]

    def _instance(self, ch: Change, kv: KeyValue | None, where: tuple[str, str]) -> None:
        if ch.value is None or kv is None:
            self.infos.pop(where, None)
            return
        try:
            info = decode_instance(ch.key, ch.value)
        except SchemaError as e:
            self.skip(ch.key, e.message)
            self.infos.pop(where, None)
            return
        if len(self.infos) >= limits.FLEET_PICKER_INSTANCES_MAX and where not in self.infos:
            self.skip(ch.key, "over FLEET_PICKER_INSTANCES_MAX")
            return
        self.infos[where] = (info, kv.lease, kv.mod_revision)
        self.invalid.pop(ch.key, None)

    def skip(self, key: str, problem: str) -> None:
        if self.invalid.get(key) != problem:
            log.warning("fleet: %s skipped: %s", key, problem)
        self.invalid[key] = problem


def decode_config(snapshot: Mapping[str, KeyValue]) -> McpConfig | None:
    """The static MCP config in a copy of /mcp/ (None: none, or not valid)."""
    try:
        return layout.decode({k: kv.value for k, kv in snapshot.items()})
    except (SchemaError, NotFound):
        return None


__all__ = ["FleetCopy", "decode_config"]
