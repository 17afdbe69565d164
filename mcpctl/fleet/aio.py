"""The live fleet on the asyncio SDK (``mcpctl.aio``): ``Registration`` and
``InstancePicker`` with the same rules as the sync ones (docs/fleet.md) — the
same validation, the same report rate limit and deadband
(``registration.report_due``), the same copy of the fleet (``copy.FleetCopy``)
and picking and fallback rules (``select``, ``picker.target_for``) — on one
asyncio task each instead of a thread.

::

    async with mcpctl.aio.Client(endpoints) as client:
        async with Registration(client, model="m", endpoint="http://10.0.0.7:8000") as reg:
            reg.report(in_flight=3)        # never blocks
        async with InstancePicker(client, "m", policy="p2c") as picker:
            endpoint = picker.pick()       # no I/O
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable, Collection, Mapping
from typing import TYPE_CHECKING

from mcpctl import limits
from mcpctl.aio import ConfigWatcher
from mcpctl.errors import LeaseNotFound, McpError
from mcpctl.fleet import keys
from mcpctl.fleet.copy import FleetCopy, decode_config
from mcpctl.fleet.picker import NoInstance, check_options, target_for
from mcpctl.fleet.registration import check_model, default_id, report_due
from mcpctl.fleet.schema import InstanceInfo, Load, check_id, encode, instance_info
from mcpctl.fleet.select import Instance, Policy, Target, candidates, choose
from mcpctl.mcp import layout
from mcpctl.mcp.schema import McpConfig, SchemaError

if TYPE_CHECKING:
    from mcpctl.aio import Client, Lease
    from mcpctl.client.watcher import Change

log = logging.getLogger("mcpctl.fleet.aio")

OnChange = Callable[[list[Instance]], Awaitable[None] | None]


class Registration:
    """An instance of ``model`` at ``endpoint`` in the live fleet until ``await close()``
    (see ``mcpctl.fleet.registration.Registration``: the same rules)."""

    def __init__(
        self,
        client: Client,
        *,
        model: str,
        endpoint: str,
        weight: int = 1,
        ttl: int = limits.FLEET_TTL_S_DEFAULT,
        instance_id: str | None = None,
        capacity: int = 0,
        zone: str = "",
        tags: Mapping[str, str] | None = None,
        version: str = "",
    ) -> None:
        if ttl < 1:
            raise SchemaError(["ttl: must be at least 1 second"], "instance")
        self.model = check_model(model)
        self.id = check_id(instance_id if instance_id is not None else default_id())
        self.key = keys.instance_key(self.model, self.id)
        self.ttl = ttl
        self.info: InstanceInfo = instance_info(
            {
                "endpoint": endpoint, "weight": weight, "capacity": capacity, "zone": zone,
                "tags": dict(tags or {}), "version": version,
                "started_at": round(time.time(), 3),
            }
        )  # fmt: skip
        self._client = client
        self._load = Load()
        self._written: Load | None = None
        self._written_at = 0.0
        self._lease: Lease | None = None
        self._wake = asyncio.Event()
        self._stopped = False
        self._task: asyncio.Task[None] | None = None
        self.registrations = 0
        self.writes = 0

    @property
    def lease_id(self) -> int:
        return self._lease.id if self._lease is not None else 0

    async def start(self) -> Registration:
        """Register now (raises when the cluster refuses), then keep it up."""
        await self._register()
        self._task = asyncio.get_running_loop().create_task(self._run(), name=f"fleet {self.key}")
        return self

    async def close(self) -> None:
        """Stop reporting and revoke the lease: the instance leaves the fleet now."""
        self._stopped = True
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        lease, self._lease = self._lease, None
        if lease is not None:
            try:
                await lease.revoke()
            except McpError as e:  # the TTL ends it anyway
                log.warning("%s: revoke on close failed: %s", self.key, e)

    async def __aenter__(self) -> Registration:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def report(
        self,
        *,
        in_flight: int | None = None,
        queue: int | None = None,
        latency_ms: float | None = None,
        healthy: bool | None = None,
    ) -> None:
        """Record the current load; written by the task at the bounded rate."""
        old = self._load
        self._load = Load(
            in_flight=old.in_flight if in_flight is None else max(0, in_flight),
            queue=old.queue if queue is None else max(0, queue),
            latency_ms=old.latency_ms if latency_ms is None else max(0.0, latency_ms),
            healthy=old.healthy if healthy is None else healthy,
        )
        self._wake.set()

    def _value(self, load: Load) -> bytes:
        stamped = load.model_copy(update={"at": round(time.time(), 3)})
        return encode(self.info.model_copy(update={"load": stamped}))

    async def _register(self) -> None:
        load = self._load
        lease = await self._client.grant(self.ttl, on_lost=self._lost)
        try:
            await self._client.put(self.key, self._value(load), lease=lease)
        except McpError:
            with contextlib.suppress(McpError):
                await lease.revoke()
            raise
        self._lease = lease
        self._written, self._written_at = load, time.monotonic()
        self.registrations += 1
        log.info("%s registered on lease %016x (ttl %d s)", self.key, lease.id, lease.ttl)

    def _lost(self, lease: Lease) -> None:
        log.warning("%s: lease %016x lost (%s)", self.key, lease.id, lease.lost_reason)
        if self._lease is lease:
            self._lease = None
        self._wake.set()

    async def _run(self) -> None:
        backoff = limits.FLEET_REREGISTER_BACKOFF_S_MIN
        while not self._stopped:
            lease = self._lease
            if lease is None:
                try:
                    await self._register()
                    backoff = limits.FLEET_REREGISTER_BACKOFF_S_MIN
                except McpError as e:
                    pause = backoff * random.uniform(0.5, 1.0)
                    log.warning("%s: registering failed (%s); again in %.1f s", self.key, e, pause)
                    backoff = min(backoff * 2, limits.FLEET_REREGISTER_BACKOFF_S_MAX)
                    await asyncio.sleep(pause)
                continue
            await self._maybe_write(lease)

    async def _maybe_write(self, lease: Lease) -> None:
        load, elapsed = self._load, time.monotonic() - self._written_at
        if not report_due(self._written, load, elapsed):
            left = limits.FLEET_REPORT_INTERVAL_S_MIN - elapsed
            self._wake.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                wait = left if left > 0 else limits.FLEET_REPORT_INTERVAL_S_MIN
                await asyncio.wait_for(self._wake.wait(), wait)
            return
        try:
            await self._client.put(self.key, self._value(load), lease=lease)
        except LeaseNotFound:  # gone before the keeper noticed: register again
            with contextlib.suppress(McpError):
                await lease.revoke()
            self._lost(lease)
            return
        except McpError as e:
            log.warning("%s: load report failed: %s", self.key, e)
            self._written_at = time.monotonic()
            return
        self._written, self._written_at = load, time.monotonic()
        self.writes += 1


class InstancePicker:
    """Picks an endpoint for ``model`` from one asyncio ``ConfigWatcher`` on ``/mcp/``
    (see ``mcpctl.fleet.picker.InstancePicker``: the same rules). ``pick()`` does no
    I/O; call it on the picker's event loop."""

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
        self._copy = FleetCopy()
        self._config: McpConfig | None = None
        self.invalid = self._copy.invalid
        self._watcher = ConfigWatcher(
            client, layout.ROOT, on_change=self._changed, initial_changes=True
        )

    async def start(self) -> InstancePicker:
        await self._watcher.start()
        return self

    async def stop(self) -> None:
        await self._watcher.stop()

    async def __aenter__(self) -> InstancePicker:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def instances(self, model: str | None = None) -> list[Instance]:
        return self._copy.instances(self.model if model is None else model)

    def config(self) -> McpConfig | None:
        if self._copy.config_dirty:
            self._config = decode_config(self._watcher.snapshot())
            self._copy.config_dirty = False
        return self._config

    def pick_target(self, exclude: Collection[str] = ()) -> Target | None:
        def live(model: str) -> Instance | None:
            pool = candidates(self.instances(model), self.protect_threshold)
            pool = [i for i in pool if i.endpoint not in exclude]
            return choose(pool, self.policy, self._rng) if pool else None

        return target_for(self.model, self._fallback, self.config, live, exclude)

    def pick(self, exclude: Collection[str] = ()) -> str:
        target = self.pick_target(exclude)
        if target is None:
            raise NoInstance(f"no live instance of {self.model!r} and no fallback")
        return target.endpoint

    async def _changed(self, changes: list[Change]) -> None:
        snapshot = (
            self._watcher.snapshot() if any(keys.is_fleet_key(c.key) for c in changes) else {}
        )
        mine = False
        for ch in changes:
            mine = self._copy.apply(ch, snapshot.get(ch.key)) == self.model or mine
        if mine and self._on_change is not None:
            try:
                result = self._on_change(self.instances())
                if result is not None:
                    await result
            except Exception:
                log.exception("on_change callback failed")


__all__ = ["InstancePicker", "Registration"]
