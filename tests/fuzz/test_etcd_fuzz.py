"""Hostile input on the etcd v3 API (mcpctl/server/etcd), against one real 3-node cluster.

Every etcd RPC gets typed requests with arbitrary fields (keys and range ends
of any bytes, huge and negative int64s, enums out of range, nested and
over-limit txns, unknown lease ids) and raw bytes; every answer must carry a
status etcd's API documents for it, never INTERNAL or UNKNOWN, and every node
keeps running. Then the bounded cases: one Watch stream asking for thousands
of watches, a sort over the whole store, keepalives for unknown leases. The
last test checks the nodes survived with bounded memory and nothing logged.
"""

from __future__ import annotations

import os
import queue
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import grpc
import pytest
from google.protobuf import message_factory
from google.protobuf.descriptor import Descriptor
from google.protobuf.message import Message
from hypothesis import given, settings
from hypothesis import strategies as st

from mcpctl import limits
from mcpctl._proto.etcd.etcdserverpb import rpc_pb2 as rpc
from mcpctl._proto.etcd.etcdserverpb import rpc_pb2_grpc as rpc_grpc
from tests.cluster import Cluster, running_cluster, wait_for
from tests.fuzz.proto_strategies import Flavour, messages, mutated
from tests.fuzz.support import Baseline, assert_same_processes, assert_survived, take_baseline
from tests.fuzz.test_rpc_fuzz import SETTINGS

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

SCALE = float(os.environ.get("FUZZ_SCALE", "1"))
TYPED_EXAMPLES = max(1, int(30 * SCALE))
RAW_EXAMPLES = max(1, int(10 * SCALE))
CALL_TIMEOUT_S = 10.0
RSS_GROWTH_MIB_MAX = 96.0
C = grpc.StatusCode
# etcd's codes for its API (mcpctl/server/etcd/errors.py) plus our limits and leader changes.
ALLOWED = frozenset(
    {
        C.OK,
        C.INVALID_ARGUMENT,
        C.OUT_OF_RANGE,  # compacted / future revision, too large TTL
        C.NOT_FOUND,  # lease not found
        C.FAILED_PRECONDITION,  # lease exists, auth not enabled
        C.UNIMPLEMENTED,  # nested txn, a revision inside a txn, alarm activate
        C.RESOURCE_EXHAUSTED,
        C.UNAVAILABLE,
        C.DEADLINE_EXCEEDED,
    }
)
UNARY = [
    (s, m)
    for s in ("KV", "Lease", "Cluster", "Maintenance", "Auth")
    for m in rpc.DESCRIPTOR.services_by_name[s].methods
    if not m.client_streaming and not m.server_streaming
]
KEYS = st.one_of(
    st.sampled_from([b"/fz/a", b"/fz/b", b"/fz/", b"/fz0", b"\x00", b"", b"\xff", b"/fz/\xc3"]),
    st.binary(max_size=24),
    st.just(b"k" * (limits.KEY_BYTES_MAX + 1)),
)
FLAVOUR = Flavour(
    plausible=False,
    overrides={"key": KEYS, "range_end": KEYS, "value": st.binary(max_size=64)},
    over_limit={"compare": 129, "success": 129, "failure": 129},
)


@dataclass
class Target:
    cluster: Cluster
    channels: list[grpc.Channel]
    baseline: Baseline


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    with running_cluster(tmp_path_factory.mktemp("etcd-fuzz")) as cluster:
        channels = [grpc.insecure_channel(n.endpoint) for n in cluster.nodes]
        try:
            stub = rpc_grpc.KVStub(channels[0])
            for i in range(20):
                stub.Put(rpc.PutRequest(key=b"/fz/%d" % i, value=b"w" * 100))
            yield Target(cluster, channels, take_baseline(cluster))
        finally:
            for ch in channels:
                ch.close()


def _unary(target: Target, node: int, path: str, payload: bytes, response: Descriptor) -> C:
    try:
        answer = target.channels[node].unary_unary(path, None, None)(
            payload, timeout=CALL_TIMEOUT_S
        )
    except grpc.RpcError as e:
        assert isinstance(e, grpc.Call)
        return e.code()
    message_factory.GetMessageClass(response).FromString(answer)
    return C.OK


def _check(target: Target, path: str, payload: bytes, code: C) -> None:
    shown = f"{path} with {payload[:200]!r}"
    assert_same_processes(target.cluster, target.baseline, culprit=shown)
    assert code in ALLOWED, f"{shown} answered {code.name}"


@pytest.mark.parametrize("service,method", UNARY, ids=lambda x: getattr(x, "name", x))
@settings(SETTINGS, max_examples=TYPED_EXAMPLES)
@given(data=st.data())
def test_typed_requests(target: Target, service: str, method: Any, data: st.DataObject) -> None:
    msg: Message = data.draw(messages(method.input_type, FLAVOUR), label="request")
    if method.name == "Compact":
        msg.revision = 0  # type: ignore[attr-defined]  # compacting is not what is fuzzed here
    node = data.draw(st.integers(0, 2), label="node")
    path = f"/etcdserverpb.{service}/{method.name}"
    payload = msg.SerializeToString()
    _check(target, path, payload, _unary(target, node, path, payload, method.output_type))


@pytest.mark.parametrize("service,method", UNARY, ids=lambda x: getattr(x, "name", x))
@settings(SETTINGS, max_examples=RAW_EXAMPLES)
@given(data=st.data())
def test_raw_bytes(target: Target, service: str, method: Any, data: st.DataObject) -> None:
    typed = messages(method.input_type, FLAVOUR).map(lambda m: m.SerializeToString())
    payload = data.draw(st.one_of(st.binary(max_size=200), typed.flatmap(mutated)))
    if method.name == "Compact":
        return  # raw bytes may decode to a compaction of everything: not what is fuzzed here
    path = f"/etcdserverpb.{service}/{method.name}"
    _check(target, path, payload, _unary(target, 0, path, payload, method.output_type))


@settings(SETTINGS, max_examples=TYPED_EXAMPLES)
@given(data=st.data())
def test_watch_and_keepalive_streams(target: Target, data: st.DataObject) -> None:
    """A stream of hostile requests (creates, cancels, progress, garbage) on each bidi RPC."""
    watch = data.draw(st.lists(messages(rpc.WatchRequest.DESCRIPTOR, FLAVOUR), max_size=5))
    keep = data.draw(st.lists(messages(rpc.LeaseKeepAliveRequest.DESCRIPTOR, FLAVOUR), max_size=5))
    garbage = data.draw(st.lists(st.binary(max_size=40), max_size=2))
    # A watch stream stays open after the client's last request (as etcd's): a short
    # deadline ends it. A keepalive stream ends with the requests.
    for path, reqs, timeout_s in (
        ("/etcdserverpb.Watch/Watch", [m.SerializeToString() for m in watch] + garbage, 0.3),
        (
            "/etcdserverpb.Lease/LeaseKeepAlive",
            [m.SerializeToString() for m in keep] + garbage,
            CALL_TIMEOUT_S,
        ),
    ):
        call = target.channels[0].stream_stream(path, None, None)(iter(reqs), timeout=timeout_s)
        code = C.OK
        try:
            for _ in call:
                pass
        except grpc.RpcError as e:
            assert isinstance(e, grpc.Call)
            code = e.code()
        if code == C.DEADLINE_EXCEEDED and "Watch" in path:  # our deadline ended it
            code = C.OK
        _check(target, path, b"".join(reqs), code)


def test_thousands_of_watches_on_one_stream_are_bounded(target: Target) -> None:
    wanted = limits.ETCD_WATCHES_PER_STREAM_MAX + 50
    requests: queue.Queue[rpc.WatchRequest | None] = queue.Queue()
    for i in range(wanted):
        create = rpc.WatchCreateRequest(key=b"/fz/w/%d" % i)
        requests.put(rpc.WatchRequest(create_request=create))

    def feed() -> Iterator[rpc.WatchRequest]:
        while (item := requests.get()) is not None:
            yield item

    stub = rpc_grpc.WatchStub(target.channels[1])
    call = stub.Watch(feed(), timeout=120)
    created = refused = 0
    try:
        for resp in call:
            if resp.created and not resp.canceled:
                created += 1
            elif resp.canceled:
                assert "ETCD_WATCHES_PER_STREAM_MAX" in resp.cancel_reason
                refused += 1
            if created + refused == wanted:
                break
    finally:
        requests.put(None)
        call.cancel()  # type: ignore[no-untyped-call]
    assert (created, refused) == (limits.ETCD_WATCHES_PER_STREAM_MAX, 50)
    assert_same_processes(target.cluster, target.baseline)
    # The stream is gone: so are its 1,000 watches in the hub (none leaked).
    node = target.cluster.nodes[1]

    def open_streams() -> float:
        url = f"http://127.0.0.1:{node.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=10) as r:
            for line in r.read().decode().splitlines():
                if line.startswith("mcp_watch_streams "):
                    return float(line.split()[1])
        raise AssertionError("no mcp_watch_streams metric")

    assert wait_for("the hub to drop the stream's watches", lambda: open_streams() == 0)


def test_sort_over_the_whole_store_and_unknown_leases(target: Target) -> None:
    kv = rpc_grpc.KVStub(target.channels[0])
    R = rpc.RangeRequest
    got = kv.Range(
        R(key=b"\0", range_end=b"\0", sort_target=R.VALUE, sort_order=R.DESCEND), timeout=30
    )
    assert got.count >= 20 and len(got.kvs) == got.count
    lease = rpc_grpc.LeaseStub(target.channels[0])
    ttl = lease.LeaseTimeToLive(rpc.LeaseTimeToLiveRequest(ID=2**63 - 1), timeout=10)
    assert ttl.TTL == -1
    leader = next(n for n in target.cluster.nodes if n is target.cluster.leader())
    with grpc.insecure_channel(leader.endpoint) as ch:
        stream = rpc_grpc.LeaseStub(ch).LeaseKeepAlive(
            iter([rpc.LeaseKeepAliveRequest(ID=i) for i in (-1, 0, 7, 2**63 - 1)]), timeout=10
        )
        assert [a.TTL for a in stream] == [0, 0, 0, 0]


def test_cluster_survived(target: Target) -> None:
    assert_survived(target.cluster, target.baseline, RSS_GROWTH_MIB_MAX)
