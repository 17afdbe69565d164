"""Security on real clusters: TLS and mutual TLS, bearer tokens with roles and
prefix permissions, rate limits, the audit log, and a wrong peer secret."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import grpc
import pytest

from mcpctl.client import Client
from mcpctl.errors import (
    McpError,
    PermissionDenied,
    ResourceExhausted,
    Unauthenticated,
    Unavailable,
)
from tests.certs import make_certs
from tests.cluster import Cluster, running_cluster, wait_for

pytestmark = pytest.mark.cluster

ADMIN_TOKEN = "admin-token-0123456789abcdef"
WRITER_TOKEN = "writer-token-0123456789abcdef"
READER_TOKEN = "reader-token-0123456789abcdef"
SLOW_TOKEN = "slow-token-0123456789abcdef"


def sha(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """One cluster with auth on (admin from a token file, a writer limited to
    /mcp/models/, a reader) and mutual TLS."""
    root = tmp_path_factory.mktemp("secured")
    certs = make_certs(root / "certs")
    admin_file = root / "admin.token"
    admin_file.write_text(ADMIN_TOKEN + "\n")
    auth = {
        "enabled": True,
        "roles": [
            {"name": "models", "permissions": [{"prefix": "/mcp/models/", "access": "write"}]}
        ],
        "tokens": [
            {"name": "ops", "role": "admin", "token_file": str(admin_file)},
            {"name": "deployer", "role": "models", "sha256": sha(WRITER_TOKEN)},
            {"name": "dashboard", "role": "readonly", "sha256": sha(READER_TOKEN)},
        ],
    }
    tls = {
        "cert_file": str(certs.server_cert),
        "key_file": str(certs.server_key),
        "client_ca_file": str(certs.ca),
    }
    cluster = Cluster(root, extra_config={"auth": auth, "server": {"tls": tls}})
    cluster.certs = certs  # type: ignore[attr-defined]
    try:
        for node in cluster.nodes:
            cluster.start(node)

        def ready() -> bool:
            with client(cluster, ADMIN_TOKEN) as c:
                c.get("/", prefix=True, count_only=True)
            return True

        wait_for("the secured cluster to serve", ready)
        yield cluster
    finally:
        cluster.close()


def client(cluster: Cluster, token: str | None, *, tls: bool = True, mutual: bool = True) -> Client:
    certs = cluster.certs  # type: ignore[attr-defined]
    return Client(
        cluster.endpoints,
        timeout=5.0,
        attempts_max=3,
        token=token or "",
        cacert=str(certs.ca) if tls else None,
        cert=str(certs.client_cert) if mutual else None,
        key=str(certs.client_key) if mutual else None,
    )


def test_tokens_map_to_roles_with_prefix_permissions(secured: Cluster) -> None:
    """UNAUTHENTICATED without a (valid) token; PERMISSION_DENIED outside a role's
    prefixes, for reads, writes and watches alike; allowed inside them."""
    with client(secured, None) as c, pytest.raises(Unauthenticated):
        c.get("/mcp/models/a")
    with client(secured, "not-a-token-at-all") as c, pytest.raises(Unauthenticated):
        c.get("/mcp/models/a")
    with client(secured, WRITER_TOKEN) as c:
        assert c.put("/mcp/models/gpt", "endpoint: https://x").revision > 0
        assert c.get("/mcp/models/", prefix=True).count >= 1
        with pytest.raises(PermissionDenied):
            c.put("/mcp/routing/policy", "x")
        with pytest.raises(PermissionDenied):
            c.get("/mcp/", prefix=True)  # wider than its prefix
        with pytest.raises(PermissionDenied):
            c.delete("/", prefix=True)
        with pytest.raises(PermissionDenied), c.watch("/mcp/", prefix=True) as stream:
            next(iter(stream))
        with pytest.raises(PermissionDenied):
            c.member_add("n9", "127.0.0.1:1", "127.0.0.1:2")
        with pytest.raises(PermissionDenied):
            c.compact(1)
    with client(secured, READER_TOKEN) as c:
        assert c.get("/mcp/", prefix=True).count >= 1
        with pytest.raises(PermissionDenied):
            c.put("/mcp/models/gpt", "x")
        assert len(c.cluster_status().members) == 3  # members talk with their own token
    with client(secured, ADMIN_TOKEN) as c:
        assert c.put("/mcp/routing/policy", "least-request").revision > 0
        assert sorted(m.name for m in c.member_list()) == ["n1", "n2", "n3"]


def test_mutual_tls_is_required_and_the_cli_passes_certificates(secured: Cluster) -> None:
    """Without TLS, or without a client certificate, no request gets through; the
    CLI with --cacert/--cert/--key and --token (or MCPCTL_TOKEN) does."""
    with client(secured, ADMIN_TOKEN, tls=False, mutual=False) as c, pytest.raises(Unavailable):
        c.get("/x")
    with client(secured, ADMIN_TOKEN, mutual=False) as c, pytest.raises(McpError):
        c.get("/x")
    certs = secured.certs  # type: ignore[attr-defined]
    tls = [
        "--cacert",
        str(certs.ca),
        "--cert",
        str(certs.client_cert),
        "--key",
        str(certs.client_key),
    ]
    base = [sys.executable, "-m", "mcpctl", "--endpoints", ",".join(secured.endpoints), *tls]
    env = {**os.environ, "MCPCTL_TOKEN": WRITER_TOKEN}
    put = subprocess.run(
        [*base, "put", "/mcp/models/cli", "v"], capture_output=True, text=True, timeout=30, env=env
    )
    assert put.returncode == 0, put.stderr
    denied = subprocess.run(
        [*base, "--token", READER_TOKEN, "put", "/mcp/models/cli", "v"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert denied.returncode == 1
    assert denied.stderr.startswith("mcpctl: permission denied: dashboard may not write")
    assert denied.stderr.count("\n") == 1


def test_audit_log_names_who_wrote_what_and_no_secret_is_logged(secured: Cluster) -> None:
    """Every write leaves one audit line (identity, key, revision, request id) and
    its writer in history; no token, secret or value appears in any node's log."""
    with client(secured, WRITER_TOKEN) as c:
        res = c.put(
            "/mcp/models/audited", "value-that-must-not-be-logged", request_id="req-audit-1"
        )
        # History names the writer too.
        entry = c.history("/mcp/models/audited").entries[0]
        assert (entry.revision, entry.identity) == (res.revision, "deployer")

    def audited() -> bool:
        return any(
            '"write"' in line and "req-audit-1" in line
            for n in secured.nodes
            for line in n.log_text().splitlines()
        )

    wait_for("the audit line", audited)
    lines = [
        line
        for n in secured.nodes
        for line in n.log_text().splitlines()
        if "req-audit-1" in line and '"write"' in line
    ]
    assert any(
        '"identity": "deployer"' in line and f'"revision": {res.revision}' in line for line in lines
    )
    assert any('"/mcp/models/audited"' in line for line in lines)
    secret = (secured.root / "cluster.secret").read_text().strip()
    for node in secured.nodes:
        text = node.log_text()
        for forbidden in (
            ADMIN_TOKEN,
            WRITER_TOKEN,
            READER_TOKEN,
            secret,
            "value-that-must-not-be-logged",
        ):
            assert forbidden not in text, f"{node.name} logged a secret"


def test_rate_limit_answers_resource_exhausted_with_a_retry_hint(tmp_path: Path) -> None:
    """A token over its rate gets RESOURCE_EXHAUSTED with retry-after-ms, and is
    served again once the bucket refills."""
    auth = {
        "enabled": True,
        "rate_per_s": 5,
        "burst": 5,
        "tokens": [{"name": "slow", "role": "admin", "sha256": sha(SLOW_TOKEN)}],
    }
    with auth_cluster(tmp_path, auth, SLOW_TOKEN) as cluster:
        stub_channel = grpc.insecure_channel(cluster.nodes[0].endpoint)
        try:
            from mcpctl._proto.mcp.v1 import kv_pb2, kv_pb2_grpc

            stub = kv_pb2_grpc.KVStub(stub_channel)
            metadata = (("authorization", f"Bearer {SLOW_TOKEN}"),)
            codes = []
            hint = None
            for _ in range(20):
                try:
                    stub.Range(
                        kv_pb2.RangeRequest(key=b"/x", serializable=True),
                        timeout=5,
                        metadata=metadata,
                    )
                    codes.append("OK")
                except grpc.RpcError as e:
                    codes.append(e.code().name)
                    trailers = {m.key: m.value for m in e.trailing_metadata() or ()}
                    hint = trailers.get("retry-after-ms")
            # Not codes[0] == "OK": the readiness wait above spent tokens from this
            # member's share, so its bucket may start empty. Being served again
            # is checked below, after the refill.
            assert "RESOURCE_EXHAUSTED" in codes
            assert hint is not None and 0 < int(hint) <= 1000
            with Client([cluster.nodes[0].endpoint], token=SLOW_TOKEN, timeout=5) as c:

                def served() -> bool:
                    try:
                        c.get("/x", serializable=True)
                        return True
                    except ResourceExhausted:
                        return False

                wait_for("the bucket to refill", served)
        finally:
            stub_channel.close()


@contextmanager
def auth_cluster(root: Path, auth: dict[str, object], token: str) -> Iterator[Cluster]:
    """A plain-TCP cluster with the given auth settings, ready for ``token``."""
    cluster = Cluster(root, extra_config={"auth": auth})
    try:
        for node in cluster.nodes:
            cluster.start(node)

        def ready() -> bool:
            with Client(cluster.endpoints, token=token, timeout=2, attempts_max=3) as c:
                c.get("/", prefix=True, count_only=True)
            return True

        wait_for("the cluster to serve", ready)
        yield cluster
    finally:
        cluster.close()


def test_a_node_with_the_wrong_secret_cannot_join_or_read(tmp_path: Path) -> None:
    """A member started (with an empty data dir) with a different cluster secret
    receives nothing: no leader, no data; the others go on; with the right
    secret it catches up."""
    with running_cluster(tmp_path) as cluster:
        with cluster.client() as c:
            for i in range(20):
                c.put(f"/secret-test/{i}", "x")
        intruder = cluster.nodes[2]
        cluster.kill(intruder)
        good_secret = cluster.nodes[0].config_path.parent.parent / "cluster.secret"
        wrong = tmp_path / "wrong.secret"
        wrong.write_text("a-completely-different-secret-value")
        config = intruder.config_path.read_text().replace(str(good_secret), str(wrong))
        assert str(wrong) in config
        intruder.config_path.write_text(config)
        import shutil

        shutil.rmtree(intruder.data_dir)
        cluster.start(intruder)
        with cluster.client(*cluster.nodes[:2]) as c:
            c.put("/secret-test/after", "y")
        with Client([intruder.endpoint], timeout=2, attempts_max=1) as c:

            def alive() -> bool:
                c.status(intruder.endpoint)
                return True

            wait_for("the intruder to answer", alive)
            st = c.status(intruder.endpoint)
            assert st.leader == "" and st.revision == 0 and st.keys == 0
            # Its first Raft status (restored: nothing to restore) comes with its
            # first tick, which can follow its first answers by a few ms.
            (read,) = wait_for(
                "the intruder to serve a serializable read",
                lambda: (c.get("/secret-test/", prefix=True, serializable=True),),
            )
            assert read.count == 0
        cluster.kill(intruder)
        intruder.config_path.write_text(config.replace(str(wrong), str(good_secret)))
        cluster.start(intruder)
        cluster.wait_ready([intruder])
        with cluster.client(intruder) as c:
            assert c.get("/secret-test/", prefix=True, serializable=True).count == 21
