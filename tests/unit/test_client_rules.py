"""The SDK's retry and outcome rules (``mcpctl/client/_rules.py``), as they are.

A ``Client`` gets fake channels (``channel_factory``) whose calls take the next
scripted answer of their endpoint, and a fake clock (``timing``): every rule is
checked without a socket, a thread or a sleep. Each test states its rule.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, NamedTuple, cast

import grpc
import pytest

from mcpctl import limits
from mcpctl._proto.mcp.v1 import kv_pb2 as kv
from mcpctl.aio import Client as AioClient
from mcpctl.client._rules import error_of
from mcpctl.client.core import Client, Timing
from mcpctl.errors import (
    Compacted,
    CompareFailed,
    DeadlineExceeded,
    FailedPrecondition,
    Internal,
    InvalidArgument,
    McpError,
    NotFound,
    OutcomeUnknown,
    PermissionDenied,
    ResourceExhausted,
    Unauthenticated,
    Unavailable,
)

ENDPOINTS = ["a:1", "b:2", "c:3"]


# -- the fakes ----------------------------------------------------------------
class Metadatum(NamedTuple):
    key: str
    value: str


class FakeRpcError(grpc.RpcError):
    """What a grpc call raises: a status code, details and trailing metadata."""

    def __init__(
        self, code: grpc.StatusCode, details: str, trailers: dict[str, str] | None = None
    ) -> None:
        super().__init__(details)
        self._code = code
        self._details = details
        self._trailers = tuple(Metadatum(k, v) for k, v in (trailers or {}).items())

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details

    def trailing_metadata(self) -> tuple[Any, ...]:  # grpc-stubs: a private _Metadatum
        return self._trailers


def said_by_node(err: McpError) -> FakeRpcError:
    """A member's answer, as ``mcpctl.server.errors`` sends it (code, message, trailers)."""
    return FakeRpcError(grpc.StatusCode[err.code], err.message, err.metadata())


@dataclass(frozen=True)
class NoConnection:
    """The channel's connection attempt fails (TRANSIENT_FAILURE): the client
    never sends the request. Taken when the client waits for the channel."""

    why: str


def refused() -> NoConnection:
    """Nothing listens at the endpoint: the request never left."""
    return NoConnection("connection refused")


def dns_failed() -> NoConnection:
    return NoConnection("DNS resolution failed for nosuch:1")


def refused_late() -> FakeRpcError:
    """grpc's "failed to connect" on a channel that was connected: the client
    sent the request, so the text proves nothing (no text is matched)."""
    return FakeRpcError(
        grpc.StatusCode.UNAVAILABLE,
        "failed to connect to all addresses; last error: UNKNOWN: "
        "ipv4:127.0.0.1:1: Failed to connect to remote host: Connection refused",
    )


def dropped() -> FakeRpcError:
    """The connection broke after the request left: it may have been delivered."""
    return FakeRpcError(grpc.StatusCode.UNAVAILABLE, "Socket closed")


def cancelled() -> FakeRpcError:
    """A member stopping gracefully cancels calls in flight."""
    return FakeRpcError(grpc.StatusCode.CANCELLED, "Cancelled")


def timed_out() -> FakeRpcError:
    """The transport's deadline (no trailer): the member may have applied it."""
    return FakeRpcError(grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded")


def no_leader() -> FakeRpcError:
    return said_by_node(Unavailable("no leader"))


def leader_lost() -> FakeRpcError:
    return said_by_node(OutcomeUnknown("leader lost while the write was in flight"))


@dataclass
class FakeClock:
    """Monotonic time that moves only when the client pauses or a call takes time."""

    now_s: float = 1000.0
    sleeps: list[float] = field(default_factory=list)
    jitters: list[tuple[float, float]] = field(default_factory=list)
    pick: Callable[[float, float], float] = lambda low, high: high

    def monotonic(self) -> float:
        return self.now_s

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now_s += seconds

    def uniform(self, low: float, high: float) -> float:
        self.jitters.append((low, high))
        return self.pick(low, high)

    async def asleep(self, seconds: float) -> None:
        self.sleep(seconds)

    def timing(self) -> Timing:
        return Timing(
            monotonic=self.monotonic, sleep=self.sleep, uniform=self.uniform, asleep=self.asleep
        )


@dataclass(frozen=True)
class Sent:
    endpoint: str
    method: str
    request: Any
    timeout_s: float
    metadata: tuple[tuple[str, str], ...]
    at_s: float


# An answer: a response message, an error to raise, or a function of the call.
Answer = Any


class FakeNet:
    """Fake channels for every endpoint: each call takes its endpoint's next answer."""

    def __init__(self, clock: FakeClock, answers: dict[str, list[Answer]]) -> None:
        self.clock = clock
        self.answers = {endpoint: list(queue) for endpoint, queue in answers.items()}
        self.sent: list[Sent] = []
        self.opened: list[str] = []
        self.closed: list[str] = []

    def channel(self, endpoint: str) -> grpc.Channel:
        self.opened.append(endpoint)
        return cast(grpc.Channel, _FakeChannel(self, endpoint))

    def aio_channel(self, endpoint: str) -> grpc.aio.Channel:
        self.opened.append(endpoint)
        return cast(grpc.aio.Channel, _FakeAioChannel(self, endpoint))

    def answer(
        self, endpoint: str, method: str, request: Any, timeout: float, metadata: Any
    ) -> Any:
        sent = Sent(endpoint, method, request, timeout, tuple(metadata), self.clock.now_s)
        self.sent.append(sent)
        queue = self.answers.get(endpoint)
        if not queue:
            raise AssertionError(f"no answer left for call {len(self.sent)} to {endpoint}")
        found = queue.pop(0)
        if callable(found):
            found = found(sent)
        if isinstance(found, BaseException):
            raise found
        return found

    def connect(self, endpoint: str) -> bool:
        """The client waits for ``endpoint``'s channel: a ``NoConnection`` at the
        head of its answers is taken (and recorded as an attempt)."""
        queue = self.answers.get(endpoint)
        if queue and isinstance(queue[0], NoConnection):
            queue.pop(0)
            self.sent.append(Sent(endpoint, "(connect)", None, 0.0, (), self.clock.now_s))
            return False
        return True

    @property
    def endpoints(self) -> list[str]:
        return [s.endpoint for s in self.sent]


class _FakeChannel:
    """The part of ``grpc.Channel`` that unary calls use (no streams: no watch here)."""

    def __init__(self, net: FakeNet, endpoint: str) -> None:
        self._net = net
        self._endpoint = endpoint

    def unary_unary(self, method: str, *_: object, **__: object) -> Callable[..., Any]:
        def call(request: Any, timeout: float, metadata: Any = ()) -> Any:
            return self._net.answer(self._endpoint, method, request, timeout, metadata)

        return call

    def unary_stream(self, method: str, *_: object, **__: object) -> Callable[..., Any]:
        def call(*_: object, **__: object) -> Any:
            raise AssertionError(f"{method}: streams are not faked here")

        return call  # a stub is built with every method; none of these is called

    def subscribe(self, callback: Callable[[grpc.ChannelConnectivity], None], **_: object) -> None:
        ok = self._net.connect(self._endpoint)
        callback(
            grpc.ChannelConnectivity.READY if ok else grpc.ChannelConnectivity.TRANSIENT_FAILURE
        )

    def unsubscribe(self, _callback: object) -> None:
        pass

    def close(self) -> None:
        self._net.closed.append(self._endpoint)


class _FakeAioChannel(_FakeChannel):
    """The same fake as a ``grpc.aio`` channel: awaitable calls, ``get_state``."""

    def unary_unary(self, method: str, *_: object, **__: object) -> Callable[..., Any]:
        sync_call = super().unary_unary(method)

        async def call(request: Any, timeout: float, metadata: Any = ()) -> Any:
            return sync_call(request, timeout, metadata)

        return call

    def get_state(self, try_to_connect: bool = False) -> grpc.ChannelConnectivity:
        ok = self._net.connect(self._endpoint)
        return grpc.ChannelConnectivity.READY if ok else grpc.ChannelConnectivity.TRANSIENT_FAILURE

    async def close(self, grace: float | None = None) -> None:  # type: ignore[override]
        super().close()


class AioFacade:
    """``mcpctl.aio.Client`` behind the blocking calls these tests make: each
    coroutine runs to its end on a fresh event loop (the fakes hold no loop)."""

    def __init__(self, client: AioClient) -> None:
        self._client = client

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._client, name)
        if not inspect.iscoroutinefunction(attr):
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            return asyncio.run(attr(*args, **kwargs))

        return call

    def __enter__(self) -> AioFacade:
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.run(self._client.close())


def forever(answer: Callable[[], Answer]) -> list[Answer]:
    """More answers than any call makes attempts."""
    return [answer() for _ in range(100)]


def put_ok(revision: int = 7) -> kv.PutResponse:
    return kv.PutResponse(header=kv.ResponseHeader(revision=revision))


def range_ok(revision: int = 7) -> kv.RangeResponse:
    return kv.RangeResponse(header=kv.ResponseHeader(revision=revision), count=0)


@pytest.fixture(autouse=True)
def _no_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("MCPCTL_TOKEN", "MCPCTL_CACERT", "MCPCTL_CERT", "MCPCTL_KEY"):
        monkeypatch.delenv(name, raising=False)


# Every rule holds for both clients: each test runs with the sync Client and
# with mcpctl.aio.Client (through AioFacade), on the same fakes.
_FLAVOR = {"name": "sync"}


@pytest.fixture(autouse=True, params=["sync", "async"])
def flavor(request: pytest.FixtureRequest) -> Iterator[str]:
    _FLAVOR["name"] = request.param
    yield request.param
    _FLAVOR["name"] = "sync"


def client_of(net: FakeNet, *, endpoints: list[str] = ENDPOINTS, **options: Any) -> Any:
    """The client under test (``flavor``) on ``net``'s fake channels and clock."""
    if _FLAVOR["name"] == "async":
        return AioFacade(
            AioClient(
                endpoints, channel_factory=net.aio_channel, timing=net.clock.timing(), **options
            )
        )
    return Client(endpoints, channel_factory=net.channel, timing=net.clock.timing(), **options)


def scripted(answers: dict[str, list[Answer]]) -> FakeNet:
    return FakeNet(FakeClock(), answers)


# -- which errors move on ------------------------------------------------------
@pytest.mark.parametrize(
    "failure",
    [no_leader, leader_lost, refused, dns_failed, dropped, cancelled, timed_out],
    ids=lambda f: f.__name__,
)
def test_unavailable_and_deadline_move_to_the_next_endpoint(
    failure: Callable[[], FakeRpcError | NoConnection],
) -> None:
    """An attempt that ends Unavailable (said by a member or by the transport,
    CANCELLED included, or a channel that did not connect) or DeadlineExceeded
    is tried again on the next endpoint, at once (no pause inside a round)."""
    first = failure()
    net = scripted({"a:1": [first], "b:2": [range_ok(9)]})
    result = client_of(net).get("/k")
    assert result.header.revision == 9
    assert net.endpoints == ["a:1", "b:2"]
    first_method = "(connect)" if isinstance(first, NoConnection) else "/mcp.v1.KV/Range"
    assert [s.method for s in net.sent] == [first_method, "/mcp.v1.KV/Range"]
    assert net.clock.sleeps == []


SERVER_ANSWERS: list[McpError] = [
    InvalidArgument("key must not be empty"),
    NotFound("no such key"),
    CompareFailed("mod_revision 3 != 4"),
    Compacted(2, 5),
    FailedPrecondition("not now"),
    ResourceExhausted("proposal queue full", retry_after_ms=250),
    PermissionDenied("read-only token"),
    Unauthenticated("no token"),
    Internal("internal error (logged on the node)"),
]


@pytest.mark.parametrize("err", SERVER_ANSWERS, ids=lambda e: type(e).__name__)
def test_every_other_error_is_the_answer_at_once(err: McpError) -> None:
    """Any error other than Unavailable/DeadlineExceeded is raised after one
    attempt, with no failover (ResourceExhausted too, even with retry-after):
    the next call starts on the same endpoint."""
    net = scripted({"a:1": [said_by_node(err), put_ok()]})
    client = client_of(net)
    with pytest.raises(McpError) as raised:
        client.put("/k", "v")
    assert type(raised.value) is type(err)
    assert raised.value.message == err.message
    client.put("/k", "v")
    assert net.endpoints == ["a:1", "a:1"]


# -- error mapping ---------------------------------------------------------------
@pytest.mark.parametrize("err", SERVER_ANSWERS, ids=lambda e: type(e).__name__)
def test_a_members_error_comes_back_as_the_same_class(err: McpError) -> None:
    """The status code and the mcp-error trailer rebuild the exact mcpctl.errors
    class, with its extras (compact revision, retry-after); a node said it."""
    back, from_server = error_of(said_by_node(err))
    assert type(back) is type(err)
    assert back.message == err.message
    assert from_server
    if isinstance(err, Compacted):
        assert isinstance(back, Compacted) and back.compact_revision == 5
    if isinstance(err, ResourceExhausted):
        assert isinstance(back, ResourceExhausted) and back.retry_after_ms == 250


@pytest.mark.parametrize(
    ("rpc_error", "expected"),
    [
        (refused_late(), Unavailable),
        (dropped(), Unavailable),
        (timed_out(), DeadlineExceeded),
        (cancelled(), Unavailable),
        (FakeRpcError(grpc.StatusCode.INTERNAL, "boom"), Internal),
        (FakeRpcError(grpc.StatusCode.OUT_OF_RANGE, "too far"), InvalidArgument),
        (FakeRpcError(grpc.StatusCode.ABORTED, "aborted"), FailedPrecondition),
        (FakeRpcError(grpc.StatusCode.UNKNOWN, "exception in the handler"), McpError),
        (said_by_node(OutcomeUnknown("lost")), OutcomeUnknown),
    ],
    ids=lambda v: getattr(v, "__name__", None) or v.details(),
)
def test_a_status_without_our_trailer_maps_by_its_code(
    rpc_error: FakeRpcError, expected: type[McpError]
) -> None:
    """Without the mcp-error trailer the class follows the status code (the
    transport said it, not a node); CANCELLED counts as a broken connection."""
    err, from_server = error_of(rpc_error)
    assert type(err) is expected
    assert from_server == (expected is OutcomeUnknown)


def test_status_asks_one_member_once() -> None:
    """``status(endpoint)`` has no retries and no failover: its error is raised as is."""
    net = scripted({"b:2": [no_leader()]})
    with pytest.raises(Unavailable, match="no leader"):
        client_of(net).status("b:2")
    assert net.endpoints == ["b:2"]


# -- bounded attempts and backoff ---------------------------------------------
def test_attempts_are_bounded_by_attempts_max() -> None:
    """A call makes at most CLIENT_ATTEMPTS_MAX attempts, endpoints in turn,
    then raises the last error (here the members' own Unavailable)."""
    net = scripted({e: forever(no_leader) for e in ENDPOINTS})
    with pytest.raises(Unavailable) as raised:
        client_of(net, timeout=1000.0).get("/k")
    assert type(raised.value) is Unavailable
    assert len(net.sent) == limits.CLIENT_ATTEMPTS_MAX
    assert net.endpoints == (ENDPOINTS * 3)[: limits.CLIENT_ATTEMPTS_MAX]
    net2 = scripted({e: forever(no_leader) for e in ENDPOINTS})
    with pytest.raises(Unavailable):
        client_of(net2, attempts_max=2).get("/k")
    assert net2.endpoints == ["a:1", "b:2"]


def test_backoff_pauses_after_each_round_and_doubles_up_to_the_cap() -> None:
    """After each round of every endpoint the client pauses b * uniform(0.5, 1)
    where b starts at CLIENT_BACKOFF_S_MIN and doubles up to CLIENT_BACKOFF_S_MAX;
    there is no pause inside a round. (The last round's pause comes before
    giving up too: attempts_max 24 with 3 endpoints pauses 8 times.)"""
    net = scripted({e: forever(no_leader) for e in ENDPOINTS})
    with pytest.raises(Unavailable):
        client_of(net, attempts_max=24, timeout=1000.0).get("/k")
    low, high = limits.CLIENT_BACKOFF_S_MIN, limits.CLIENT_BACKOFF_S_MAX
    expected = [min(low * 2**i, high) for i in range(8)]
    assert net.clock.sleeps == pytest.approx(expected)
    assert net.clock.jitters == [(0.5, 1.0)] * 8
    starts = [s.at_s for s in net.sent]
    assert [starts[i] == starts[i - 1] for i in range(1, 24)] == [i % 3 != 0 for i in range(1, 24)]

    shortest = FakeClock(pick=lambda lo, hi: lo)
    net = FakeNet(shortest, {e: forever(no_leader) for e in ENDPOINTS})
    with pytest.raises(Unavailable):
        client_of(net, attempts_max=6, timeout=1000.0).get("/k")
    assert shortest.sleeps == pytest.approx([low * 0.5, low * 2 * 0.5])


def test_a_pause_never_passes_the_deadline() -> None:
    """The pause is cut to what is left of the deadline; once it has passed no
    attempt is made, and the last error (not DeadlineExceeded) is raised."""
    net = scripted({e: forever(no_leader) for e in ENDPOINTS})
    with pytest.raises(Unavailable) as raised:
        client_of(net, timeout=0.07).get("/k")
    assert type(raised.value) is Unavailable
    assert net.clock.sleeps == pytest.approx([0.05, 0.02])
    assert len(net.sent) == 6


# -- deadline -------------------------------------------------------------------
def test_each_attempt_gets_what_is_left_of_the_deadline() -> None:
    """One deadline per call: every attempt's grpc timeout is the time left,
    and an attempt that hangs until it passes ends the call DeadlineExceeded."""

    clock = FakeClock()

    def slow(seconds: float, then: FakeRpcError) -> Callable[[Sent], FakeRpcError]:
        def answer(sent: Sent) -> FakeRpcError:
            clock.now_s += seconds
            return then

        return answer

    net = FakeNet(
        clock,
        {
            "a:1": [slow(1.0, dropped())],
            "b:2": [slow(0.5, no_leader())],
            "c:3": [slow(9.0, timed_out())],  # hangs past the deadline
        },
    )
    with pytest.raises(DeadlineExceeded) as raised:
        client_of(net, timeout=2.5).get("/k")
    assert [s.timeout_s for s in net.sent] == pytest.approx([2.5, 1.5, 1.0])
    assert raised.value.message == (
        "no answer within 2.5s from a:1, b:2, c:3 (last error: Deadline Exceeded)"
    )


def test_no_time_no_attempt() -> None:
    """A call whose deadline has already passed makes no attempt: DeadlineExceeded."""
    net = scripted({})
    with pytest.raises(DeadlineExceeded, match=r"^no answer within 0\.0s from a:1, b:2, c:3$"):
        client_of(net).get("/k", timeout=0)
    assert net.sent == []


def test_the_call_timeout_overrides_the_clients() -> None:
    """``timeout=`` of a call replaces the client's default for that call only."""
    net = scripted({"a:1": [range_ok(), range_ok()]})
    client = client_of(net, timeout=3.0)
    client.get("/k", timeout=0.5)
    client.get("/k")
    assert [s.timeout_s for s in net.sent] == [0.5, 3.0]


# -- nothing listens -------------------------------------------------------------
@pytest.mark.parametrize("endpoints", [ENDPOINTS, ["a:1"]], ids=["three", "one"])
@pytest.mark.parametrize("failure", [refused, dns_failed], ids=lambda f: f.__name__)
def test_when_no_endpoint_takes_a_connection_the_call_fails_fast_unavailable(
    endpoints: list[str], failure: Callable[[], FakeRpcError]
) -> None:
    """Every endpoint in a row refused the connection (or did not resolve):
    the call ends at once with plain Unavailable — one attempt per endpoint,
    no pause — and a write is not OutcomeUnknown: it never left."""
    net = scripted({e: forever(failure) for e in endpoints})
    with pytest.raises(Unavailable) as raised:
        client_of(net, endpoints=endpoints, timeout=1000.0).put("/k", "v")
    assert type(raised.value) is Unavailable
    assert net.endpoints == endpoints
    assert net.clock.sleeps == []


def test_only_refusals_in_a_row_end_the_call_early() -> None:
    """An attempt that reached a member resets the count of refusals; so does
    one sent on a connected channel that then broke (the client forgets that
    connection and waits for the channel next time, where it is refused)."""
    net = scripted(
        {
            "a:1": [refused(), refused(), refused()],
            "b:2": [no_leader(), dropped(), refused()],
            "c:3": [refused(), refused()],
        }
    )
    with pytest.raises(Unavailable, match="failed to connect to b:2"):
        client_of(net, timeout=1000.0).get("/k")
    assert net.endpoints == ["a:1", "b:2", "c:3", "a:1", "b:2", "c:3", "a:1", "b:2"]
    assert [s.method for s in net.sent if s.endpoint == "b:2"] == ["/mcp.v1.KV/Range"] * 2 + [
        "(connect)"
    ]
    assert len(net.clock.sleeps) == 2


# -- outcomes of writes and reads --------------------------------------------------
@pytest.mark.parametrize(
    "failure", [dropped, cancelled, timed_out, leader_lost], ids=lambda f: f.__name__
)
def test_a_write_that_may_have_been_applied_ends_outcome_unknown(
    failure: Callable[[], FakeRpcError],
) -> None:
    """A write (it has a request id) whose attempts failed after the request
    may have left — a dropped or cancelled call, a transport deadline, a
    member's OutcomeUnknown — ends OutcomeUnknown, never a plain Unavailable."""
    net = scripted({e: forever(failure) for e in ENDPOINTS})
    with pytest.raises(OutcomeUnknown, match=r"^the write may have been applied: "):
        client_of(net, timeout=1000.0).put("/k", "v")
    assert len(net.sent) == limits.CLIENT_ATTEMPTS_MAX


def test_once_unknown_a_write_stays_unknown() -> None:
    """One attempt that may have applied the write is enough: later answers
    saying "not applied" (a member's Unavailable) do not make it Unavailable."""
    net = scripted(
        {"a:1": [dropped(), *forever(no_leader)]} | {e: forever(no_leader) for e in ENDPOINTS[1:]}
    )
    with pytest.raises(OutcomeUnknown, match="no leader"):
        client_of(net, timeout=1000.0).delete("/k")


def test_a_write_no_member_accepted_is_plain_unavailable() -> None:
    """When every attempt was refused by a member's own Unavailable (no leader),
    the write was not applied: plain Unavailable, safe to retry as new."""
    net = scripted({e: forever(no_leader) for e in ENDPOINTS})
    with pytest.raises(Unavailable) as raised:
        client_of(net, timeout=1000.0).txn()
    assert type(raised.value) is Unavailable


@pytest.mark.parametrize("failure", [dropped, cancelled, no_leader], ids=lambda f: f.__name__)
def test_reads_are_retried_freely_and_never_outcome_unknown(
    failure: Callable[[], FakeRpcError],
) -> None:
    """A read has no request id: it is retried on any Unavailable up to the
    bound, and fails with the last error, never OutcomeUnknown."""
    net = scripted({e: forever(failure) for e in ENDPOINTS})
    with pytest.raises(Unavailable) as raised:
        client_of(net, timeout=1000.0).get("/k")
    assert type(raised.value) is Unavailable
    assert len(net.sent) == limits.CLIENT_ATTEMPTS_MAX


def test_a_read_whose_attempts_all_timed_out_ends_deadline_exceeded() -> None:
    """A read whose last failure was a deadline ends DeadlineExceeded, naming it."""
    net = scripted({e: forever(timed_out) for e in ENDPOINTS})
    with pytest.raises(DeadlineExceeded, match=r"\(last error: Deadline Exceeded\)$"):
        client_of(net, timeout=1000.0).get("/k")


# -- request ids --------------------------------------------------------------------
@pytest.mark.parametrize("call", ["put", "delete", "txn"])
def test_a_retried_write_carries_the_same_request_id(call: str) -> None:
    """Every attempt of one write sends the same request id (the cluster applies
    it at most once); each new write gets a new id."""
    net = scripted(
        {"a:1": forever(dropped), "b:2": forever(no_leader), "c:3": forever(leader_lost)}
    )
    client = client_of(net, timeout=1000.0)
    write: Callable[[], object] = {
        "put": lambda: client.put("/k", "v"),
        "delete": lambda: client.delete("/k"),
        "txn": lambda: client.txn(),
    }[call]
    for _ in range(2):
        with pytest.raises(OutcomeUnknown):
            write()
    first, second = net.sent[:8], net.sent[8:]
    assert len(second) == 8
    assert len({s.request.request_id for s in first}) == 1
    assert len({s.request.request_id for s in second}) == 1
    assert first[0].request.request_id != second[0].request.request_id != ""


def test_a_given_request_id_is_the_one_sent_and_the_retry_succeeds() -> None:
    """A caller retrying an OutcomeUnknown passes its request id back; the
    failover attempt sends it unchanged."""
    net = scripted({"a:1": [cancelled()], "b:2": [put_ok(12)]})
    result = client_of(net).put("/k", "v", request_id="req-1")
    assert result.revision == 12
    assert [s.request.request_id for s in net.sent] == ["req-1", "req-1"]


# -- the seam itself -------------------------------------------------------------
def test_one_channel_per_endpoint_with_the_token_on_every_attempt() -> None:
    """Channels are opened once per endpoint and closed by ``close()``; the
    bearer token rides on every attempt."""
    net = scripted({"a:1": [no_leader(), range_ok()], "b:2": [no_leader()], "c:3": [no_leader()]})
    with client_of(net, token="s3cret", timeout=1000.0) as client:
        client.get("/k")
    assert net.opened == ENDPOINTS
    assert sorted(net.closed) == ENDPOINTS
    assert {s.metadata for s in net.sent} == {(("authorization", "Bearer s3cret"),)}
