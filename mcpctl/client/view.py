"""``McpConfigView``: the current, validated, typed MCP config, kept live.

Built on ``ConfigWatcher`` (a consistent live copy of ``/mcp/``): after every
change it decodes the whole copy as one document (``layout.decode``):

- valid, and different from the config in use: it becomes ``config`` and
  ``on_update`` gets a ``ConfigUpdate`` naming the models added, removed and
  changed and the other sections that changed;
- invalid (a raw ``put`` that breaks the schema, a stray key, everything
  deleted): ``on_invalid`` gets an ``InvalidConfig`` with one line per
  problem (never a value), the problem is logged, and ``config`` stays the
  last valid one.

``on_change`` (optional) gets every raw change under ``/mcp/`` after the view
evaluated it, and ``watcher`` is the live copy itself: a caller that also needs
keys the typed config does not hold (the fleet's) reads them there instead of
opening a second watch of ``/mcp/``.

With ``cache_dir``, the last valid config is kept on disk (the watcher's
last-good cache, saved only while /mcp/ decodes): a service that starts while
the cluster is unreachable gets that config (``stale`` True, ``staleness_s``
its age) until the cluster answers; ``require_fresh=True`` refuses instead.

An apply is one revision, so a service never sees half of one. Callbacks run
one at a time, in revision order (on the watcher's thread; the first one on
the thread that calls ``start``); exceptions they raise are logged. Every
property is safe from any thread.

::

    def reload(update: ConfigUpdate) -> None:
        models = {m.name: m for m in update.config.models}
        for name in update.added + update.changed:
            pool.upsert(models[name])
        for name in update.removed:
            pool.drop(name)

    with McpConfigView(client, on_update=reload) as view:
        serve(view.config)
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from mcpctl import limits
from mcpctl.client._client import Client
from mcpctl.client._values import KeyValue
from mcpctl.client.watcher import Change, ConfigWatcher
from mcpctl.errors import NotFound
from mcpctl.fleet.keys import INSTANCES, is_fleet_key
from mcpctl.mcp import layout
from mcpctl.mcp.schema import McpConfig, Model, SchemaError

log = logging.getLogger("mcpctl.client.view")

_T = TypeVar("_T")

# The live fleet (DESIGN §13): instances register under here with their
# leases; it is not part of the desired config the view decodes.
INSTANCES_PREFIX = INSTANCES  # /mcp/instances/<model>/<id> (docs/fleet.md)

# Top-level sections other than `models`, in document order.
SECTIONS = ("server", "routing", "auth", "rate_limits", "logging")


@dataclass(frozen=True, slots=True)
class ConfigUpdate:
    """A new valid config replaced the previous one (None: the first one seen)."""

    revision: int
    config: McpConfig
    previous: McpConfig | None
    added: tuple[str, ...]
    removed: tuple[str, ...]
    changed: tuple[str, ...]
    # Other top-level sections whose value changed (all of them for the first config).
    sections: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class InvalidConfig:
    """The keys under /mcp/ at ``revision`` are not a valid config; the one from
    ``kept_revision`` stays in use (0: there is none yet)."""

    revision: int
    problems: tuple[str, ...]
    kept_revision: int


def model_changes(
    old: McpConfig | None, new: McpConfig
) -> tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
    """Model names added, removed and changed from ``old`` to ``new`` (sorted)."""
    before = {m.name: m for m in old.models} if old is not None else {}
    after = {m.name: m for m in new.models}
    added = tuple(sorted(after.keys() - before.keys()))
    removed = tuple(sorted(before.keys() - after.keys()))
    changed = tuple(sorted(n for n in after.keys() & before.keys() if after[n] != before[n]))
    return added, removed, changed


def diff_configs(revision: int, old: McpConfig | None, new: McpConfig) -> ConfigUpdate:
    added, removed, changed = model_changes(old, new)
    sections = tuple(s for s in SECTIONS if old is None or getattr(old, s) != getattr(new, s))
    return ConfigUpdate(revision, new, old, added, removed, changed, sections)


@dataclass(frozen=True, slots=True)
class Verdict:
    """What one evaluation of /mcp/ decided (``judge``): a valid ``config`` and
    the ``update`` to report (None when it equals the one in use), or why the
    copy is ``invalid``."""

    config: McpConfig | None
    update: ConfigUpdate | None
    invalid: InvalidConfig | None


def judge(values: dict[str, bytes], old: McpConfig | None, kept: int, revision: int) -> Verdict:
    """Decode the copy of /mcp/ at ``revision`` as one document, against the
    config in use (``old``, from revision ``kept``). Both views call it."""
    try:
        new = layout.decode(values)
    except (SchemaError, NotFound) as e:
        problems = e.problems if isinstance(e, SchemaError) else [e.message]
        return Verdict(None, None, InvalidConfig(revision, tuple(problems), kept))
    return Verdict(new, diff_configs(revision, old, new) if new != old else None, None)


class McpConfigView:
    """A typed view of the MCP config under ``/mcp/`` (see the module docstring)."""

    def __init__(
        self,
        client: Client,
        *,
        on_update: Callable[[ConfigUpdate], None] | None = None,
        on_invalid: Callable[[InvalidConfig], None] | None = None,
        on_error: Callable[[Exception], None] | None = None,
        on_change: Callable[[list[Change]], None] | None = None,
        check_interval_s: float = limits.CONFIG_WATCHER_CHECK_S_DEFAULT,
        progress_interval_ms: int = 1000,
        cache_dir: str | os.PathLike[str] | None = None,
        require_fresh: bool = False,
    ) -> None:
        self._on_update = on_update
        self._on_invalid = on_invalid
        self._on_change = on_change
        self._watcher = ConfigWatcher(
            client,
            layout.ROOT,
            on_change=self._changed,
            on_error=on_error,
            check_interval_s=check_interval_s,
            progress_interval_ms=progress_interval_ms,
            initial_changes=True,
            cache_dir=cache_dir,
            require_fresh=require_fresh,
            cache_when=self._valid_now,
        )
        # Evaluations run one at a time (callbacks included), in revision order.
        self._evaluating = threading.Lock()
        self._cond = threading.Condition()
        self._config: McpConfig | None = None
        self._revision = 0
        self._invalid: InvalidConfig | None = None
        # key -> mod_revision of the copy last evaluated (None: nothing yet).
        self._evaluated: dict[str, int] | None = None

    # -- lifecycle -----------------------------------------------------------------
    def start(self) -> McpConfigView:
        """Read /mcp/ and evaluate it (callbacks run on this thread), then follow it."""
        self._watcher.start()
        # An empty /mcp/ gives the watcher no initial change to report.
        self._evaluate(self._watcher.revision, only_if_first=True)
        return self

    def stop(self, timeout_s: float = 5.0) -> None:
        self._watcher.stop(timeout_s)

    def __enter__(self) -> McpConfigView:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- the view ------------------------------------------------------------------
    @property
    def watcher(self) -> ConfigWatcher:
        """The live copy of every key under /mcp/ the view is evaluated from
        (for reading keys the typed config does not hold, such as the fleet's)."""
        return self._watcher

    @property
    def config(self) -> McpConfig | None:
        """The last valid config (None until one was seen)."""
        with self._cond:
            return self._config

    @property
    def revision(self) -> int:
        """The revision of the change that produced ``config`` (0: none yet)."""
        with self._cond:
            return self._revision

    @property
    def invalid(self) -> InvalidConfig | None:
        """What is wrong with /mcp/ now, while ``config`` is an older one; else None."""
        with self._cond:
            return self._invalid

    @property
    def stale(self) -> bool:
        """True while ``config`` comes from the last-good cache (cluster unreachable)."""
        return self._watcher.stale

    @property
    def staleness_s(self) -> float:
        """Age in seconds of the cached config in use; 0.0 when fresh."""
        return self._watcher.staleness_s

    @property
    def models(self) -> dict[str, Model]:
        """The models of ``config`` by name."""
        config = self.config
        return {m.name: m for m in config.models} if config is not None else {}

    def wait_for_revision(self, revision: int, timeout_s: float) -> bool:
        """Block until the view has evaluated /mcp/ as of ``revision`` or later
        (callbacks for it done): True, or False when time runs out."""
        deadline = time.monotonic() + timeout_s
        if not self._watcher.wait_for_revision(revision, timeout_s):
            return False
        with self._cond:
            while True:
                # The watcher's copy is at `revision` or later; the view is
                # current when it evaluated exactly that copy.
                if self._evaluated == _versions(self._watcher):
                    return True
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)

    # -- evaluation --------------------------------------------------------------------
    def _valid_now(self) -> bool:
        """The watcher's copy is the valid config in use (worth caching)."""
        with self._cond:
            return self._config is not None and self._invalid is None

    def _changed(self, changes: list[Change]) -> None:
        self._evaluate(max(ch.revision for ch in changes))
        if self._on_change is not None:
            self._on_change(changes)

    def _evaluate(self, revision: int, *, only_if_first: bool = False) -> None:
        with self._evaluating:
            snapshot = config_only(self._watcher.snapshot())
            versions = {k: kv.mod_revision for k, kv in snapshot.items()}
            with self._cond:
                if versions == self._evaluated or (only_if_first and self._evaluated is not None):
                    return
            with self._cond:
                old, kept = self._config, self._revision
            verdict = judge({k: kv.value for k, kv in snapshot.items()}, old, kept, revision)
            if verdict.invalid is not None:
                self._reject(verdict.invalid, versions)
                return
            with self._cond:
                self._config, self._revision, self._invalid = verdict.config, revision, None
            if verdict.update is not None:
                self._call(self._on_update, verdict.update)
            self._done(versions)

    def _reject(self, invalid: InvalidConfig, versions: dict[str, int]) -> None:
        with self._cond:
            self._invalid = invalid
        log_invalid(invalid)
        self._call(self._on_invalid, invalid)
        self._done(versions)

    def _done(self, versions: dict[str, int]) -> None:
        with self._cond:
            self._evaluated = versions
            self._cond.notify_all()

    @staticmethod
    def _call(callback: Callable[[_T], None] | None, arg: _T) -> None:
        if callback is None:
            return
        try:
            callback(arg)
        except Exception:
            log.exception("MCP config view callback failed")


def log_invalid(invalid: InvalidConfig) -> None:
    log.warning(
        "MCP config at revision %d is invalid; keeping revision %d: %s",
        invalid.revision,
        invalid.kept_revision,
        "; ".join(invalid.problems),
    )


def config_only(snapshot: dict[str, KeyValue]) -> dict[str, KeyValue]:
    """The keys of a copy of /mcp/ that are config: the live fleet (docs/fleet.md)
    changes often and is not."""
    return {k: kv for k, kv in snapshot.items() if not is_fleet_key(k)}


def _versions(watcher: ConfigWatcher) -> dict[str, int]:
    return {k: kv.mod_revision for k, kv in config_only(watcher.snapshot()).items()}


__all__ = [
    "INSTANCES_PREFIX",
    "ConfigUpdate",
    "InvalidConfig",
    "McpConfigView",
    "Verdict",
    "config_only",
    "diff_configs",
    "judge",
    "model_changes",
]
