"""``ConfigWatcher`` of the asyncio SDK: a live copy of every key under a
prefix, followed by one asyncio task.

The same guarantees as ``mcpctl.client.watcher.ConfigWatcher``, from the same
code where no I/O is involved (``mcpctl.client._prefix``): ``start()`` reads the
prefix at revision R and watches from R+1; each watch message is applied,
then ``on_change`` gets its changes (one revision's changes together, in
revision order); the stream resumes on another member without a gap; a
compacted history is answered by a relist that reports the difference; every
``check_interval_s`` the copy is compared with a read at a bookmark revision
and repaired by a relist when it differs. ``on_change``/``on_error`` may be
functions or coroutine functions; their exceptions are logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from mcpctl import limits
from mcpctl.client._prefix import (
    Change,
    apply_batch,
    copy_differs,
    initial_changes,
    relist_changes,
)
from mcpctl.client._rules import ClientClosed
from mcpctl.client._values import KeyValue
from mcpctl.client.watcher import RETRY_PAUSE_S
from mcpctl.errors import Compacted, McpError

if TYPE_CHECKING:
    from mcpctl.aio._client import Client
    from mcpctl.aio._watch import WatchStream

log = logging.getLogger("mcpctl.aio.watcher")

OnChange = Callable[[list[Change]], Awaitable[None] | None]
OnError = Callable[[Exception], Awaitable[None] | None]


class ConfigWatcher:
    """``async with ConfigWatcher(client, "/mcp/") as w:`` (or ``await w.start()``
    ... ``await w.stop()``); ``revision``, ``get``, ``snapshot`` read the copy,
    ``await wait_for_revision(r, timeout_s)`` waits for it."""

    def __init__(
        self,
        client: Client,
        prefix: str,
        *,
        on_change: OnChange | None = None,
        on_error: OnError | None = None,
        check_interval_s: float = limits.CONFIG_WATCHER_CHECK_S_DEFAULT,
        progress_interval_ms: int = 1000,
        initial_changes: bool = False,
    ) -> None:
        self._client = client
        self.prefix = prefix
        self._on_change = on_change
        self._on_error = on_error
        self._check_interval_s = check_interval_s
        self._progress_interval_ms = progress_interval_ms
        self._initial_changes = initial_changes
        self._data: dict[str, KeyValue] = {}
        self._revision = 0
        self._moved = asyncio.Condition()
        self._stream: WatchStream | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopped = False
        self._last_check = time.monotonic()
        self.relists = 0
        self.repairs = 0

    async def start(self) -> ConfigWatcher:
        """Read the prefix (raises if the cluster cannot answer), then follow it."""
        res = await self._client.get(self.prefix, prefix=True)
        self._data = {kv.key: kv for kv in res.kvs}
        await self._moved_to(res.header.revision)
        if self._initial_changes and res.kvs:
            await _call(self._on_change, initial_changes(res.kvs))
        self._task = asyncio.get_running_loop().create_task(
            self._run(), name=f"mcpctl-watch {self.prefix}"
        )
        return self

    async def stop(self) -> None:
        self._stopped = True
        stream = self._stream
        if stream is not None:
            stream.close()
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def __aenter__(self) -> ConfigWatcher:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- the copy ------------------------------------------------------------------
    @property
    def revision(self) -> int:
        """Every change up to this revision is in the copy."""
        return self._revision

    def get(self, key: str) -> bytes | None:
        kv = self._data.get(key)
        return kv.value if kv is not None else None

    def snapshot(self) -> dict[str, KeyValue]:
        return dict(self._data)

    async def wait_for_revision(self, revision: int, timeout_s: float) -> bool:
        """Until the copy reflects ``revision`` (True) or time runs out (False)."""
        async with self._moved:
            try:
                await asyncio.wait_for(
                    self._moved.wait_for(lambda: self._revision >= revision), timeout_s
                )
            except TimeoutError:
                return False
        return True

    async def _moved_to(self, revision: int) -> None:
        async with self._moved:
            self._revision = revision
            self._moved.notify_all()

    # -- the task --------------------------------------------------------------------
    async def _run(self) -> None:
        while not self._stopped:
            try:
                await self._follow()
            except Compacted:
                await self._relist()
            except ClientClosed:
                log.warning("config watcher on %s stops: its client was closed", self.prefix)
                return
            except McpError as e:
                await _call(self._on_error, e)
                await asyncio.sleep(RETRY_PAUSE_S)
            except Exception as e:  # a bug in a callback path; keep going
                log.exception("config watcher failed")
                await _call(self._on_error, e)
                await asyncio.sleep(RETRY_PAUSE_S)

    async def _follow(self) -> None:
        stream = self._stream = self._client.watch(
            self.prefix,
            prefix=True,
            start_revision=self._revision + 1,
            progress_notify=True,
            progress_interval_ms=self._progress_interval_ms,
        )
        async with stream:
            async for batch in stream:
                if batch.events:
                    changes = apply_batch(self._data, batch)
                    await self._moved_to(max(self._revision, batch.revision))
                    await _call(self._on_change, changes)
                elif batch.progress:
                    await self._moved_to(max(self._revision, batch.revision))
                    await self._maybe_check(batch.revision)

    async def _relist(self) -> None:
        """Read the prefix again and report the difference as changes."""
        try:
            res = await self._client.get(self.prefix, prefix=True)
        except McpError as e:
            await _call(self._on_error, e)
            await asyncio.sleep(RETRY_PAUSE_S)
            return
        self.relists += 1
        fresh = {kv.key: kv for kv in res.kvs}
        changes = relist_changes(self._data, fresh, res.header.revision)
        self._data = fresh
        await self._moved_to(res.header.revision)
        log.info("config watcher relisted %s at revision %d", self.prefix, self._revision)
        if changes:
            await _call(self._on_change, changes)

    async def _maybe_check(self, bookmark: int) -> None:
        now = time.monotonic()
        if now - self._last_check < self._check_interval_s:
            return
        self._last_check = now
        try:
            res = await self._client.get(self.prefix, prefix=True, revision=bookmark)
        except McpError:
            return  # compacted or unavailable: the next check tries again
        if self._revision == bookmark and copy_differs(self._data, res.kvs):
            self.repairs += 1
            log.error(
                "config watcher copy of %s differs at revision %d; relisting", self.prefix, bookmark
            )
            await self._relist()


async def _call(fn: Callable[..., Any] | None, *args: Any) -> None:
    if fn is None:
        return
    try:
        result = fn(*args)
        if inspect.isawaitable(result):
            await result
    except Exception:
        log.exception("config watcher callback %r failed", fn)
