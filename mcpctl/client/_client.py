"""``Client``: KV, watch, cluster and membership calls over one list of endpoints.

Each call builds its request, runs it through ``_call`` (the rules of
``_rules``: endpoints in turn, bounded attempts, explicit outcomes) and
returns a typed value of ``_values``. Channels come from a ``ChannelFactory``
(``_transport``), so tests need no network; time comes from ``Timing``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import grpc

from mcpctl import limits
from mcpctl.client import _calls as calls
from mcpctl.client._keepalive import Keeper
from mcpctl.client._lease import LeaseCalls
from mcpctl.client._results import ClusterStatus, HistoryResult, Member
from mcpctl.client._rules import (
    Attempts,
    ClientClosed,
    Endpoints,
    Timing,
    error_of,
    not_connected,
)
from mcpctl.client._transport import (
    ChannelFactory,
    auth_metadata,
    client_endpoints,
    grpc_channels,
    tls_credentials,
    wait_connected,
)
from mcpctl.client._txn import Compare, Op
from mcpctl.client._values import (
    DeleteResult,
    GetResult,
    Header,
    LeaseHandle,
    MemberStatus,
    PutResult,
    TxnResult,
)
from mcpctl.client._watch import WatchStream

if TYPE_CHECKING:  # imported lazily at run time: `mcpctl get` should start fast
    from mcpctl._proto.mcp.v1 import cluster_pb2_grpc as cluster_grpc
    from mcpctl._proto.mcp.v1 import kv_pb2 as kv
    from mcpctl._proto.mcp.v1 import lease_pb2_grpc as lease_grpc
    from mcpctl._proto.mcp.v1 import watch_pb2_grpc as watch_grpc
    from mcpctl.backup import BackupInfo

Resp = TypeVar("Resp")
R = TypeVar("R")


class Client(LeaseCalls):
    """A connection to a cluster through a list of endpoints (``host:port``).

    Its lease calls (``grant``, ``keep_alive``, ``revoke``, ``time_to_live``,
    ``leases``) are in ``_lease``."""

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
        channel_factory: ChannelFactory | None = None,
        timing: Timing | None = None,
    ) -> None:
        """``token``: bearer token (default: env MCPCTL_TOKEN). ``cacert``: CA
        file to verify the servers (turns TLS on); ``cert``/``key``: a client
        certificate for mutual TLS. Env MCPCTL_CACERT/_CERT/_KEY likewise.

        ``channel_factory``: opens the channel for an endpoint (default: a
        real gRPC channel with the TLS settings above); ``timing``: the clock,
        pause and jitter of the retry rules (default: the real ones). Both are
        seams for tests: fake channels and a fake clock need no network and
        no sleeps."""
        self.endpoints = client_endpoints(endpoints)
        self.timeout = timeout
        self.attempts_max = attempts_max
        self._channels: dict[str, grpc.Channel] = {}
        self._service_stubs: dict[str, dict[str, Any]] = {}
        self._watch_stubs: dict[str, watch_grpc.WatchStub] = {}
        self._channel_lock = threading.Lock()  # the lease keeper's thread opens channels too
        self._closed = False  # after close(), no channel opens again (a watch's retry would)
        self._endpoints = Endpoints(self.endpoints)
        self._metadata = auth_metadata(token)
        self._credentials = tls_credentials(cacert, cert, key)
        self._open_channel = channel_factory or grpc_channels(self._credentials)
        self._timing = timing or Timing()
        self._keeper = Keeper(self.endpoints, self._open_keepalive, timeout, self._timing)

    # -- plumbing ------------------------------------------------------------
    def _channel(self, endpoint: str) -> grpc.Channel:
        with self._channel_lock:
            if self._closed:
                raise ClientClosed("this client is closed")
            channel = self._channels.get(endpoint)
            if channel is None:
                channel = self._channels[endpoint] = self._open_channel(endpoint)
            return channel

    def _connect(self, endpoint: str, timeout_s: float) -> bool:
        """True when ``endpoint``'s channel is connected (known, or ready within
        ``timeout_s``); a request is sent only then (``_rules``: sent or not)."""
        if self._endpoints.known(endpoint):
            return True
        if not wait_connected(self._channel(endpoint), timeout_s):
            return False
        self._endpoints.up(endpoint)
        return True

    def _endpoint(self) -> str:
        return self._endpoints.current()

    def _watch_stub(self, endpoint: str) -> watch_grpc.WatchStub:
        from mcpctl._proto.mcp.v1 import watch_pb2_grpc as watch_grpc

        stub = self._watch_stubs.get(endpoint)
        if stub is None:
            stub = self._watch_stubs[endpoint] = watch_grpc.WatchStub(self._channel(endpoint))
        return stub

    def _call(
        self,
        pick: Callable[[str], Callable[..., Resp]],
        request: Any,
        *,
        timeout: float | None,
    ) -> Resp:
        """One logical call: try endpoints in turn within one deadline (``_rules``)."""
        attempts = Attempts(
            self._endpoints,
            self.timeout if timeout is None else timeout,
            self.attempts_max,
            self._timing,
        )
        while (endpoint := attempts.next()) is not None:
            if not self._connect(endpoint, attempts.remaining_s()):
                pause_s = attempts.failed(endpoint, not_connected(endpoint), False, sent=False)
            else:
                try:
                    resp = pick(endpoint)(
                        request, timeout=attempts.remaining_s(), metadata=self._metadata
                    )
                    return attempts.answered(endpoint, resp)
                except grpc.RpcError as e:
                    pause_s = attempts.failed(endpoint, *error_of(e), sent=True)
            if pause_s > 0:
                self._timing.sleep(pause_s)
        raise attempts.outcome(request)

    def _service(self, service: calls.Service, endpoint: str) -> Any:
        """The stub of ``service`` on ``endpoint``'s channel (cached)."""
        stubs = self._service_stubs.setdefault(service, {})
        stub = stubs.get(endpoint)
        if stub is None:
            stub = stubs[endpoint] = calls.stub_class(service)(self._channel(endpoint))
        return stub

    def _run(self, call: calls.Call[R], timeout: float | None) -> R:
        """Run a ``Call`` of ``_calls`` through ``_call`` and read its answer."""
        resp = self._call(
            lambda e: getattr(self._service(call.service, e), call.method),
            call.request,
            timeout=timeout,
        )
        return call.result(resp)

    # -- KV --------------------------------------------------------------------
    def get(
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
        return self._run(
            calls.get(
                key,
                prefix=prefix,
                revision=revision,
                serializable=serializable,
                keys_only=keys_only,
                count_only=count_only,
                limit=limit,
            ),
            timeout,
        )

    def put(
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
        """Write a key; ``lease`` (a ``Lease`` or its id) attaches it to that lease,
        none detaches it from the one it had (as etcd)."""
        return self._run(
            calls.put(
                key,
                value,
                prev_kv=prev_kv,
                expected_mod_revision=expected_mod_revision,
                lease=lease,
                request_id=request_id,
            ),
            timeout,
        )

    def delete(
        self,
        key: str | bytes,
        *,
        prefix: bool = False,
        prev_kv: bool = False,
        request_id: str | None = None,
        timeout: float | None = None,
    ) -> DeleteResult:
        call = calls.delete(key, prefix=prefix, prev_kv=prev_kv, request_id=request_id)
        return self._run(call, timeout)

    def txn(
        self,
        compare: Iterable[Compare | kv.Compare] = (),
        success: Iterable[Op | kv.RequestOp] = (),
        failure: Iterable[Op | kv.RequestOp] = (),
        *,
        request_id: str | None = None,
        timeout: float | None = None,
    ) -> TxnResult:
        """If every ``compare`` holds, run ``success``, else ``failure``, atomically
        at one revision (``Compare``/``Op`` of ``mcpctl``; see ``_txn``)."""
        return self._run(calls.txn(compare, success, failure, request_id=request_id), timeout)

    def history(
        self,
        key: str | bytes,
        *,
        prefix: bool = False,
        limit: int = 0,
        timeout: float | None = None,
    ) -> HistoryResult:
        """A key's (or prefix's) past changes still in history, newest first."""
        return self._run(calls.history(key, prefix=prefix, limit=limit), timeout)

    def compact(self, revision: int, *, timeout: float | None = None) -> Header:
        return self._run(calls.compact(revision), timeout)

    # -- Watch -----------------------------------------------------------------
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
        """Changes to a key or prefix from ``start_revision`` (0 = from now on).

        ``connect_timeout_s`` bounds the first connection (see ``WatchStream``)."""
        req = calls.watch_request(
            key,
            prefix=prefix,
            start_revision=start_revision,
            prev_kv=prev_kv,
            progress_notify=progress_notify,
            progress_interval_ms=progress_interval_ms,
        )
        return WatchStream(self, req, connect_timeout_s=connect_timeout_s)

    # -- Lease plumbing (the calls are LeaseCalls, in _lease) -------------------------
    def _lease_stub(self, endpoint: str) -> lease_grpc.LeaseStub:
        stub: lease_grpc.LeaseStub = self._service("Lease", endpoint)
        return stub

    def _open_keepalive(self, endpoint: str, requests: Iterator[Any]) -> Any:
        return self._lease_stub(endpoint).KeepAlive(requests, metadata=self._metadata)

    # -- Cluster ---------------------------------------------------------------
    def _cluster_stub(self, endpoint: str) -> cluster_grpc.ClusterStub:
        stub: cluster_grpc.ClusterStub = self._service("Cluster", endpoint)
        return stub

    def cluster_status(self, *, timeout: float | None = None) -> ClusterStatus:
        """Every member's health and replication lag, answered by any one member."""
        return self._run(calls.cluster_status(), timeout)

    def member_list(self, *, timeout: float | None = None) -> list[Member]:
        return self._run(calls.member_list(), timeout)

    def member_add(
        self, name: str, raft_address: str, client_address: str, *, timeout: float | None = None
    ) -> list[Member]:
        """Add a voter (then start it with every member in its config)."""
        return self._run(calls.member_add(name, raft_address, client_address), timeout)

    def member_remove(self, name: str, *, timeout: float | None = None) -> list[Member]:
        """Remove a voter; it stops serving once it learns it was removed."""
        return self._run(calls.member_remove(name), timeout)

    def snapshot(self, path: str, *, timeout: float | None = None) -> BackupInfo:
        """Save a backup of the whole store to ``path``; returns its ``BackupInfo``."""
        from pathlib import Path

        from mcpctl import backup

        def fetch(endpoint: str) -> Callable[..., tuple[bytes, int]]:
            def call(request: Any, timeout: float, metadata: Any) -> tuple[bytes, int]:
                chunks = self._cluster_stub(endpoint).Snapshot(
                    request, timeout=timeout, metadata=metadata
                )
                return calls.snapshot_data(chunks)

            return call

        data, revision = self._call(fetch, calls.snapshot_request(), timeout=timeout)
        return backup.write(Path(path), data, revision)

    def status(self, endpoint: str, *, timeout: float | None = None) -> MemberStatus:
        """The status of the member at ``endpoint`` (no retries, no failover)."""
        stub = self._cluster_stub(endpoint)
        try:
            resp = stub.Status(
                calls.status_request(),
                timeout=self.timeout if timeout is None else timeout,
                metadata=self._metadata,
            )
        except grpc.RpcError as e:
            raise error_of(e)[0] from None
        return MemberStatus.of(endpoint, resp)

    # -- lifecycle -------------------------------------------------------------
    def close(self) -> None:
        """Stop keeping leases alive (they expire on the cluster), close the channels."""
        self._keeper.close()
        with self._channel_lock:
            self._closed = True
            channels = list(self._channels.values())
            self._channels.clear()
            self._service_stubs.clear()
            self._watch_stubs.clear()
        for channel in channels:
            channel.close()

    @property
    def closed(self) -> bool:
        return self._closed

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
