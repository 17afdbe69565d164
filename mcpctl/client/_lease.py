"""Leases in the SDK: ``Lease``, a handle that keeps itself alive, and the
lease calls of ``Client`` (``LeaseCalls``); ``_keepalive.Keeper`` renews them.

The keepalive rules (docs/leases.md, "The SDK"):

- Cadence: a lease is renewed every TTL / ``CLIENT_KEEPALIVE_TTL_DIVISOR``,
  counted from when its last successful renewal was *sent*: the leader renewed
  it after that, so the client never thinks a lease lives longer than it does.
- One stream: the leases due go together on the Client's one KeepAlive stream,
  kept open from round to round; at most ``CLIENT_LEASES_MAX`` per Client.
- Failover: when the stream fails (the member is down; a follower answers
  UNAVAILABLE "not the leader"; no answer in time) it is dropped and the next
  attempt opens one on the next endpoint at once; after every endpoint failed
  in a row, a pause (the client backoff with jitter, doubling up to
  ``CLIENT_BACKOFF_S_MAX``). Retries end when the lease runs out.
- Lost: a keepalive answered TTL 0 ("lease not found": revoked or expired), or
  no renewal succeeded before the TTL of the last one ran out. Then ``lost`` is
  set, ``lost_reason`` says which, ``on_lost`` is called (on the keeper's
  thread) and the lease is no longer renewed. ``revoke()`` and ``Client.close()``
  stop renewing without calling it "lost".
- Bounded: a wait for answers lasts at most the Client's timeout, and never
  past the moment the first of the leases asked about runs out.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from mcpctl.client import _calls as calls
from mcpctl.client._values import (
    Header,
    LeaseKeepAlive,
    LeaseList,
    LeaseState,
    TimeToLive,
)
from mcpctl.errors import LeaseNotFound, McpError, Unavailable

if TYPE_CHECKING:
    from mcpctl._proto.mcp.v1 import lease_pb2_grpc as lease_grpc
    from mcpctl.client._calls import Call
    from mcpctl.client._keepalive import Keeper
    from mcpctl.client._rules import Timing

log = logging.getLogger("mcpctl.client.lease")
R = TypeVar("R")

OnLost = Callable[["Lease"], None]
OnRenewed = Callable[["Lease", int], None]


class Lease(LeaseState):
    """A lease this Client keeps alive in the background until ``revoke()``, the
    end of a ``with`` block (which revokes it) or ``Client.close()``.

    ``id``; ``ttl`` (seconds, as last granted or renewed); ``lost`` (an Event set
    when the lease is gone) with ``lost_reason``; ``on_lost(lease)`` and
    ``on_renewed(lease, ttl)`` run on the keeper's thread. Pass the lease (or its
    id) as ``lease=`` to ``put`` or ``put_op`` to attach keys to it."""

    lost: threading.Event
    on_lost: OnLost | None
    on_renewed: OnRenewed | None

    def __init__(
        self,
        client: LeaseCalls,
        lease_id: int,
        ttl: int,
        sent_at: float,
        *,
        on_lost: OnLost | None = None,
        on_renewed: OnRenewed | None = None,
    ) -> None:
        super().__init__(lease_id, ttl, sent_at, threading.Event(), on_lost, on_renewed)
        self._client = client

    def revoke(self) -> None:
        """Stop renewing, then revoke: every attached key is deleted in one revision.
        A lease already gone is not an error."""
        self._client._keeper.remove(self)
        with contextlib.suppress(LeaseNotFound):
            self._client.revoke(self.id)

    def time_to_live(self, *, keys: bool = False) -> TimeToLive:
        """The leader's remaining TTL (and the attached keys with ``keys``)."""
        return self._client.time_to_live(self.id, keys=keys)

    def __enter__(self) -> Lease:
        return self

    def __exit__(self, exc_type: object, *_: object) -> None:
        if exc_type is None:
            self.revoke()
            return
        try:  # do not hide the block's own exception; the TTL ends the lease anyway
            self.revoke()
        except McpError as e:
            log.warning("lease %016x: revoke on exit failed: %s", self.id, e)


class LeaseCalls:
    """The lease calls of ``Client`` (a mixin: ``Client`` provides the plumbing
    below and builds ``_keeper``)."""

    _keeper: Keeper
    _timing: Timing

    if TYPE_CHECKING:

        def _call(
            self, pick: Callable[[str], Callable[..., Any]], request: Any, *, timeout: float | None
        ) -> Any: ...

        def _lease_stub(self, endpoint: str) -> lease_grpc.LeaseStub: ...

        def _run(self, call: Call[R], timeout: float | None) -> R: ...

    def grant(
        self,
        ttl: int,
        *,
        id: int = 0,
        keep_alive: bool = True,
        on_lost: OnLost | None = None,
        on_renewed: OnRenewed | None = None,
        timeout: float | None = None,
    ) -> Lease:
        """A new lease of ``ttl`` seconds (``id`` 0: the cluster picks one; a TTL
        below the cluster's minimum is raised: see ``lease.ttl``), kept alive by
        this client until revoked or the client closes (``keep_alive=False``:
        not renewed here, e.g. for another process to keep alive). ``with
        client.grant(10) as lease:`` revokes it at the end of the block."""
        if keep_alive:
            self._keeper.check_room()
        sent_at = self._timing.monotonic()
        granted = self._run(calls.grant(ttl, id=id), timeout)
        lease = Lease(
            self, granted.id, granted.ttl, sent_at, on_lost=on_lost, on_renewed=on_renewed
        )
        lease.header = granted.header
        if keep_alive:
            self._keeper.add(lease)
        return lease

    def keep_alive(
        self,
        lease_id: int,
        *,
        on_lost: OnLost | None = None,
        on_renewed: OnRenewed | None = None,
        timeout: float | None = None,
    ) -> Lease:
        """Keep alive a lease granted elsewhere: renewed once now (``on_renewed``
        too), then in the background like one from ``grant``. ``LeaseNotFound``
        when it is gone."""
        self._keeper.check_room()
        sent_at = self._timing.monotonic()
        first = self.keep_alive_once(lease_id, timeout=timeout)
        lease = Lease(self, lease_id, first.ttl, sent_at, on_lost=on_lost, on_renewed=on_renewed)
        if on_renewed is not None:
            on_renewed(lease, first.ttl)
        self._keeper.add(lease)
        return lease

    def keep_alive_once(self, lease_id: int, *, timeout: float | None = None) -> LeaseKeepAlive:
        """Renew a lease once (on the leader; followers send the client on).
        ``LeaseNotFound`` when it is gone (the answer was TTL 0)."""

        def pick(endpoint: str) -> Callable[..., Any]:
            def call(request: Any, timeout: float, metadata: Any) -> Any:
                stub = self._lease_stub(endpoint)
                for msg in stub.KeepAlive(iter((request,)), timeout=timeout, metadata=metadata):
                    return msg
                raise Unavailable(f"{endpoint} ended the keepalive stream without an answer")

            return call

        req = calls.keep_alive_request(lease_id)
        return calls.keep_alive_answer(lease_id, self._call(pick, req, timeout=timeout))

    def revoke(self, lease: Lease | int, *, timeout: float | None = None) -> Header:
        """Revoke a lease: its keys are deleted in one revision. ``LeaseNotFound``."""
        if isinstance(lease, Lease):
            self._keeper.remove(lease)
        return self._run(calls.revoke(lease), timeout)

    def time_to_live(
        self, lease: Lease | int, *, keys: bool = False, timeout: float | None = None
    ) -> TimeToLive:
        """The leader's remaining and granted TTL (and keys). ``LeaseNotFound``."""
        return self._run(calls.time_to_live(lease, keys=keys), timeout)

    def leases(self, *, timeout: float | None = None) -> LeaseList:
        """Every live lease's id."""
        return self._run(calls.leases(), timeout)
