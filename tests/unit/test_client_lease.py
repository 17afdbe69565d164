"""The SDK's lease rules (``mcpctl/client/_lease.py``, ``_keepalive.py``), as they are.

The fake channels of test_client_rules, plus KeepAlive streams whose answers are
scripted per endpoint, and a stepped clock: the keeper's real thread parks in
``Timing.wait`` and the test lets it run one wait at a time, moving fake time
by what it asked for. No sockets, no sleeps, no timing assertions: the times
checked are fake time. Each test states its rule.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any, cast

import grpc
import pytest

from mcpctl import limits
from mcpctl._proto.mcp.v1 import kv_pb2 as kv
from mcpctl._proto.mcp.v1 import lease_pb2
from mcpctl.client import Client, Lease, put_op
from mcpctl.errors import LeaseNotFound, ResourceExhausted, Unavailable
from tests.unit.test_client_rules import (
    ENDPOINTS,
    Answer,
    FakeClock,
    FakeNet,
    Sent,
    _FakeChannel,
    dropped,
    refused_late,
    said_by_node,
)

KEEPALIVE = "/mcp.v1.Lease/KeepAlive"
LEASE_ID = 0x694D77AA9E38260F
WAIT_S_MAX = 10.0  # how long a test waits for the keeper thread to park (readiness)


# -- the fakes ----------------------------------------------------------------
class SteppedClock(FakeClock):
    """Fake time whose ``wait`` parks the caller (the keeper's thread) until the test
    calls ``advance()`` (the wait's time passes) or the event is set (it returns at once)."""

    def __init__(self) -> None:
        super().__init__()
        self.waits: list[float | None] = []
        self._cond = threading.Condition()
        self._parked_on: threading.Event | None = None
        self._go = False

    def wait(self, event: threading.Event, seconds: float | None) -> bool:
        with self._cond:
            self.waits.append(seconds)
            self._parked_on = event
            self._cond.notify_all()
            # The poll only notices an event set by another thread (add, close).
            while not self._go and not event.is_set():
                self._cond.wait(0.01)
            woken, go = event.is_set(), self._go
            self._parked_on, self._go = None, False
            if go and not woken:
                assert seconds is not None, "advance() while the keeper waits for nothing"
                self.now_s += seconds
            self._cond.notify_all()
            return woken

    def until_parked(self) -> None:
        """Wait until the keeper waits for time to pass (not for an event already set)."""
        with self._cond:
            parked = self._cond.wait_for(
                lambda: self._parked_on is not None and not self._parked_on.is_set(), WAIT_S_MAX
            )
        assert parked, "the keeper thread never parked"

    def advance(self) -> None:
        """Let the parked keeper's wait run out, then wait until it parks again."""
        self.until_parked()
        with self._cond:
            self._go = True
            self._cond.notify_all()
            self._cond.wait_for(lambda: not self._go, WAIT_S_MAX)
        self.until_parked()

    @property
    def next_wait_s(self) -> float | None:
        return self.waits[-1]

    def timing(self) -> Any:
        from mcpctl.client.core import Timing

        return Timing(
            monotonic=self.monotonic, sleep=self.sleep, uniform=self.uniform, wait=self.wait
        )


class FakeStream:
    """A KeepAlive call: each ``next`` takes the next request sent and answers it with
    the endpoint's next scripted answer."""

    def __init__(self, net: LeaseNet, endpoint: str, requests: Iterator[Any], metadata: Any):
        self._net = net
        self._endpoint = endpoint
        self._requests = requests
        self._metadata = metadata
        self.cancelled = False

    def __iter__(self) -> FakeStream:
        return self

    def __next__(self) -> Any:
        request = next(self._requests)
        return self._net.answer(self._endpoint, KEEPALIVE, request, 0.0, self._metadata)

    def cancel(self) -> None:
        self.cancelled = True


class LeaseNet(FakeNet):
    def __init__(self, clock: FakeClock, answers: dict[str, list[Answer]]) -> None:
        super().__init__(clock, answers)
        self.streams: list[tuple[str, FakeStream]] = []

    def channel(self, endpoint: str) -> grpc.Channel:
        self.opened.append(endpoint)
        return cast(grpc.Channel, _LeaseChannel(self, endpoint))

    def keepalives(self) -> list[Sent]:
        return [s for s in self.sent if s.method == KEEPALIVE]


class _LeaseChannel(_FakeChannel):
    def stream_stream(self, method: str, *_: object, **__: object) -> Callable[..., Any]:
        net = cast(LeaseNet, self._net)

        def call(requests: Iterator[Any], timeout: float | None = None, metadata: Any = ()) -> Any:
            stream = FakeStream(net, self._endpoint, requests, metadata)
            net.streams.append((self._endpoint, stream))
            return stream

        return call


def granted(ttl: int = 9, lease_id: int = LEASE_ID) -> kv.LeaseGrantResponse:
    return kv.LeaseGrantResponse(header=kv.ResponseHeader(revision=3), id=lease_id, ttl=ttl)


def renewals(ttls: Callable[[int], int]) -> Callable[[Sent], lease_pb2.LeaseKeepAliveResponse]:
    """The answer to one keepalive: ``ttls(id)`` for each id asked (0: gone), in
    the batched form when asked with ``ids``."""

    def answer(sent: Sent) -> lease_pb2.LeaseKeepAliveResponse:
        if not sent.request.ids:
            ttl = ttls(sent.request.id)
            return lease_pb2.LeaseKeepAliveResponse(
                id=sent.request.id, ttl=ttl, error="" if ttl else "lease not found"
            )
        return lease_pb2.LeaseKeepAliveResponse(
            renewals=[
                lease_pb2.LeaseRenewal(
                    id=i, ttl=ttls(i), error="" if ttls(i) else "lease not found"
                )
                for i in sent.request.ids
            ]
        )

    return answer


def renewed(ttl: int = 9) -> Callable[[Sent], lease_pb2.LeaseKeepAliveResponse]:
    return renewals(lambda _: ttl)


gone = renewals(lambda _: 0)


def not_the_leader() -> Any:
    return said_by_node(Unavailable("not the leader: lease keepalives are served by the leader"))


def revoked() -> kv.LeaseRevokeResponse:
    return kv.LeaseRevokeResponse(header=kv.ResponseHeader(revision=4))


@pytest.fixture
def clock() -> SteppedClock:
    return SteppedClock()


@pytest.fixture(autouse=True)
def _no_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("MCPCTL_TOKEN", "MCPCTL_CACERT", "MCPCTL_CERT", "MCPCTL_KEY"):
        monkeypatch.delenv(name, raising=False)


def client_of(net: LeaseNet, clock: SteppedClock) -> Client:
    return Client(ENDPOINTS, channel_factory=net.channel, timing=clock.timing())


def keeper_alive(client: Client) -> bool:
    thread = client._keeper._thread
    return thread is not None and thread.is_alive()


# -- cadence ------------------------------------------------------------------------
def test_a_lease_is_renewed_every_third_of_its_ttl(clock: SteppedClock) -> None:
    """A granted lease is renewed at TTL/3 after the grant was sent, then every TTL/3
    after each renewal was sent; each renewal calls on_renewed with the TTL."""
    net = LeaseNet(clock, {"a:1": [granted(9), renewed(9), renewed(9), renewed(9)]})
    seen: list[int] = []
    client = client_of(net, clock)
    lease = client.grant(9, on_renewed=lambda _lease, ttl: seen.append(ttl))
    clock.until_parked()
    assert clock.next_wait_s == 3.0
    for _ in range(3):
        clock.advance()
    assert [s.at_s - 1000.0 for s in net.keepalives()] == [3.0, 6.0, 9.0]
    assert [list(s.request.ids) for s in net.keepalives()] == [[LEASE_ID]] * 3
    assert seen == [9, 9, 9]
    assert not lease.lost.is_set()
    assert len(net.streams) == 1, "one stream, kept open from round to round"
    client.close()


def test_one_stream_carries_every_lease_of_the_client(clock: SteppedClock) -> None:
    """Two leases due at the same time are renewed on the same stream, in one round,
    with one batched message (LeaseKeepAliveRequest.ids)."""
    net = LeaseNet(clock, {"a:1": [granted(9, 1), granted(9, 2), renewed(9), renewed(9)]})
    client = client_of(net, clock)
    client.grant(9)
    client.grant(9)
    clock.advance()
    assert [(list(s.request.ids), s.at_s) for s in net.keepalives()] == [([1, 2], 1003.0)]
    assert len(net.streams) == 1
    client.close()


# -- failover -------------------------------------------------------------------------
def test_a_follower_saying_not_the_leader_moves_the_keepalive_to_the_next_member(
    clock: SteppedClock,
) -> None:
    """UNAVAILABLE "not the leader" (or a member down) on the stream: the same renewal
    is sent at once on a new stream to the next endpoint, which keeps it afterwards."""
    net = LeaseNet(
        clock,
        {"a:1": [granted(9), not_the_leader()], "b:2": [renewed(9), renewed(9)]},
    )
    client = client_of(net, clock)
    lease = client.grant(9)
    clock.advance()
    assert [(s.endpoint, s.at_s) for s in net.keepalives()] == [("a:1", 1003.0), ("b:2", 1003.0)]
    assert net.streams[0][1].cancelled, "the failed stream is closed"
    clock.advance()
    assert [s.endpoint for s in net.keepalives()][-1] == "b:2"
    assert [e for e, _ in net.streams] == ["a:1", "b:2"]
    assert not lease.lost.is_set()
    client.close()


def test_after_every_member_failed_the_keeper_pauses_with_backoff(clock: SteppedClock) -> None:
    """A round in which every endpoint failed ends with a pause (the client backoff,
    jitter from Timing.uniform), doubling for the next round; then it tries again."""
    net = LeaseNet(
        clock,
        {
            "a:1": [granted(30), refused_late(), dropped(), renewed(30)],
            "b:2": [not_the_leader(), not_the_leader()],
            "c:3": [refused_late(), refused_late()],
        },
    )
    client = client_of(net, clock)
    lease = client.grant(30)
    clock.advance()  # t=1010: a, b, c fail, then the pause
    assert [s.endpoint for s in net.keepalives()] == ["a:1", "b:2", "c:3"]
    assert clock.next_wait_s == pytest.approx(limits.CLIENT_BACKOFF_S_MIN)
    clock.advance()  # the second round fails too; the pause doubles
    assert clock.next_wait_s == pytest.approx(2 * limits.CLIENT_BACKOFF_S_MIN)
    clock.advance()
    assert net.keepalives()[-1].endpoint == "a:1"
    assert not lease.lost.is_set()
    assert clock.next_wait_s == pytest.approx(10.0), "renewed: the cadence starts over"
    client.close()


# -- lost -------------------------------------------------------------------------------
def test_a_keepalive_answered_ttl_0_loses_the_lease(clock: SteppedClock) -> None:
    """TTL 0 ("lease not found": revoked or expired elsewhere): lost is set,
    lost_reason says so, on_lost is called once, and the lease is not renewed again."""
    net = LeaseNet(clock, {"a:1": [granted(9), gone]})
    calls: list[Lease] = []
    client = client_of(net, clock)
    lease = client.grant(9, on_lost=calls.append)
    clock.advance()
    assert lease.lost.is_set()
    assert lease.lost_reason is not None and "lease not found" in lease.lost_reason
    assert calls == [lease]
    assert clock.next_wait_s is None, "nothing left to keep alive"
    assert len(net.keepalives()) == 1
    client.close()


def test_a_lease_not_renewed_within_its_ttl_is_lost(clock: SteppedClock) -> None:
    """When no renewal succeeds before the TTL of the last one runs out, the lease is
    lost, with a reason saying so and naming the last error; retries stop there."""
    net = LeaseNet(
        clock,
        {
            "a:1": [granted(6), *[not_the_leader() for _ in range(30)]],
            "b:2": [not_the_leader() for _ in range(30)],
            "c:3": [not_the_leader() for _ in range(30)],
        },
    )
    lost: list[Lease] = []
    client = client_of(net, clock)
    lease = client.grant(6, on_lost=lost.append)
    for _ in range(40):  # bounded: a keeper that never gives up fails here, not hangs
        if lease.lost.is_set():
            break
        clock.advance()
    assert lease.lost.is_set()
    assert clock.now_s == 1006.0, "lost when its TTL ran out, not before"
    assert lease.lost_reason is not None
    assert "not renewed within its TTL of 6s" in lease.lost_reason
    assert "not the leader" in lease.lost_reason
    assert lost == [lease]
    assert all(s.at_s < 1006.0 for s in net.keepalives())
    assert clock.next_wait_s is None
    client.close()


def test_a_failing_on_lost_callback_does_not_stop_the_other_leases(clock: SteppedClock) -> None:
    """on_lost runs on the keeper's thread; if it raises, the other leases are still renewed."""
    first_gone = renewals(lambda i: 0 if i == 1 else 9)
    net = LeaseNet(clock, {"a:1": [granted(9, 1), granted(9, 2), first_gone, renewed(9)]})

    def boom(_: Lease) -> None:
        raise RuntimeError("user code")

    client = client_of(net, clock)
    first = client.grant(9, on_lost=boom)
    second = client.grant(9)
    clock.advance()
    clock.advance()
    assert first.lost.is_set() and not second.lost.is_set()
    assert [list(s.request.ids) for s in net.keepalives()] == [[1, 2], [2]]
    client.close()


# -- revoke, exit, close ------------------------------------------------------------------
def test_with_block_attaches_keys_and_revokes_on_exit(clock: SteppedClock) -> None:
    """`with client.grant(ttl) as lease: client.put(k, v, lease=lease)`: the put carries
    the lease id; leaving the block stops renewing and revokes it (keys deleted)."""
    put_ok = kv.PutResponse(header=kv.ResponseHeader(revision=5))
    net = LeaseNet(clock, {"a:1": [granted(9), put_ok, revoked()]})
    client = client_of(net, clock)
    with client.grant(9) as lease:
        client.put("/svc/a", "up", lease=lease)
    assert [s.method for s in net.sent] == [
        "/mcp.v1.Lease/Grant",
        "/mcp.v1.KV/Put",
        "/mcp.v1.Lease/Revoke",
    ]
    assert net.sent[1].request.lease == LEASE_ID
    assert net.sent[2].request.id == LEASE_ID
    clock.until_parked()
    assert clock.next_wait_s is None, "no longer renewed"
    assert not lease.lost.is_set(), "a revoke is not a loss"
    client.close()


def test_revoke_of_a_lease_already_gone_is_not_an_error(clock: SteppedClock) -> None:
    net = LeaseNet(clock, {"a:1": [granted(9), said_by_node(LeaseNotFound())]})
    client = client_of(net, clock)
    client.grant(9).revoke()
    client.close()


def test_close_stops_the_keeper_thread_and_its_stream(clock: SteppedClock) -> None:
    """Client.close() ends the keeper thread (the leases then expire on the cluster)."""
    net = LeaseNet(clock, {"a:1": [granted(9), renewed(9)]})
    client = client_of(net, clock)
    lease = client.grant(9)
    clock.advance()
    assert keeper_alive(client)
    client.close()
    assert not keeper_alive(client)
    assert net.streams[0][1].cancelled
    assert not lease.lost.is_set()


def test_a_client_keeps_at_most_client_leases_max(
    clock: SteppedClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One lease past CLIENT_LEASES_MAX: ResourceExhausted before anything is sent."""
    monkeypatch.setattr(limits, "CLIENT_LEASES_MAX", 2)
    net = LeaseNet(clock, {"a:1": [granted(9, 1), granted(9, 2)]})
    client = client_of(net, clock)
    client.grant(9)
    client.grant(9)
    with pytest.raises(ResourceExhausted, match="CLIENT_LEASES_MAX"):
        client.grant(9)
    assert len(net.sent) == 2
    client.close()


# -- the other calls ------------------------------------------------------------------------
def test_keep_alive_once_moves_on_from_a_follower_and_says_not_found(clock: SteppedClock) -> None:
    """keep_alive_once: a follower's UNAVAILABLE moves to the next endpoint; TTL 0 is
    LeaseNotFound."""
    net = LeaseNet(clock, {"a:1": [not_the_leader()], "b:2": [renewed(10), gone]})
    client = client_of(net, clock)
    assert client.keep_alive_once(LEASE_ID).ttl == 10
    with pytest.raises(LeaseNotFound, match="694d77aa9e38260f"):
        client.keep_alive_once(LEASE_ID)
    assert [s.endpoint for s in net.keepalives()] == ["a:1", "b:2", "b:2"]
    client.close()


def test_keep_alive_adopts_a_lease_granted_elsewhere(clock: SteppedClock) -> None:
    """keep_alive(id): one renewal now (on_renewed too), then TTL/3 in the background."""
    net = LeaseNet(clock, {"a:1": [renewed(12), renewed(12)]})
    seen: list[int] = []
    client = client_of(net, clock)
    lease = client.keep_alive(LEASE_ID, on_renewed=lambda _l, ttl: seen.append(ttl))
    assert (lease.id, lease.ttl) == (LEASE_ID, 12)
    clock.advance()
    assert [s.at_s - 1000.0 for s in net.keepalives()] == [0.0, 4.0]
    assert seen == [12, 12]
    client.close()


def test_time_to_live_leases_and_key_values_are_typed(clock: SteppedClock) -> None:
    ttl = lease_pb2.LeaseTimeToLiveResponse(id=7, ttl=5, granted_ttl=9, keys=[b"/a", b"/b"])
    listed = lease_pb2.LeaseLeasesResponse(leases=[lease_pb2.LeaseStatus(id=7)])
    item = kv.KeyValue(key=b"/a", value=b"x", create_revision=2, mod_revision=2, version=1, lease=7)
    ranged = kv.RangeResponse(kvs=[item], count=1)
    net = LeaseNet(clock, {"a:1": [ttl, listed, ranged]})
    client = client_of(net, clock)
    got = client.time_to_live(7, keys=True)
    assert (got.id, got.ttl, got.granted_ttl, got.keys) == (7, 5, 9, ["/a", "/b"])
    assert net.sent[0].request.keys is True
    assert client.leases().ids == [7]
    first = client.get("/a").first
    assert first is not None and first.lease == 7
    client.close()


def test_put_op_attaches_a_lease_in_a_txn() -> None:
    lease = object.__new__(Lease)
    lease.id = 42
    assert put_op("/a", "x", lease=lease).request_put.lease == 42
    assert put_op("/a", "x", lease=7).request_put.lease == 7
    assert put_op("/a", "x").request_put.lease == 0
    with pytest.raises(ValueError):
        put_op("/a", "x", lease=-1)


def test_grant_without_keep_alive_starts_no_keeper(clock: SteppedClock) -> None:
    """grant(keep_alive=False): a lease for someone else to renew; no thread, no stream."""
    net = LeaseNet(clock, {"a:1": [granted(9)]})
    client = client_of(net, clock)
    lease = client.grant(9, keep_alive=False)
    assert lease.header is not None and lease.header.revision == 3
    assert client._keeper._thread is None and net.keepalives() == []
    client.close()
