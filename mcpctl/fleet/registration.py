"""``Registration``: an instance of a model in the live fleet (docs/fleet.md).

- ``start()`` grants a lease (the SDK keeps it alive at TTL/3) and writes
  ``/mcp/instances/<model>/<id>`` attached to it; ``close()`` (or the end of a
  ``with`` block) revokes the lease, so a clean shutdown leaves the fleet at
  once, and a crash within TTL + the leader's grace.
- ``report(in_flight=, queue=, latency_ms=, healthy=)`` never blocks and never
  does I/O: it records the newest load; the registration's thread writes it
  at most once per ``FLEET_REPORT_INTERVAL_S_MIN``, only when it moved beyond
  the deadband (``report_due``) or every ``FLEET_REPORT_REFRESH_S``.
- When the lease is lost (a long pause, a partition longer than the TTL,
  someone revoked it) the thread grants a new one and registers again, with a
  backoff from ``FLEET_REREGISTER_BACKOFF_S_MIN`` doubling to ``_MAX``
  (jittered) while that fails. Operator state (drain) is another key with no
  lease: it survives this.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import socket
import threading
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING

from pydantic import TypeAdapter, ValidationError

from mcpctl import limits
from mcpctl.errors import LeaseNotFound, McpError
from mcpctl.fleet import keys
from mcpctl.fleet.schema import InstanceInfo, Load, check_id, encode, instance_info
from mcpctl.mcp.schema import ModelName, SchemaError, problems_of

if TYPE_CHECKING:
    from mcpctl.client import Client, Lease

log = logging.getLogger("mcpctl.fleet.registration")

_MODEL_NAME: TypeAdapter[str] = TypeAdapter(ModelName)


def check_model(model: str) -> str:
    try:
        return _MODEL_NAME.validate_python(model)
    except ValidationError as e:
        raise SchemaError([f"model: {problems_of(e)[0].partition(': ')[2]}"], "instance") from None


def default_id() -> str:
    """``<host>-<pid>-<4 hex>``: unique enough, and fixed-shape (docs/fleet.md, "Roles")."""
    host = "".join(c if c.isalnum() or c in "-._" else "-" for c in socket.gethostname())
    return f"{host[:64] or 'host'}-{os.getpid()}-{random.getrandbits(16):04x}"


def _moved(old: float, new: float, floor: float) -> bool:
    return abs(new - old) >= max(floor, limits.FLEET_DEADBAND_FRACTION * abs(old))


def report_due(written: Load | None, current: Load, elapsed_s: float) -> bool:
    """Is a load report worth a Raft write now? (the rate limit and deadband)."""
    if written is None:
        return True
    if elapsed_s < limits.FLEET_REPORT_INTERVAL_S_MIN:
        return False
    if elapsed_s >= limits.FLEET_REPORT_REFRESH_S or written.healthy != current.healthy:
        return True
    floor = limits.FLEET_DEADBAND_REQUESTS_MIN
    return (
        _moved(written.in_flight, current.in_flight, floor)
        or _moved(written.queue, current.queue, floor)
        or _moved(written.latency_ms, current.latency_ms, limits.FLEET_DEADBAND_LATENCY_MS_MIN)
    )


class Registration:
    """One instance of ``model`` serving at ``endpoint``, kept in the live fleet
    until ``close()``. Fields are validated here (``SchemaError`` naming the
    field, e.g. ``endpoint: not an http(s) URL``)."""

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
                "endpoint": endpoint,
                "weight": weight,
                "capacity": capacity,
                "zone": zone,
                "tags": dict(tags or {}),
                "version": version,
                "started_at": round(time.time(), 3),
            }
        )
        self._client = client
        self._cond = threading.Condition()
        self._load = Load()
        self._written: Load | None = None
        self._written_at = 0.0
        self._lease: Lease | None = None
        self._stop = False
        self._thread: threading.Thread | None = None
        self.registered = threading.Event()
        self.registrations = 0  # how many times the key was (re)written on a new lease
        self.writes = 0  # load reports written

    # -- lifecycle -------------------------------------------------------------
    def start(self) -> Registration:
        """Register now (raises when the cluster refuses), then keep it up."""
        self._register()
        self._thread = threading.Thread(target=self._run, name=f"fleet {self.key}", daemon=True)
        self._thread.start()
        return self

    def close(self, timeout_s: float = 5.0) -> None:
        """Stop reporting and revoke the lease: the instance leaves the fleet now."""
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout_s)
        lease, self._lease = self._lease, None
        self.registered.clear()
        if lease is not None:
            try:
                lease.revoke()
            except McpError as e:  # the TTL ends it anyway
                log.warning("%s: revoke on close failed: %s", self.key, e)

    def __enter__(self) -> Registration:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def lease_id(self) -> int:
        lease = self._lease
        return lease.id if lease is not None else 0

    # -- load ------------------------------------------------------------------
    def report(
        self,
        *,
        in_flight: int | None = None,
        queue: int | None = None,
        latency_ms: float | None = None,
        healthy: bool | None = None,
    ) -> None:
        """Record the current load (fields left out keep their value); written
        by the background thread at the bounded rate. Never blocks on the network."""
        with self._cond:
            old = self._load
            self._load = Load(
                in_flight=old.in_flight if in_flight is None else max(0, in_flight),
                queue=old.queue if queue is None else max(0, queue),
                latency_ms=old.latency_ms if latency_ms is None else max(0.0, latency_ms),
                healthy=old.healthy if healthy is None else healthy,
            )
            self._cond.notify_all()

    # -- the thread -------------------------------------------------------------
    def _value(self, load: Load) -> bytes:
        stamped = load.model_copy(update={"at": round(time.time(), 3)})
        return encode(self.info.model_copy(update={"load": stamped}))

    def _register(self) -> None:
        with self._cond:
            load = self._load
        lease = self._client.grant(self.ttl, on_lost=self._lost)
        try:
            self._client.put(self.key, self._value(load), lease=lease)
        except McpError:
            lease.revoke()
            raise
        with self._cond:
            stopped = self._stop
            if not stopped:
                self._lease = lease
                self._written, self._written_at = load, time.monotonic()
                self.registrations += 1
        if stopped:  # close() gave up waiting for this registration: undo it
            with contextlib.suppress(McpError):
                lease.revoke()
            return
        self.registered.set()
        log.info("%s registered on lease %016x (ttl %d s)", self.key, lease.id, lease.ttl)

    def _lost(self, lease: Lease) -> None:
        log.warning("%s: lease %016x lost (%s)", self.key, lease.id, lease.lost_reason)
        with self._cond:
            if self._lease is lease:
                self._lease = None
                self.registered.clear()
            self._cond.notify_all()

    def _run(self) -> None:
        backoff = limits.FLEET_REREGISTER_BACKOFF_S_MIN
        while True:
            with self._cond:
                if self._stop:
                    return
                lease = self._lease
            if lease is None:
                try:
                    self._register()
                    backoff = limits.FLEET_REREGISTER_BACKOFF_S_MIN
                except McpError as e:
                    pause = backoff * random.uniform(0.5, 1.0)
                    log.warning("%s: registering failed (%s); again in %.1f s", self.key, e, pause)
                    backoff = min(backoff * 2, limits.FLEET_REREGISTER_BACKOFF_S_MAX)
                    self._wait(pause)
                continue
            self._maybe_write(lease)

    def _wait(self, seconds: float) -> None:
        with self._cond:
            if not self._stop:
                self._cond.wait(seconds)

    def _maybe_write(self, lease: Lease) -> None:
        with self._cond:
            load, written = self._load, self._written
            elapsed = time.monotonic() - self._written_at
            if not report_due(written, load, elapsed):
                # Woken by report(), close(), loss; or in time for the next chance.
                left = limits.FLEET_REPORT_INTERVAL_S_MIN - elapsed
                self._cond.wait(left if left > 0 else limits.FLEET_REPORT_INTERVAL_S_MIN)
                return
        try:
            self._client.put(self.key, self._value(load), lease=lease)
        except LeaseNotFound:  # gone before the keeper noticed: register again
            with contextlib.suppress(McpError):
                lease.revoke()  # stops the keeper renewing it
            self._lost(lease)
            return
        except McpError as e:  # try again at the next chance
            log.warning("%s: load report failed: %s", self.key, e)
            with self._cond:
                self._written_at = time.monotonic()
            return
        with self._cond:
            self._written, self._written_at = load, time.monotonic()
            self.writes += 1


__all__ = ["Registration", "check_model", "default_id", "report_due"]
