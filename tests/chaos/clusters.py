"""The two places a chaos cluster runs: loopback, or one namespace per node.

Both are ``tests.cluster.Cluster``s as far as processes go (start, kill -9,
SIGSTOP/SIGCONT, graceful stop, restart, ``new_member``). Neither is ever
talked to from the test process: every client call goes through the worker
(``tests.chaos.worker``), so ``NetnsCluster`` turns the parent's client
helpers into errors — a namespace address dialled from the root namespace
would leave the machine.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import yaml

from tests.chaos.netns import Host, Network
from tests.cluster import Cluster, NodeProc, _merge

# Fixed ports: every node has an address of its own inside its namespace.
CLIENT_PORT = 7101
RAFT_PORT = 7201
METRICS_PORT = 7301

# What every chaos cluster runs with: history long enough for a reference
# watch from revision 1 across a 20k burst.
CHAOS_CONFIG: dict[str, Any] = {
    "limits": {"history_revisions_max": 400_000, "history_bytes_max": 512 * 1024 * 1024},
}


def chaos_config(extra: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    _merge(out, CHAOS_CONFIG)
    _merge(out, extra)
    return out


def endpoints(cluster: Cluster, nodes: list[NodeProc] | None = None) -> dict[str, str]:
    return {n.name: n.endpoint for n in (nodes if nodes is not None else cluster.nodes)}


@dataclass
class NetnsNode(NodeProc):
    host: Host | None = None

    @property
    def endpoint(self) -> str:
        assert self.host is not None
        return f"{self.host.address}:{CLIENT_PORT}"

    @property
    def raft_address(self) -> str:
        assert self.host is not None
        return f"{self.host.address}:{RAFT_PORT}"


@dataclass
class NetnsCluster(Cluster):
    """Nodes in namespaces of ``network``; talk to them only from its harness."""

    network: Network = field(default_factory=Network)

    def __post_init__(self) -> None:
        secret_file = self.root / "cluster.secret"
        secret_file.write_text(secrets.token_urlsafe(32))
        self._secret_file = secret_file
        for i in range(self.size):
            self._add_node(f"n{i + 1}", i)
        members = self._members()
        for node in self.nodes:
            self._write_config(node, members)

    def _add_node(self, name: str, index: int) -> NetnsNode:
        host = self.network.node_host(name, index)
        node_dir = self.root / name
        node_dir.mkdir(parents=True, exist_ok=True)
        node = NetnsNode(
            name=name,
            client_port=CLIENT_PORT,
            raft_port=RAFT_PORT,
            metrics_port=METRICS_PORT,
            config_path=node_dir / "node.yaml",
            data_dir=node_dir / "data",
            log_path=node_dir / "node.log",
            host=host,
        )
        self.nodes.append(node)
        return node

    def _members(self) -> list[dict[str, str]]:
        return [
            {"name": n.name, "raft": _netns(n).raft_address, "client": n.endpoint}
            for n in self.nodes
        ]

    def _write_config(self, node: NodeProc, members: list[dict[str, str]]) -> None:
        cfg: dict[str, Any] = {
            "name": node.name,
            "data_dir": str(node.data_dir),
            "cluster": {"name": "test", "members": members, "secret_file": str(self._secret_file)},
            "log": {"format": "json", "level": "info"},
            "metrics": {"listen": f"127.0.0.1:{METRICS_PORT}"},
        }
        _merge(cfg, self.extra_config)
        node.config_path.write_text(yaml.safe_dump(cfg))

    def new_member(self, name: str) -> NodeProc:
        node = self._add_node(name, len(self.nodes))
        self._write_config(node, self._members())
        return node

    def start(self, node: NodeProc) -> None:
        assert not node.running, f"{node.name} is already running"
        host = _netns(node).host
        assert host is not None
        with open(node.log_path, "ab") as log:
            node.proc = subprocess.Popen(
                [
                    *self.network.exec_prefix(host),
                    sys.executable,
                    "-m",
                    "mcpctl",
                    "serve",
                    "--config",
                    str(node.config_path),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={k: v for k, v in os.environ.items() if not k.startswith("MCP_")},
            )

    def start_all(self) -> None:
        for node in self.nodes:
            self.start(node)

    # The parent's client helpers would dial namespace addresses from the
    # root namespace: never.
    def _refuse(self, *args: object, **kwargs: object) -> NoReturn:
        raise RuntimeError("a namespaced cluster is reached only through the harness worker")

    client = _refuse
    status = _refuse
    leader = _refuse
    followers = _refuse
    wait_ready = _refuse
    wait_applied = _refuse


def _netns(node: NodeProc) -> NetnsNode:
    assert isinstance(node, NetnsNode), node
    return node


def make_cluster(root: Path, *, netns: Network | None, extra: dict[str, Any]) -> Cluster:
    root.mkdir(parents=True, exist_ok=True)
    config = chaos_config(extra)
    if netns is None:
        return Cluster(root, size=3, extra_config=config)
    return NetnsCluster(root, size=3, extra_config=config, network=netns)


def raft_address(node: NodeProc) -> str:
    return node.raft_address if isinstance(node, NetnsNode) else f"127.0.0.1:{node.raft_port}"


__all__ = ["NetnsCluster", "NetnsNode", "endpoints", "make_cluster", "raft_address"]
