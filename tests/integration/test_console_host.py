"""The console of a real node with auth off answers only to loopback Hosts
(issue #19): a page on a name that rebinds to 127.0.0.1 must not read keys or
apply and roll back the config through it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.cluster import Cluster, NodeProc, wait_for
from tests.console_docs import GOOD_DOC

pytestmark = pytest.mark.cluster

REBINDING_HOSTS = ["127.0.0.1.evil.example", "127.attacker.com", "127.0.0.1.nip.io"]


@pytest.fixture
def node(tmp_path: Path) -> Iterator[NodeProc]:
    cluster = Cluster(tmp_path, size=1, console=True)
    node = cluster.nodes[0]
    try:
        cluster.start(node)
        with cluster.client() as c:
            wait_for("the node to serve", lambda: c.put("/mcp/secret", "s").revision)

        def up() -> bool:
            with httpx.Client(base_url=node.console_url, timeout=5.0) as h:
                return h.get("/api/whoami").status_code == 200

        wait_for("the console", lambda: _quiet(up))
        yield node
    finally:
        cluster.close()


def _quiet(check: object) -> bool:
    try:
        return bool(check())  # type: ignore[operator]
    except httpx.TransportError:
        return False


def test_rebinding_names_are_refused_and_loopback_names_served(node: NodeProc) -> None:
    port = node.console_port
    with httpx.Client(base_url=node.console_url, timeout=5.0) as h:
        for name in REBINDING_HOSTS:
            host = {"Host": f"{name}:{port}"}
            for resp in (
                h.get("/api/keys?prefix=/", headers=host),
                h.get("/api/kv?key=/mcp/secret", headers=host),
                h.post("/api/mcp/apply", json={"document": GOOD_DOC}, headers=host),
                h.post(
                    "/api/rollback", json={"key": "/mcp/secret", "to_revision": 1}, headers=host
                ),
            ):
                assert resp.status_code == 400, (name, resp.request.url, resp.text)
                assert "loopback Host" in resp.json()["message"]
                assert "/mcp/secret" not in resp.text
        for name in ("127.0.0.1", "localhost", "[::1]"):
            resp = h.get("/api/keys?prefix=/", headers={"Host": f"{name}:{port}"})
            assert resp.status_code == 200, (name, resp.text)
            assert "/mcp/secret" in resp.text
