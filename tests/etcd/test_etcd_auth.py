"""Auth and audit on the etcd API (auth on, a real 3-node cluster, Debian's etcdctl):
etcdctl's --user goes through Auth.Authenticate with an mcp-config token as the
password, the token travels as etcd's `token` metadata, roles are checked as for
mcp.v1 and refusals answer etcd's strings; writes get the same audit lines."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator

import pytest

from mcpctl.client import Client
from tests.cluster import Cluster, wait_for
from tests.etcd.conftest import etcdctl

pytestmark = pytest.mark.cluster

ADMIN_TOKEN = "etcd-admin-token-0123456789"
OTHER_TOKEN = "etcd-other-token-0123456789"


def _sha(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """`admin` may do anything; `otherteam` may write (and read) under /other/ only."""
    auth = {
        "enabled": True,
        "roles": [{"name": "other", "permissions": [{"prefix": "/other/", "access": "write"}]}],
        "tokens": [
            {"name": "admin", "role": "admin", "sha256": _sha(ADMIN_TOKEN)},
            {"name": "otherteam", "role": "other", "sha256": _sha(OTHER_TOKEN)},
        ],
    }
    c = Cluster(tmp_path_factory.mktemp("etcd-auth"), extra_config={"auth": auth})
    try:
        for node in c.nodes:
            c.start(node)

        def ready() -> bool:
            with Client(c.endpoints, token=ADMIN_TOKEN, timeout=10.0) as sdk:
                sdk.get("/", prefix=True, count_only=True)
            return True

        wait_for("the cluster to serve", ready)
        yield c
    finally:
        c.close()


def test_user_and_token_roles_and_refusals(secured: Cluster) -> None:
    ep = secured.endpoints
    assert etcdctl(ep, "--user", f"admin:{ADMIN_TOKEN}", "put", "/a/x", "1").stdout == "OK\n"
    other = ("--user", f"otherteam:{OTHER_TOKEN}")
    assert etcdctl(ep, *other, "put", "/other/x", "1").stdout == "OK\n"
    assert etcdctl(ep, *other, "get", "/other/", "--prefix").stdout == "/other/x\n1\n"
    bad = etcdctl(ep, *other, "put", "/a/x", "2", check=False)
    assert bad.returncode != 0 and "etcdserver: permission denied" in bad.stderr
    bad = etcdctl(ep, *other, "get", "/", "--prefix", check=False)
    assert "etcdserver: permission denied" in bad.stderr
    bad = etcdctl(ep, "--user", "otherteam:wrong-token", "get", "/other/x", check=False)
    assert "etcdserver: authentication failed, invalid user ID or password" in bad.stderr
    bad = etcdctl(ep, "--user", f"admin:{OTHER_TOKEN}", "get", "/other/x", check=False)
    assert "etcdserver: authentication failed, invalid user ID or password" in bad.stderr
    bad = etcdctl(ep, "get", "/other/x", check=False)  # no credentials at all
    assert bad.returncode != 0 and "etcdserver: invalid auth token" in bad.stderr
    bad = etcdctl(ep, *other, "compaction", "1", check=False)  # admin only
    assert "etcdserver: permission denied" in bad.stderr
    bad = etcdctl(ep, *other, "user", "list", check=False)  # unserved: says so, not "denied"
    assert "is not served" in bad.stderr and "permission denied" not in bad.stderr


def test_etcd_writes_are_audited_with_the_identity(secured: Cluster) -> None:
    etcdctl(secured.endpoints, "--user", f"otherteam:{OTHER_TOKEN}", "put", "/other/audited", "v")

    def lines() -> list[dict[str, object]] | None:
        found = []
        for node in secured.nodes:
            for line in node.log_text().splitlines():
                try:
                    obj = json.loads(line)
                except ValueError:
                    continue
                if obj.get("logger") == "mcpctl.audit" and obj.get("keys") == ["/other/audited"]:
                    found.append(obj)
        return found or None

    got = wait_for("the etcd put's audit line", lines)
    assert [(o["event"], o["op"], o["identity"]) for o in got] == [("write", "put", "otherteam")]
