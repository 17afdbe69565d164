"""Cluster and member ids (issue #19, item 7): the same on every member of one cluster,
different for two clusters that use the same names, stable across restarts and member
changes. They come from the cluster's name and ``cluster_key``: ``cluster.token`` when
set, else a one-way derivation of the cluster secret (which every member shares and no
other cluster has)."""

from __future__ import annotations

from pathlib import Path

import yaml

from mcpctl.server import config
from mcpctl.server.identity import Identity, cluster_key

SECRET_A = "a-secret-of-cluster-a-0123456789"
SECRET_B = "a-secret-of-cluster-b-0123456789"


def ids(name: str, member: str, token: str | None, secret: str) -> tuple[int, int]:
    identity = Identity.of(name, member, cluster_key(token, secret))
    return identity.cluster_id, identity.member_id


def test_members_of_one_cluster_agree_and_differ_from_another_cluster() -> None:
    """Same secret: one cluster id, a member id per name. Another secret, same names:
    another cluster id and no member id in common."""
    a = [ids("mcp", m, None, SECRET_A) for m in ("n1", "n2", "n3")]
    b = [ids("mcp", m, None, SECRET_B) for m in ("n1", "n2", "n3")]
    assert len({c for c, _ in a}) == 1 and len({m for _, m in a}) == 3
    assert {c for c, _ in a}.isdisjoint({c for c, _ in b})
    assert {m for _, m in a}.isdisjoint({m for _, m in b})
    assert all(0 < i < 2**63 for pair in a + b for i in pair)


def test_the_key_is_deterministic_and_does_not_show_the_secret() -> None:
    """A restart computes the same key; the secret is not in it (nor in the ids)."""
    assert cluster_key(None, SECRET_A) == cluster_key(None, SECRET_A)
    assert SECRET_A not in cluster_key(None, SECRET_A)


def test_a_token_decides_the_id_whatever_the_secret() -> None:
    """With cluster.token set, rotating the secret keeps the ids; another token changes them."""
    assert ids("mcp", "n1", "prod-eu", SECRET_A) == ids("mcp", "n1", "prod-eu", SECRET_B)
    assert ids("mcp", "n1", "prod-eu", SECRET_A) != ids("mcp", "n1", "prod-us", SECRET_A)
    assert ids("mcp", "n1", "prod-eu", SECRET_A) != ids("mcp", "n1", None, SECRET_A)


def test_cluster_token_is_a_config_key(tmp_path: Path) -> None:
    """cluster.token is read from the file (and MCP_CLUSTER__TOKEN); unset by default."""
    doc = {
        "name": "n1",
        "data_dir": str(tmp_path),
        "cluster": {
            "members": [{"name": "n1", "raft": "127.0.0.1:7201", "client": "127.0.0.1:7101"}],
            "secret": SECRET_A,
        },
    }
    path = tmp_path / "node.yaml"
    path.write_text(yaml.safe_dump(doc))
    assert config.load(path, env={}).cluster.token is None
    assert config.load(path, env={"MCP_CLUSTER__TOKEN": "prod-eu"}).cluster.token == "prod-eu"
