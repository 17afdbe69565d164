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
from mcpctl.errors import Unavailable
from mcpctl.fleet import keys
from mcpctl.fleet.copy import FleetCopy, decode_config
from mcpctl.fleet.select import (
    POLICIES,
    Instance,
    Policy,
    Target,
    candidates,
    choose,
    fallback_target,
)
from mcpctl.mcp import layout
from mcpctl.mcp.schema import McpConfig

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
        check_options(policy, protect_threshold)
        self.model = model
        self.policy: Policy = policy
        self.protect_threshold = protect_threshold
        self._fallback = fallback
        self._on_change = on_change
        self._rng = rng or random.Random()
        self._lock = threading.Lock()
        self._copy = FleetCopy()
        self._config: McpConfig | None = None
        self.invalid = self._copy.invalid
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
        with self._lock:
            return self._copy.instances(self.model if model is None else model)

    def config(self) -> McpConfig | None:
        """The static MCP config last read (None: none, or not valid)."""
        with self._lock:
            if self._copy.config_dirty:
                self._config = decode_config(self._watcher.snapshot())
                self._copy.config_dirty = False
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

        return target_for(self.model, self._fallback, self.config, live, exclude)

    def pick(self, exclude: Collection[str] = ()) -> str:
        """An endpoint for the next request; ``NoInstance`` when there is none."""
        target = self.pick_target(exclude)
        if target is None:
            raise NoInstance(f"no live instance of {self.model!r} and no fallback")
        return target.endpoint

    # -- the watch -------------------------------------------------------------------
    def _changed(self, changes: list[Change]) -> None:
        mine = False
        snapshot: dict[str, KeyValue] | None = None
        with self._lock:
            for ch in changes:
                if snapshot is None and keys.is_fleet_key(ch.key):
                    snapshot = self._watcher.snapshot()
                kv = snapshot.get(ch.key) if snapshot is not None else None
                mine = self._apply(ch, kv) or mine
        if mine and self._on_change is not None:
            try:
                self._on_change(self.instances())
            except Exception:
                log.exception("on_change callback failed")

    def _apply(self, ch: Change, kv: KeyValue | None) -> bool:
        """One change to the fleet copy; True when it concerns this picker's model."""
        return self._copy.apply(ch, kv) == self.model


def check_options(policy: str, protect_threshold: float) -> None:
    if policy not in POLICIES:
        raise ValueError(f"policy: one of {', '.join(POLICIES)}, not {policy!r}")
    if not 0.0 <= protect_threshold <= 1.0:
        raise ValueError("protect_threshold: a fraction between 0 and 1")


def target_for(
    model: str,
    fallback: bool,
    config: Callable[[], McpConfig | None],
    live: Callable[[str], Instance | None],
    exclude: Collection[str],
) -> Target | None:
    """A live instance of ``model``, else (with ``fallback``) the fallback rule's target."""
    if not fallback:
        chosen = live(model)
        return None if chosen is None else Target(chosen.endpoint, model, chosen)
    target = fallback_target(model, config(), live)
    if target is not None and target.instance is None and target.endpoint in exclude:
        return None
    return target


__all__ = ["InstancePicker", "NoInstance", "check_options", "target_for"]
