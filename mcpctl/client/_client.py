"""``Client``: KV, watch, cluster and membership calls over one list of endpoints.

Each call builds its request, runs it through ``_call`` (the rules of
``_rules``: endpoints in turn, bounded attempts, explicit outcomes) and
returns a typed value of ``_values``. Channels come from a ``ChannelFactory``
(``_transport``), so tests need no network; time comes from ``Timing``.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import grpc

from mcpctl import limits
from mcpctl._proto.mcp.v1 import kv_pb2 as kv
from mcpctl._proto.mcp.v1 import kv_pb2_grpc as kv_grpc
from mcpctl.client._keepalive import Keeper
from mcpctl.client._lease import Lease, LeaseCalls, lease_id_of
from mcpctl.client._rules import Attempts, Connections, Timing, error_of, not_connected
from mcpctl.client._transport import (
    TOKEN_ENV,
    ChannelFactory,
    check_endpoint,
    endpoints_from_env,
    grpc_channels,
    tls_credentials,
    wait_connected,
)
from mcpctl.client._values import (
    DeleteResult,
    GetResult,
    Header,
    KeyValue,
    MemberStatus,
    PutResult,
    TxnResult,
    encode_key,
    encode_value,
    new_request_id,
)
from mcpctl.client._watch import WatchStream
from mcpctl.errors import Unavailable

if TYPE_CHECKING:  # imported lazily at run time: `mcpctl get` should start fast
    from mcpctl._proto.mcp.v1 import cluster_pb2 as cluster
    from mcpctl._proto.mcp.v1 import cluster_pb2_grpc as cluster_grpc
    from mcpctl._proto.mcp.v1 import lease_pb2_grpc as lease_grpc
    from mcpctl._proto.mcp.v1 import watch_pb2_grpc as watch_grpc

Resp = TypeVar("Resp")


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
        if endpoints is None:
            endpoints = endpoints_from_env()
        elif isinstance(endpoints, str):
            endpoints = endpoints_from_env(endpoints)
        if not endpoints:
            raise ValueError("at least one endpoint is required")
        self.endpoints = [check_endpoint(e) for e in endpoints]
        self.timeout = timeout
        self.attempts_max = attempts_max
        self._channels: dict[str, grpc.Channel] = {}
        self._stubs: dict[str, kv_grpc.KVStub] = {}
        self._cluster_stubs: dict[str, cluster_grpc.ClusterStub] = {}
        self._watch_stubs: dict[str, watch_grpc.WatchStub] = {}
        self._lease_stubs: dict[str, lease_grpc.LeaseStub] = {}
        self._channel_lock = threading.Lock()  # the lease keeper's thread opens channels too
        self._current = 0
        self._connections = Connections()
        token = token if token is not None else os.environ.get(TOKEN_ENV) or None
        self._metadata: tuple[tuple[str, str], ...] = (
            (("authorization", f"Bearer {token}"),) if token else ()
        )
        self._credentials = tls_credentials(
            cacert if cacert is not None else os.environ.get("MCPCTL_CACERT"),
            cert if cert is not None else os.environ.get("MCPCTL_CERT"),
            key if key is not None else os.environ.get("MCPCTL_KEY"),
        )
        self._open_channel = channel_factory or grpc_channels(self._credentials)
        self._timing = timing or Timing()
        self._keeper = Keeper(self.endpoints, self._open_keepalive, timeout, self._timing)

    # -- plumbing ------------------------------------------------------------
    def _channel(self, endpoint: str) -> grpc.Channel:
        with self._channel_lock:
            channel = self._channels.get(endpoint)
            if channel is None:
                channel = self._channels[endpoint] = self._open_channel(endpoint)
            return channel

    def _connect(self, endpoint: str, timeout_s: float) -> bool:
        """True when ``endpoint``'s channel is connected (known, or ready within
        ``timeout_s``); a request is sent only then (``_rules``: sent or not)."""
        if self._connections.known(endpoint):
            return True
        if not wait_connected(self._channel(endpoint), timeout_s):
            return False
        self._connections.up(endpoint)
        return True

    def _endpoint(self) -> str:
        return self.endpoints[self._current % len(self.endpoints)]

    def _watch_stub(self, endpoint: str) -> watch_grpc.WatchStub:
        from mcpctl._proto.mcp.v1 import watch_pb2_grpc as watch_grpc

        stub = self._watch_stubs.get(endpoint)
        if stub is None:
            stub = self._watch_stubs[endpoint] = watch_grpc.WatchStub(self._channel(endpoint))
        return stub

    def _stub(self, endpoint: str) -> kv_grpc.KVStub:
        stub = self._stubs.get(endpoint)
        if stub is None:
            stub = self._stubs[endpoint] = kv_grpc.KVStub(self._channel(endpoint))
        return stub

    def _call(
        self,
        pick: Callable[[str], Callable[..., Resp]],
        request: Any,
        *,
        timeout: float | None,
    ) -> Resp:
        """One logical call: try endpoints in turn within one deadline (``_rules``)."""
        attempts = Attempts(self.timeout if timeout is None else timeout, self._timing)
        for attempt in range(self.attempts_max):
            remaining_s = attempts.remaining_s()
            if remaining_s <= 0:
                break
            endpoint = self._endpoint()
            sent = from_server = False
            if self._connect(endpoint, remaining_s):
                sent = True
                try:
                    resp = pick(endpoint)(
                        request, timeout=attempts.remaining_s(), metadata=self._metadata
                    )
                    self._connections.up(endpoint)
                    return resp
                except grpc.RpcError as e:
                    err, from_server = error_of(e)
                self._connections.seen(endpoint, from_server)
            else:
                err = not_connected(endpoint)
            pause_s = attempts.after(err, from_server, sent, attempt, len(self.endpoints))
            self._current += 1
            if pause_s is None:
                break
            if pause_s > 0:
                self._timing.sleep(pause_s)
        raise attempts.outcome(request, self.endpoints)

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
        req = kv.RangeRequest(
            key=encode_key(key),
            prefix=prefix,
            revision=revision,
            serializable=serializable,
            keys_only=keys_only,
            count_only=count_only,
            limit=limit,
        )
        resp: kv.RangeResponse = self._call(lambda e: self._stub(e).Range, req, timeout=timeout)
        return GetResult(
            Header.of(resp.header), [KeyValue.of(i) for i in resp.kvs], resp.count, resp.more
        )

    def put(
        self,
        key: str | bytes,
        value: str | bytes,
        *,
        prev_kv: bool = False,
        expected_mod_revision: int | None = None,
        lease: Lease | int | None = None,
        request_id: str | None = None,
        timeout: float | None = None,
    ) -> PutResult:
        """Write a key; ``lease`` (a ``Lease`` or its id) attaches it to that lease,
        none detaches it from the one it had (as etcd)."""
        req = kv.PutRequest(
            key=encode_key(key),
            value=encode_value(value),
            prev_kv=prev_kv,
            lease=lease_id_of(lease),
            request_id=request_id or new_request_id(),
        )
        if expected_mod_revision is not None:
            req.expected_mod_revision = expected_mod_revision
        resp: kv.PutResponse = self._call(lambda e: self._stub(e).Put, req, timeout=timeout)
        prev = KeyValue.of(resp.prev_kv) if resp.HasField("prev_kv") else None
        return PutResult(Header.of(resp.header), prev)

    def delete(
        self,
        key: str | bytes,
        *,
        prefix: bool = False,
        prev_kv: bool = False,
        request_id: str | None = None,
        timeout: float | None = None,
    ) -> DeleteResult:
        req = kv.DeleteRangeRequest(
            key=encode_key(key),
            prefix=prefix,
            prev_kv=prev_kv,
            request_id=request_id or new_request_id(),
        )
        resp: kv.DeleteRangeResponse = self._call(
            lambda e: self._stub(e).DeleteRange, req, timeout=timeout
        )
        return DeleteResult(
            Header.of(resp.header), resp.deleted, [KeyValue.of(i) for i in resp.prev_kvs]
        )

    def txn(
        self,
        compare: Iterable[kv.Compare] = (),
        success: Iterable[kv.RequestOp] = (),
        failure: Iterable[kv.RequestOp] = (),
        *,
        request_id: str | None = None,
        timeout: float | None = None,
    ) -> TxnResult:
        req = kv.TxnRequest(
            compare=list(compare),
            success=list(success),
            failure=list(failure),
            request_id=request_id or new_request_id(),
        )
        resp: kv.TxnResponse = self._call(lambda e: self._stub(e).Txn, req, timeout=timeout)
        return TxnResult(Header.of(resp.header), resp.succeeded, list(resp.responses))

    def history(
        self,
        key: str | bytes,
        *,
        prefix: bool = False,
        limit: int = 0,
        timeout: float | None = None,
    ) -> kv.HistoryResponse:
        """A key's (or prefix's) past changes still in history, newest first."""
        req = kv.HistoryRequest(key=encode_key(key), prefix=prefix, limit=limit)
        resp: kv.HistoryResponse = self._call(lambda e: self._stub(e).History, req, timeout=timeout)
        return resp

    def compact(self, revision: int, *, timeout: float | None = None) -> Header:
        req = kv.CompactionRequest(revision=revision)
        resp: kv.CompactionResponse = self._call(
            lambda e: self._stub(e).Compact, req, timeout=timeout
        )
        return Header.of(resp.header)

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
        from mcpctl._proto.mcp.v1 import watch_pb2 as watchpb

        req = watchpb.WatchRequest(
            key=encode_key(key),
            prefix=prefix,
            start_revision=start_revision,
            prev_kv=prev_kv,
            progress_notify=progress_notify,
            progress_interval_ms=progress_interval_ms,
        )
        return WatchStream(self, req, connect_timeout_s=connect_timeout_s)

    # -- Lease plumbing (the calls are LeaseCalls, in _lease) -------------------------
    def _lease_stub(self, endpoint: str) -> lease_grpc.LeaseStub:
        from mcpctl._proto.mcp.v1 import lease_pb2_grpc as lease_grpc

        stub = self._lease_stubs.get(endpoint)
        if stub is None:
            stub = self._lease_stubs[endpoint] = lease_grpc.LeaseStub(self._channel(endpoint))
        return stub

    def _open_keepalive(self, endpoint: str, requests: Iterator[Any]) -> Any:
        return self._lease_stub(endpoint).KeepAlive(requests, metadata=self._metadata)

    # -- Cluster ---------------------------------------------------------------
    def _cluster_stub(self, endpoint: str) -> cluster_grpc.ClusterStub:
        from mcpctl._proto.mcp.v1 import cluster_pb2_grpc as cluster_grpc

        stub = self._cluster_stubs.get(endpoint)
        if stub is None:
            stub = self._cluster_stubs[endpoint] = cluster_grpc.ClusterStub(self._channel(endpoint))
        return stub

    def cluster_status(self, *, timeout: float | None = None) -> cluster.ClusterStatusResponse:
        """Every member's health and replication lag, answered by any one member."""
        from mcpctl._proto.mcp.v1 import cluster_pb2 as cluster

        resp: cluster.ClusterStatusResponse = self._call(
            lambda e: self._cluster_stub(e).ClusterStatus,
            cluster.ClusterStatusRequest(),
            timeout=timeout,
        )
        return resp

    def member_list(self, *, timeout: float | None = None) -> list[cluster.Member]:
        from mcpctl._proto.mcp.v1 import cluster_pb2 as cluster

        resp: cluster.MemberListResponse = self._call(
            lambda e: self._cluster_stub(e).MemberList,
            cluster.MemberListRequest(),
            timeout=timeout,
        )
        return list(resp.members)

    def member_add(
        self, name: str, raft_address: str, client_address: str, *, timeout: float | None = None
    ) -> list[cluster.Member]:
        """Add a voter (then start it with every member in its config)."""
        from mcpctl._proto.mcp.v1 import cluster_pb2 as cluster

        req = cluster.MemberAddRequest(
            name=name, raft_address=raft_address, client_address=client_address
        )
        resp: cluster.MemberAddResponse = self._call(
            lambda e: self._cluster_stub(e).MemberAdd, req, timeout=timeout
        )
        return list(resp.members)

    def member_remove(self, name: str, *, timeout: float | None = None) -> list[cluster.Member]:
        """Remove a voter; it stops serving once it learns it was removed."""
        from mcpctl._proto.mcp.v1 import cluster_pb2 as cluster

        resp: cluster.MemberRemoveResponse = self._call(
            lambda e: self._cluster_stub(e).MemberRemove,
            cluster.MemberRemoveRequest(name=name),
            timeout=timeout,
        )
        return list(resp.members)

    def snapshot(self, path: str, *, timeout: float | None = None) -> Any:
        """Save a backup of the whole store to ``path``; returns its BackupInfo."""
        import hashlib
        from pathlib import Path

        from mcpctl import backup
        from mcpctl._proto.mcp.v1 import cluster_pb2 as cluster

        def fetch(endpoint: str) -> Callable[..., tuple[bytes, int]]:
            def call(request: Any, timeout: float, metadata: Any) -> tuple[bytes, int]:
                parts: list[bytes] = []
                revision, digest = 0, ""
                stub = self._cluster_stub(endpoint)
                for chunk in stub.Snapshot(request, timeout=timeout, metadata=metadata):
                    parts.append(chunk.data)
                    revision, digest = chunk.revision, chunk.sha256 or digest
                data = b"".join(parts)
                if hashlib.sha256(data).hexdigest() != digest:
                    raise Unavailable("snapshot stream damaged (checksum mismatch); retry")
                return data, revision

            return call

        data, revision = self._call(fetch, cluster.SnapshotRequest(), timeout=timeout)
        return backup.write(Path(path), data, revision)

    def status(self, endpoint: str, *, timeout: float | None = None) -> MemberStatus:
        """The status of the member at ``endpoint`` (no retries, no failover)."""
        from mcpctl._proto.mcp.v1 import cluster_pb2 as cluster

        stub = self._cluster_stub(endpoint)
        try:
            resp = stub.Status(
                cluster.StatusRequest(),
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
        for channel in self._channels.values():
            channel.close()
        self._channels.clear()
        self._stubs.clear()
        self._cluster_stubs.clear()
        self._watch_stubs.clear()
        self._lease_stubs.clear()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
