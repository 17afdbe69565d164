"""``Lease`` of the asyncio client: renewed by one asyncio task per lease.

The rules are the sync client's (docs/leases.md, "The SDK"): renewed every
TTL / ``CLIENT_KEEPALIVE_TTL_DIVISOR`` counted from when the last successful
renewal was *sent*; each renewal is one call through the client's rules
(endpoints in turn, bounded by the time the lease has left); lost when a
renewal says the lease is gone (TTL 0) or when none succeeded before the
TTL ran out. Then ``lost`` is set, ``lost_reason`` says why and ``on_lost``
runs (a function or a coroutine function). ``revoke()`` and ``Client.close()``
stop renewing without calling it lost. At most ``CLIENT_LEASES_MAX`` per
Client, as the sync one.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from mcpctl import limits
from mcpctl.client._values import LeaseState, TimeToLive
from mcpctl.errors import LeaseNotFound, McpError

if TYPE_CHECKING:
    from mcpctl.aio._client import Client

log = logging.getLogger("mcpctl.aio.lease")

OnLost = Callable[["Lease"], Awaitable[None] | None]
OnRenewed = Callable[["Lease", int], Awaitable[None] | None]


class Lease(LeaseState):
    """A lease the asyncio Client keeps alive until ``await revoke()``, the end of
    an ``async with`` block (which revokes it) or ``await Client.close()``.

    ``id``; ``ttl`` (seconds, as last granted or renewed); ``lost`` (an
    ``asyncio.Event`` set when the lease is gone) with ``lost_reason``."""

    lost: asyncio.Event
    on_lost: OnLost | None
    on_renewed: OnRenewed | None

    def __init__(
        self,
        client: Client,
        lease_id: int,
        ttl: int,
        sent_at: float,
        *,
        on_lost: OnLost | None = None,
        on_renewed: OnRenewed | None = None,
    ) -> None:
        super().__init__(lease_id, ttl, sent_at, asyncio.Event(), on_lost, on_renewed)
        self._client = client
        self._task: asyncio.Task[None] | None = None

    def _start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(
            self._keep(), name=f"mcpctl-lease-{self.id:016x}"
        )

    def _stop(self) -> None:
        task, self._task = self._task, None
        if task is not None and task is not asyncio.current_task():
            task.cancel()

    async def _keep(self) -> None:
        """Renew until stopped or lost (the rules in the module docstring)."""
        clock = self._client._timing.monotonic
        last = ""
        while True:
            await asyncio.sleep(max(0.0, self._next_s - clock()))
            sent_at = clock()
            left_s = self._expires_s - sent_at
            if left_s <= 0:
                await self._lose(f"not renewed within its TTL of {self.ttl}s{last}")
                return
            try:
                answer = await self._client.keep_alive_once(
                    self.id, timeout=min(self._client.timeout, left_s)
                )
            except LeaseNotFound:
                await self._lose("lease not found: revoked or expired")
                return
            except McpError as e:
                last = f" (last error: {e.message})"
                log.info("lease %016x: renewal failed (%s); retrying", self.id, e.message)
                self._next_s = clock() + limits.CLIENT_BACKOFF_S_MIN
                continue
            self._renewed(sent_at, answer.ttl)
            if self.on_renewed is not None:
                await _callback(self.on_renewed, self, answer.ttl)

    async def _lose(self, reason: str) -> None:
        self._client._leases.pop(self.id, None)
        self._task = None
        self.lost_reason = reason
        self.lost.set()
        if self.on_lost is not None:
            await _callback(self.on_lost, self)

    async def revoke(self) -> None:
        """Stop renewing, then revoke: every attached key is deleted in one
        revision. A lease already gone is not an error."""
        with contextlib.suppress(LeaseNotFound):
            await self._client.revoke(self)

    async def time_to_live(self, *, keys: bool = False) -> TimeToLive:
        return await self._client.time_to_live(self.id, keys=keys)

    async def __aenter__(self) -> Lease:
        return self

    async def __aexit__(self, exc_type: object, *_: object) -> None:
        if exc_type is None:
            await self.revoke()
            return
        try:  # do not hide the block's own exception; the TTL ends the lease anyway
            await self.revoke()
        except McpError as e:
            log.warning("lease %016x: revoke on exit failed: %s", self.id, e)


async def _callback(fn: Callable[..., Any], *args: Any) -> None:
    try:
        result = fn(*args)
        if inspect.isawaitable(result):
            await result
    except Exception:  # the user's code must not stop the renewals
        log.exception("lease callback %r failed", fn)
