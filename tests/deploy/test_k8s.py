"""deploy/k8s, checked offline: schemas, and the links between the objects.

Schemas: every manifest against the Kubernetes OpenAPI schemas shipped by the
PyPI package ``kubernetes-validate`` (strict: unknown fields fail). Links:
selectors match the pod labels, the Services' ports are the container's, the
probes ask the health service on the port node.yaml listens on, the ConfigMap's
node.yaml loads with mcpctl's own loader for every replica, and the Secret the
pods mount is the one kustomize generates.
"""

from __future__ import annotations

import subprocess
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml

from mcpctl.server import config
from tests.deploy.tools import ROOT, find_tool

K8S = ROOT / "deploy" / "k8s"
# gRPC probes are GA from 1.27: check against that and a recent release.
KUBERNETES_VERSIONS = ("1.27.0", "1.33.0")
IMAGE_UID = 10001  # deploy/Dockerfile: USER 10001:10001


def kustomization() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    return doc


def resource_files() -> list[Path]:
    return [K8S / name for name in kustomization()["resources"]]


@pytest.fixture(scope="module")
def objects() -> dict[str, dict[str, Any]]:
    """Every object of the kustomization, by ``Kind/name``."""
    out: dict[str, dict[str, Any]] = {}
    for path in resource_files():
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                key = f"{doc['kind']}/{doc['metadata']['name']}"
                assert key not in out, f"{key} twice"
                out[key] = doc
    return out


@pytest.fixture(scope="module")
def sts(objects: dict[str, dict[str, Any]]) -> dict[str, Any]:
    return objects["StatefulSet/mcp-config"]


def container(sts: dict[str, Any]) -> dict[str, Any]:
    containers = sts["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    c: dict[str, Any] = containers[0]
    return c


def pod_labels(sts: dict[str, Any]) -> dict[str, str]:
    labels: dict[str, str] = sts["spec"]["template"]["metadata"]["labels"]
    return labels


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def container_ports(sts: dict[str, Any]) -> dict[str, int]:
    return {p["name"]: p["containerPort"] for p in container(sts)["ports"]}


def node_yaml(objects: dict[str, dict[str, Any]]) -> str:
    text: str = objects["ConfigMap/mcp-config"]["data"]["node.yaml"]
    return text


def load_node_config(objects: dict[str, dict[str, Any]], tmp_path: Path, name: str) -> Any:
    path = tmp_path / "node.yaml"
    path.write_text(node_yaml(objects))
    return config.load(path, env={"MCP_NAME": name})


def test_kustomization_lists_existing_files() -> None:
    kust = kustomization()
    for path in resource_files():
        assert path.is_file(), path
    on_disk = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert on_disk == set(kust["resources"]), "a manifest is not in the kustomization"


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_manifests_match_the_kubernetes_schemas(version: str) -> None:
    tool = find_tool("kubernetes-validate", "kubernetes-validate")
    done = subprocess.run(
        [tool, "--strict", "-k", version, *map(str, resource_files())],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count(" passed ") == len(resource_files()), done.stdout


def test_statefulset_identity_volumes_and_spread(
    objects: dict[str, dict[str, Any]], sts: dict[str, Any]
) -> None:
    spec = sts["spec"]
    assert spec["replicas"] == 3
    # No member is Ready before a majority runs: OrderedReady would never start pod 1.
    assert spec["podManagementPolicy"] == "Parallel"
    assert selects(spec["selector"]["matchLabels"], pod_labels(sts))
    headless = objects[f"Service/{spec['serviceName']}"]["spec"]
    assert headless["clusterIP"] == "None"
    assert headless["publishNotReadyAddresses"] is True
    # One persistent volume per member, mounted where node.yaml keeps the data.
    claims = {t["metadata"]["name"]: t for t in spec["volumeClaimTemplates"]}
    mounts = {m["name"]: m["mountPath"] for m in container(sts)["volumeMounts"]}
    assert "ReadWriteOnce" in claims["data"]["spec"]["accessModes"]
    assert mounts["data"] == "/var/lib/mcp"
    anti = spec["template"]["spec"]["affinity"]["podAntiAffinity"]
    required = anti["requiredDuringSchedulingIgnoredDuringExecution"]
    assert any(
        term["topologyKey"] == "kubernetes.io/hostname"
        and selects(term["labelSelector"]["matchLabels"], pod_labels(sts))
        for term in required
    )
    env = {e["name"]: e for e in container(sts)["env"]}
    assert env["MCP_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"


def test_node_config_from_the_configmap(
    objects: dict[str, dict[str, Any]], sts: dict[str, Any], tmp_path: Path
) -> None:
    c = container(sts)
    spec = sts["spec"]
    name, headless = sts["metadata"]["name"], spec["serviceName"]
    mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
    volumes = {v["name"]: v for v in spec["template"]["spec"]["volumes"]}
    # `serve --config PATH` reads the ConfigMap's node.yaml.
    args = c["args"]
    cfg_path = PurePosixPath(args[args.index("--config") + 1])
    assert args[0] == "serve"
    cfg_volume = next(n for n, path in mounts.items() if PurePosixPath(path) == cfg_path.parent)
    assert volumes[cfg_volume]["configMap"]["name"] == "mcp-config"
    assert cfg_path.name in objects["ConfigMap/mcp-config"]["data"]
    ports = container_ports(sts)
    for i in range(spec["replicas"]):
        pod = f"{name}-{i}"
        cfg = load_node_config(objects, tmp_path, pod)
        assert [m.name for m in cfg.cluster.members] == [
            f"{name}-{j}" for j in range(spec["replicas"])
        ]
        assert cfg.member.raft == f"{pod}.{headless}:{ports['raft']}"
        assert cfg.member.client == f"{pod}.{headless}:{ports['grpc']}"
        assert cfg.client_listen == f"0.0.0.0:{ports['grpc']}"
        assert cfg.raft_listen == f"0.0.0.0:{ports['raft']}"
        assert cfg.metrics.listen == f"0.0.0.0:{ports['metrics']}"
        assert PurePosixPath(str(cfg.data_dir)) == PurePosixPath(mounts["data"])
        # The secret file is in the mounted Secret, under the generated key.
        secret_file = PurePosixPath(str(cfg.cluster.secret_file))
        secret_volume = next(
            n for n, path in mounts.items() if PurePosixPath(path) == secret_file.parent
        )
        secret_name = volumes[secret_volume]["secret"]["secretName"]
        generated = {g["name"]: g for g in kustomization()["secretGenerator"]}
        assert secret_name in generated, "the pods mount a Secret kustomize does not make"
        assert secret_file.name in generated[secret_name]["files"]
    assert kustomization()["generatorOptions"]["disableNameSuffixHash"] is True


def test_probes_use_the_health_service(
    objects: dict[str, dict[str, Any]], sts: dict[str, Any], tmp_path: Path
) -> None:
    c = container(sts)
    grpc_port = container_ports(sts)["grpc"]
    cfg = load_node_config(objects, tmp_path, f"{sts['metadata']['name']}-0")
    assert cfg.client_listen.endswith(f":{grpc_port}")
    # Ready = grpc.health.v1 SERVING (a leader known, everything committed applied).
    assert c["readinessProbe"]["grpc"]["port"] == grpc_port
    assert c["readinessProbe"]["grpc"].get("service", "") == ""
    # Liveness must not follow SERVING: losing quorum would restart every member.
    for probe in ("livenessProbe", "startupProbe"):
        assert "grpc" not in c[probe] and "tcpSocket" in c[probe], probe
        assert c[probe]["tcpSocket"]["port"] in ("grpc", grpc_port)


def test_services_route_to_the_pods(
    objects: dict[str, dict[str, Any]], sts: dict[str, Any]
) -> None:
    ports = container_ports(sts)
    headless = objects[f"Service/{sts['spec']['serviceName']}"]
    client = objects["Service/mcp-config"]
    assert client["spec"].get("clusterIP") != "None"
    for svc in (headless, client):
        assert selects(svc["spec"]["selector"], pod_labels(sts))
        for port in svc["spec"]["ports"]:
            target = port["targetPort"]
            assert target in ports or target in ports.values(), port
    assert {p["name"] for p in headless["spec"]["ports"]} >= {"grpc", "raft"}
    assert [p["targetPort"] for p in client["spec"]["ports"]] == ["grpc"]


def test_disruption_budget_keeps_a_majority(
    objects: dict[str, dict[str, Any]], sts: dict[str, Any]
) -> None:
    pdb = objects["PodDisruptionBudget/mcp-config"]["spec"]
    assert selects(pdb["selector"]["matchLabels"], pod_labels(sts))
    replicas = sts["spec"]["replicas"]
    down = pdb["maxUnavailable"] if "maxUnavailable" in pdb else replicas - pdb["minAvailable"]
    assert down >= 1, "a budget of 0 blocks every node drain"
    assert replicas - down > replicas // 2, "the budget would allow losing the majority"


def test_pods_run_as_the_image_user(sts: dict[str, Any]) -> None:
    pod = sts["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == IMAGE_UID
    assert pod["securityContext"]["fsGroup"] == IMAGE_UID
    sc = container(sts)["securityContext"]
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["readOnlyRootFilesystem"] is True
    # SIGTERM: a leader hands over (a few seconds) before the node exits.
    assert pod["terminationGracePeriodSeconds"] >= 20
