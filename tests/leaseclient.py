"""A tiny gRPC client of the ``Lease`` service, for the tests until the SDK has one.

``LeaseClient`` calls Grant/Revoke/TimeToLive/Leases (and Put with a lease) on
one endpoint or the first that answers; ``KeepAliver`` keeps leases alive from
a thread, every ``interval_s``, moving to the next endpoint when one answers
UNAVAILABLE (a follower, or a leader whose clock is not running yet), and
records whether any lease was ever reported gone (ttl 0).

``python -m tests.leaseclient hold ENDPOINTS PREFIX TTL`` is a lease *holder*
as a process: it grants a lease, attaches ``HOLDER_KEYS`` keys under PREFIX,
prints the lease id and keeps the lease alive until it is killed (tests
kill -9 it).
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import grpc

from mcpctl._proto.mcp.v1 import kv_pb2 as kv
from mcpctl._proto.mcp.v1 import kv_pb2_grpc as kv_grpc
from mcpctl._proto.mcp.v1 import lease_pb2 as lease
from mcpctl._proto.mcp.v1 import lease_pb2_grpc as lease_grpc
from mcpctl.client._rules import error_of
from mcpctl.errors import McpError, Unavailable

T = TypeVar("T")
# Keys a holder process attaches to its lease.
HOLDER_KEYS = 3


def _error(e: grpc.RpcError) -> McpError:
    """The SDK's mapping (``mcpctl.client._rules.error_of``): a bare CANCELLED (a
    member gone mid-call without answering) is ``Unavailable``, as for any client
    of ours; a stopping member answers UNAVAILABLE itself."""
    return error_of(e)[0]


class LeaseClient:
    def __init__(self, endpoints: list[str], timeout_s: float = 5.0) -> None:
        self.endpoints = list(endpoints)
        self.timeout_s = timeout_s
        self._channels = {e: grpc.insecure_channel(e) for e in endpoints}

    def close(self) -> None:
        for ch in self._channels.values():
            ch.close()

    def __enter__(self) -> LeaseClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def lease_stub(self, endpoint: str) -> lease_grpc.LeaseStub:
        return lease_grpc.LeaseStub(self._channels[endpoint])

    def _call(self, fn: Callable[[grpc.Channel], T], endpoint: str | None) -> T:
        """On ``endpoint``, or on each endpoint in turn until one is not UNAVAILABLE."""
        last: McpError | None = None
        for e in [endpoint] if endpoint else self.endpoints:
            try:
                return fn(self._channels[e])
            except grpc.RpcError as err:
                last = _error(err)
                if not isinstance(last, Unavailable) or endpoint:
                    raise last from None
        assert last is not None
        raise last

    def grant(
        self, ttl: int, lease_id: int = 0, endpoint: str | None = None
    ) -> kv.LeaseGrantResponse:
        req = kv.LeaseGrantRequest(ttl=ttl, id=lease_id)
        return self._call(
            lambda ch: lease_grpc.LeaseStub(ch).Grant(req, timeout=self.timeout_s), endpoint
        )

    def revoke(self, lease_id: int, endpoint: str | None = None) -> kv.LeaseRevokeResponse:
        req = kv.LeaseRevokeRequest(id=lease_id)
        return self._call(
            lambda ch: lease_grpc.LeaseStub(ch).Revoke(req, timeout=self.timeout_s), endpoint
        )

    def time_to_live(
        self, lease_id: int, keys: bool = False, endpoint: str | None = None
    ) -> lease.LeaseTimeToLiveResponse:
        req = lease.LeaseTimeToLiveRequest(id=lease_id, keys=keys)
        return self._call(
            lambda ch: lease_grpc.LeaseStub(ch).TimeToLive(req, timeout=self.timeout_s), endpoint
        )

    def leases(self, endpoint: str | None = None) -> list[int]:
        req = lease.LeaseLeasesRequest()
        resp = self._call(
            lambda ch: lease_grpc.LeaseStub(ch).Leases(req, timeout=self.timeout_s), endpoint
        )
        return [s.id for s in resp.leases]

    def put(self, key: str, value: str, lease_id: int, endpoint: str | None = None) -> int:
        req = kv.PutRequest(key=key.encode(), value=value.encode(), lease=lease_id)
        resp = self._call(lambda ch: kv_grpc.KVStub(ch).Put(req, timeout=self.timeout_s), endpoint)
        return int(resp.header.revision)

    def get(self, key: str, endpoint: str | None = None) -> kv.KeyValue | None:
        resp = self.range(key, endpoint=endpoint)
        return resp.kvs[0] if resp.kvs else None

    def range(
        self, key: str, *, serializable: bool = False, endpoint: str | None = None
    ) -> kv.RangeResponse:
        """One key, with the answer's header (linearizable unless ``serializable``)."""
        req = kv.RangeRequest(key=key.encode(), serializable=serializable)
        return self._call(
            lambda ch: kv_grpc.KVStub(ch).Range(req, timeout=self.timeout_s), endpoint
        )

    def keepalive_once(
        self, endpoint: str, ids: list[int], timeout_s: float | None = None
    ) -> list[lease.LeaseKeepAliveResponse]:
        """One stream: one request per id, their answers, then the stream ends."""
        return self.keepalive_requests(
            endpoint, [lease.LeaseKeepAliveRequest(id=i) for i in ids], timeout_s
        )

    def keepalive_requests(
        self,
        endpoint: str,
        requests: list[lease.LeaseKeepAliveRequest],
        timeout_s: float | None = None,
    ) -> list[lease.LeaseKeepAliveResponse]:
        """One stream: these requests, their answers, then the stream ends."""
        deadline = self.timeout_s if timeout_s is None else timeout_s
        try:
            return list(self.lease_stub(endpoint).KeepAlive(iter(requests), timeout=deadline))
        except grpc.RpcError as err:
            raise _error(err) from None


class KeepAliver:
    """Keeps ``ids`` alive from a thread, one stream at a time, moving between endpoints."""

    def __init__(
        self, client: LeaseClient, ids: list[int], interval_s: float, stream_timeout_s: float = 5.0
    ) -> None:
        self._client = client
        self.ids = ids
        self.interval_s = interval_s
        # A stream to a member that stopped answering (SIGSTOP) ends after this.
        self.stream_timeout_s = stream_timeout_s
        self.gone: list[lease.LeaseKeepAliveResponse] = []  # ttl 0 answers
        self.renewals = 0
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> KeepAliver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def _requests(self) -> Iterator[lease.LeaseKeepAliveRequest]:
        while not self._stop.is_set():
            for i in self.ids:
                yield lease.LeaseKeepAliveRequest(id=i)
            self._stop.wait(self.interval_s)

    def _run(self) -> None:
        n = 0
        while not self._stop.is_set():
            endpoint = self._client.endpoints[n % len(self._client.endpoints)]
            n += 1
            try:
                stream = self._client.lease_stub(endpoint).KeepAlive(
                    self._requests(), timeout=self.stream_timeout_s
                )
                for resp in stream:
                    if resp.ttl <= 0:
                        self.gone.append(resp)
                    else:
                        self.renewals += 1
            except grpc.RpcError as err:
                self.errors.append(f"{endpoint}: {_error(err)}")
                self._stop.wait(0.05)  # then the next endpoint


def hold(endpoints: list[str], prefix: str, ttl: int) -> None:
    """Grant, attach HOLDER_KEYS keys under ``prefix``, print the id, keep it alive."""
    with LeaseClient(endpoints) as client:
        lease_id = client.grant(ttl).id
        for i in range(HOLDER_KEYS):
            client.put(f"{prefix}{i}", "held", lease_id)
        print(lease_id, flush=True)
        with KeepAliver(client, [lease_id], interval_s=max(0.2, ttl / 3)):
            while True:
                time.sleep(3600)


def main(argv: list[str]) -> Any:
    if len(argv) == 4 and argv[0] == "hold":  # hold ENDPOINTS PREFIX TTL
        return hold(argv[1].split(","), argv[2], int(argv[3]))
    raise SystemExit("usage: python -m tests.leaseclient hold ENDPOINTS PREFIX TTL")


if __name__ == "__main__":
    main(sys.argv[1:])
