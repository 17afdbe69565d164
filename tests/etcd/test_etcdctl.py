"""Debian's real etcdctl (v3 API) against a real 3-node mcp-config cluster.

Each test uses its own key prefix on the module's cluster. Errors are checked
by etcd's exact strings (clients classify by them).
"""

from __future__ import annotations

import base64
import json
import queue
import subprocess
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from tests.cluster import Cluster
from tests.etcd.conftest import ETCDCTL, ctl_env, etcdctl, need

pytestmark = pytest.mark.cluster


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def _json(cluster: Cluster, *args: str) -> dict:  # type: ignore[type-arg]
    out = etcdctl(cluster.endpoints, *args, "-w", "json").stdout
    return json.loads(out)  # type: ignore[no-any-return]


def _lines(cluster: Cluster, *args: str) -> list[str]:
    return etcdctl(cluster.endpoints, *args).stdout.splitlines()


def test_put_get_prefix_limit_keys_only_rev_json(cluster: Cluster) -> None:
    ep = cluster.endpoints
    assert etcdctl(ep, "put", "/t1/a", "1").stdout.strip() == "OK"
    first = _json(cluster, "get", "/t1/a")["header"]["revision"]
    etcdctl(ep, "put", "/t1/b", "2")
    etcdctl(ep, "put", "/t1/a", "3")
    etcdctl(ep, "put", "/t10", "x")  # outside the prefix "/t1/"
    assert _lines(cluster, "get", "/t1/", "--prefix") == ["/t1/a", "3", "/t1/b", "2"]
    # --limit: etcd's count and more.
    got = _json(cluster, "get", "/t1/", "--prefix", "--limit", "1")
    assert [kv["key"] for kv in got["kvs"]] == [_b64("/t1/a")]
    assert got["count"] == 2 and got["more"] is True
    assert _lines(cluster, "get", "/t1/", "--prefix", "--keys-only") == ["/t1/a", "", "/t1/b", ""]
    # --rev: the value as of the first put.
    assert _lines(cluster, "get", "/t1/a", "--rev", str(first)) == ["/t1/a", "1"]
    got = _json(cluster, "get", "/t1/a")
    kv = got["kvs"][0]
    assert kv["version"] == 2 and kv["create_revision"] == first
    assert kv["value"] == _b64("3") and kv["mod_revision"] == got["header"]["revision"] - 1
    assert got["header"]["cluster_id"] and got["header"]["member_id"]
    # A byte range [/t1/a, /t1/b) and --from-key.
    assert _lines(cluster, "get", "/t1/a", "/t1/b") == ["/t1/a", "3"]
    assert _lines(cluster, "get", "/t1/b", "--from-key", "--keys-only")[:3] == ["/t1/b", "", "/t10"]
    # Sorted by value, descending.
    assert _lines(cluster, "get", "/t1/", "--prefix", "--sort-by", "VALUE", "--order", "DESCEND")[
        ::2
    ] == ["/t1/a", "/t1/b"]


def test_del_prefix_and_range(cluster: Cluster) -> None:
    ep = cluster.endpoints
    for k in ("a", "b", "c"):
        etcdctl(ep, "put", f"/t2/{k}", k)
    etcdctl(ep, "put", "/t2x", "outside")
    assert etcdctl(ep, "del", "/t2/a", "/t2/c").stdout.strip() == "2"  # [a, c)
    assert etcdctl(ep, "del", "/t2/", "--prefix", "--prev-kv").stdout.splitlines() == [
        "1",
        "/t2/c",
        "c",
    ]
    assert _lines(cluster, "get", "/t2", "--prefix") == ["/t2x", "outside"]


def test_txn_interactive_both_branches(cluster: Cluster) -> None:
    ep = cluster.endpoints
    etcdctl(ep, "put", "/t3/k", "a")
    script = 'value("/t3/k") = "a"\n\nput /t3/k b\n\nput /t3/k failed\n\n'
    out = etcdctl(ep, "txn", "-i", stdin=script).stdout
    assert "SUCCESS" in out
    assert _lines(cluster, "get", "/t3/k") == ["/t3/k", "b"]
    out = etcdctl(ep, "txn", "-i", stdin=script).stdout  # now "b": the failure branch
    assert "FAILURE" in out
    assert _lines(cluster, "get", "/t3/k") == ["/t3/k", "failed"]
    # A compare on a missing key's version (0), and a get in the success branch.
    script = 'version("/t3/missing") = "0"\n\nget /t3/k\n\n\n'
    out = etcdctl(ep, "txn", "-i", stdin=script).stdout
    assert "SUCCESS" in out and "/t3/k\nfailed" in out


def test_watch_prefix_from_revision(cluster: Cluster) -> None:
    ep = cluster.endpoints
    start = _json(cluster, "put", "/t4/a", "1")["header"]["revision"]
    etcdctl(ep, "put", "/t4/b", "2")
    etcdctl(ep, "del", "/t4/a")
    need(ETCDCTL)
    proc = subprocess.Popen(
        [ETCDCTL, "--endpoints", ",".join(ep), "watch", "/t4/", "--prefix", "--rev", str(start)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=ctl_env(),
    )
    # etcdctl prints a DELETE's (empty) value as an empty line.
    want = ["PUT", "/t4/a", "1", "PUT", "/t4/b", "2", "DELETE", "/t4/a", "", "PUT", "/t4/c", "3"]
    lines: queue.Queue[str] = queue.Queue()
    assert proc.stdout is not None
    out = proc.stdout

    def read() -> None:
        for line in out:
            lines.put(line)

    threading.Thread(target=read, daemon=True).start()
    got: list[str] = []
    try:
        deadline = time.monotonic() + 30
        live = False
        while len(got) < len(want) and time.monotonic() < deadline:
            if len(got) == 9 and not live:  # the history is replayed: now a live event
                etcdctl(ep, "put", "/t4/c", "3")
                live = True
            try:
                got.append(lines.get(timeout=0.5).rstrip("\n"))
            except queue.Empty:
                continue
    finally:
        proc.kill()
        proc.wait()
    assert got == want


def test_lease_grant_keepalive_timetolive_revoke(cluster: Cluster) -> None:
    ep = cluster.endpoints
    out = etcdctl(ep, "lease", "grant", "60").stdout.split()
    # "lease 694d77aa9e38260f granted with TTL(60s)"
    lease_id = out[1]
    etcdctl(ep, "put", "/t5/k", "v", "--lease", lease_id)
    ttl = etcdctl(ep, "lease", "timetolive", lease_id, "--keys").stdout
    assert f"lease {lease_id} granted with TTL(60s)" in ttl and "attached keys([/t5/k])" in ttl
    # Keepalives are served by the leader (docs/etcd-compat.md); a follower
    # answers UNAVAILABLE with etcd's "not leader", which clientv3's keepalive
    # loop retries (etcdctl's --once does not).
    leader = cluster.leader()
    keep = etcdctl([leader.endpoint], "lease", "keep-alive", "--once", lease_id).stdout
    assert f"lease {lease_id} keepalived with TTL(60)" in keep
    follower = next(n for n in cluster.nodes if n is not leader)
    bad = etcdctl([follower.endpoint], "lease", "keep-alive", "--once", lease_id, check=False)
    assert bad.returncode != 0 and "etcdserver: not leader" in bad.stderr
    assert lease_id in etcdctl(ep, "lease", "list").stdout
    got = _json(cluster, "get", "/t5/k")
    assert got["kvs"][0]["lease"] == int(lease_id, 16)
    assert f"lease {lease_id} revoked" in etcdctl(ep, "lease", "revoke", lease_id).stdout
    assert _lines(cluster, "get", "/t5/k") == []  # the attached key went with it
    assert "already expired" in etcdctl(ep, "lease", "timetolive", lease_id).stdout
    bad = etcdctl(ep, "lease", "revoke", lease_id, check=False)
    assert bad.returncode != 0 and "etcdserver: requested lease not found" in bad.stderr
    bad = etcdctl(ep, "put", "/t5/k", "v", "--lease", "1234abcd", check=False)
    assert bad.returncode != 0 and "etcdserver: requested lease not found" in bad.stderr


def test_compaction_and_revision_errors(cluster: Cluster) -> None:
    ep = cluster.endpoints
    old = _json(cluster, "put", "/t6/k", "1")["header"]["revision"]
    now = _json(cluster, "put", "/t6/k", "2")["header"]["revision"]
    assert etcdctl(ep, "compaction", str(now)).stdout.strip() == f"compacted revision {now}"
    bad = etcdctl(ep, "get", "/t6/k", "--rev", str(old), check=False)
    assert bad.returncode != 0
    assert "etcdserver: mvcc: required revision has been compacted" in bad.stderr
    bad = etcdctl(ep, "get", "/t6/k", "--rev", str(now + 1000), check=False)
    assert "etcdserver: mvcc: required revision is a future revision" in bad.stderr
    assert _lines(cluster, "get", "/t6/k", "--rev", str(now)) == ["/t6/k", "2"]


def test_member_list_endpoint_status_and_health(cluster: Cluster) -> None:
    members = _json(cluster, "member", "list")["members"]
    assert sorted(m["name"] for m in members) == ["n1", "n2", "n3"]
    ids = {m["ID"] for m in members}
    assert all(
        m["clientURLs"] == [f"http://{n.endpoint}"]
        for m in members
        for n in cluster.nodes
        if n.name == m["name"]
    )
    statuses = json.loads(etcdctl(cluster.endpoints, "endpoint", "status", "-w", "json").stdout)
    assert len(statuses) == 3
    leaders = {s["Status"]["leader"] for s in statuses}
    assert len(leaders) == 1 and leaders <= ids  # every member names the same leader, a member
    assert {s["Status"]["header"]["member_id"] for s in statuses} == ids
    assert all(s["Status"]["version"] for s in statuses)
    assert all(s["Status"]["raftIndex"] > 0 for s in statuses)
    health = etcdctl(cluster.endpoints, "endpoint", "health")
    assert health.stdout.count("is healthy") + health.stderr.count("is healthy") == 3


def test_errors_use_etcds_strings(cluster: Cluster) -> None:
    bad = etcdctl(cluster.endpoints, "put", "", "v", check=False)
    assert bad.returncode != 0
    assert "key is not provided" in bad.stderr  # etcdctl's own check, or the server's


def test_unserved_methods_say_what_to_use_instead(cluster: Cluster, tmp_path: Path) -> None:
    ep = cluster.endpoints[:1]  # snapshot save wants exactly one endpoint
    cases = [
        (("member", "add", "n9", "--peer-urls=http://127.0.0.1:1"), "mcpctl members add"),
        (("snapshot", "save", str(tmp_path / "snap.db")), "mcpctl backup"),
        (("user", "list"), "tokens and roles in the node config"),
        (("auth", "enable"), "auth.enabled"),
        (("defrag",), "no database file"),
    ]
    for args, instead in cases:
        bad = etcdctl(ep, *args, check=False)
        assert bad.returncode != 0, args
        assert "is not served" in bad.stderr and instead in bad.stderr, (args, bad.stderr)


def test_etcd_calls_have_their_own_metric_labels(cluster: Cluster) -> None:
    node = cluster.nodes[0]
    etcdctl([node.endpoint], "get", "/metrics-probe")
    with urllib.request.urlopen(f"http://127.0.0.1:{node.metrics_port}/metrics", timeout=10) as r:
        text = r.read().decode()
    assert 'mcp_rpc_duration_seconds_count{code="OK",method="etcd.Range"}' in text
