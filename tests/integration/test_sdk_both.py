"""One set of scenarios, run by both SDK clients (sync ``mcpctl.client.Client``
and asyncio ``mcpctl.aio.Client``) against a real 3-node cluster: the same
surface, the same typed results, the same rules (failover, watch resume,
"never sent" -> not applied)."""

from __future__ import annotations

import contextlib
import queue
import socket
import time

import pytest

from mcpctl import ClientClosed, Compare, CompareFailed, Op, OutcomeUnknown, Unavailable
from mcpctl.client import (
    ClusterStatus,
    DeleteResult,
    Event,
    GetResult,
    HistoryResult,
    Member,
    PutResult,
    WatchBatch,
)
from tests.cluster import Cluster
from tests.sdk_flavors import Watching, flavor_of

pytestmark = pytest.mark.cluster

FLAVORS = ["sync", "async"]


@pytest.fixture(params=FLAVORS)
def flavor_name(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


def events_until(watch: Watching, count: int, timeout_s: float = 30.0) -> list[Event]:
    """The next ``count`` events of ``watch`` (fails on an error or a timeout)."""
    found: list[Event] = []
    deadline = time.monotonic() + timeout_s
    while len(found) < count:
        try:
            item = watch.batches.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            raise AssertionError(f"{len(found)} of {count} events within {timeout_s}s") from None
        if isinstance(item, BaseException):
            raise AssertionError(f"the watch ended: {item!r}") from item
        assert isinstance(item, WatchBatch)
        found.extend(item.events)
    return found


def test_kv_txn_history_and_cluster_calls_are_typed(flavor_name: str, cluster: Cluster) -> None:
    """Every call answers a typed result; a txn built with Compare/Op runs its
    branch and returns one typed result per op; the wrong expected revision
    is CompareFailed."""
    c = flavor_of(flavor_name, cluster.endpoints, timeout=10.0)
    try:
        put = c.call("put", "/t/a", "1")
        assert isinstance(put, PutResult) and put.revision > 0
        with pytest.raises(CompareFailed):
            c.call("put", "/t/a", "x", expected_mod_revision=put.revision + 100)

        ok = c.call(
            "txn",
            compare=[Compare.mod_revision("/t/a") == put.revision, Compare.value("/t/a") == "1"],
            success=[Op.put("/t/a", "2"), Op.put("/t/b", "3"), Op.get("/t/", prefix=True)],
            failure=[Op.get("/t/a")],
        )
        assert ok.succeeded
        wrote_a, wrote_b, read = ok.responses
        assert isinstance(wrote_a, PutResult) and isinstance(wrote_b, PutResult)
        assert isinstance(read, GetResult)
        assert [(kv.key, kv.value) for kv in read.kvs] == [("/t/a", b"2"), ("/t/b", b"3")]

        not_ok = c.call(
            "txn",
            compare=[Compare.value("/t/a") != b"2"],
            success=[Op.delete("/t/", prefix=True)],
            failure=[Op.get("/t/a")],
        )
        assert not not_ok.succeeded
        (seen,) = not_ok.responses
        assert isinstance(seen, GetResult) and seen.kvs[0].text == "2"

        gone = c.call(
            "txn",
            compare=[Compare.count("/t/") == 2],
            success=[Op.delete("/t/", prefix=True, prev_kv=True)],
        )
        (deleted,) = gone.responses
        assert isinstance(deleted, DeleteResult) and deleted.deleted == 2

        history = c.call("history", "/t/a")
        assert isinstance(history, HistoryResult)
        assert [e.event.type for e in history.entries] == ["DELETE", "PUT", "PUT"]
        assert history.entries[1].event.kv.text == "2"

        status = c.call("cluster_status")
        assert isinstance(status, ClusterStatus) and status.leader
        assert sorted(m.member_name for m in status.members) == ["n1", "n2", "n3"]
        assert all(m.reachable for m in status.members)
        members = c.call("member_list")
        assert all(isinstance(m, Member) for m in members)
        assert sorted(m.name for m in members) == ["n1", "n2", "n3"]
        got = c.call("get", "/t/", prefix=True)
        assert isinstance(got, GetResult) and got.count == 0
    finally:
        c.close()


def test_a_lease_is_kept_alive_and_its_loss_is_reported(flavor_name: str, cluster: Cluster) -> None:
    """A granted lease outlives its TTL while the client renews it; revoked by
    someone else, the next renewal says so: ``lost`` with the reason."""
    c = flavor_of(flavor_name, cluster.endpoints, timeout=10.0)
    try:
        lease = c.grant(2)
        c.call("put", "/leased/k", "v", lease=lease.id)
        assert lease.wait_lost(4.0) is None  # two TTLs later: still alive
        assert c.call("get", "/leased/k").count == 1
        with cluster.client() as other:
            other.revoke(lease.id)
        reason = lease.wait_lost(10.0)
        assert reason is not None and "not found" in reason
        assert c.call("get", "/leased/k").count == 0
    finally:
        c.close()


def test_a_lease_nobody_can_renew_is_lost_after_its_ttl(flavor_name: str, cluster: Cluster) -> None:
    """Every member killed: renewals fail on every endpoint, and once the TTL
    of the last renewal has run out the lease is lost, saying why."""
    c = flavor_of(flavor_name, cluster.endpoints, timeout=2.0)
    try:
        lease = c.grant(2)
        for node in cluster.nodes:
            cluster.kill(node)
        reason = lease.wait_lost(30.0)
        assert reason is not None and "not renewed within its TTL" in reason, reason
    finally:
        c.close()


def test_writes_and_a_watch_survive_a_leader_kill(flavor_name: str, cluster: Cluster) -> None:
    """kill -9 the leader mid-stream: each write either succeeds (on the next
    member) or says its outcome is unknown, and the watch resumes on another
    member without losing or repeating an event."""
    leader = cluster.leader()
    # The leader first: the watch and the writes start on it.
    ordered = [leader.endpoint] + [n.endpoint for n in cluster.nodes if n is not leader]
    c = flavor_of(flavor_name, ordered, timeout=15.0)
    try:
        start = c.call("put", "/f/0", "0").revision
        watch = c.watch("/f/", prefix=True, start_revision=start)
        assert [e.kv.key for e in events_until(watch, 1)] == ["/f/0"]
        acked: dict[str, int] = {}
        unknown: set[str] = set()
        for i in range(1, 21):
            if i == 8:
                cluster.kill(leader)
            key = f"/f/{i}"
            try:
                acked[key] = c.call("put", key, str(i)).revision
            except OutcomeUnknown:
                unknown.add(key)
        assert len(acked) >= 15, (acked, unknown)
        last = max(acked.values())
        seen: list[Event] = []
        while not seen or seen[-1].kv.mod_revision < last:
            seen.extend(events_until(watch, 1))
        revisions = [e.kv.mod_revision for e in seen]
        assert revisions == sorted(set(revisions)), "an event repeated or out of order"
        by_key = {e.kv.key: e.kv.mod_revision for e in seen}
        assert all(by_key.get(k) == r for k, r in acked.items()), "an acked write is missing"
        assert set(by_key) <= set(acked) | unknown
        watch.close()
    finally:
        c.close()


def test_a_config_watcher_follows_a_prefix_across_a_leader_kill(
    flavor_name: str, cluster: Cluster
) -> None:
    """A ConfigWatcher (sync or asyncio) starts from a read, gets each
    revision's changes together (a txn's two puts in one call), and keeps its
    copy equal to the cluster's across a kill -9 of the leader."""
    leader = cluster.leader()
    ordered = [leader.endpoint] + [n.endpoint for n in cluster.nodes if n is not leader]
    c = flavor_of(flavor_name, ordered, timeout=15.0)
    try:
        c.call("put", "/w/before", "0")
        watcher = c.config_watcher("/w/")
        assert set(watcher.snapshot()) == {"/w/before"}
        txn = c.call("txn", success=[Op.put("/w/a", "1"), Op.put("/w/b", "2")])
        first = watcher.changes.get(timeout=30)
        assert [(ch.type, ch.key, ch.value, ch.revision) for ch in first] == [
            ("PUT", "/w/a", b"1", txn.header.revision),
            ("PUT", "/w/b", b"2", txn.header.revision),
        ]
        cluster.kill(leader)
        last = 0
        for i in range(5):
            with contextlib.suppress(OutcomeUnknown):  # settled by the delete below
                last = c.call("put", f"/w/after{i}", str(i)).revision
        deleted = c.call("delete", "/w/before").header.revision
        assert watcher.wait_for_revision(max(last, deleted), 30.0)
        got = c.call("get", "/w/", prefix=True)
        assert {k: kv.value for k, kv in watcher.snapshot().items()} == {
            kv.key: kv.value for kv in got.kvs
        }
        watcher.stop()
    finally:
        c.close()


def test_closing_the_client_ends_its_watches_and_later_calls(
    flavor_name: str, cluster: Cluster
) -> None:
    """close() while a watch runs: the watch ends with ClientClosed instead of
    reopening a channel on the closed client and going on; later calls raise
    ClientClosed, and no channel is left open."""
    flavor = flavor_of(flavor_name, cluster.endpoints)
    try:
        start = flavor.call("put", "/closing/a", "1").revision
        watch = flavor.watch("/closing/", prefix=True, start_revision=start)
        assert [e.kv.key for e in events_until(watch, 1)] == ["/closing/a"]
        flavor.call("close")
        ended = watch.batches.get(timeout=30)
        assert isinstance(ended, ClientClosed), ended
        with pytest.raises(ClientClosed):
            flavor.call("get", "/closing/a")
        assert flavor.client.closed and not flavor.client._channels
    finally:
        flavor.close()


def test_a_write_nothing_listens_for_is_not_applied(flavor_name: str) -> None:
    """No endpoint takes a connection: the client never sent the write, so it
    fails at once with Unavailable (not OutcomeUnknown), without waiting out
    its deadline."""
    ports = []
    for _ in range(3):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        ports.append(s.getsockname()[1])
        s.close()
    c = flavor_of(flavor_name, [f"127.0.0.1:{p}" for p in ports], timeout=20.0)
    try:
        started = time.monotonic()
        with pytest.raises(Unavailable) as raised:
            c.call("put", "/k", "v")
        assert type(raised.value) is Unavailable, raised.value
        assert "failed to connect" in raised.value.message
        assert time.monotonic() - started < 10.0
    finally:
        c.close()
