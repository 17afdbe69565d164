"""Authentication, authorization and rate limits (mcpctl/server/auth.py), without a network."""

from __future__ import annotations

from pathlib import Path

import pytest
from structlog.testing import capture_logs

from mcpctl._proto.mcp.v1 import cluster_pb2 as cluster
from mcpctl._proto.mcp.v1 import kv_pb2 as kv
from mcpctl._proto.mcp.v1 import watch_pb2 as watch
from mcpctl.errors import PermissionDenied, ResourceExhausted, Unauthenticated
from mcpctl.server import auth, config, security
from mcpctl.server.app import _warn_if_open

MODELS = auth.Role("models", (auth.Permission(b"/mcp/models/", auth.Access.WRITE),))
READER = auth.Role("reader", (auth.Permission(b"/mcp/", auth.Access.READ),))


def guard(rate_per_s: float = 100.0, burst: float = 100.0) -> auth.Guard:
    return auth.Guard(
        enabled=True,
        tokens={
            auth.hash_token("t-admin"): auth.Identity("ops", auth.ADMIN),
            auth.hash_token("t-models"): auth.Identity("deployer", MODELS),
            auth.hash_token("t-reader"): auth.Identity("dashboard", READER),
        },
        rate_per_s=rate_per_s,
        burst=burst,
    )


def bearer(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


def test_authentication_needs_a_known_bearer_token() -> None:
    """No header, a non-bearer header or an unknown token: UNAUTHENTICATED."""
    g = guard()
    with pytest.raises(Unauthenticated, match="missing"):
        g.authenticate(())
    with pytest.raises(Unauthenticated, match="Bearer"):
        g.authenticate((("authorization", "Basic abc"),))
    with pytest.raises(Unauthenticated, match="unknown"):
        g.authenticate(bearer("nope"))
    assert g.authenticate(bearer("t-models")).name == "deployer"
    assert auth.Guard(enabled=False).authenticate(()) == auth.ANONYMOUS


def test_prefix_permissions_cover_keys_prefixes_and_txn_ops() -> None:
    """A role may touch keys under its prefixes only; a prefix read wider than its
    grant, or any txn op outside it, is PERMISSION_DENIED; write implies read."""
    g = guard()
    models = g.authenticate(bearer("t-models"))
    g.authorize(models, "Put", kv.PutRequest(key=b"/mcp/models/a"))
    g.authorize(models, "Range", kv.RangeRequest(key=b"/mcp/models/", prefix=True))
    g.authorize(models, "Watch", watch.WatchRequest(key=b"/mcp/models/a"))
    for method, req in [
        ("Put", kv.PutRequest(key=b"/mcp/routing")),
        ("Range", kv.RangeRequest(key=b"/mcp/", prefix=True)),
        ("DeleteRange", kv.DeleteRangeRequest(key=b"", prefix=True)),
        ("Watch", watch.WatchRequest(key=b"/", prefix=True)),
        ("Compact", kv.CompactionRequest(revision=1)),
        ("MemberAdd", cluster.MemberAddRequest(name="x")),
        ("Snapshot", cluster.SnapshotRequest()),
        (
            "Txn",
            kv.TxnRequest(
                compare=[kv.Compare(key=b"/mcp/models/a")],
                success=[kv.RequestOp(request_put=kv.PutRequest(key=b"/elsewhere"))],
            ),
        ),
    ]:
        with pytest.raises(PermissionDenied):
            g.authorize(models, method, req)
    reader = g.authenticate(bearer("t-reader"))
    g.authorize(reader, "Range", kv.RangeRequest(key=b"/mcp/", prefix=True))
    with pytest.raises(PermissionDenied):
        g.authorize(reader, "Put", kv.PutRequest(key=b"/mcp/x"))
    g.authorize(reader, "ClusterStatus", cluster.ClusterStatusRequest())
    admin = g.authenticate(bearer("t-admin"))
    g.authorize(admin, "MemberRemove", cluster.MemberRemoveRequest(name="n3"))
    g.authorize(admin, "DeleteRange", kv.DeleteRangeRequest(key=b"", prefix=True))


def test_rate_limit_is_a_token_bucket_per_identity() -> None:
    """burst requests pass, the next one is RESOURCE_EXHAUSTED with a retry hint;
    identities have separate buckets; the bucket refills at rate/s."""
    g = guard(rate_per_s=10, burst=3)
    ops = g.authenticate(bearer("t-admin"))
    for _ in range(3):
        g.limit(ops)
    with pytest.raises(ResourceExhausted) as err:
        g.limit(ops)
    assert err.value.retry_after_ms is not None and 1 <= err.value.retry_after_ms <= 100
    g.limit(g.authenticate(bearer("t-reader")))  # its own bucket
    bucket = auth.TokenBucket(rate=10, burst=1, now=100.0)
    assert bucket.take(now=100.0) == 0.0
    assert bucket.take(now=100.0) == pytest.approx(0.1)
    assert bucket.take(now=100.15) == 0.0


def test_guard_from_config_hashes_token_files_and_adds_the_member_token(tmp_path: Path) -> None:
    """Token files are read and hashed at start; a short one is a config error;
    members authenticate with a token derived from the cluster secret."""
    token_file = tmp_path / "t"
    token_file.write_text("a-long-enough-token-value\n")
    settings = config.AuthSettings(
        enabled=True,
        tokens=[config.TokenSettings(name="ops", role="admin", token_file=token_file)],
    )
    g = security.build_guard(settings, "cluster-secret-0123456789")
    assert g.authenticate(bearer("a-long-enough-token-value")).name == "ops"
    member = g.authenticate(bearer(auth.member_token("cluster-secret-0123456789")))
    assert member.name == auth.MEMBER and member.role.admin
    token_file.write_text("short")
    with pytest.raises(config.ConfigError, match="shorter than 16"):
        security.build_guard(settings, "cluster-secret-0123456789")


def test_auth_config_is_checked(tmp_path: Path) -> None:
    """Unknown roles, built-in role names, both or neither token source, and auth
    on without tokens are refused with the reason."""
    for bad, reason in [
        ({"enabled": True}, "without tokens"),
        ({"tokens": [{"name": "a", "role": "nope", "sha256": "0" * 64}]}, "unknown role"),
        ({"roles": [{"name": "admin", "permissions": []}]}, "built in"),
        ({"tokens": [{"name": "a", "role": "admin"}]}, "exactly one"),
    ]:
        with pytest.raises(Exception, match=reason):
            config.AuthSettings.model_validate(bad)


def test_open_listener_without_auth_or_tls_warns_loudly(tmp_path: Path) -> None:
    """Beyond loopback with auth off (or TLS off): a loud warning at start;
    on loopback: silence."""

    def cfg(listen: str) -> config.NodeConfig:
        return config.load(
            None,
            env={},
            overrides={
                "name": "n1",
                "data_dir": str(tmp_path),
                "cluster.members": [{"name": "n1", "raft": "127.0.0.1:1", "client": "127.0.0.1:2"}],
                "cluster.secret": "0123456789abcdef",
                "server.listen": listen,
            },
        )

    with capture_logs() as logs:
        _warn_if_open(cfg("0.0.0.0:7101"))
    events = " ".join(str(e["event"]) for e in logs)
    assert "AUTH IS OFF" in events and "TLS is off" in events
    with capture_logs() as logs:
        _warn_if_open(cfg("127.0.0.1:7101"))
    assert logs == []
