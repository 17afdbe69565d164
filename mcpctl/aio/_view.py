"""``McpConfigView`` of the asyncio SDK: the current, validated, typed MCP config,
kept live by an ``mcpctl.aio.ConfigWatcher`` of ``/mcp/``.

The same decisions as ``mcpctl.client.view.McpConfigView``, from the same
function (``judge``): after every change the whole copy is decoded as one
document; valid and different: it becomes ``config`` and ``on_update`` gets a
``ConfigUpdate``; invalid: ``on_invalid`` gets an ``InvalidConfig`` (one line
per problem, never a value) and ``config`` stays the last valid one.
Evaluations (and their callbacks, functions or coroutine functions) run one at
a time, in revision order, on the watcher's task.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from mcpctl import limits
from mcpctl.aio._watcher import ConfigWatcher
from mcpctl.client._prefix import Change
from mcpctl.client.view import ConfigUpdate, InvalidConfig, config_only, judge, log_invalid
from mcpctl.mcp import layout
from mcpctl.mcp.schema import McpConfig, Model

if TYPE_CHECKING:
    from mcpctl.aio._client import Client

log = logging.getLogger("mcpctl.aio.view")

OnUpdate = Callable[[ConfigUpdate], Awaitable[None] | None]
OnInvalid = Callable[[InvalidConfig], Awaitable[None] | None]
OnError = Callable[[Exception], Awaitable[None] | None]


class McpConfigView:
    """``async with McpConfigView(client, on_update=reload) as view:`` ... ``view.config``."""

    def __init__(
        self,
        client: Client,
        *,
        on_update: OnUpdate | None = None,
        on_invalid: OnInvalid | None = None,
        on_error: OnError | None = None,
        check_interval_s: float = limits.CONFIG_WATCHER_CHECK_S_DEFAULT,
        progress_interval_ms: int = 1000,
    ) -> None:
        self._on_update = on_update
        self._on_invalid = on_invalid
        self._watcher = ConfigWatcher(
            client,
            layout.ROOT,
            on_change=self._changed,
            on_error=on_error,
            check_interval_s=check_interval_s,
            progress_interval_ms=progress_interval_ms,
            initial_changes=True,
        )
        self._evaluating = asyncio.Lock()
        self._evaluated_now = asyncio.Condition()
        self.config: McpConfig | None = None  # the last valid config (None: none yet)
        self.revision = 0  # the revision that produced ``config``
        self.invalid: InvalidConfig | None = None  # what is wrong with /mcp/ now, else None
        # key -> mod_revision of the copy last evaluated (None: nothing yet).
        self._evaluated: dict[str, int] | None = None

    async def start(self) -> McpConfigView:
        """Read /mcp/ and evaluate it, then follow it."""
        await self._watcher.start()
        # An empty /mcp/ gives the watcher no initial change to report.
        await self._evaluate(self._watcher.revision, only_if_first=True)
        return self

    async def stop(self) -> None:
        await self._watcher.stop()

    async def __aenter__(self) -> McpConfigView:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def models(self) -> dict[str, Model]:
        """The models of ``config`` by name."""
        return {m.name: m for m in self.config.models} if self.config is not None else {}

    async def wait_for_revision(self, revision: int, timeout_s: float) -> bool:
        """Until the view has evaluated /mcp/ as of ``revision`` or later (its
        callbacks done): True, or False when time runs out."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        if not await self._watcher.wait_for_revision(revision, timeout_s):
            return False
        async with self._evaluated_now:
            try:
                await asyncio.wait_for(
                    self._evaluated_now.wait_for(lambda: self._evaluated == self._versions()),
                    max(0.0, deadline - loop.time()),
                )
            except TimeoutError:
                return False
        return True

    def _versions(self) -> dict[str, int]:
        return {k: kv.mod_revision for k, kv in config_only(self._watcher.snapshot()).items()}

    async def _changed(self, changes: list[Change]) -> None:
        await self._evaluate(max(ch.revision for ch in changes))

    async def _evaluate(self, revision: int, *, only_if_first: bool = False) -> None:
        async with self._evaluating:
            snapshot = config_only(self._watcher.snapshot())
            versions = {k: kv.mod_revision for k, kv in snapshot.items()}
            if versions == self._evaluated or (only_if_first and self._evaluated is not None):
                return
            values = {k: kv.value for k, kv in snapshot.items()}
            verdict = judge(values, self.config, self.revision, revision)
            if verdict.invalid is not None:
                self.invalid = verdict.invalid
                log_invalid(verdict.invalid)
                await _call(self._on_invalid, verdict.invalid)
            else:
                self.config, self.revision, self.invalid = verdict.config, revision, None
                if verdict.update is not None:
                    await _call(self._on_update, verdict.update)
            async with self._evaluated_now:
                self._evaluated = versions
                self._evaluated_now.notify_all()


async def _call(fn: Callable[..., Any] | None, arg: Any) -> None:
    if fn is None:
        return
    try:
        result = fn(arg)
        if inspect.isawaitable(result):
            await result
    except Exception:
        log.exception("MCP config view callback failed")
