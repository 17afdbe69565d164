"""``Client`` of the asyncio SDK: the sync ``Client``'s calls with ``await``.

What is shared with ``mcpctl.client.Client`` (nothing is copied):

- ``_calls``: each method's request and typed result;
- ``_rules``: ``Attempts`` (the deadline, which errors move on, the pause
  after a round, nothing-listens, the outcome of a call no attempt answered)
  and ``Connections`` (a request is sent only on a channel known connected:
  the "never sent" proof);
- ``_transport``: endpoints, token, TLS and channel options.

What is its own: the asyncio I/O (``grpc.aio`` channels, ``asyncio.sleep``,
waiting for a channel with ``wait_for_state_change``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import grpc

from mcpctl import limits
from mcpctl._proto.mcp.v1 import watch_pb2_grpc
from mcpctl.aio._lease import Lease, OnLost, OnRenewed
from mcpctl.aio._watch import EOF, WatchStream
from mcpctl.client import _calls as calls
from mcpctl.client._results import ClusterStatus, HistoryResult, Member
from mcpctl.client._rules import (
    Attempts,
    ClientClosed,
    Endpoints,
    Timing,
    check_lease_room,
    error_of,
    not_connected,
)
from mcpctl.client._transport import (
    CHANNEL_OPTIONS,
    auth_metadata,
    client_endpoints,
    tls_credentials,
)
from mcpctl.client._txn import Compare, Op
from mcpctl.client._values import (
    DeleteResult,
    GetResult,
    Header,
    LeaseHandle,
    LeaseKeepAlive,
    LeaseList,
    MemberStatus,
    PutResult,
    TimeToLive,
    TxnResult,
    lease_id_of,
)
from mcpctl.errors import Unavailable

if TYPE_CHECKING:
    from mcpctl._proto.mcp.v1 import kv_pb2 as kv
    from mcpctl.backup import BackupInfo

R = TypeVar("R")

# The channel for one endpoint (``host:port``); opened once and cached.
AsyncChannelFactory = Callable[[str], grpc.aio.Channel]

_SETTLED = (
    grpc.ChannelConnectivity.READY,
    grpc.ChannelConnectivity.TRANSIENT_FAILURE,
    grpc.ChannelConnectivity.SHUTDOWN,
)


def aio_channels(credentials: grpc.ChannelCredentials | None) -> AsyncChannelFactory:
    """The real transport: a ``grpc.aio`` channel per endpoint (TLS when ``credentials``)."""

    def open_channel(endpoint: str) -> grpc.aio.Channel:
        options = list(CHANNEL_OPTIONS)
        if credentials is not None:
            return grpc.aio.secure_channel(endpoint, credentials, options=options)
        return grpc.aio.insecure_channel(endpoint, options=options)

    return open_channel


async def wait_connected(channel: grpc.aio.Channel, timeout_s: float) -> bool:
    """Connect ``channel`` if idle and wait until it is ready (True), or its
    connection attempt failed, or ``timeout_s`` passed (False)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + max(0.0, timeout_s)
    state = channel.get_state(try_to_connect=True)
    while state not in _SETTLED:
        try:
            await asyncio.wait_for(
                channel.wait_for_state_change(state), max(0.0, deadline - loop.time())
            )
        except TimeoutError:
            return False
        state = channel.get_state(try_to_connect=True)
    return state is grpc.ChannelConnectivity.READY


class Client:
    """An asyncio connection to a cluster through a list of endpoints.

    The arguments are the sync ``Client``'s; ``channel_factory`` opens a
    ``grpc.aio`` channel per endpoint. Use it inside one event loop, and
    ``await close()`` (or ``async with``) at the end."""

    def __init__(
        self,
        endpoints: Sequence[str] | str | None = None,
        *,
        timeout: float = limits.CLIENT_TIMEOUT_S_DEFAULT,
        attempts_max: int = limits.CLIENT_ATTEMPTS_MAX,
        token: str | None = None,
        cacert: str | None = None,
        cert: str | None = None,
        key: str | None = None,
        channel_factory: AsyncChannelFactory | None = None,
        timing: Timing | None = None,
    ) -> None:
        self.endpoints = client_endpoints(endpoints)
        self.timeout = timeout
        self.attempts_max = attempts_max
        self._metadata = auth_metadata(token)
        self._open_channel = channel_factory or aio_channels(tls_credentials(cacert, cert, key))
        self._timing = timing or Timing()
        self._channels: dict[str, grpc.aio.Channel] = {}
        self._closed = False  # after close(), no channel opens again (a watch's retry would)
        self._stubs: dict[tuple[str, str], Any] = {}
        self._endpoints = Endpoints(self.endpoints)
        self._leases: dict[int, Lease] = {}

    # -- plumbing ------------------------------------------------------------------
    def _channel(self, endpoint: str) -> grpc.aio.Channel:
        if self._closed:
            raise ClientClosed("this client is closed")
        channel = self._channels.get(endpoint)
        if channel is None:
            channel = self._channels[endpoint] = self._open_channel(endpoint)
        return channel

    def _endpoint(self) -> str:
        return self._endpoints.current()

    def _service(self, service: str, endpoint: str) -> Any:
        stub = self._stubs.get((service, endpoint))
        if stub is None:
            if service == "Watch":
                cls: Any = watch_pb2_grpc.WatchStub
            else:
                cls = calls.stub_class(service)  # type: ignore[arg-type]
            stub = self._stubs[(service, endpoint)] = cls(self._channel(endpoint))
        return stub

    def _watch_stub(self, endpoint: str) -> Any:
        return self._service("Watch", endpoint)

    async def _connect(self, endpoint: str, timeout_s: float) -> bool:
        """True when ``endpoint``'s channel is connected (known, or ready within
        ``timeout_s``); a request is sent only then (``_rules``)."""
        if self._endpoints.known(endpoint):
            return True
        if not await wait_connected(self._channel(endpoint), timeout_s):
            return False
        self._endpoints.up(endpoint)
        return True

    async def _call(
        self,
        pick: Callable[[str], Callable[..., Awaitable[Any]]],
        request: Any,
        *,
        timeout: float | None,
    ) -> Any:
        """One logical call: endpoints in turn within one deadline (``Attempts``)."""
        attempts = Attempts(
            self._endpoints,
            self.timeout if timeout is None else timeout,
            self.attempts_max,
            self._timing,
        )
        while (endpoint := attempts.next()) is not None:
            if not await self._connect(endpoint, attempts.remaining_s()):
                pause_s = attempts.failed(endpoint, not_connected(endpoint), False, sent=False)
            else:
                try:
                    resp = await pick(endpoint)(
                        request, timeout=attempts.remaining_s(), metadata=self._metadata
                    )
                    return attempts.answered(endpoint, resp)
                except grpc.RpcError as e:
                    pause_s = attempts.failed(endpoint, *error_of(e), sent=True)
            if pause_s > 0:
                await self._timing.asleep(pause_s)
        raise attempts.outcome(request)

    async def _run(self, call: calls.Call[R], timeout: float | None) -> R:
        resp = await self._call(
            lambda e: getattr(self._service(call.service, e), call.method),
            call.request,
            timeout=timeout,
        )
        return call.result(resp)

    # -- KV ------------------------------------------------------------------------
    async def get(
        self,
        key: str | bytes,
        *,
        prefix: bool = False,
        revision: int = 0,
        serializable: bool = False,
        keys_only: bool = False,
        count_only: bool = False,
        limit: int = 0,
        timeout: float | None = None,
    ) -> GetResult:
        call = calls.get(
            key,
            prefix=prefix,
            revision=revision,
            serializable=serializable,
            keys_only=keys_only,
            count_only=count_only,
            limit=limit,
        )
        return await self._run(call, timeout)

    async def put(
        self,
        key: str | bytes,
        value: str | bytes,
        *,
        prev_kv: bool = False,
        expected_mod_revision: int | None = None,
        lease: LeaseHandle | int | None = None,
        request_id: str | None = None,
        timeout: float | None = None,
    ) -> PutResult:
        call = calls.put(
            key,
            value,
            prev_kv=prev_kv,
            expected_mod_revision=expected_mod_revision,
            lease=lease,
            request_id=request_id,
        )
        return await self._run(call, timeout)

    async def delete(
        self,
        key: str | bytes,
        *,
        prefix: bool = False,
        prev_kv: bool = False,
        request_id: str | None = None,
        timeout: float | None = None,
    ) -> DeleteResult:
        call = calls.delete(key, prefix=prefix, prev_kv=prev_kv, request_id=request_id)
        return await self._run(call, timeout)

    async def txn(
        self,
        compare: Iterable[Compare | kv.Compare] = (),
        success: Iterable[Op | kv.RequestOp] = (),
        failure: Iterable[Op | kv.RequestOp] = (),
        *,
        request_id: str | None = None,
        timeout: float | None = None,
    ) -> TxnResult:
        call = calls.txn(compare, success, failure, request_id=request_id)
        return await self._run(call, timeout)

    async def history(
        self,
        key: str | bytes,
        *,
        prefix: bool = False,
        limit: int = 0,
        timeout: float | None = None,
    ) -> HistoryResult:
        return await self._run(calls.history(key, prefix=prefix, limit=limit), timeout)

    async def compact(self, revision: int, *, timeout: float | None = None) -> Header:
        return await self._run(calls.compact(revision), timeout)

    def watch(
        self,
        key: str | bytes,
        *,
        prefix: bool = False,
        start_revision: int = 0,
        prev_kv: bool = False,
        progress_notify: bool = False,
        progress_interval_ms: int = 0,
        connect_timeout_s: float | None = None,
    ) -> WatchStream:
        """Changes to a key or prefix from ``start_revision`` (0: from now on)."""
        req = calls.watch_request(
            key,
            prefix=prefix,
            start_revision=start_revision,
            prev_kv=prev_kv,
            progress_notify=progress_notify,
            progress_interval_ms=progress_interval_ms,
        )
        return WatchStream(self, req, connect_timeout_s=connect_timeout_s)

    # -- leases --------------------------------------------------------------------
    def _check_room(self) -> None:
        check_lease_room(len(self._leases))

    def _keep(self, lease: Lease) -> None:
        self._check_room()
        self._leases[lease.id] = lease
        lease._start()

    async def grant(
        self,
        ttl: int,
        *,
        id: int = 0,
        keep_alive: bool = True,
        on_lost: OnLost | None = None,
        on_renewed: OnRenewed | None = None,
        timeout: float | None = None,
    ) -> Lease:
        """A new lease of ``ttl`` seconds, renewed by a task of this client until
        revoked or the client closes (``keep_alive=False``: not renewed here)."""
        if keep_alive:
            self._check_room()
        sent_at = self._timing.monotonic()
        granted = await self._run(calls.grant(ttl, id=id), timeout)
        lease = Lease(
            self, granted.id, granted.ttl, sent_at, on_lost=on_lost, on_renewed=on_renewed
        )
        lease.header = granted.header
        if keep_alive:
            self._keep(lease)
        return lease

    async def keep_alive(
        self,
        lease_id: int,
        *,
        on_lost: OnLost | None = None,
        on_renewed: OnRenewed | None = None,
        timeout: float | None = None,
    ) -> Lease:
        """Keep alive a lease granted elsewhere (renewed once now). ``LeaseNotFound``."""
        self._check_room()
        sent_at = self._timing.monotonic()
        first = await self.keep_alive_once(lease_id, timeout=timeout)
        lease = Lease(self, lease_id, first.ttl, sent_at, on_lost=on_lost, on_renewed=on_renewed)
        self._keep(lease)
        return lease

    async def keep_alive_once(
        self, lease_id: int, *, timeout: float | None = None
    ) -> LeaseKeepAlive:
        """Renew a lease once. ``LeaseNotFound`` when it is gone (TTL 0)."""

        def pick(endpoint: str) -> Callable[..., Awaitable[Any]]:
            async def call(request: Any, timeout: float, metadata: Any) -> Any:
                stream = self._service("Lease", endpoint).KeepAlive(
                    timeout=timeout, metadata=metadata
                )
                await stream.write(request)
                msg = await stream.read()
                stream.cancel()
                if msg is EOF:
                    raise Unavailable(f"{endpoint} ended the keepalive stream without an answer")
                return msg

            return call

        msg = await self._call(pick, calls.keep_alive_request(lease_id), timeout=timeout)
        return calls.keep_alive_answer(lease_id, msg)

    async def revoke(self, lease: LeaseHandle | int, *, timeout: float | None = None) -> Header:
        """Revoke a lease: its keys are deleted in one revision. ``LeaseNotFound``."""
        kept = self._leases.pop(lease_id_of(lease), None)
        if kept is not None:
            kept._stop()
        return await self._run(calls.revoke(lease), timeout)

    async def time_to_live(
        self, lease: LeaseHandle | int, *, keys: bool = False, timeout: float | None = None
    ) -> TimeToLive:
        return await self._run(calls.time_to_live(lease, keys=keys), timeout)

    async def leases(self, *, timeout: float | None = None) -> LeaseList:
        return await self._run(calls.leases(), timeout)

    # -- cluster -------------------------------------------------------------------
    async def cluster_status(self, *, timeout: float | None = None) -> ClusterStatus:
        return await self._run(calls.cluster_status(), timeout)

    async def member_list(self, *, timeout: float | None = None) -> list[Member]:
        return await self._run(calls.member_list(), timeout)

    async def member_add(
        self, name: str, raft_address: str, client_address: str, *, timeout: float | None = None
    ) -> list[Member]:
        return await self._run(calls.member_add(name, raft_address, client_address), timeout)

    async def member_remove(self, name: str, *, timeout: float | None = None) -> list[Member]:
        return await self._run(calls.member_remove(name), timeout)

    async def snapshot(self, path: str, *, timeout: float | None = None) -> BackupInfo:
        """Save a backup of the whole store to ``path``; returns its ``BackupInfo``."""
        from pathlib import Path

        from mcpctl import backup

        def fetch(endpoint: str) -> Callable[..., Awaitable[tuple[bytes, int]]]:
            async def call(request: Any, timeout: float, metadata: Any) -> tuple[bytes, int]:
                stream = self._service("Cluster", endpoint).Snapshot(
                    request, timeout=timeout, metadata=metadata
                )
                return calls.snapshot_data([chunk async for chunk in stream])

            return call

        data, revision = await self._call(fetch, calls.snapshot_request(), timeout=timeout)
        return backup.write(Path(path), data, revision)

    async def status(self, endpoint: str, *, timeout: float | None = None) -> MemberStatus:
        """The status of the member at ``endpoint`` (no retries, no failover)."""
        try:
            resp = await self._service("Cluster", endpoint).Status(
                calls.status_request(),
                timeout=self.timeout if timeout is None else timeout,
                metadata=self._metadata,
            )
        except grpc.RpcError as e:
            raise error_of(e)[0] from None
        return MemberStatus.of(endpoint, resp)

    # -- lifecycle -----------------------------------------------------------------
    async def close(self) -> None:
        """Stop renewing leases (they expire on the cluster), close the channels."""
        for lease in list(self._leases.values()):
            lease._stop()
        self._leases.clear()
        self._closed = True
        channels = list(self._channels.values())
        self._channels.clear()
        self._stubs.clear()
        for channel in channels:
            await channel.close(None)

    @property
    def closed(self) -> bool:
        return self._closed

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
