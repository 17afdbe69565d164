"""``InstancePicker``: where to send a request for a model, from the live fleet.

One ``ConfigWatcher`` on ``/mcp/`` keeps a consistent copy of the model's
instances, the operator state and the static MCP config (for the fallback
rule), updated incrementally: a load report costs one JSON parse. ``pick()``
is thread-safe and does no I/O; the rules (operator state, health with the
protect threshold, weights, policies, the fallback) are in ``select``.

Values that are not valid registrations are skipped and logged once per
revision, naming the key and the field (``invalid`` lists them).
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable, Collection
from typing import TYPE_CHECKING

from mcpctl import limits
from mcpctl.client.watcher import Change, ConfigWatcher
from mcpctl.errors import NotFound, Unavailable
from mcpctl.fleet import keys
from mcpctl.fleet.schema import (
    DEFAULT_OPERATOR,
    UNREADABLE_OPERATOR,
    InstanceInfo,
    OperatorState,
    decode_instance,
    decode_operator,
)
from mcpctl.fleet.select import POLICIES, Instance, Policy, Target, candidates, choose
from mcpctl.fleet.select import fallback_target as _fallback_target
from mcpctl.mcp import layout
from mcpctl.mcp.schema import McpConfig, SchemaError

if TYPE_CHECKING:
    from mcpctl.client import Client, KeyValue

log = logging.getLogger("mcpctl.fleet.picker")

OnChange = Callable[[list[Instance]], None]


class NoInstance(Unavailable):
    """No live instance and no fallback for the model."""


class InstancePicker:
    """Picks an endpoint for ``model`` (see the module docstring)."""

    def __init__(
        self,
        client: Client,
        model: str,
        *,
        policy: Policy = "weighted",
        protect_threshold: float = limits.FLEET_PROTECT_THRESHOLD_DEFAULT,
        fallback: bool = True,
        on_change: OnChange | None = None,
        rng: random.Random | None = None,
    ) -> None:
        if policy not in POLICIES:
            raise ValueError(f"policy: one of {', '.join(POLICIES)}, not {policy!r}")
        if not 0.0 <= protect_threshold <= 1.0:
            raise ValueError("protect_threshold: a fraction between 0 and 1")
        self.model = model
        self.policy: Policy = policy
        self.protect_threshold = protect_threshold
        self._fallback = fallback
        self._on_change = on_change
        self._rng = rng or random.Random()
        self._lock = threading.Lock()
        self._infos: dict[tuple[str, str], tuple[InstanceInfo, int, int]] = {}
        self._operator: dict[tuple[str, str], OperatorState] = {}
        # model -> its instances as last built (dropped when one of them changes).
        self._pools: dict[str, list[Instance]] = {}
        self._config: McpConfig | None = None
        self._config_dirty = True
        self.invalid: dict[str, str] = {}
        self._watcher = ConfigWatcher(
            client, layout.ROOT, on_change=self._changed, initial_changes=True
        )

    # -- lifecycle ---------------------------------------------------------------
    def start(self) -> InstancePicker:
        """Read the fleet (raises when the cluster cannot answer), then follow it."""
        self._watcher.start()
        return self

    def stop(self) -> None:
        self._watcher.stop()

    def __enter__(self) -> InstancePicker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def revision(self) -> int:
        return self._watcher.revision

    def wait_for_revision(self, revision: int, timeout_s: float) -> bool:
        return self._watcher.wait_for_revision(revision, timeout_s)

    # -- reading -------------------------------------------------------------------
    def instances(self, model: str | None = None) -> list[Instance]:
        """Every registered instance of ``model`` (default: the picker's), by id.
        Built once per change of that model (a pick does not rebuild it)."""
        want = self.model if model is None else model
        with self._lock:
            cached = self._pools.get(want)
            if cached is None:
                cached = [
                    Instance(m, i, info, self._operator.get((m, i), DEFAULT_OPERATOR), lease, rev)
                    for (m, i), (info, lease, rev) in sorted(self._infos.items())
                    if m == want
                ]
                self._pools[want] = cached
            return list(cached)

    def config(self) -> McpConfig | None:
        """The static MCP config last read (None: none, or not valid)."""
        with self._lock:
            if self._config_dirty:
                self._config = self._decode_config()
                self._config_dirty = False
            return self._config

    def pick_target(self, exclude: Collection[str] = ()) -> Target | None:
        """Where a request goes now (an instance or a static endpoint), or None.
        ``exclude``: endpoints not to choose (e.g. the one that just failed)."""

        def live(model: str) -> Instance | None:
            pool = candidates(self.instances(model), self.protect_threshold)
            pool = [i for i in pool if i.endpoint not in exclude]
            if not pool:
                return None
            with self._lock:
                return choose(pool, self.policy, self._rng)

        if not self._fallback:
            chosen = live(self.model)
            return None if chosen is None else Target(chosen.endpoint, self.model, chosen)
        target = _fallback_target(self.model, self.config(), live)
        if target is not None and target.instance is None and target.endpoint in exclude:
            return None
        return target

    def pick(self, exclude: Collection[str] = ()) -> str:
        """An endpoint for the next request; ``NoInstance`` when there is none."""
        target = self.pick_target(exclude)
        if target is None:
            raise NoInstance(f"no live instance of {self.model!r} and no fallback")
        return target.endpoint

    # -- the watch -------------------------------------------------------------------
    def _decode_config(self) -> McpConfig | None:
        snapshot = self._watcher.snapshot()
        try:
            return layout.decode({k: kv.value for k, kv in snapshot.items()})
        except (SchemaError, NotFound):
            return None

    def _changed(self, changes: list[Change]) -> None:
        fleet = False
        snapshot: dict[str, KeyValue] | None = None
        with self._lock:
            for ch in changes:
                if not keys.is_fleet_key(ch.key):
                    self._config_dirty = True
                    continue
                if snapshot is None:
                    snapshot = self._watcher.snapshot()
                fleet = self._apply(ch, snapshot.get(ch.key)) or fleet
        if fleet and self._on_change is not None:
            try:
                self._on_change(self.instances())
            except Exception:
                log.exception("on_change callback failed")

    def _apply(self, ch: Change, kv: KeyValue | None) -> bool:
        """One change to the fleet copy; True when it concerns this picker's model."""
        where = keys.split(ch.key, keys.INSTANCES) or keys.split(ch.key, keys.OPERATOR)
        if where is not None:
            self._pools.pop(where[0], None)
        if (where := keys.split(ch.key, keys.INSTANCES)) is not None:
            if ch.value is None or kv is None:
                self._infos.pop(where, None)
            else:
                try:
                    info = decode_instance(ch.key, ch.value)
                except SchemaError as e:
                    self._skip(ch.key, e.message)
                    self._infos.pop(where, None)
                    return where[0] == self.model
                if (
                    len(self._infos) >= limits.FLEET_PICKER_INSTANCES_MAX
                    and where not in self._infos
                ):
                    self._skip(ch.key, "over FLEET_PICKER_INSTANCES_MAX")
                    return False
                self._infos[where] = (info, kv.lease, kv.mod_revision)
                self.invalid.pop(ch.key, None)
        elif (where := keys.split(ch.key, keys.OPERATOR)) is not None:
            if ch.value is None:
                self._operator.pop(where, None)
            else:
                try:
                    self._operator[where] = decode_operator(ch.key, ch.value)
                except SchemaError as e:  # an unreadable drain is still a drain
                    self._skip(ch.key, e.message)
                    self._operator[where] = UNREADABLE_OPERATOR
        else:
            return False
        return where[0] == self.model

    def _skip(self, key: str, problem: str) -> None:
        if self.invalid.get(key) != problem:
            log.warning("fleet: %s skipped: %s", key, problem)
        self.invalid[key] = problem


__all__ = ["InstancePicker", "NoInstance"]
