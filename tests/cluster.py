"""A real N-node cluster of ``mcpctl serve`` subprocesses on 127.0.0.1.

Used by the integration tests (and usable by benchmarks): free ports, a data
directory per node, readiness waits (never sleeps), kill -9, SIGSTOP,
restart, and a look at each node's status through the real SDK.
"""

from __future__ import annotations

import os
import random
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml

from mcpctl.client import Client, MemberStatus
from mcpctl.errors import McpError

T = TypeVar("T")

READY_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0


# Test ports come from below Linux's ephemeral range (32768-60999 here), so an
# outgoing connection cannot take a port between choosing it and the node
# binding it (binding port 0 hands out ephemeral ports: that race happened).
PORT_RANGE = (20000, 32000)


def free_ports(count: int) -> list[int]:
    """Distinct ports nobody listens on right now, outside the ephemeral range."""
    rng = random.SystemRandom()
    chosen: list[int] = []
    for _ in range(count * 50):
        if len(chosen) == count:
            break
        port = rng.randrange(*PORT_RANGE)
        if port in chosen:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        chosen.append(port)
    if len(chosen) != count:
        raise RuntimeError(f"could not find {count} free ports in {PORT_RANGE}")
    return chosen


def wait_for(what: str, check: Callable[[], T | None], timeout_s: float = READY_TIMEOUT_S) -> T:
    """Poll ``check`` until it returns something truthy; fail with ``what`` on timeout."""
    deadline = time.monotonic() + timeout_s
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            result = check()
            if result:
                return result
        except (McpError, OSError) as e:
            last_error = e
        time.sleep(0.05)
    raise TimeoutError(
        f"timed out after {timeout_s}s waiting for {what} (last error: {last_error})"
    )


@dataclass
class NodeProc:
    name: str
    client_port: int
    raft_port: int
    metrics_port: int
    config_path: Path
    data_dir: Path
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None
    # The web console's port (0: no console; Cluster(console=True) sets one).
    console_port: int = 0

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.client_port}"

    @property
    def console_url(self) -> str:
        assert self.console_port, f"{self.name} has no console (Cluster(console=True))"
        return f"http://127.0.0.1:{self.console_port}"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""


@dataclass
class Cluster:
    root: Path
    size: int = 3
    extra_config: dict[str, Any] = field(default_factory=dict)
    nodes: list[NodeProc] = field(default_factory=list)
    # Serve the web console on each node (its own port).
    console: bool = False

    def __post_init__(self) -> None:
        ports = free_ports((4 if self.console else 3) * self.size)
        secret_file = self.root / "cluster.secret"
        secret_file.write_text(secrets.token_urlsafe(32))
        members = [
            {
                "name": f"n{i + 1}",
                "raft": f"127.0.0.1:{ports[self.size + i]}",
                "client": f"127.0.0.1:{ports[i]}",
            }
            for i in range(self.size)
        ]
        for i, m in enumerate(members):
            node_dir = self.root / m["name"]
            node_dir.mkdir(parents=True, exist_ok=True)
            cfg: dict[str, Any] = {
                "name": m["name"],
                "data_dir": str(node_dir / "data"),
                "cluster": {"name": "test", "members": members, "secret_file": str(secret_file)},
                "log": {"format": "json", "level": "info"},
                "metrics": {"listen": f"127.0.0.1:{ports[2 * self.size + i]}"},
            }
            if self.console:
                cfg["console"] = {"listen": f"127.0.0.1:{ports[3 * self.size + i]}"}
            _merge(cfg, self.extra_config)
            path = node_dir / "node.yaml"
            path.write_text(yaml.safe_dump(cfg))
            self.nodes.append(
                NodeProc(
                    name=m["name"],
                    client_port=ports[i],
                    raft_port=ports[self.size + i],
                    metrics_port=ports[2 * self.size + i],
                    config_path=path,
                    data_dir=node_dir / "data",
                    log_path=node_dir / "node.log",
                    console_port=ports[3 * self.size + i] if self.console else 0,
                )
            )

    def new_member(self, name: str) -> NodeProc:
        """A node config for one more member (not started, not yet added):
        every current member plus itself in cluster.members."""
        client_port, raft_port, metrics_port = free_ports(3)
        base = yaml.safe_load(self.nodes[0].config_path.read_text())
        members = [
            {"name": n.name, "raft": f"127.0.0.1:{n.raft_port}", "client": n.endpoint}
            for n in self.nodes
        ]
        members.append(
            {"name": name, "raft": f"127.0.0.1:{raft_port}", "client": f"127.0.0.1:{client_port}"}
        )
        node_dir = self.root / name
        node_dir.mkdir(parents=True, exist_ok=True)
        base.update(name=name, data_dir=str(node_dir / "data"))
        base["cluster"]["members"] = members
        base["metrics"] = {"listen": f"127.0.0.1:{metrics_port}"}
        path = node_dir / "node.yaml"
        path.write_text(yaml.safe_dump(base))
        node = NodeProc(
            name=name,
            client_port=client_port,
            raft_port=raft_port,
            metrics_port=metrics_port,
            config_path=path,
            data_dir=node_dir / "data",
            log_path=node_dir / "node.log",
        )
        self.nodes.append(node)
        return node

    # -- processes -------------------------------------------------------------
    def start(self, node: NodeProc) -> None:
        assert not node.running, f"{node.name} is already running"
        with open(node.log_path, "ab") as log:
            node.proc = subprocess.Popen(
                [sys.executable, "-m", "mcpctl", "serve", "--config", str(node.config_path)],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={k: v for k, v in os.environ.items() if not k.startswith("MCP_")},
            )

    def start_all(self) -> None:
        for node in self.nodes:
            self.start(node)
        self.wait_ready()

    def kill(self, node: NodeProc) -> None:
        """kill -9, and reap it."""
        assert node.proc is not None
        node.proc.kill()
        node.proc.wait(STOP_TIMEOUT_S)

    def stop(self, node: NodeProc) -> int:
        """SIGTERM (graceful); returns the exit code."""
        assert node.proc is not None
        node.proc.send_signal(signal.SIGTERM)
        try:
            return node.proc.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            node.proc.kill()
            node.proc.wait()
            raise

    def pause(self, node: NodeProc) -> None:
        assert node.proc is not None
        node.proc.send_signal(signal.SIGSTOP)

    def resume(self, node: NodeProc) -> None:
        assert node.proc is not None
        node.proc.send_signal(signal.SIGCONT)

    def restart(self, node: NodeProc) -> None:
        if node.running:
            self.stop(node)
        self.start(node)

    def close(self) -> None:
        for node in self.nodes:
            if node.proc is not None and node.proc.poll() is None:
                node.proc.send_signal(signal.SIGCONT)
                node.proc.kill()
                node.proc.wait(STOP_TIMEOUT_S)

    # -- clients and status ----------------------------------------------------
    @property
    def endpoints(self) -> list[str]:
        return [n.endpoint for n in self.nodes]

    def client(self, *nodes: NodeProc, timeout: float = 10.0) -> Client:
        chosen = nodes or tuple(self.nodes)
        return Client([n.endpoint for n in chosen], timeout=timeout)

    def status(self, node: NodeProc, timeout: float = 1.0) -> MemberStatus:
        with Client([node.endpoint], timeout=timeout) as c:
            return c.status(node.endpoint)

    def leader(self, among: list[NodeProc] | None = None) -> NodeProc:
        """Wait until the running nodes agree on one leader; return it."""
        candidates = among or [n for n in self.nodes if n.running]

        def agreed() -> NodeProc | None:
            leaders = {self.status(n).leader for n in candidates}
            if len(leaders) != 1:
                return None
            name = leaders.pop()
            found = [n for n in candidates if n.name == name]
            return found[0] if found else None

        return wait_for("one agreed leader", agreed)

    def followers(self) -> list[NodeProc]:
        leader = self.leader()
        return [n for n in self.nodes if n.running and n is not leader]

    def wait_ready(self, nodes: list[NodeProc] | None = None) -> None:
        """Every given (default: running) node serves a linearizable read."""
        for node in nodes or [n for n in self.nodes if n.running]:

            def ok(node: NodeProc = node) -> bool:
                if not node.running:
                    raise AssertionError(f"{node.name} exited:\n{node.log_text()[-3000:]}")
                with Client([node.endpoint], timeout=1.0, attempts_max=1) as c:
                    c.get("/", prefix=True, count_only=True)
                if node.console_port:  # and its console accepts connections
                    socket.create_connection(("127.0.0.1", node.console_port), 1.0).close()
                return True

            wait_for(f"{node.name} to serve linearizable reads", ok)

    def wait_applied(self, node: NodeProc, revision: int) -> MemberStatus:
        def applied() -> MemberStatus | None:
            st = self.status(node)
            return st if st.revision >= revision else None

        return wait_for(f"{node.name} to apply revision {revision}", applied)


def _merge(into: dict[str, Any], extra: dict[str, Any]) -> None:
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = value


@contextmanager
def running_cluster(
    root: Path, size: int = 3, *, console: bool = False, **extra: Any
) -> Iterator[Cluster]:
    cluster = Cluster(root, size=size, extra_config=extra, console=console)
    try:
        cluster.start_all()
        yield cluster
    finally:
        cluster.close()
