"""Leases on a real 3-node cluster (docs/leases.md): the API round trip, bad input,
expiry of a dead holder's lease, and keepalives that survive leader changes.

The client is tests/leaseclient.py (the SDK's lease API comes later).
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from mcpctl import limits
from mcpctl._proto.mcp.v1 import kv_pb2 as kv
from mcpctl._proto.mcp.v1 import lease_pb2 as lease
from mcpctl._proto.mcp.v1 import lease_pb2_grpc as lease_grpc
from mcpctl._proto.mcp.v1 import watch_pb2 as watch
from mcpctl._proto.mcp.v1 import watch_pb2_grpc as watch_grpc
from mcpctl.errors import (
    InvalidArgument,
    LeaseNotFound,
    McpError,
    ResourceExhausted,
    Unavailable,
)
from mcpctl.server.lessor import lease_grace_s
from tests.cluster import Cluster, NodeProc, wait_for
from tests.leaseclient import HOLDER_KEYS, KeepAliver, LeaseClient

pytestmark = pytest.mark.cluster

# The cluster's defaults (config.py): leader_fallback 2 s, max election timeout 1 s.
GRACE_S = lease_grace_s(2.0, 1.0)
TTL_MIN_S = 2


@pytest.fixture
def leases(cluster: Cluster) -> Iterator[LeaseClient]:
    with LeaseClient(cluster.endpoints) as client:
        # Ready: the leader's clock runs (it starts once the leader's first
        # entry of its term is applied; until then: UNAVAILABLE, by contract).
        wait_for(
            "the leader's lease clock",
            lambda: client.keepalive_once(cluster.leader().endpoint, [0]),
        )
        yield client


def test_grant_attach_keepalive_revoke_round_trip(cluster: Cluster, leases: LeaseClient) -> None:
    """Grant (id chosen by the member, TTL raised to the minimum), attach two keys
    (KeyValue.lease on reads), keep alive on the leader, TimeToLive with keys from
    a follower (forwarded), Leases, then Revoke: both keys go in one revision."""
    leader = cluster.leader()
    follower = next(n for n in cluster.nodes if n is not leader)
    granted = leases.grant(1, endpoint=follower.endpoint)
    assert granted.id > 0 and granted.ttl == TTL_MIN_S
    big = leases.grant(60, lease_id=4242)
    assert (big.id, big.ttl) == (4242, 60)
    leases.put("/lease/a", "1", big.id)
    rev = leases.put("/lease/b", "2", big.id, endpoint=follower.endpoint)
    assert leases.get("/lease/a").lease == big.id  # type: ignore[union-attr]
    cluster.wait_applied(follower, rev)
    assert leases.get("/lease/b", endpoint=follower.endpoint).lease == big.id  # type: ignore[union-attr]

    (answer,) = leases.keepalive_once(leader.endpoint, [big.id])
    assert (answer.id, answer.ttl, answer.error) == (big.id, 60, "")
    with pytest.raises(Unavailable, match="not the leader"):
        leases.keepalive_once(follower.endpoint, [big.id])

    ttl = leases.time_to_live(big.id, keys=True, endpoint=follower.endpoint)
    assert ttl.granted_ttl == 60 and 0 < ttl.ttl <= 60
    assert sorted(ttl.keys) == [b"/lease/a", b"/lease/b"]
    assert sorted(leases.leases(endpoint=follower.endpoint)) == sorted([granted.id, big.id])

    before = leases.get("/lease/a").mod_revision  # type: ignore[union-attr]
    revoked = leases.revoke(big.id, endpoint=follower.endpoint)
    assert revoked.header.revision == rev + 1  # both deletes: one revision
    assert leases.get("/lease/a") is None and leases.get("/lease/b") is None
    assert before < revoked.header.revision
    assert big.id not in leases.leases()
    with pytest.raises(LeaseNotFound, match="lease not found"):
        leases.time_to_live(big.id)
    (gone,) = leases.keepalive_once(leader.endpoint, [big.id])
    assert (gone.ttl, gone.error) == (0, "lease not found")
    # The revoke is in the key's history under the revoker's identity.
    with cluster.client() as c:
        newest = c.history("/lease/a").entries[0]
    assert newest.event.type == "DELETE" and newest.identity == "anonymous"


def test_bad_input(cluster: Cluster, leases: LeaseClient) -> None:
    """TTL 0/negative/over the max, a put on an unknown lease (nothing written),
    unknown revoke/keepalive/timetolive, garbage keepalive ids: clear errors,
    never a crash, and the node keeps serving."""
    leader = cluster.leader()
    for ttl in (0, -1, limits.LEASE_TTL_S_MAX + 1):
        with pytest.raises(InvalidArgument):
            leases.grant(ttl)
    with pytest.raises(InvalidArgument):
        leases.grant(10, lease_id=-5)
    with pytest.raises(LeaseNotFound, match="lease not found"):
        leases.put("/nolease", "x", 999_999)
    assert leases.get("/nolease") is None
    with pytest.raises(LeaseNotFound):
        leases.revoke(999_999)
    with pytest.raises(InvalidArgument):
        leases.revoke(-1)
    with pytest.raises(LeaseNotFound):
        leases.time_to_live(999_999)
    with pytest.raises(LeaseNotFound):
        leases.time_to_live(-3)
    garbage = [0, -1, -(2**63), 2**63 - 1, 999_999]
    answers = leases.keepalive_once(leader.endpoint, garbage)
    assert [(a.id, a.ttl, a.error) for a in answers] == [(i, 0, "lease not found") for i in garbage]
    held = leases.grant(30)
    with pytest.raises(McpError, match="lease already exists"):
        leases.grant(30, lease_id=held.id)
    assert leases.time_to_live(held.id).granted_ttl == 30


def test_batched_keepalive_renews_many_leases_with_one_message(
    cluster: Cluster, leases: LeaseClient
) -> None:
    """LeaseKeepAliveRequest.ids: one answer listing each lease in order (unknown
    ids: ttl 0 "lease not found"); id and ids together, or more than
    LEASE_KEEPALIVE_BATCH_MAX ids: INVALID_ARGUMENT, and the node keeps serving."""
    leader = cluster.leader()
    held = [leases.grant(30).id, leases.grant(20).id]
    ids = [held[0], 999_999, held[1], -1]
    (answer,) = leases.keepalive_requests(leader.endpoint, [lease.LeaseKeepAliveRequest(ids=ids)])
    assert [(r.id, r.ttl, r.error) for r in answer.renewals] == [
        (held[0], 30, ""),
        (999_999, 0, "lease not found"),
        (held[1], 20, ""),
        (-1, 0, "lease not found"),
    ]
    assert answer.header.raft_term > 0
    too_many = [held[0]] * (limits.LEASE_KEEPALIVE_BATCH_MAX + 1)
    for bad in (
        lease.LeaseKeepAliveRequest(id=held[0], ids=[held[1]]),
        lease.LeaseKeepAliveRequest(ids=too_many),
    ):
        with pytest.raises(InvalidArgument, match="LEASE_KEEPALIVE_BATCH_MAX"):
            leases.keepalive_requests(leader.endpoint, [bad])
    assert leases.time_to_live(held[1]).granted_ttl == 20


def test_leases_max_through_the_service(cluster: Cluster, leases: LeaseClient) -> None:
    """LEASES_MAX leases exist: one more grant is RESOURCE_EXHAUSTED naming the
    limit, nothing granted; a revoke makes room again."""

    async def grant_all() -> list[int]:
        async with grpc.aio.insecure_channel(cluster.leader().endpoint) as channel:
            stub = lease_grpc.LeaseStub(channel)
            todo = iter(range(limits.LEASES_MAX))
            ids: list[int] = []

            async def worker() -> None:
                for _ in todo:
                    r = await stub.Grant(kv.LeaseGrantRequest(ttl=3600), timeout=30)
                    ids.append(r.id)

            await asyncio.gather(*(worker() for _ in range(32)))
            return ids

    ids = asyncio.run(grant_all())
    assert len(set(ids)) == limits.LEASES_MAX
    with pytest.raises(ResourceExhausted, match="LEASES_MAX"):
        leases.grant(60)
    assert len(leases.leases()) == limits.LEASES_MAX
    leases.revoke(ids[0])
    assert leases.time_to_live(leases.grant(60).id).granted_ttl == 60


def _holder(cluster: Cluster, key: str, ttl: int) -> tuple[subprocess.Popen[str], int]:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.leaseclient",
            "hold",
            ",".join(cluster.endpoints),
            key,
            str(ttl),
        ],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.strip().isdigit(), f"holder did not start: {line!r}"
    return proc, int(line)


class _Watcher:
    """Collects the event messages of one watch stream (a thread)."""

    def __init__(self, endpoint: str, prefix: str) -> None:
        self._channel = grpc.insecure_channel(endpoint)
        self._stream: Any = watch_grpc.WatchStub(self._channel).Watch(
            watch.WatchRequest(key=prefix.encode(), prefix=True)
        )
        self.messages: list[watch.WatchResponse] = []
        first = next(iter(self._stream))
        assert first.created
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        with contextlib.suppress(grpc.RpcError):
            for message in self._stream:
                if message.events:
                    self.messages.append(message)

    def close(self) -> None:
        self._stream.cancel()
        self._channel.close()


def _keys_under(leases: LeaseClient, prefix: str) -> int:
    return sum(leases.get(f"{prefix}{i}") is not None for i in range(HOLDER_KEYS))


def test_dead_holders_keys_go_within_ttl_plus_grace_in_one_watch_message(
    cluster: Cluster, leases: LeaseClient
) -> None:
    """A holder process keeps a 3 s lease with three keys alive, then is killed -9:
    the keys disappear within TTL + grace, a watcher gets all three DELETEs in
    one message (one revision), and history says "lease-expiry"."""
    proc, lease_id = _holder(cluster, "/held/", 3)
    try:
        assert _keys_under(leases, "/held/") == HOLDER_KEYS
        watcher = _Watcher(cluster.leader().endpoint, "/held/")
        proc.kill()
        proc.wait()
        killed_at = time.monotonic()
        wait_for(
            "the dead holder's keys to go",
            lambda: _keys_under(leases, "/held/") == 0,
            timeout_s=3 + GRACE_S + 5,
        )
        assert time.monotonic() - killed_at <= 3 + GRACE_S
        wait_for("the watcher to see the expiry", lambda: watcher.messages)
        watcher.close()
        (message,) = watcher.messages
        assert [e.type for e in message.events] == [kv.Event.DELETE] * HOLDER_KEYS
        assert len({e.kv.mod_revision for e in message.events}) == 1
        with cluster.client() as c:
            newest = c.history("/held/", prefix=True).entries[0]
        assert newest.identity == "lease-expiry"
        assert lease_id not in leases.leases()
    finally:
        proc.kill()


def _new_leader(cluster: Cluster, leases: LeaseClient, lease_id: int) -> NodeProc:
    """The agreed leader, once its lease clock answers TimeToLive."""
    leader = cluster.leader()
    wait_for(
        f"{leader.name}'s lease clock",
        lambda: leases.time_to_live(lease_id, endpoint=leader.endpoint).ttl > 0,
    )
    return leader


def test_kept_alive_lease_survives_kill_pause_and_successive_leader_changes(
    cluster: Cluster, leases: LeaseClient
) -> None:
    """A lease kept alive every TTL/3 is never revoked: through kill -9 of the
    leader, the leader SIGSTOPped for 3 s, and three graceful leader changes in
    a row (the new leader's grace covers the hand-over)."""
    granted = leases.grant(3)
    leases.put("/alive/k", "v", granted.id)
    with KeepAliver(leases, [granted.id], interval_s=1.0, stream_timeout_s=3.0) as keeper:
        leader = _new_leader(cluster, leases, granted.id)
        cluster.kill(leader)
        _new_leader(cluster, leases, granted.id)
        cluster.start(leader)
        cluster.wait_ready()

        leader = _new_leader(cluster, leases, granted.id)
        cluster.pause(leader)
        time.sleep(3.0)  # the fault: a leader that stops for 3 s
        cluster.resume(leader)
        _new_leader(cluster, leases, granted.id)
        cluster.wait_ready()

        for _ in range(3):
            leader = _new_leader(cluster, leases, granted.id)
            cluster.restart(leader)  # SIGTERM: hands leadership over, then starts again
            cluster.wait_ready()
        _new_leader(cluster, leases, granted.id)
        assert keeper.gone == [], keeper.errors
        assert keeper.renewals > 0
    assert leases.get("/alive/k") is not None
    assert granted.id in leases.leases()


def test_dead_owners_lease_expires_across_three_leader_changes(
    cluster: Cluster, leases: LeaseClient
) -> None:
    """etcd #9395 / #17132: the owner of a 20 s lease dies, then the leader changes
    three times, about 5 s apart. Each new leader starts from the last
    checkpoint, so the keys go before the last change + the full TTL (without
    checkpoints every change would restart the TTL)."""
    ttl = 20
    proc, lease_id = _holder(cluster, "/owner/", ttl)
    proc.kill()
    proc.wait()
    last_change = time.monotonic()
    for _ in range(3):
        time.sleep(5.0)  # let the leader's clock run and checkpoint (not a readiness wait)
        leader = _new_leader(cluster, leases, lease_id)
        cluster.restart(leader)
        last_change = time.monotonic()
        cluster.wait_ready()
    wait_for(
        "the dead owner's keys to go",
        lambda: _keys_under(leases, "/owner/") == 0,
        timeout_s=ttl + GRACE_S + 10,
    )
    assert time.monotonic() < last_change + ttl, "the TTL restarted at a leader change"


def test_full_cluster_restart_keeps_leases_and_their_keys(
    cluster: Cluster, leases: LeaseClient
) -> None:
    granted = leases.grant(60)
    leases.put("/restart/k", "v", granted.id)
    for node in cluster.nodes:
        cluster.stop(node)
    for node in cluster.nodes:
        cluster.start(node)
    cluster.wait_ready()
    assert granted.id in leases.leases()
    kv_ = leases.get("/restart/k")
    assert kv_ is not None and kv_.lease == granted.id
    leader = _new_leader(cluster, leases, granted.id)
    answer = leases.time_to_live(granted.id, endpoint=leader.endpoint)
    assert answer.granted_ttl == 60 and 0 < answer.ttl <= 60 + GRACE_S


def test_time_to_live_is_unavailable_not_a_number_right_after_a_leader_kill(
    cluster: Cluster, leases: LeaseClient
) -> None:
    """etcd PR #17642: during a leader change TimeToLive answers UNAVAILABLE, never a
    made-up TTL; once the new leader's clock runs, a true one."""
    granted = leases.grant(30)
    leader = cluster.leader()
    survivors = [n for n in cluster.nodes if n is not leader]
    cluster.kill(leader)
    unavailable = 0
    answer = None
    deadline = time.monotonic() + 30
    while answer is None and time.monotonic() < deadline:
        for node in survivors:
            try:
                answer = leases.time_to_live(granted.id, endpoint=node.endpoint)
                break
            except Unavailable:
                unavailable += 1
    assert unavailable > 0
    assert answer is not None and 0 < answer.ttl <= 30 + GRACE_S
    assert answer.granted_ttl == 30
