"""The same scripted scenarios against a 3-member real etcd (Debian's etcd-server)
and a 3-member mcp-config, answers compared field by field (tests/etcd/difftools.py:
ids and terms ignored, revisions relative to each scenario's start).

Every difference is either fixed or listed in docs/etcd-compat.md; a scenario
that shows a documented difference avoids it and says so.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from bench.adapters import EtcdAdapter
from mcpctl._proto.etcd.etcdserverpb import rpc_pb2 as rpc
from tests.cluster import running_cluster
from tests.etcd.conftest import need
from tests.etcd.difftools import Recorder, WatchStream

pytestmark = pytest.mark.cluster

ETCD = "/usr/bin/etcd"
Scenario = Callable[[Recorder, bytes], None]
SCENARIOS: list[Scenario] = []


def scenario(fn: Scenario) -> Scenario:
    SCENARIOS.append(fn)
    return fn


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """The leader endpoint of each: etcd, mcp-config."""
    need(ETCD)
    etcd = EtcdAdapter(binary=ETCD)
    etcd.start(tmp_path_factory.mktemp("etcd"))
    try:
        with running_cluster(Path(tmp_path_factory.mktemp("mcp"))) as c:
            yield {"etcd": etcd.leader_endpoint(), "mcp": c.leader().endpoint}
    finally:
        etcd.stop()


def _run(endpoint: str, fn: Scenario, prefix: bytes) -> list[object]:
    rec = Recorder(endpoint)
    try:
        fn(rec, prefix)
    finally:
        rec.close()
    return rec.log


@pytest.mark.parametrize("fn", SCENARIOS, ids=lambda f: f.__name__)
def test_same_answers(servers: dict[str, str], fn: Scenario) -> None:
    prefix = f"/diff/{fn.__name__}/".encode()
    want = _run(servers["etcd"], fn, prefix)
    got = _run(servers["mcp"], fn, prefix)
    assert len(got) == len(want)
    for w, g in zip(want, got, strict=True):
        assert g == w, f"etcd answered {w}\nmcp-config answered {g}"


def _end(prefix: bytes) -> bytes:
    return prefix[:-1] + bytes([prefix[-1] + 1])


# -- KV ------------------------------------------------------------------------------
@scenario
def range_options(r: Recorder, p: bytes) -> None:
    kv = r.kv
    # Distinct versions, values and revisions: no ties in any sort.
    for key, times in ((b"a", 3), (b"b", 2), (b"c", 1)):
        for i in range(times):
            r.call("put", kv.Put, rpc.PutRequest(key=p + key, value=key * (4 - i), prev_kv=True))
    r.call("put d", kv.Put, rpc.PutRequest(key=p + b"d", value=b"z"))
    r.call("single", kv.Range, rpc.RangeRequest(key=p + b"a"))
    r.call("missing", kv.Range, rpc.RangeRequest(key=p + b"nope"))
    r.call("prefix", kv.Range, rpc.RangeRequest(key=p, range_end=_end(p)))
    r.call("[b, d)", kv.Range, rpc.RangeRequest(key=p + b"b", range_end=p + b"d"))
    r.call("end < key", kv.Range, rpc.RangeRequest(key=p + b"d", range_end=p + b"a"))
    r.call("limit", kv.Range, rpc.RangeRequest(key=p, range_end=_end(p), limit=2))
    r.call("keys_only", kv.Range, rpc.RangeRequest(key=p, range_end=_end(p), keys_only=True))
    r.call("count_only", kv.Range, rpc.RangeRequest(key=p, range_end=_end(p), count_only=True))
    r.call("serializable", kv.Range, rpc.RangeRequest(key=p + b"b", serializable=True))
    r.call("at rev 2", kv.Range, rpc.RangeRequest(key=p, range_end=_end(p), revision=r.rev(2)))
    R = rpc.RangeRequest
    for target in (R.KEY, R.VERSION, R.CREATE, R.MOD, R.VALUE):
        for order in (R.NONE, R.ASCEND, R.DESCEND):
            r.call(
                f"sort {target} {order}",
                kv.Range,
                R(key=p, range_end=_end(p), sort_target=target, sort_order=order, limit=3),
            )
    r.call(
        "filters",
        kv.Range,
        R(key=p, range_end=_end(p), min_mod_revision=r.rev(3), max_create_revision=r.rev(6)),
    )
    r.call("empty key", kv.Range, R(key=b""))
    r.call("future", kv.Range, R(key=p, revision=r.rev(1000)))


@scenario
def deletes(r: Recorder, p: bytes) -> None:
    kv = r.kv
    for key in (b"a", b"b", b"c", b"d"):
        r.call("put", kv.Put, rpc.PutRequest(key=p + key, value=key))
    r.call("del missing", kv.DeleteRange, rpc.DeleteRangeRequest(key=p + b"x"))
    r.call("del one", kv.DeleteRange, rpc.DeleteRangeRequest(key=p + b"a", prev_kv=True))
    r.call(
        "del [b, d)",
        kv.DeleteRange,
        rpc.DeleteRangeRequest(key=p + b"b", range_end=p + b"d", prev_kv=True),
    )
    r.call("del prefix", kv.DeleteRange, rpc.DeleteRangeRequest(key=p, range_end=_end(p)))
    r.call("left", kv.Range, rpc.RangeRequest(key=p, range_end=_end(p)))
    r.call("del empty key", kv.DeleteRange, rpc.DeleteRangeRequest(key=b""))


@scenario
def put_options(r: Recorder, p: bytes) -> None:
    kv = r.kv
    k = p + b"k"
    r.call("ignore_value missing", kv.Put, rpc.PutRequest(key=k, ignore_value=True))
    r.call("put", kv.Put, rpc.PutRequest(key=k, value=b"v1"))
    r.call("ignore_value + value", kv.Put, rpc.PutRequest(key=k, value=b"x", ignore_value=True))
    r.call("ignore_lease + lease", kv.Put, rpc.PutRequest(key=k, lease=5, ignore_lease=True))
    r.call("ignore_value", kv.Put, rpc.PutRequest(key=k, ignore_value=True, prev_kv=True))
    r.call("ignore_lease", kv.Put, rpc.PutRequest(key=k, value=b"v2", ignore_lease=True))
    r.call("get", kv.Range, rpc.RangeRequest(key=k))
    r.call("empty key", kv.Put, rpc.PutRequest(key=b"", value=b"v"))
    r.call("unknown lease", kv.Put, rpc.PutRequest(key=k, value=b"v", lease=123456789))


@scenario
def txns(r: Recorder, p: bytes) -> None:
    kv = r.kv
    C = rpc.Compare
    k, m = p + b"k", p + b"missing"
    r.call("put", kv.Put, rpc.PutRequest(key=k, value=b"a"))

    def txn(label: str, compares: list[rpc.Compare], ok: list[rpc.RequestOp]) -> None:
        fail = [rpc.RequestOp(request_range=rpc.RangeRequest(key=k))]
        r.call(label, kv.Txn, rpc.TxnRequest(compare=compares, success=ok, failure=fail))

    put_b = [rpc.RequestOp(request_put=rpc.PutRequest(key=k, value=b"b", prev_kv=True))]
    txn("value = a", [C(key=k, target=C.VALUE, result=C.EQUAL, value=b"a")], put_b)
    txn("value = a again", [C(key=k, target=C.VALUE, result=C.EQUAL, value=b"a")], put_b)
    txn("value missing = ''", [C(key=m, target=C.VALUE, result=C.EQUAL, value=b"")], put_b)
    txn("version missing = 0", [C(key=m, target=C.VERSION, result=C.EQUAL, version=0)], [])
    txn("create > 0", [C(key=k, target=C.CREATE, result=C.GREATER, create_revision=0)], [])
    txn("mod < rev(1)", [C(key=k, target=C.MOD, result=C.LESS, mod_revision=r.rev(1))], [])
    txn("lease = 0", [C(key=k, target=C.LEASE, result=C.EQUAL, lease=0)], [])
    txn("value != b", [C(key=k, target=C.VALUE, result=C.NOT_EQUAL, value=b"b")], [])
    a, b = p, _end(p)
    txn("range version > 0", [C(key=a, range_end=b, target=C.VERSION, result=C.GREATER)], [])
    txn("range value = b", [C(key=a, range_end=b, target=C.VALUE, value=b"b")], [])
    a, b = p + b"zz", p + b"zzz"  # no key
    txn("empty range version = 0", [C(key=a, range_end=b, target=C.VERSION, version=0)], [])
    txn("empty range value = ''", [C(key=a, range_end=b, target=C.VALUE, value=b"")], [])
    ops = [
        rpc.RequestOp(request_put=rpc.PutRequest(key=p + b"n1", value=b"1")),
        rpc.RequestOp(request_range=rpc.RangeRequest(key=p, range_end=_end(p), count_only=True)),
        rpc.RequestOp(request_delete_range=rpc.DeleteRangeRequest(key=p + b"n1", prev_kv=True)),
        rpc.RequestOp(request_range=rpc.RangeRequest(key=p, range_end=_end(p), keys_only=True)),
    ]
    txn("mixed ops", [], ops)
    many = [rpc.RequestOp(request_range=rpc.RangeRequest(key=k))] * 129
    txn("too many ops", [], many)
    txn("empty key op", [], [rpc.RequestOp(request_put=rpc.PutRequest(key=b""))])
    # Nested txns: the inner compares are evaluated too, each branch as etcd's.
    inner_ok = rpc.TxnRequest(
        compare=[C(key=m, target=C.VERSION, version=0)],
        success=[rpc.RequestOp(request_put=rpc.PutRequest(key=p + b"n2", value=b"in"))],
        failure=[rpc.RequestOp(request_range=rpc.RangeRequest(key=k))],
    )
    inner_fail = rpc.TxnRequest(
        compare=[C(key=k, target=C.VALUE, value=b"zzz")],
        success=[rpc.RequestOp(request_put=rpc.PutRequest(key=p + b"n3", value=b"no"))],
        failure=[rpc.RequestOp(request_range=rpc.RangeRequest(key=k, keys_only=True))],
    )
    nested = [
        rpc.RequestOp(request_range=rpc.RangeRequest(key=k)),
        rpc.RequestOp(request_txn=inner_ok),
        rpc.RequestOp(request_txn=inner_fail),
    ]
    txn("nested", [C(key=k, target=C.VERSION, result=C.GREATER, version=0)], nested)
    r.call("after nested", kv.Range, rpc.RangeRequest(key=p + b"n", range_end=p + b"o"))


@scenario
def compaction(r: Recorder, p: bytes) -> None:
    kv = r.kv
    k = p + b"k"
    for v in (b"1", b"2", b"3"):
        r.call("put", kv.Put, rpc.PutRequest(key=k, value=v))
    r.call("compact future", kv.Compact, rpc.CompactionRequest(revision=r.rev(1000)))
    r.call("compact", kv.Compact, rpc.CompactionRequest(revision=r.rev(2)))
    r.call("read compacted", kv.Range, rpc.RangeRequest(key=k, revision=r.rev(1)))
    r.call("read at compact rev", kv.Range, rpc.RangeRequest(key=k, revision=r.rev(2)))
    r.call("compact older", kv.Compact, rpc.CompactionRequest(revision=r.rev(1)))
    r.call("compact same", kv.Compact, rpc.CompactionRequest(revision=r.rev(2)))
    # A watch from a compacted revision: created, then canceled with compact_revision.
    w = WatchStream(r)
    try:
        create = rpc.WatchCreateRequest(key=k, start_revision=r.rev(1))
        w.send(rpc.WatchRequest(create_request=create))
        r.record("watch created", r.norm(w.next()))
        r.record("watch compacted", r.norm(w.next()))
    finally:
        w.close()


# -- Watch -----------------------------------------------------------------------------
@scenario
def watches(r: Recorder, p: bytes) -> None:
    kv = r.kv
    r.call("put a", kv.Put, rpc.PutRequest(key=p + b"a", value=b"1"))
    w = WatchStream(r)
    try:
        F = rpc.WatchCreateRequest
        creates = [
            F(key=p, range_end=_end(p), start_revision=r.rev(1), prev_kv=True),
            F(key=p + b"a", filters=[F.NOPUT]),
            F(key=p + b"b", range_end=b"\0", filters=[F.NODELETE], watch_id=7),
        ]
        for c in creates:
            w.send(rpc.WatchRequest(create_request=c))
        created: dict[int, object] = {}
        got: dict[int, list[object]] = {}

        def take(events: int) -> None:
            # Messages of different watches interleave differently (and etcd
            # batches revisions a watch has in one message): compare per watch.
            while len(created) < 3 or sum(len(v) for v in got.values()) < events:
                msg = w.next()
                if msg.created:
                    created[msg.watch_id] = r.norm(msg)
                for ev in msg.events:
                    got.setdefault(msg.watch_id, []).append(r.norm(ev))

        take(1)  # watch 0 replays the first put
        r.call("put b", kv.Put, rpc.PutRequest(key=p + b"b", value=b"2"))
        r.call("put a", kv.Put, rpc.PutRequest(key=p + b"a", value=b"3"))
        r.call("del a", kv.DeleteRange, rpc.DeleteRangeRequest(key=p + b"a"))
        # watch 0: the first put (history) + 3 live; watch 1: the delete; watch 7: put b.
        take(6)
        r.record("created", sorted(created.items()))
        r.record("events", got)
        w.send(rpc.WatchRequest(cancel_request=rpc.WatchCancelRequest(watch_id=1)))
        r.record("canceled", r.norm(w.next()))
        w.send(rpc.WatchRequest(progress_request=rpc.WatchProgressRequest()))
        r.record("progress", r.norm(w.next()))
        w.send(rpc.WatchRequest(create_request=F(key=p + b"x", watch_id=7)))
        r.record("duplicate id", r.norm(w.next()))
    finally:
        w.close()


# -- Lease -----------------------------------------------------------------------------
@scenario
def leases(r: Recorder, p: bytes) -> None:
    ls, kv = r.lease, r.kv
    lid = 0x7E57_0000 + len(p)
    r.call("grant", ls.LeaseGrant, rpc.LeaseGrantRequest(ID=lid, TTL=60))
    r.call("grant again", ls.LeaseGrant, rpc.LeaseGrantRequest(ID=lid, TTL=60))
    r.call("grant too long", ls.LeaseGrant, rpc.LeaseGrantRequest(TTL=10**12))
    r.call("put", kv.Put, rpc.PutRequest(key=p + b"k", value=b"v", lease=lid))
    r.call("get", kv.Range, rpc.RangeRequest(key=p + b"k"))
    got = ls.LeaseTimeToLive(rpc.LeaseTimeToLiveRequest(ID=lid, keys=True), timeout=10)
    r.record("ttl", (got.ID, got.grantedTTL, 55 <= got.TTL <= 60, list(got.keys)))
    listed = ls.LeaseLeases(rpc.LeaseLeasesRequest(), timeout=10)
    r.record("listed", lid in [s.ID for s in listed.leases])
    answers = ls.LeaseKeepAlive(iter([rpc.LeaseKeepAliveRequest(ID=lid)]), timeout=10)
    r.record("keepalive", [(a.ID, a.TTL) for a in answers])
    answers = ls.LeaseKeepAlive(iter([rpc.LeaseKeepAliveRequest(ID=lid + 1)]), timeout=10)
    r.record("keepalive unknown", [(a.ID, a.TTL) for a in answers])
    r.call("revoke", ls.LeaseRevoke, rpc.LeaseRevokeRequest(ID=lid))
    r.call("key gone", kv.Range, rpc.RangeRequest(key=p + b"k"))
    r.call("revoke again", ls.LeaseRevoke, rpc.LeaseRevokeRequest(ID=lid))
    r.call("ttl unknown", ls.LeaseTimeToLive, rpc.LeaseTimeToLiveRequest(ID=lid))


@scenario
def lease_expiry(r: Recorder, p: bytes) -> None:
    """A lease nobody keeps alive expires: its keys are deleted (one DELETE event each)."""
    lid = 0x7E58_0000 + len(p)
    r.call("grant", r.lease.LeaseGrant, rpc.LeaseGrantRequest(ID=lid, TTL=2))
    for k in (b"a", b"b"):
        r.call("put", r.kv.Put, rpc.PutRequest(key=p + k, value=b"v", lease=lid))
    w = WatchStream(r)
    try:
        create = rpc.WatchCreateRequest(key=p, range_end=_end(p), start_revision=r.rev(1))
        w.send(rpc.WatchRequest(create_request=create))
        events: list[object] = []
        while len(events) < 4:  # two puts (history), then the expiry's two deletes
            for ev in w.next(timeout=30).events:
                events.append(r.norm(ev))
        r.record("events", events)
    finally:
        w.close()
    r.call("gone", r.kv.Range, rpc.RangeRequest(key=p, range_end=_end(p)))
    r.call("ttl", r.lease.LeaseTimeToLive, rpc.LeaseTimeToLiveRequest(ID=lid))


# -- Cluster, Maintenance ------------------------------------------------------------------
@scenario
def cluster_status(r: Recorder, p: bytes) -> None:
    members = r.cluster.MemberList(rpc.MemberListRequest(), timeout=10).members
    r.record("members", (len(members), all(m.ID and m.name and m.clientURLs for m in members)))
    st = r.maintenance.Status(rpc.StatusRequest(), timeout=10)
    r.record("status", (bool(st.version), st.leader == st.header.member_id, st.raftIndex > 0))
    r.call("alarms", r.maintenance.Alarm, rpc.AlarmRequest(action=rpc.AlarmRequest.GET))
