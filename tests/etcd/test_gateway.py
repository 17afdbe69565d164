"""etcd's JSON gateway (etcd_gateway.listen) with etcd3gw from PyPI, the client
APISIX-style tools use, against a real 3-node cluster; plus raw HTTP for errors."""

from __future__ import annotations

import base64
import threading
from collections.abc import Iterator

import httpx
import pytest
import yaml

from tests.cluster import Cluster, free_ports, wait_for

pytestmark = pytest.mark.cluster
etcd3gw = pytest.importorskip("etcd3gw", reason="etcd3gw (the dev extra) is not installed")


@pytest.fixture(scope="module")
def gateways(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Cluster, dict[str, int]]]:
    """A cluster whose members each serve the gateway; name -> gateway port."""
    c = Cluster(tmp_path_factory.mktemp("etcd-gw"))
    ports = dict(zip([n.name for n in c.nodes], free_ports(len(c.nodes)), strict=True))
    for node in c.nodes:
        cfg = yaml.safe_load(node.config_path.read_text())
        cfg["etcd_gateway"] = {"listen": f"127.0.0.1:{ports[node.name]}"}
        node.config_path.write_text(yaml.safe_dump(cfg))
    try:
        c.start_all()
        yield c, ports
    finally:
        c.close()


def _b64(b: bytes) -> str:
    return base64.b64encode(b).decode()


def test_etcd3gw_kv_txn_watch_lease(gateways: tuple[Cluster, dict[str, int]]) -> None:
    cluster, ports = gateways
    leader = cluster.leader()
    gw = etcd3gw.client(host="127.0.0.1", port=ports[leader.name], timeout=10)
    assert gw.put("/gw/a", "1") is True
    gw.put("/gw/b", "2")
    assert gw.get("/gw/a") == [b"1"]
    assert sorted(v for v, _ in gw.get_prefix("/gw/")) == [b"1", b"2"]
    txn = {
        "compare": [
            {"key": _b64(b"/gw/a"), "result": "EQUAL", "target": "VALUE", "value": _b64(b"1")}
        ],
        "success": [{"request_put": {"key": _b64(b"/gw/a"), "value": _b64(b"won")}}],
        "failure": [],
    }
    assert gw.transaction(txn)["succeeded"] is True
    assert gw.get("/gw/a") == [b"won"]
    assert gw.delete("/gw/b") is True
    # watch: a put after the watch is created arrives
    events, cancel = gw.watch("/gw/w")
    seen: list[object] = []
    reader = threading.Thread(target=lambda: seen.append(next(iter(events))), daemon=True)
    reader.start()

    def delivered() -> bool:
        gw.put("/gw/w", "x")
        reader.join(0.3)
        return bool(seen)

    wait_for("the gateway watch to deliver a put", delivered)
    cancel()
    assert seen[0]["kv"]["key"] == b"/gw/w" and seen[0]["kv"]["value"] == b"x"  # type: ignore[index]
    lease = gw.lease(60)
    gw.put("/gw/leased", "v", lease=lease)
    assert 55 <= lease.ttl() <= 60 and lease.keys() == [b"/gw/leased"]
    assert lease.refresh() == 60
    assert lease.revoke() is True
    assert gw.get("/gw/leased") == []
    assert gw.status()["version"]
    assert len(gw.members()) == 3


def test_gateway_errors_and_version(gateways: tuple[Cluster, dict[str, int]]) -> None:
    cluster, ports = gateways
    base = f"http://127.0.0.1:{ports[cluster.nodes[0].name]}"
    assert httpx.get(f"{base}/version").json()["etcdserver"]
    r = httpx.post(f"{base}/v3/kv/range", json={"key": _b64(b"/gw/a"), "revision": "100000"})
    assert r.status_code == 400
    assert r.json()["error"] == "etcdserver: mvcc: required revision is a future revision"
    r = httpx.post(f"{base}/v3/kv/put", json={"key": ""})
    assert r.status_code == 400 and r.json()["message"] == "etcdserver: key is not provided"
    r = httpx.post(f"{base}/v3/kv/range", content=b"{not json")
    assert r.status_code == 400
    r = httpx.post(f"{base}/v3/kv/nope", json={})
    assert r.status_code == 501
    r = httpx.post(f"{base}/v3/kv/put", content=b'{"key": "' + b"A" * (3 * 1024 * 1024) + b'"}')
    assert r.status_code == 429
