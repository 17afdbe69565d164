"""The live fleet on a real 3-node cluster (docs/fleet.md): Registration and
InstancePicker through the SDK, the CLI's instances/drain/undrain, an instance
process killed -9, the fleet next to apply/export, bad input, and leases that
survive a leader kill.

One cluster for the module (each test uses its own model); the leader-kill test
runs last and starts the member again.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from mcpctl.client import Client
from mcpctl.fleet import keys
from mcpctl.fleet.picker import InstancePicker
from mcpctl.fleet.registration import Registration
from mcpctl.mcp.schema import SchemaError
from mcpctl.server.lessor import lease_grace_s
from tests.cluster import Cluster, free_ports, running_cluster, wait_for

pytestmark = pytest.mark.cluster

# The cluster's defaults: leader_fallback 2 s, max election timeout 1 s.
GRACE_S = lease_grace_s(2.0, 1.0)
CLI_TIMEOUT_S = 60.0
ROOT = Path(__file__).resolve().parents[2]
# Weighted picks through a live picker: each share within this of its weight's share
# over 6,000 picks (standard deviation of a share ~0.006: > 6 sigma).
PICKS = 6000
SHARE_TOLERANCE = 0.04


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with running_cluster(tmp_path_factory.mktemp("fleet")) as c:
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


def listed(cluster: Cluster, model: str) -> dict[str, dict[str, object]]:
    out = json.loads(cli_ok(cluster, "-w", "json", "instances", model))
    return {row["id"]: row for row in out["instances"]}


def register(client: Client, model: str, name: str, weight: int = 1, ttl: int = 10) -> Registration:
    return Registration(
        client, model=model, endpoint=f"http://{name}.test:80", weight=weight, ttl=ttl,
        instance_id=name,
    ).start()  # fmt: skip


def test_picks_follow_weights_and_load_and_a_closed_instance_leaves_at_once(
    cluster: Cluster,
) -> None:
    """Three registrations (weights 1, 2, 3): a picker sees them, its picks follow
    the weights; a reported load reaches the picker and least-load avoids it;
    close() revokes: the instance is gone from the picker without waiting a TTL."""
    with cluster.client() as client:
        regs = [register(client, "m-sdk", f"w{w}", weight=w) for w in (1, 2, 3)]
        picker = InstancePicker(client, "m-sdk").start()
        least = InstancePicker(client, "m-sdk", policy="least-load").start()
        try:
            wait_for("three instances", lambda: len(picker.instances()) == 3)
            counts = Counter(picker.pick() for _ in range(PICKS))
            for w in (1, 2, 3):
                share = counts[f"http://w{w}.test:80"] / PICKS
                assert abs(share - w / 6) < SHARE_TOLERANCE, counts
            regs[0].report(in_flight=10)
            regs[1].report(in_flight=10)
            wait_for(
                "the load reports",
                lambda: sorted(i.in_flight for i in least.instances()) == [0, 10, 10],
            )
            assert {least.pick() for _ in range(200)} == {"http://w3.test:80"}
            closed_at = time.monotonic()
            regs[2].close()
            wait_for("w3 to leave", lambda: len(picker.instances()) == 2, timeout_s=5)
            assert time.monotonic() - closed_at < 5  # no TTL wait (10 s)
        finally:
            picker.stop()
            least.stop()
            for reg in regs:
                reg.close()


def test_drain_stops_picks_and_survives_reregistration(cluster: Cluster) -> None:
    """`mcpctl drain` -> the picker never picks it; the instance's lease is revoked by
    someone else -> it registers again on a new lease and is still drained;
    `mcpctl undrain` -> picked again. `mcpctl instances` shows it all."""
    with cluster.client() as client:
        a, b = register(client, "m-drain", "a"), register(client, "m-drain", "b")
        picker = InstancePicker(client, "m-drain").start()
        try:
            wait_for("two instances", lambda: len(picker.instances()) == 2)
            assert cli_ok(cluster, "drain", "m-drain", "a").startswith("m-drain/a: draining (")
            wait_for("the drain", lambda: picker.instances()[0].operator.draining)
            assert {picker.pick() for _ in range(300)} == {"http://b.test:80"}
            rows = listed(cluster, "m-drain")
            assert rows["a"]["draining"] is True and rows["b"]["draining"] is False
            assert 0 < int(str(rows["a"]["ttl"])) <= 10 + GRACE_S
            first_lease = a.lease_id
            client.revoke(first_lease)
            wait_for("a to register again", lambda: a.registrations == 2 and a.lease_id)
            assert a.lease_id != first_lease
            wait_for("a back in the picker", lambda: len(picker.instances()) == 2)
            assert picker.instances()[0].operator.draining
            assert {picker.pick() for _ in range(300)} == {"http://b.test:80"}
            cli_ok(cluster, "undrain", "m-drain", "a")
            wait_for("the undrain", lambda: not picker.instances()[0].operator.draining)
            assert {picker.pick() for _ in range(300)} == {"http://a.test:80", "http://b.test:80"}
            assert client.get(keys.operator_key("m-drain", "a")).kvs == []  # defaults: no key
        finally:
            picker.stop()
            a.close()
            b.close()


def test_a_killed_instance_process_leaves_within_ttl_plus_grace(
    cluster: Cluster, tmp_path: Path
) -> None:
    """A real demo instance process (TTL 3 s) killed -9 is gone from `mcpctl
    instances` and from a picker within TTL + grace."""
    (port,) = free_ports(1)
    env = {**_env(), "MCPCTL_ENDPOINTS": ",".join(cluster.endpoints)}
    log = (tmp_path / "instance.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "mcpctl.demo.instance", "--model", "m-kill", "--port", str(port),
         "--id", "k1", "--ttl", "3"],
        stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT,
    )  # fmt: skip
    try:
        with cluster.client() as client, InstancePicker(client, "m-kill") as picker:
            wait_for("the instance to register", lambda: picker.instances(), timeout_s=60)
            assert picker.pick() == f"http://127.0.0.1:{port}"
            assert "k1" in listed(cluster, "m-kill")
            proc.kill()
            proc.wait()
            killed_at = time.monotonic()
            wait_for("k1 to leave", lambda: not picker.instances(), timeout_s=3 + GRACE_S + 10)
            assert time.monotonic() - killed_at <= 3 + GRACE_S
            assert listed(cluster, "m-kill") == {}
    finally:
        proc.kill()
        proc.wait()
        log.close()


def test_fleet_keys_do_not_break_export_or_apply(cluster: Cluster, tmp_path: Path) -> None:
    """With instances registered and reporting, `mcpctl export` shows only the config,
    `apply` succeeds (the fleet is neither guarded nor deleted), and the static
    endpoint is the fallback of a model with no live instance."""
    doc = tmp_path / "mcp.yaml"
    doc.write_text(
        "models:\n  - {name: m-conf, endpoint: 'http://static.test:80'}\n"
        "  - {name: m-backup, endpoint: 'http://backup.test:80'}\n"
        "routing: {fallback: model, fallback_model: m-backup}\n"
    )
    cli_ok(cluster, "apply", "-f", str(doc))
    with cluster.client() as client:
        reg = register(client, "m-conf", "c1")
        try:
            for n in range(3):  # load reports keep changing /mcp/ meanwhile
                reg.report(in_flight=10 * (n + 1))
                cli_ok(cluster, "apply", "-f", str(doc))
            exported = cli_ok(cluster, "export")
            assert "instances" not in exported and "static.test" in exported
            assert client.get(reg.key).kvs  # apply left the instance alone
            with InstancePicker(client, "m-conf") as picker:
                assert picker.pick() == "http://c1.test:80"
                reg.close()
                wait_for("the static fallback", lambda: picker.pick() == "http://static.test:80")
            with InstancePicker(client, "m-unlisted") as picker:
                assert picker.pick() == "http://backup.test:80"  # routing.fallback_model
        finally:
            reg.close()


def test_bad_input_is_refused_naming_the_field(cluster: Cluster) -> None:
    """The SDK refuses a bad endpoint or an unknown field before writing; a bad value
    written by hand is skipped by pickers and shown as invalid, naming the fields;
    the CLI refuses a bad model name in one line."""
    with cluster.client() as client:
        with pytest.raises(SchemaError, match="endpoint: not an http"):
            Registration(client, model="m-bad", endpoint="tcp://x:1")
        with pytest.raises(SchemaError, match=r"tags\..*|tags"):
            Registration(client, model="m-bad", endpoint="http://x:1", tags={"k": "v" * 500})
        bad = keys.instance_key("m-bad", "x1")
        client.put(bad, json.dumps({"endpoint": "ftp://x", "colour": "red"}))
        with InstancePicker(client, "m-bad", fallback=False) as picker:
            assert picker.instances() == []
            assert "endpoint: not an http(s) URL" in picker.invalid[bad]
            assert "colour: unknown field" in picker.invalid[bad]
        row = listed(cluster, "m-bad")["x1"]
        assert "colour: unknown field" in str(row["invalid"])
    proc = cli(cluster, "drain", "bad model", "x1")
    assert proc.returncode == 1 and proc.stderr.count("\n") == 1, proc.stderr
    assert "model:" in proc.stderr


INSTANCE_TOKEN = "instance-i1-token-0123456789"
OPERATOR_TOKEN = "operator-token-0123456789ab"
ROUTER_TOKEN = "router-token-0123456789abcd"


def test_an_instance_token_writes_only_its_own_keys(tmp_path: Path) -> None:
    """The role docs/fleet.md shows: an instance's token registers itself (lease,
    put, report, revoke); writing another instance's key or its own operator state
    is PERMISSION_DENIED; the operator's token drains it; a readonly router picks."""
    from mcpctl.errors import PermissionDenied
    from mcpctl.fleet.operator import set_operator
    from mcpctl.server.auth import hash_token

    auth = {
        "enabled": True,
        "roles": [
            {"name": "instance-m-i1",
             "permissions": [{"prefix": "/mcp/instances/m/i1", "access": "write"}]},
            {"name": "fleet-operator",
             "permissions": [{"prefix": "/mcp/operator/instances/", "access": "write"}]},
        ],
        "tokens": [
            {"name": "m-i1", "role": "instance-m-i1", "sha256": hash_token(INSTANCE_TOKEN)},
            {"name": "ops", "role": "fleet-operator", "sha256": hash_token(OPERATOR_TOKEN)},
            {"name": "router", "role": "readonly", "sha256": hash_token(ROUTER_TOKEN)},
        ],
    }  # fmt: skip
    cluster = Cluster(tmp_path, extra_config={"auth": auth})
    try:
        for node in cluster.nodes:
            cluster.start(node)

        def token_client(token: str) -> Client:
            return Client(cluster.endpoints, token=token, timeout=5.0, attempts_max=3)

        def ready() -> bool:
            with token_client(ROUTER_TOKEN) as c:
                c.get("/mcp/", prefix=True, count_only=True)
            return True

        wait_for("the cluster to serve", ready)
        with token_client(INSTANCE_TOKEN) as mine, token_client(ROUTER_TOKEN) as router:
            reg = Registration(mine, model="m", endpoint="http://i1.test:80", instance_id="i1")
            reg.start()
            reg.report(in_flight=3)
            other = keys.instance_key("m", "i2")
            with pytest.raises(PermissionDenied, match="may not write '/mcp/instances/m/i2'"):
                mine.put(other, json.dumps({"endpoint": "http://evil.test:80"}))
            with pytest.raises(PermissionDenied):
                mine.put(keys.operator_key("m", "i1"), json.dumps({"draining": False}))
            with pytest.raises(PermissionDenied):
                Registration(mine, model="m", endpoint="http://x.test:80", instance_id="i2").start()
            with InstancePicker(router, "m") as picker:
                assert picker.pick() == "http://i1.test:80"
                with token_client(OPERATOR_TOKEN) as ops:
                    set_operator(ops, "m", "i1", draining=True)
                wait_for("the drain", lambda: picker.pick_target() is None)
            reg.close()  # the revoke needs write on its key: allowed
            assert router.get(reg.key).kvs == []
    finally:
        cluster.close()


def test_instances_survive_a_leader_kill(cluster: Cluster) -> None:
    """kill -9 of the leader: a registered instance (TTL 3 s) is still there past
    TTL + grace, and its load reports keep arriving. (Runs last.)"""
    with cluster.client() as client:
        reg = register(client, "m-leader", "s1", ttl=3)
        picker = InstancePicker(client, "m-leader").start()
        leader = cluster.leader()
        try:
            wait_for("s1", lambda: picker.instances())
            cluster.kill(leader)
            killed_at = time.monotonic()
            while time.monotonic() - killed_at < 3 + GRACE_S + 2:
                assert client.get(reg.key).kvs, "the instance dropped out"
                time.sleep(0.5)
            reg.report(in_flight=7)
            wait_for("the report after the kill", lambda: picker.instances()[0].in_flight == 7)
            assert reg.registrations == 1  # never lost its lease
        finally:
            picker.stop()
            reg.close()
            cluster.start(leader)
            cluster.wait_ready()
