"""Leases on a real 3-node cluster (docs/leases.md): the API round trip, bad input,
expiry of a dead holder's lease, and keepalives that survive leader changes.

The client is tests/leaseclient.py (the SDK's lease API comes later).
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from mcpctl import limits
from mcpctl._proto.mcp.v1 import kv_pb2 as kv
from mcpctl.errors import (
    InvalidArgument,
    LeaseNotFound,
    McpError,
    Unavailable,
)
from mcpctl.server.lessor import lease_grace_s
from tests.cluster import Cluster
from tests.leaseclient import LeaseClient

pytestmark = pytest.mark.cluster

# The cluster's defaults (config.py): leader_fallback 2 s, max election timeout 1 s.
GRACE_S = lease_grace_s(2.0, 1.0)
TTL_MIN_S = 2


@pytest.fixture
def leases(cluster: Cluster) -> Iterator[LeaseClient]:
    with LeaseClient(cluster.endpoints) as client:
        yield client


def test_grant_attach_keepalive_revoke_round_trip(cluster: Cluster, leases: LeaseClient) -> None:
    """Grant (id chosen by the member, TTL raised to the minimum), attach two keys
    (KeyValue.lease on reads), keep alive on the leader, TimeToLive with keys from
    a follower (forwarded), Leases, then Revoke: both keys go in one revision."""
    leader = cluster.leader()
    follower = next(n for n in cluster.nodes if n is not leader)
    granted = leases.grant(1, endpoint=follower.endpoint)
    assert granted.id > 0 and granted.ttl == TTL_MIN_S
    big = leases.grant(60, lease_id=4242)
    assert (big.id, big.ttl) == (4242, 60)
    leases.put("/lease/a", "1", big.id)
    rev = leases.put("/lease/b", "2", big.id, endpoint=follower.endpoint)
    assert leases.get("/lease/a").lease == big.id  # type: ignore[union-attr]
    cluster.wait_applied(follower, rev)
    assert leases.get("/lease/b", endpoint=follower.endpoint).lease == big.id  # type: ignore[union-attr]

    (answer,) = leases.keepalive_once(leader.endpoint, [big.id])
    assert (answer.id, answer.ttl, answer.error) == (big.id, 60, "")
    with pytest.raises(Unavailable, match="not the leader"):
        leases.keepalive_once(follower.endpoint, [big.id])

    ttl = leases.time_to_live(big.id, keys=True, endpoint=follower.endpoint)
    assert ttl.granted_ttl == 60 and 0 < ttl.ttl <= 60
    assert sorted(ttl.keys) == [b"/lease/a", b"/lease/b"]
    assert sorted(leases.leases(endpoint=follower.endpoint)) == sorted([granted.id, big.id])

    before = leases.get("/lease/a").mod_revision  # type: ignore[union-attr]
    revoked = leases.revoke(big.id, endpoint=follower.endpoint)
    assert revoked.header.revision == rev + 1  # both deletes: one revision
    assert leases.get("/lease/a") is None and leases.get("/lease/b") is None
    assert before < revoked.header.revision
    assert big.id not in leases.leases()
    with pytest.raises(LeaseNotFound, match="lease not found"):
        leases.time_to_live(big.id)
    (gone,) = leases.keepalive_once(leader.endpoint, [big.id])
    assert (gone.ttl, gone.error) == (0, "lease not found")
    # The revoke is in the key's history under the revoker's identity.
    with cluster.client() as c:
        newest = c.history("/lease/a").entries[0]
    assert newest.event.type == kv.Event.DELETE and newest.identity == "anonymous"


def test_bad_input(cluster: Cluster, leases: LeaseClient) -> None:
    """TTL 0/negative/over the max, a put on an unknown lease (nothing written),
    unknown revoke/keepalive/timetolive, garbage keepalive ids: clear errors,
    never a crash, and the node keeps serving."""
    leader = cluster.leader()
    for ttl in (0, -1, limits.LEASE_TTL_S_MAX + 1):
        with pytest.raises(InvalidArgument):
            leases.grant(ttl)
    with pytest.raises(InvalidArgument):
        leases.grant(10, lease_id=-5)
    with pytest.raises(LeaseNotFound, match="lease not found"):
        leases.put("/nolease", "x", 999_999)
    assert leases.get("/nolease") is None
    with pytest.raises(LeaseNotFound):
        leases.revoke(999_999)
    with pytest.raises(InvalidArgument):
        leases.revoke(-1)
    with pytest.raises(LeaseNotFound):
        leases.time_to_live(999_999)
    with pytest.raises(LeaseNotFound):
        leases.time_to_live(-3)
    garbage = [0, -1, -(2**63), 2**63 - 1, 999_999]
    answers = leases.keepalive_once(leader.endpoint, garbage)
    assert [(a.id, a.ttl, a.error) for a in answers] == [(i, 0, "lease not found") for i in garbage]
    held = leases.grant(30)
    with pytest.raises(McpError, match="lease already exists"):
        leases.grant(30, lease_id=held.id)
    assert leases.time_to_live(held.id).granted_ttl == 30


def _holder(cluster: Cluster, key: str, ttl: int) -> tuple[subprocess.Popen[str], int]:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.leaseclient",
            "hold",
            ",".join(cluster.endpoints),
            key,
            str(ttl),
        ],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.strip().isdigit(), f"holder did not start: {line!r}"
    return proc, int(line)
