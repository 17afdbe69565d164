"""The render agent: watch what the templates read, render on change, debounced.

Sources: one ``ConfigWatcher`` per watched prefix (the templates' keys and
prefixes, and for ``reads.instances`` ``/mcp/``, which holds both
``/mcp/instances/`` and ``/mcp/operator/instances/``, minus those another
one covers) and one ``McpConfigView`` when a template reads ``mcp``, whose
own copy of ``/mcp/`` then serves every key under it (no second watch of
``/mcp/``); all on one ``Client`` and one last-good cache directory. They resume after a member
fails or a leader changes and re-read after a compaction
(``mcpctl.client.watcher``), so the agent only ever sees a consistent,
gap-free copy. The fleet is decoded (``mcpctl.render.fleet``) at each render
of a template that reads it.

A change marks the templates whose reads cover it; the render loop (one
thread: the caller's) renders a marked template once its burst has been
quiet for ``wait.min`` or has lasted ``wait.max`` since its first change,
then installs it (``mcpctl.render.install``). Everything a template sees is
taken at render time, so a change that lands meanwhile is in the next render.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from mcpctl import limits
from mcpctl.client import Client, KeyValue
from mcpctl.client.view import ConfigUpdate, InvalidConfig, McpConfigView
from mcpctl.client.watcher import Change, ConfigWatcher
from mcpctl.errors import DeadlineExceeded, Unavailable
from mcpctl.mcp import layout
from mcpctl.render import fleet
from mcpctl.render.config import FLEET_READS, FLEET_WATCH, AgentConfig, Template
from mcpctl.render.install import Outcome, Status, install
from mcpctl.render.template import Data, RenderError, compile_template, environment, render

log = logging.getLogger("mcpctl.render")

# Pause between attempts to start when the cluster is down and there is no cache.
START_RETRY_S = 1.0


def watched_prefixes(templates: Iterable[Template]) -> list[str]:
    """The fewest prefixes whose watches cover every key and prefix read."""
    wanted: set[str] = set()
    for t in templates:
        wanted.update(t.reads.keys, t.reads.prefixes)
        if t.reads.instances:
            wanted.add(FLEET_WATCH)
    ordered = sorted(wanted)
    return [p for p in ordered if not any(p != q and p.startswith(q) for q in ordered)]


@dataclass
class _Pending:
    first: float  # monotonic time of the first change of the burst
    last: float  # and of the latest one


class Agent:
    """Renders ``config.templates`` from the cluster behind ``client``.

    ``report`` gets one line per outcome worth telling (installed, every
    failure, and in ``once`` mode every template)."""

    def __init__(
        self,
        client: Client,
        config: AgentConfig,
        *,
        report: Callable[[str], None],
        dry_run: bool = False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._config = config
        self._report = report
        self._dry_run = dry_run
        self._clock = clock
        env = environment()
        # Compiled up front: a syntax error is a start-up error, not a runtime one.
        self._compiled = [compile_template(env, t) for t in config.templates]
        cache_dir = config.cache_dir
        self._view: McpConfigView | None = None
        prefixes = watched_prefixes(config.templates)
        if any(t.reads.mcp for t in config.templates):
            self._view = McpConfigView(
                client,
                on_update=self._mcp_updated,
                on_invalid=self._mcp_invalid,
                on_change=self._changed,
                cache_dir=cache_dir,
            )
            # The view's own watch of /mcp/ serves every key under it (the
            # fleet's too): one stream, and one writer of the /mcp/ cache file.
            prefixes = [p for p in prefixes if not p.startswith(layout.ROOT)]
        self._watchers = [
            ConfigWatcher(client, p, on_change=self._changed, cache_dir=cache_dir) for p in prefixes
        ]
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._started = False
        # Every template is due at start.
        self._pending = {i: _Pending(float("-inf"), float("-inf")) for i in self._indexes()}
        self._marks = 0  # bumped by every change: no wakeup is lost
        self.renders = 0
        self.installs = 0
        # Fleet keys skipped at the last render -> why (not valid registrations).
        self.invalid: dict[str, str] = {}

    def _indexes(self) -> range:
        return range(len(self._config.templates))

    def _copies(self) -> list[ConfigWatcher]:
        """Every live copy of keys: the watchers, and the view's copy of /mcp/."""
        view = [self._view.watcher] if self._view is not None else []
        return [*self._watchers, *view]

    # -- sources -----------------------------------------------------------------
    def start(self, *, wait: bool) -> None:
        """Start every source (from the cache when the cluster is down). With no
        cache and no cluster: raise, or with ``wait`` retry until ``stop()``."""
        sources: list[ConfigWatcher | McpConfigView] = [*self._watchers]
        if self._view is not None:
            sources.append(self._view)
        told = False
        for source in sources:
            while not self._stop.is_set():
                try:
                    source.start()
                    break
                except (Unavailable, DeadlineExceeded) as e:
                    if not wait:
                        raise
                    if not told:
                        self._report(f"waiting for the cluster (no usable cache): {e.message}")
                        told = True
                    self._stop.wait(START_RETRY_S)
        self._started = not self._stop.is_set()
        if self.stale:
            self._report(f"rendering from the last-good cache ({self.staleness_s:.0f} s old)")

    @property
    def stale(self) -> bool:
        return any(w.stale for w in self._watchers) or (self._view is not None and self._view.stale)

    @property
    def staleness_s(self) -> float:
        ages = [w.staleness_s for w in self._watchers]
        if self._view is not None:
            ages.append(self._view.staleness_s)
        return max(ages, default=0.0)

    def stop(self) -> None:
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        for w in self._watchers:
            w.stop()
        if self._view is not None:
            self._view.stop()

    def _catch_up(self) -> None:
        """Let every source reach the newest revision any of them has: a txn that
        spans two watched prefixes is then whole in the render, not half of it
        (an idle watch moves on with its progress notifications, every second).
        Bounded by RENDER_SOURCES_WAIT_S; past it, the render goes on."""
        sources: list[ConfigWatcher | McpConfigView] = [*self._watchers]
        if self._view is not None:
            sources.append(self._view)
        if len(sources) < 2 or self.stale:
            return
        target = max(w.revision for w in self._copies())
        deadline = self._clock() + limits.RENDER_SOURCES_WAIT_S
        for source in sources:
            left = deadline - self._clock()
            if left <= 0 or not source.wait_for_revision(target, left):
                log.warning("render: a source is not at revision %d yet; rendering", target)
                return

    def data(self, *, with_fleet: bool = True) -> Data:
        """What the sources hold now; the fleet decoded only ``with_fleet``."""
        self._catch_up()
        kvs: dict[str, bytes] = {}
        fleet_kvs: list[KeyValue] = []
        revision = 0
        for w in self._copies():
            for k, kv in w.snapshot().items():
                kvs[k] = kv.value
                if with_fleet and k.startswith(FLEET_READS):
                    fleet_kvs.append(kv)
            revision = max(revision, w.revision)
        instances, invalid = fleet.decode(fleet_kvs) if fleet_kvs else ([], {})
        self._skipped(invalid)
        mcp = self._view.config if self._view is not None else None
        if self._view is not None:
            revision = max(revision, self._view.revision)
        return Data(kvs, instances, mcp, revision, self.stale)

    def _skipped(self, invalid: dict[str, str]) -> None:
        """Log each fleet key skipped, once per problem (as pickers do)."""
        for key, problem in invalid.items():
            if self.invalid.get(key) != problem:
                log.warning("render: %s skipped: %s", key, problem)
        self.invalid = invalid

    # -- changes -----------------------------------------------------------------
    def _changed(self, changes: list[Change]) -> None:
        self._mark(
            i
            for i, t in enumerate(self._config.templates)
            if any(t.reads.covers(ch.key) for ch in changes)
        )

    def _mcp_updated(self, update: ConfigUpdate) -> None:
        self._mark(i for i, t in enumerate(self._config.templates) if t.reads.mcp)

    def _mcp_invalid(self, invalid: InvalidConfig) -> None:
        self._report(
            f"MCP config at revision {invalid.revision} is invalid; templates keep "
            f"revision {invalid.kept_revision}: {'; '.join(invalid.problems)}"
        )

    def _mark(self, indexes: Iterable[int]) -> None:
        now = self._clock()
        with self._cond:
            for i in indexes:
                p = self._pending.get(i)
                if p is None:
                    self._pending[i] = _Pending(now, now)
                else:
                    p.last = now
            self._marks += 1
            self._cond.notify_all()

    def _due(self) -> tuple[list[int], float | None, int]:
        """Templates to render now, how long until the next one is due, and the
        change count they account for."""
        now = self._clock()
        due: list[int] = []
        next_s: float | None = None
        with self._cond:
            marks = self._marks
            for i, p in sorted(self._pending.items()):
                wait = self._config.templates[i].wait
                at = min(p.last + wait.min, p.first + wait.max_s)
                if at <= now:
                    due.append(i)
                else:
                    next_s = at - now if next_s is None else min(next_s, at - now)
            for i in due:
                del self._pending[i]
        return due, next_s, marks

    # -- rendering -----------------------------------------------------------------
    def render_one(self, i: int) -> Outcome:
        t = self._config.templates[i]
        data = self.data(with_fleet=t.reads.instances)
        self.renders += 1
        try:
            content = render(self._compiled[i], t, data)
        except RenderError as e:
            outcome = Outcome(Status.RENDER_FAILED, f"{e}; keeping the file in place")
        else:
            outcome = install(t, content, dry_run=self._dry_run)
        if outcome.status in (Status.INSTALLED, Status.RELOAD_FAILED):
            self.installs += 1
        if outcome.status is Status.INSTALLED:
            self._report(f"{t.label}: installed {t.dest} (revision {data.revision})")
        elif not outcome.status.ok:
            self._report(f"{t.label}: {outcome.status.value}: {outcome.detail}")
        return outcome

    def render_all(self) -> list[Outcome]:
        """Render every template once, now (``--once``, ``--dry-run``)."""
        with self._cond:
            self._pending.clear()
        return [self.render_one(i) for i in self._indexes()]

    def run(self) -> None:
        """Render as changes come, until ``stop()``."""
        while not self._stop.is_set():
            due, wait_s, marks = self._due()
            for i in due:
                if self._stop.is_set():
                    return
                self.render_one(i)
            if not due:
                with self._cond:
                    if not self._stop.is_set() and self._marks == marks:
                        self._cond.wait(wait_s)
