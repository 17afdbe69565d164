"""A maintained Python etcd v3 client from PyPI (python3-etcd3, a fork of the
etcd3 package that works with protobuf 5+) doing get/put/txn/watch/lease
against a 3-node mcp-config cluster.

The client runs in a subprocess, as an application would: it registers etcd's
protos in protobuf's default pool under the same names as mcp-config's
(``mcpctl/_proto/etcd``), so one process cannot import both.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys

import pytest

from tests.cluster import Cluster

pytestmark = pytest.mark.cluster

SCRIPT = r"""
import json, sys, threading
import etcd3

host, port = sys.argv[1].rsplit(":", 1)
c = etcd3.client(host=host, port=int(port), timeout=10)
out = {}
c.put("/py/a", "1")
c.put("/py/b", "2")
value, meta = c.get("/py/a")
out["get"] = [value.decode(), meta.key.decode(), meta.version]
out["prefix"] = sorted((m.key.decode(), v.decode()) for v, m in c.get_prefix("/py/"))
t = c.transactions
ok, _ = c.transaction(
    compare=[t.value("/py/a") == "1"], success=[t.put("/py/a", "won")], failure=[]
)
again, _ = c.transaction(
    compare=[t.value("/py/a") == "1"], success=[], failure=[t.get("/py/a")]
)
out["txn"] = [ok, again, c.get("/py/a")[0].decode()]
events, cancel = c.watch_prefix("/py/w/")
seen = []
def collect():
    for ev in events:
        seen.append([type(ev).__name__, ev.key.decode(), ev.value.decode()])
        if len(seen) == 2:
            cancel()
            return
reader = threading.Thread(target=collect, daemon=True)
reader.start()
import time
deadline = time.monotonic() + 20
while not seen and time.monotonic() < deadline:  # until the watch is live
    c.put("/py/w/x", "ready")
    time.sleep(0.2)
c.delete("/py/w/x")
reader.join(20)
out["watch"] = seen[:1] + seen[-1:]
lease = c.lease(60)
c.put("/py/leased", "v", lease=lease)
keys = [k.decode() for k in lease.keys]
out["lease"] = [lease.granted_ttl, 50 <= lease.remaining_ttl <= 60, keys]
out["refresh"] = lease.refresh()[0].TTL
lease.revoke()
out["after_revoke"] = c.get("/py/leased")[0]
print(json.dumps(out))
"""


def test_python3_etcd3_client(cluster: Cluster) -> None:
    if importlib.util.find_spec("etcd3") is None:  # never imported here (see above)
        pytest.skip("python3-etcd3 (the dev extra) is not installed")
    leader = cluster.leader()  # lease refresh is served by the leader (docs/etcd-compat.md)
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, leader.endpoint],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["get"] == ["1", "/py/a", 1]
    assert out["prefix"] == [["/py/a", "1"], ["/py/b", "2"]]
    assert out["txn"] == [True, False, "won"]
    assert out["watch"][0] == ["PutEvent", "/py/w/x", "ready"]
    assert out["watch"][-1] == ["DeleteEvent", "/py/w/x", ""]
    assert out["lease"] == [60, True, ["/py/leased"]]
    assert out["refresh"] == 60
    assert out["after_revoke"] is None
