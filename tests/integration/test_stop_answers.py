"""A stopping member answers every call with our error, never a bare CANCELLED.

Before, a member stopping (SIGTERM, or removed from the cluster) left its
open streams to grpc's own stop: after its 1 s grace an idle KeepAlive, an
etcd Watch or LeaseKeepAlive ended UNAVAILABLE "Cancelling all calls" (or
CANCELLED) with no ``mcp-error`` trailer, and the SDK had to guess. Now
(mcpctl.server.stopping): open streams end UNAVAILABLE "member stopping; retry
another member" with the trailer, new calls are refused the same way while
unary calls in flight get ``limits.stop_grace_ms`` to finish, and one still
running then ends UNAVAILABLE with the ``outcome_unknown`` trailer.

Real 3-node clusters as subprocesses, raw gRPC stubs (the status and the
trailers as sent), and the SDK's ``error_of`` for what a client concludes.
"""

from __future__ import annotations

import signal
import threading
import time
import urllib.request
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from mcpctl._proto.etcd.etcdserverpb import rpc_pb2 as erpc
from mcpctl._proto.etcd.etcdserverpb import rpc_pb2_grpc as erpc_grpc
from mcpctl._proto.mcp.v1 import kv_pb2 as kv
from mcpctl._proto.mcp.v1 import kv_pb2_grpc as kv_grpc
from mcpctl._proto.mcp.v1 import lease_pb2 as lease
from mcpctl._proto.mcp.v1 import lease_pb2_grpc as lease_grpc
from mcpctl._proto.mcp.v1 import watch_pb2 as watch
from mcpctl._proto.mcp.v1 import watch_pb2_grpc as watch_grpc
from mcpctl.client._rules import error_of
from mcpctl.errors import ERROR_KIND_KEY, STOPPING, OutcomeUnknown, Unavailable
from tests.cluster import READY_TIMEOUT_S, STOP_TIMEOUT_S, Cluster, NodeProc, running_cluster

pytestmark = pytest.mark.cluster


class Streams:
    """Streams open on one member, each read to its end in a thread."""

    def __init__(self, endpoint: str) -> None:
        self.channel = grpc.insecure_channel(endpoint)
        grpc.channel_ready_future(self.channel).result(READY_TIMEOUT_S)
        self.ended: dict[str, grpc.RpcError | str] = {}
        self._open: dict[str, threading.Event] = {}
        self._threads: list[threading.Thread] = []
        # Bidi streams send one request, then hold their side open until closed.
        self._hold = threading.Event()

    def requests(self, first: Any) -> Iterator[Any]:
        yield first
        self._hold.wait()

    def open(self, name: str, call: Callable[[], Iterable[Any]]) -> None:
        opened = self._open[name] = threading.Event()

        def read() -> None:
            try:
                for _ in call():
                    opened.set()  # its first answer: open on the member
                self.ended[name] = "ended without an error"
            except grpc.RpcError as e:
                self.ended[name] = e
            opened.set()

        t = threading.Thread(target=read, name=name, daemon=True)
        t.start()
        self._threads.append(t)

    def wait_open(self) -> None:
        for name, opened in self._open.items():
            assert opened.wait(READY_TIMEOUT_S), f"{name} did not open"
            assert name not in self.ended, f"{name} ended at once: {self.ended[name]}"

    def wait_ended(self) -> dict[str, grpc.RpcError | str]:
        for t in self._threads:
            t.join(STOP_TIMEOUT_S)
            assert not t.is_alive(), f"{t.name} did not end"
        return self.ended

    def close(self) -> None:
        self._hold.set()
        self.channel.close()


def _watches(s: Streams) -> None:
    """An mcp.v1 Watch, an etcd Watch with a watch, and one without (idle in its reads)."""
    s.open(
        "mcp.v1 Watch",
        lambda: watch_grpc.WatchStub(s.channel).Watch(watch.WatchRequest(key=b"/s/", prefix=True)),
    )
    create = erpc.WatchRequest(create_request=erpc.WatchCreateRequest(key=b"/s/", range_end=b"/s0"))
    s.open("etcd Watch", lambda: erpc_grpc.WatchStub(s.channel).Watch(s.requests(create)))
    progress = erpc.WatchRequest(progress_request=erpc.WatchProgressRequest())
    s.open(
        "etcd Watch, no watch", lambda: erpc_grpc.WatchStub(s.channel).Watch(s.requests(progress))
    )


def _keepalives(s: Streams) -> None:
    """An mcp.v1 KeepAlive and an etcd LeaseKeepAlive, idle after their first keepalive
    (as a client's between two keepalives, a third of the TTL apart)."""
    mcp = lease_grpc.LeaseStub(s.channel)
    lid = mcp.Grant(kv.LeaseGrantRequest(ttl=60), timeout=10).id
    _wait_lease_clock(mcp, lid)
    s.open(
        "mcp.v1 KeepAlive", lambda: mcp.KeepAlive(s.requests(lease.LeaseKeepAliveRequest(id=lid)))
    )
    etcd = erpc_grpc.LeaseStub(s.channel)
    eid = etcd.LeaseGrant(erpc.LeaseGrantRequest(TTL=60), timeout=10).ID
    s.open(
        "etcd LeaseKeepAlive",
        lambda: etcd.LeaseKeepAlive(s.requests(erpc.LeaseKeepAliveRequest(ID=eid))),
    )


def _wait_lease_clock(stub: Any, lid: int) -> None:
    """Until the leader's lease clock runs (it starts after a read-index fence once
    elected, after the grant may already have committed): one keepalive answered."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    while True:
        try:
            for resp in stub.KeepAlive(iter([lease.LeaseKeepAliveRequest(id=lid)]), timeout=5):
                assert resp.ttl > 0, resp
                return
        except grpc.RpcError as e:
            if e.code() != grpc.StatusCode.UNAVAILABLE or time.monotonic() > deadline:
                raise
        time.sleep(0.05)


def _status(e: grpc.RpcError) -> tuple[grpc.StatusCode, str | None, dict[str, str]]:
    """The status as sent: code, details, trailing metadata."""
    trailers = {str(m.key): str(m.value) for m in e.trailing_metadata() or ()}
    return e.code(), e.details(), trailers


def _assert_member_stopping(ended: dict[str, grpc.RpcError | str]) -> None:
    seen = {}
    for name, e in ended.items():
        assert isinstance(e, grpc.RpcError), f"{name}: {e}"
        seen[name] = _status(e)
    want = (grpc.StatusCode.UNAVAILABLE, STOPPING, {ERROR_KIND_KEY: "unavailable"})
    assert seen == dict.fromkeys(ended, want)
    for e in ended.values():
        assert isinstance(e, grpc.RpcError)
        err, said_by_node = error_of(e)
        assert type(err) is Unavailable and err.message == STOPPING and said_by_node


def test_sigterm_ends_open_streams_with_member_stopping(cluster: Cluster) -> None:
    """Watches and keepalive streams open on the leader (keepalives are served
    there), idle when it gets SIGTERM: each ends UNAVAILABLE with the trailer."""
    leader = cluster.leader()
    s = Streams(leader.endpoint)
    try:
        _watches(s)
        _keepalives(s)
        s.wait_open()
        assert cluster.stop(leader) == 0, leader.log_text()[-2000:]
        _assert_member_stopping(s.wait_ended())
    finally:
        s.close()


def test_removed_member_ends_open_streams_with_member_stopping(cluster: Cluster) -> None:
    """A follower removed through the member API stops the same way."""
    victim = cluster.followers()[0]
    s = Streams(victim.endpoint)
    try:
        _watches(s)
        s.wait_open()
        with cluster.client(*[n for n in cluster.nodes if n is not victim]) as c:
            c.member_remove(victim.name)
        assert victim.proc is not None
        assert victim.proc.wait(STOP_TIMEOUT_S) == 0, victim.log_text()[-2000:]
        _assert_member_stopping(s.wait_ended())
    finally:
        s.close()


# --- unary calls in flight ---------------------------------------------------
# The followers are paused so that a put on the leader stays in flight: the
# leader must neither step down (leader_fallback) nor time the put out
# (proposal_timeout) during the test.
def _held(stop_grace_ms: int) -> dict[str, Any]:
    return {
        "raft": {"leader_fallback_ms": 60_000},
        "limits": {"proposal_timeout_ms": 60_000, "stop_grace_ms": stop_grace_ms},
    }


def _last_log_index(node: NodeProc) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{node.metrics_port}/metrics", timeout=2) as r:
        for line in r.read().decode().splitlines():
            if line.startswith("mcp_raft_last_log_index "):
                return float(line.split()[1])
    raise AssertionError("mcp_raft_last_log_index not in /metrics")


def _put_in_flight(cluster: Cluster, leader: NodeProc, channel: grpc.Channel) -> Any:
    """A put on the leader that cannot commit (both followers paused): in flight
    once the leader appended it to its log."""
    before = _last_log_index(leader)
    for n in cluster.nodes:
        if n is not leader:
            cluster.pause(n)
    put = kv_grpc.KVStub(channel).Put.future(
        kv.PutRequest(key=b"/s/held", value=b"v", request_id="stop-answers-1"), timeout=60
    )
    deadline = time.monotonic() + READY_TIMEOUT_S
    while _last_log_index(leader) <= before:
        assert not put.done(), f"the put ended: {put.exception()}"
        assert time.monotonic() < deadline, "the put was not appended"
        time.sleep(0.02)
    return put


def _wait_refused(channel: grpc.Channel) -> grpc.RpcError:
    """After SIGTERM: a new call answers normally until the member starts
    stopping, then UNAVAILABLE "member stopping" (the wait for the put)."""
    stub = kv_grpc.KVStub(channel)
    deadline = time.monotonic() + STOP_TIMEOUT_S
    while time.monotonic() < deadline:
        try:
            stub.Range(kv.RangeRequest(key=b"/s/", prefix=True, serializable=True), timeout=2)
        except grpc.RpcError as e:
            return e
        time.sleep(0.01)
    raise AssertionError("new calls were still served")


def _assert_refused(e: grpc.RpcError) -> None:
    assert _status(e) == (
        grpc.StatusCode.UNAVAILABLE,
        STOPPING,
        {ERROR_KIND_KEY: "unavailable"},
    )


def test_unary_call_in_flight_finishes_within_the_grace(tmp_path: Path) -> None:
    """SIGTERM while a put waits for its commit: new calls are refused with the
    trailer; the put, committed once the followers are back, is answered OK."""
    # A grace the test cannot outlast on a loaded machine.
    with running_cluster(tmp_path, **_held(stop_grace_ms=60_000)) as cluster:
        _finishes_within_the_grace(cluster)


def _finishes_within_the_grace(cluster: Cluster) -> None:
    leader = cluster.leader()
    channel = grpc.insecure_channel(leader.endpoint)
    try:
        put = _put_in_flight(cluster, leader, channel)
        assert leader.proc is not None
        leader.proc.send_signal(signal.SIGTERM)
        _assert_refused(_wait_refused(channel))
        # Health checks are still answered while the member waits for the put.
        health = health_pb2_grpc.HealthStub(channel)
        got = health.Check(health_pb2.HealthCheckRequest(), timeout=5)
        assert got.status == health_pb2.HealthCheckResponse.NOT_SERVING
        # A new stream is refused like a new unary call (server streaming, bidi).
        with pytest.raises(grpc.RpcError) as refused:
            for _ in watch_grpc.WatchStub(channel).Watch(watch.WatchRequest(key=b"/s/"), timeout=5):
                pass
        _assert_refused(refused.value)
        create = erpc.WatchRequest(create_request=erpc.WatchCreateRequest(key=b"/s/"))
        with pytest.raises(grpc.RpcError) as refused:
            for _ in erpc_grpc.WatchStub(channel).Watch(iter([create]), timeout=5):
                pass
        _assert_refused(refused.value)
        assert not put.done()
        for n in cluster.nodes:
            if n is not leader:
                cluster.resume(n)
        assert put.result(timeout=STOP_TIMEOUT_S).header.revision > 0
        assert leader.proc.wait(STOP_TIMEOUT_S) == 0, leader.log_text()[-2000:]
    finally:
        channel.close()


def test_unary_call_past_the_grace_ends_outcome_unknown(tmp_path: Path) -> None:
    """A put still not committed when the grace ends: UNAVAILABLE with the
    outcome_unknown trailer (it may yet commit), never CANCELLED."""
    with running_cluster(tmp_path, **_held(stop_grace_ms=1000)) as cluster:
        _ends_outcome_unknown(cluster)


def _ends_outcome_unknown(cluster: Cluster) -> None:
    leader = cluster.leader()
    channel = grpc.insecure_channel(leader.endpoint)
    try:
        put = _put_in_flight(cluster, leader, channel)
        assert leader.proc is not None
        leader.proc.send_signal(signal.SIGTERM)
        _assert_refused(_wait_refused(channel))
        e = put.exception(timeout=STOP_TIMEOUT_S)
        assert isinstance(e, grpc.RpcError)
        code, _, trailers = _status(e)
        assert code == grpc.StatusCode.UNAVAILABLE, _status(e)
        assert trailers == {ERROR_KIND_KEY: "outcome_unknown"}
        err, said_by_node = error_of(e)
        assert isinstance(err, OutcomeUnknown) and said_by_node
        assert err.message.startswith(STOPPING)
        assert leader.proc.wait(STOP_TIMEOUT_S) == 0, leader.log_text()[-2000:]
    finally:
        channel.close()


def test_a_client_that_does_not_read_does_not_hold_the_stop(cluster: Cluster) -> None:
    """A watcher that stopped reading: its stream's answer waits behind what it
    has not read, at most STOP_ANSWER_WAIT_S; the member still exits at once."""
    leader = cluster.leader()
    # Windows that stay small: what the client does not read stays on the member.
    small = [("grpc.http2.bdp_probe", 0), ("grpc.http2.lookahead_bytes", 64 * 1024)]
    channel = grpc.insecure_channel(leader.endpoint, options=small)
    try:
        stream = watch_grpc.WatchStub(channel).Watch(watch.WatchRequest(key=b"/s/", prefix=True))
        for first in stream:  # open; from now on nothing is read
            assert first.created
            break
        with cluster.client(leader) as c:
            for i in range(40):  # 4 MB: far past the stream's flow-control window
                c.put(f"/s/big{i % 4}", "x" * 100_000)
        started = time.monotonic()
        assert cluster.stop(leader) == 0, leader.log_text()[-2000:]
        took = time.monotonic() - started
        assert "does not read what it was sent" in leader.log_text(), took
    finally:
        channel.close()
