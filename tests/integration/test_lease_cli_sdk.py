"""Leases through the SDK and the CLI on a real 3-node cluster (docs/leases.md "The SDK",
docs/cli.md): the SDK's keepalive moves on when the leader dies, a dead holder
process's keys go within TTL + grace, on_lost fires when someone else revokes,
and the CLI round trip with hex ids.

One cluster for the module (each test uses its own keys); the test that kills the
leader runs last and starts it again.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mcpctl.cli.exitcodes import Exit
from mcpctl.client import Lease
from mcpctl.server.lessor import lease_grace_s
from tests.cluster import Cluster, running_cluster, wait_for

pytestmark = pytest.mark.cluster

# The cluster's defaults (config.py): leader_fallback 2 s, max election timeout 1 s.
GRACE_S = lease_grace_s(2.0, 1.0)
CLI_TIMEOUT_S = 60.0
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with running_cluster(tmp_path_factory.mktemp("lease-cli-sdk")) as c:
        yield c


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("MCPCTL_", "MCP_"))}


def cli(cluster: Cluster, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mcpctl", "--endpoints", ",".join(cluster.endpoints), *args],
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT_S,
        env=_env(),
        stdin=subprocess.DEVNULL,
    )


def cli_ok(cluster: Cluster, *args: str) -> str:
    proc = cli(cluster, *args)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


# -- CLI ------------------------------------------------------------------------------------
def test_cli_grant_put_get_timetolive_keepalive_revoke(cluster: Cluster) -> None:
    """grant -> put --lease -> get -w json shows the lease -> timetolive --keys lists
    the key -> keep-alive --once prints a TTL -> list has it -> revoke -> key gone;
    then the id is unknown ("lease not found", exit 1); a bad hex id exits 2."""
    out = cli_ok(cluster, "lease", "grant", "30")
    match = re.fullmatch(r"lease ([0-9a-f]{16}) granted with TTL\(30s\)\n", out)
    assert match, out
    hex_id = match.group(1)
    assert cli_ok(cluster, "put", "/cli-lease/k", "v", "--lease", hex_id) == "OK\n"
    got = json.loads(cli_ok(cluster, "-w", "json", "get", "/cli-lease/k"))
    assert got["kvs"][0]["lease"] == hex_id
    out = cli_ok(cluster, "lease", "timetolive", hex_id, "--keys")
    assert re.fullmatch(
        rf"lease {hex_id} granted with TTL\(30s\), remaining\(\d+s\), "
        r"attached keys\(\[/cli-lease/k\]\)\n",
        out,
    ), out
    ttl = json.loads(cli_ok(cluster, "-w", "json", "lease", "timetolive", hex_id, "--keys"))
    assert (ttl["id"], ttl["granted_ttl"], ttl["keys"]) == (hex_id, 30, ["/cli-lease/k"])
    out = cli_ok(cluster, "lease", "keep-alive", hex_id, "--once")
    assert out == f"lease {hex_id} keepalived with TTL(30)\n"
    assert hex_id in cli_ok(cluster, "lease", "list").splitlines()
    assert cli_ok(cluster, "lease", "revoke", hex_id) == f"lease {hex_id} revoked\n"
    assert json.loads(cli_ok(cluster, "-w", "json", "get", "/cli-lease/k"))["count"] == 0
    gone = cli(cluster, "lease", "timetolive", hex_id)
    assert (gone.returncode, gone.stdout) == (int(Exit.FAILED), "")
    assert gone.stderr.splitlines() == ["mcpctl: lease not found: lease not found"]
    bad = cli(cluster, "lease", "revoke", "not-hex")
    assert bad.returncode == int(Exit.USAGE) and len(bad.stderr.splitlines()) == 1


def test_cli_hex_ids_round_trip_with_the_sdk(cluster: Cluster) -> None:
    """An id granted by the SDK is what the CLI prints in hex and accepts back, in
    any case and with 0x; the JSON grant's id is the same hex string."""
    with cluster.client() as client:
        lease = client.grant(30, keep_alive=False)
        hex_id = f"{lease.id:016x}"
        assert hex_id in cli_ok(cluster, "lease", "list").splitlines()
        out = cli_ok(cluster, "lease", "keep-alive", "0x" + hex_id.upper(), "--once")
        assert out.startswith(f"lease {hex_id} keepalived")
        granted = json.loads(cli_ok(cluster, "-w", "json", "lease", "grant", "30"))
        assert client.time_to_live(int(granted["id"], 16)).granted_ttl == 30
        cli_ok(cluster, "lease", "revoke", granted["id"])
        lease.revoke()


def test_cli_keep_alive_runs_until_the_lease_is_revoked_then_exits_1(cluster: Cluster) -> None:
    """`lease keep-alive ID` prints each renewal until the lease is gone, then one line
    on stderr and exit 1."""
    with cluster.client() as client:
        lease = client.grant(6, keep_alive=False)
        hex_id = f"{lease.id:016x}"
        keep = ("lease", "keep-alive", hex_id)
        proc = subprocess.Popen(
            [sys.executable, "-m", "mcpctl", "--endpoints", ",".join(cluster.endpoints), *keep],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=_env(),
        )
        try:
            assert proc.stdout is not None
            assert proc.stdout.readline() == f"lease {hex_id} keepalived with TTL(6)\n"
            client.revoke(lease.id)
            _, err = proc.communicate(timeout=CLI_TIMEOUT_S)
        finally:
            proc.kill()
    assert proc.returncode == int(Exit.FAILED)
    assert err.splitlines() == [
        f"mcpctl lease keep-alive: lease {hex_id} lost: lease not found: revoked or expired"
    ]


# -- SDK ------------------------------------------------------------------------------------
def test_on_lost_fires_when_someone_else_revokes_the_lease(cluster: Cluster) -> None:
    lost: list[Lease] = []
    fired = threading.Event()

    def on_lost(lease: Lease) -> None:
        lost.append(lease)
        fired.set()

    with cluster.client() as holder, cluster.client() as other:
        lease = holder.grant(6, on_lost=on_lost)
        holder.put("/sdk-lost/k", "v", lease=lease)
        other.revoke(lease.id)
        assert fired.wait(6 + 5), "on_lost did not fire within the lease's TTL"
        assert lost == [lease] and lease.lost.is_set()
        assert lease.lost_reason is not None and "lease not found" in lease.lost_reason
        assert other.get("/sdk-lost/k").count == 0


HOLDER = textwrap.dedent(
    """
    import sys, threading
    from mcpctl.client import Client
    client = Client(sys.argv[1].split(","))
    lease = client.grant(3)
    for i in range(3):
        client.put(f"/sdk-holder/{i}", "up", lease=lease)
    print(lease.id, flush=True)
    threading.Event().wait()
    """
)


def test_a_killed_sdk_holders_keys_go_within_ttl_plus_grace(cluster: Cluster) -> None:
    """A real process holding a 3 s lease through the SDK is killed -9: its keys go
    within TTL + grace (while it lived, the SDK kept them past the TTL)."""
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, ",".join(cluster.endpoints)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env=_env(),
    )
    try:
        assert proc.stdout is not None
        lease_id = int(proc.stdout.readline())
        with cluster.client() as client:
            granted_at = time.monotonic()
            # Alive past its TTL: the SDK renewed it (3 renewals at TTL/3 = 1 s).
            wait_for(
                "the holder's lease to outlive its TTL",
                lambda: (
                    time.monotonic() - granted_at > 3 + 1 and client.time_to_live(lease_id).ttl > 0
                ),
            )
            assert client.get("/sdk-holder/", prefix=True).count == 3
            proc.kill()
            proc.wait()
            killed_at = time.monotonic()
            wait_for(
                "the dead holder's keys to go",
                lambda: client.get("/sdk-holder/", prefix=True).count == 0,
                timeout_s=3 + GRACE_S + 5,
            )
            assert time.monotonic() - killed_at <= 3 + GRACE_S
            assert lease_id not in client.leases().ids
    finally:
        proc.kill()


def test_sdk_keepalive_moves_on_when_the_leader_is_killed(cluster: Cluster) -> None:
    """A lease kept alive by the SDK survives kill -9 of the leader: the keepalive
    stream moves to the new leader, the lease is never lost and its key stays, well
    past TTL + grace after the kill. (Runs last: it kills a member and restarts it.)"""
    renewals: list[float] = []
    with cluster.client() as client:
        lease = client.grant(6, on_renewed=lambda _lease, _ttl: renewals.append(time.monotonic()))
        client.put("/sdk-failover/k", "v", lease=lease)
        leader = cluster.leader()
        wait_for("a renewal", lambda: renewals)
        cluster.kill(leader)
        killed_at = time.monotonic()
        new_leader = cluster.leader()
        assert new_leader is not leader
        # Renewals every TTL/3 = 2 s: seven after the kill is past TTL + grace (10 s).
        wait_for(
            "seven renewals after the kill",
            lambda: sum(t > killed_at for t in renewals) >= 7,
            timeout_s=6 + GRACE_S + 20,
        )
        assert time.monotonic() - killed_at > 6 + GRACE_S
        assert not lease.lost.is_set(), lease.lost_reason
        assert client.get("/sdk-failover/k").count == 1
        assert client._keeper._stream is not None
        assert client._keeper._stream.endpoint == new_leader.endpoint
        lease.revoke()
    cluster.start(leader)
    cluster.wait_ready()
