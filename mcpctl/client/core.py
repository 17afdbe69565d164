"""The Python SDK: ``Client`` talks to any member of a cluster.

- Endpoints are tried in turn: a member that is down, has no leader, or
  cannot confirm leadership (UNAVAILABLE) makes the client move on to the
  next one, with bounded backoff between rounds.
- Every write carries a request id, so retrying one whose outcome is
  unknown (leader lost mid-flight) is safe: the cluster applies it at most
  once. When every attempt ends unknown, ``OutcomeUnknown`` is raised and the
  caller can tell "not applied" (``Unavailable``) from "maybe applied".
- Bounded: one overall deadline per call (``timeout``), at most
  ``attempts_max`` attempts, backoff between ``CLIENT_BACKOFF_S_MIN`` and
  ``CLIENT_BACKOFF_S_MAX``.
- Errors are the classes of ``mcpctl.errors``, rebuilt from the status.
"""

from __future__ import annotations

import os
import random
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import grpc

from mcpctl import limits
from mcpctl._proto.mcp.v1 import kv_pb2
from mcpctl._proto.mcp.v1 import kv_pb2 as kv
from mcpctl._proto.mcp.v1 import kv_pb2_grpc as kv_grpc
from mcpctl.errors import (
    ERROR_KIND_KEY,
    DeadlineExceeded,
    Internal,
    McpError,
    OutcomeUnknown,
    Unavailable,
    from_status,
)

if TYPE_CHECKING:  # imported lazily at run time: `mcpctl get` should start fast
    from mcpctl._proto.mcp.v1 import cluster_pb2 as cluster
    from mcpctl._proto.mcp.v1 import cluster_pb2_grpc as cluster_grpc
    from mcpctl._proto.mcp.v1 import watch_pb2 as watchpb
    from mcpctl._proto.mcp.v1 import watch_pb2_grpc as watch_grpc

DEFAULT_ENDPOINTS = ("127.0.0.1:7101", "127.0.0.1:7102", "127.0.0.1:7103")
ENDPOINTS_ENV = "MCPCTL_ENDPOINTS"
TOKEN_ENV = "MCPCTL_TOKEN"

Resp = TypeVar("Resp")


def check_endpoint(endpoint: str) -> str:
    """``endpoint`` if it is ``host:port``; ``ValueError`` saying what is missing.

    grpc would take ``garbage`` as a host name on its default port and fail
    with a DNS error; the port is what is missing, so say that. A target with a
    scheme (``unix:/path``, ``dns:///host:port``) is left to grpc.
    """
    host, sep, port = endpoint.rpartition(":")
    if not sep or not port or endpoint.endswith("]"):
        raise ValueError(
            f"endpoint {endpoint!r} has no port: write host:port (e.g. 127.0.0.1:7101)"
        )
    if not host:
        raise ValueError(
            f"endpoint {endpoint!r} has no host: write host:port (e.g. 127.0.0.1:7101)"
        )
    if port.isdigit() and not 0 < int(port) <= 65535:
        raise ValueError(f"endpoint {endpoint!r}: port {port} is not in 1..65535")
    return endpoint


def endpoints_from_env(value: str | None = None) -> list[str]:
    raw = value if value is not None else os.environ.get(ENDPOINTS_ENV, "")
    found = [e.strip() for e in raw.split(",") if e.strip()]
    return found or list(DEFAULT_ENDPOINTS)


@dataclass(frozen=True, slots=True)
class Header:
    cluster_id: int
    member_id: int
    member_name: str
    revision: int
    raft_term: int

    @classmethod
    def of(cls, h: kv.ResponseHeader) -> Header:
        return cls(h.cluster_id, h.member_id, h.member_name, h.revision, h.raft_term)


@dataclass(frozen=True, slots=True)
class KeyValue:
    key: str
    value: bytes
    create_revision: int
    mod_revision: int
    version: int

    @classmethod
    def of(cls, item: kv.KeyValue) -> KeyValue:
        return cls(
            item.key.decode("utf-8", "replace"),
            item.value,
            item.create_revision,
            item.mod_revision,
            item.version,
        )

    @property
    def text(self) -> str:
        return self.value.decode("utf-8", "replace")


@dataclass(frozen=True, slots=True)
class GetResult:
    header: Header
    kvs: list[KeyValue]
    count: int
    more: bool

    @property
    def first(self) -> KeyValue | None:
        return self.kvs[0] if self.kvs else None


@dataclass(frozen=True, slots=True)
class PutResult:
    header: Header
    prev_kv: KeyValue | None

    @property
    def revision(self) -> int:
        return self.header.revision


@dataclass(frozen=True, slots=True)
class DeleteResult:
    header: Header
    deleted: int
    prev_kvs: list[KeyValue]


@dataclass(frozen=True, slots=True)
class TxnResult:
    header: Header
    succeeded: bool
    responses: list[kv.ResponseOp]


@dataclass(frozen=True, slots=True)
class MemberStatus:
    endpoint: str
    member_name: str
    role: str
    term: int
    leader: str
    commit_index: int
    applied_index: int
    has_quorum: bool
    ready: bool
    revision: int
    compact_revision: int
    keys: int
    header: Header

    @classmethod
    def of(cls, endpoint: str, r: cluster.StatusResponse) -> MemberStatus:
        return cls(
            endpoint,
            r.member_name,
            r.role,
            r.term,
            r.leader,
            r.commit_index,
            r.applied_index,
            r.has_quorum,
            r.ready,
            r.revision,
            r.compact_revision,
            r.keys,
            Header.of(r.header),
        )


@dataclass(frozen=True, slots=True)
class Event:
    type: str  # "PUT" or "DELETE"
    kv: KeyValue
    prev_kv: KeyValue | None

    @classmethod
    def of(cls, ev: kv_pb2.Event) -> Event:  # `kv` here would be the field
        return cls(
            "DELETE" if ev.type == kv_pb2.Event.DELETE else "PUT",
            KeyValue.of(ev.kv),
            KeyValue.of(ev.prev_kv) if ev.HasField("prev_kv") else None,
        )


@dataclass(frozen=True, slots=True)
class WatchBatch:
    """One watch message: all events of the revisions it covers, in order."""

    header: Header
    events: list[Event]
    created: bool = False
    progress: bool = False

    @property
    def revision(self) -> int:
        return self.header.revision


class WatchStream:
    """Iterate ``WatchBatch``es; resumes on another member after a failure.

    The stream remembers the next revision it needs; when a member fails
    (UNAVAILABLE, a dropped connection), it reopens the watch on the next
    endpoint from that revision, so no event is lost or repeated. It gives
    up after ``WATCH_RESUME_ATTEMPTS_MAX`` consecutive failed attempts
    (backoff with jitter, capped at ``CLIENT_BACKOFF_S_MAX``) and raises
    ``Compacted`` when the history it needs is gone. ``close()`` ends it
    from any thread.

    ``connect_timeout_s`` (None: no bound) bounds only the first connection,
    like one call of ``Client``: if no member has answered the watch by then,
    ``DeadlineExceeded`` is raised, and when no endpoint takes a connection
    at all the stream fails at once with ``Unavailable``. Once the first
    answer arrived, reconnects follow the rule above.
    """

    def __init__(
        self,
        client: Client,
        request: watchpb.WatchRequest,
        *,
        connect_timeout_s: float | None = None,
    ) -> None:
        self._client = client
        self._request = request
        self.next_revision = request.start_revision  # 0 = from "now"
        self._call: Any = None
        self._closed = threading.Event()
        self._connect_timeout_s = connect_timeout_s

    def close(self) -> None:
        self._closed.set()
        call = self._call
        if call is not None:
            call.cancel()

    def __enter__(self) -> WatchStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __iter__(self) -> Iterator[WatchBatch]:
        failures = 0
        refused = 0  # attempts in a row whose connection was never made
        backoff = limits.CLIENT_BACKOFF_S_MIN
        from mcpctl._proto.mcp.v1 import watch_pb2 as watchpb

        connected = False  # a member has answered this stream once
        last: McpError | None = None
        timeout_s = self._connect_timeout_s
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while not self._closed.is_set():
            req = watchpb.WatchRequest()
            req.CopyFrom(self._request)
            req.start_revision = self.next_revision
            endpoint = self._client._endpoint()
            # Until the first answer, the deadline cancels a call that hangs
            # (an endpoint that takes the connection and never answers).
            timer: threading.Timer | None = None
            try:
                call = self._call = self._client._watch_stub(endpoint).Watch(
                    req, metadata=self._client._metadata
                )
                if not connected and deadline is not None:
                    timer = threading.Timer(max(0.0, deadline - time.monotonic()), call.cancel)
                    timer.daemon = True
                    timer.start()
                for msg in call:
                    if timer is not None:
                        timer.cancel()
                    connected = True
                    failures = 0
                    backoff = limits.CLIENT_BACKOFF_S_MIN
                    if msg.progress and msg.header.revision < self.next_revision - 1:
                        # A member behind what this stream already delivered
                        # (after a resume): its bookmark would go backwards.
                        continue
                    yield self._advance(msg)
                if self._closed.is_set():
                    return
                err: McpError = Unavailable("the member ended the watch")
            except grpc.RpcError as e:
                if self._closed.is_set():
                    return
                if not connected and deadline is not None and time.monotonic() >= deadline:
                    # The timer cancelled this call: the error worth showing is the last one.
                    raise self._no_answer(timeout_s, last) from None
                err, from_server = _error(e)
                last = err
                if not isinstance(err, Unavailable | DeadlineExceeded | Internal):
                    raise err from None
                refused = refused + 1 if _not_sent(err, from_server) else 0
                if (
                    deadline is not None
                    and not connected
                    and refused >= len(self._client.endpoints)
                ):
                    raise err from None  # nothing listens at any endpoint
            finally:
                if timer is not None:
                    timer.cancel()
            failures += 1
            if failures >= limits.WATCH_RESUME_ATTEMPTS_MAX:
                raise err
            self._client._current += 1
            pause = backoff * random.uniform(0.5, 1.0)
            if not connected and deadline is not None:
                pause = min(pause, max(0.0, deadline - time.monotonic()))
            self._closed.wait(pause)
            backoff = min(backoff * 2, limits.CLIENT_BACKOFF_S_MAX)
            if not connected and deadline is not None and time.monotonic() >= deadline:
                raise self._no_answer(timeout_s, last)

    def _no_answer(self, timeout_s: float | None, last: McpError | None) -> DeadlineExceeded:
        """The first connection did not come within ``connect_timeout_s``."""
        return DeadlineExceeded(
            f"no watch established within {timeout_s or 0:.1f}s "
            f"from {', '.join(self._client.endpoints)}"
            + (f" (last error: {last.message})" if last else "")
        )

    def _advance(self, msg: watchpb.WatchResponse) -> WatchBatch:
        header = Header.of(msg.header)
        if msg.created:
            if self.next_revision == 0:
                self.next_revision = header.revision + 1
        elif msg.events:
            self.next_revision = max(self.next_revision, msg.events[-1].kv.mod_revision + 1)
        elif msg.progress:
            self.next_revision = max(self.next_revision, header.revision + 1)
        return WatchBatch(
            header, [Event.of(e) for e in msg.events], created=msg.created, progress=msg.progress
        )


def _tls_credentials(
    cacert: str | None, cert: str | None, key: str | None
) -> grpc.ChannelCredentials | None:
    if not (cacert or cert or key):
        return None
    if bool(cert) != bool(key):
        raise ValueError("give both a client certificate and its key (--cert and --key)")

    def read(path: str | None, what: str) -> bytes | None:
        if not path:
            return None
        try:
            with open(path, "rb") as f:
                return f.read()
        except OSError as e:
            raise ValueError(f"{what} {path}: {e.strerror}") from None

    return grpc.ssl_channel_credentials(
        root_certificates=read(cacert, "--cacert"),
        private_key=read(key, "--key"),
        certificate_chain=read(cert, "--cert"),
    )


def _key(key: str | bytes) -> bytes:
    return key.encode("utf-8", "surrogateescape") if isinstance(key, str) else key


def _value(value: str | bytes) -> bytes:
    return value.encode("utf-8") if isinstance(value, str) else value


def new_request_id() -> str:
    return uuid.uuid4().hex


class Client:
    """A connection to a cluster through a list of endpoints (``host:port``)."""

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
    ) -> None:
        """``token``: bearer token (default: env MCPCTL_TOKEN). ``cacert``: CA
        file to verify the servers (turns TLS on); ``cert``/``key``: a client
        certificate for mutual TLS. Env MCPCTL_CACERT/_CERT/_KEY likewise."""
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
        self._current = 0
        token = token if token is not None else os.environ.get(TOKEN_ENV) or None
        self._metadata: tuple[tuple[str, str], ...] = (
            (("authorization", f"Bearer {token}"),) if token else ()
        )
        self._credentials = _tls_credentials(
            cacert if cacert is not None else os.environ.get("MCPCTL_CACERT"),
            cert if cert is not None else os.environ.get("MCPCTL_CERT"),
            key if key is not None else os.environ.get("MCPCTL_KEY"),
        )

    # -- plumbing ------------------------------------------------------------
    def _channel(self, endpoint: str) -> grpc.Channel:
        channel = self._channels.get(endpoint)
        if channel is None:
            options = [
                ("grpc.max_receive_message_length", limits.GRPC_SEND_BYTES_MAX),
                ("grpc.max_send_message_length", limits.GRPC_SEND_BYTES_MAX),
                ("grpc.initial_reconnect_backoff_ms", 100),
                ("grpc.min_reconnect_backoff_ms", 100),
                ("grpc.max_reconnect_backoff_ms", 1000),
                ("grpc.enable_retries", 0),
            ]
            channel = self._channels[endpoint] = (
                grpc.secure_channel(endpoint, self._credentials, options=options)
                if self._credentials is not None
                else grpc.insecure_channel(endpoint, options=options)
            )
        return channel

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
        """One logical call: try endpoints in turn within one deadline."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        backoff = limits.CLIENT_BACKOFF_S_MIN
        last: McpError | None = None
        unknown = False
        refused = 0  # attempts in a row whose connection was never made
        for attempt in range(self.attempts_max):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            endpoint = self.endpoints[self._current % len(self.endpoints)]
            try:
                return pick(endpoint)(request, timeout=remaining, metadata=self._metadata)
            except grpc.RpcError as e:
                err, from_server = _error(e)
            if not isinstance(err, Unavailable | DeadlineExceeded):
                raise err
            last = err
            # A transport failure after the request left may still have
            # delivered it; only a connection never made or the node's own
            # "unavailable" answer proves a write was not applied.
            not_sent = _not_sent(err, from_server)
            unknown = unknown or (
                isinstance(err, OutcomeUnknown | DeadlineExceeded)
                or (not from_server and not not_sent)
            )
            self._current += 1
            refused = refused + 1 if not_sent else 0
            if refused >= len(self.endpoints):
                # No endpoint took a connection, one after the other: nothing
                # listens, and grpc's own reconnect backoff would only replay
                # the same failure. One endpoint or three, fail now.
                break
            if (attempt + 1) % len(self.endpoints) == 0:
                pause = backoff * random.uniform(0.5, 1.0)  # jitter: spread retries out
                time.sleep(min(pause, max(0.0, deadline - time.monotonic())))
                backoff = min(backoff * 2, limits.CLIENT_BACKOFF_S_MAX)
        if unknown and bool(getattr(request, "request_id", False)):
            raise OutcomeUnknown(
                f"the write may have been applied: {last.message if last else 'deadline passed'}"
            )
        if last is not None and not isinstance(last, DeadlineExceeded):
            raise last
        raise DeadlineExceeded(
            f"no answer within {self.timeout if timeout is None else timeout:.1f}s "
            f"from {', '.join(self.endpoints)}" + (f" (last error: {last.message})" if last else "")
        )

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
            key=_key(key),
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
        request_id: str | None = None,
        timeout: float | None = None,
    ) -> PutResult:
        req = kv.PutRequest(
            key=_key(key),
            value=_value(value),
            prev_kv=prev_kv,
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
            key=_key(key),
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
        req = kv.HistoryRequest(key=_key(key), prefix=prefix, limit=limit)
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
            key=_key(key),
            prefix=prefix,
            start_revision=start_revision,
            prev_kv=prev_kv,
            progress_notify=progress_notify,
            progress_interval_ms=progress_interval_ms,
        )
        return WatchStream(self, req, connect_timeout_s=connect_timeout_s)

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
            raise _error(e)[0] from None
        return MemberStatus.of(endpoint, resp)

    # -- lifecycle -------------------------------------------------------------
    def close(self) -> None:
        for channel in self._channels.values():
            channel.close()
        self._channels.clear()
        self._stubs.clear()
        self._cluster_stubs.clear()
        self._watch_stubs.clear()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# How grpc says a call never reached a server: nothing listens (or the
# connection attempt timed out), or the host name does not resolve.
_NOT_SENT_MARKERS = ("failed to connect", "DNS resolution failed", "errors resolving")


def _not_sent(err: McpError, from_server: bool) -> bool:
    """The transport could not reach the endpoint: the request never left."""
    return (
        not from_server
        and type(err) is Unavailable
        and any(marker in err.message for marker in _NOT_SENT_MARKERS)
    )


def _error(e: grpc.RpcError) -> tuple[McpError, bool]:
    """The error a call ended with, and whether a node (not the transport) said it."""
    code = e.code() if hasattr(e, "code") else grpc.StatusCode.UNKNOWN
    details = (e.details() if hasattr(e, "details") else None) or str(e)
    trailers = e.trailing_metadata() if hasattr(e, "trailing_metadata") else None
    metadata: dict[str, str] = {}
    for item in trailers or ():
        key, value = item.key, item.value
        if isinstance(value, str):
            metadata[key] = value
    if code == grpc.StatusCode.CANCELLED and ERROR_KIND_KEY not in metadata:
        # Not our doing (a call this client cancels never gets here): the member
        # went away mid-call (a graceful stop cancels calls in flight) or the
        # transport dropped it. Like a broken connection: try another member;
        # a write may have been applied.
        return Unavailable(f"the call was cancelled by the member or transport: {details}"), False
    return from_status(code.name, details, metadata), ERROR_KIND_KEY in metadata


__all__ = [
    "Client",
    "DeleteResult",
    "Event",
    "GetResult",
    "Header",
    "KeyValue",
    "MemberStatus",
    "PutResult",
    "TxnResult",
    "WatchBatch",
    "WatchStream",
]
