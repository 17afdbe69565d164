"""`mcpctl serve --config F` refuses to start on a bad configuration or environment
(DESIGN §6): exit code 2, quickly, with ONE stderr line naming the key, file or port;
and a running node stops cleanly (exit 0) on SIGTERM."""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from mcpctl.client import Client
from tests.cluster import free_ports, wait_for

pytestmark = pytest.mark.cluster

# Generous bound on how long a refusal may take: it must never hang or wait for a peer.
REFUSE_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 15.0


@dataclass
class NodeFiles:
    config: Path
    data_dir: Path
    client_port: int
    raft_port: int
    doc: dict[str, Any]

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.client_port}"

    def write(self, **changes: Any) -> Path:
        """Rewrite the config with top-level ``changes`` applied (None deletes a key)."""
        doc = {**self.doc, **changes}
        doc = {k: v for k, v in doc.items() if v is not None}
        self.config.write_text(yaml.safe_dump(doc, sort_keys=False))
        return self.config


@pytest.fixture
def node_files(tmp_path: Path) -> NodeFiles:
    """A valid single-member node config on free ports, with a secret file."""
    client_port, raft_port = free_ports(2)
    secret_file = tmp_path / "cluster.secret"
    secret_file.write_text(secrets.token_urlsafe(32))
    data_dir = tmp_path / "data"
    doc: dict[str, Any] = {
        "name": "n1",
        "data_dir": str(data_dir),
        "cluster": {
            "name": "startup",
            "members": [
                {
                    "name": "n1",
                    "raft": f"127.0.0.1:{raft_port}",
                    "client": f"127.0.0.1:{client_port}",
                }
            ],
            "secret_file": str(secret_file),
        },
        "log": {"format": "json", "level": "info"},
    }
    files = NodeFiles(tmp_path / "node.yaml", data_dir, client_port, raft_port, doc)
    files.write()
    return files


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MCP_", "MCPCTL_"))}
    env.update(extra)
    return env


def serve_cmd(config: Path, *flags: str) -> list[str]:
    return [sys.executable, "-m", "mcpctl", "serve", "--config", str(config), *flags]


def refused(config: Path, *flags: str, env: dict[str, str] | None = None) -> str:
    """Run serve; it must exit 2 promptly with exactly one stderr line. Returns that line."""
    proc = subprocess.run(
        serve_cmd(config, *flags),
        capture_output=True,
        text=True,
        timeout=REFUSE_TIMEOUT_S,
        env=env or clean_env(),
        stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 2, f"exit {proc.returncode}; stderr: {proc.stderr!r}"
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, f"expected one stderr line, got {proc.stderr!r}"
    assert lines[0].startswith("mcpctl serve: ")
    return lines[0]


@pytest.fixture
def procs() -> Iterator[list[subprocess.Popen[bytes]]]:
    """Nodes started by a test; any still running at the end is killed (by pid)."""
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            proc.kill()
            proc.wait(STOP_TIMEOUT_S)


def start_node(
    files: NodeFiles,
    procs: list[subprocess.Popen[bytes]],
    log: Path,
    env: dict[str, str] | None = None,
) -> subprocess.Popen[bytes]:
    """Start a real node and wait until it serves a linearizable read."""
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            serve_cmd(files.config),
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env or clean_env(),
        )
    procs.append(proc)

    def ready() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"node exited {proc.returncode}:\n{log.read_text()[-3000:]}")
        with Client([files.endpoint], timeout=1.0, attempts_max=1) as c:
            c.get("/", prefix=True, count_only=True)
        return True

    wait_for("the single-member node to serve reads", ready)
    return proc


# -- the config itself -----------------------------------------------------------------------


def test_missing_config_file(tmp_path: Path) -> None:
    """A config path that does not exist: exit 2, one line naming the path."""
    path = tmp_path / "absent.yaml"
    assert refused(path) == f"mcpctl serve: {path}: no such file"


def test_bad_yaml_names_the_line(node_files: NodeFiles) -> None:
    """Broken YAML: exit 2, one line with file:line."""
    text = node_files.config.read_text().splitlines()
    text.insert(2, "oops: [unclosed")
    node_files.config.write_text("\n".join(text) + "\n")
    line = refused(node_files.config)
    assert line.startswith(f"mcpctl serve: {node_files.config}:")
    assert "bad YAML" in line
    lineno = int(line.split(f"{node_files.config}:")[1].split(":")[0])
    assert 3 <= lineno <= 4


def test_unknown_key(node_files: NodeFiles) -> None:
    """A typo'd key: exit 2, one line naming the key with its full path."""
    node_files.write(raft={"hearbeat_ms": 20})
    line = refused(node_files.config)
    assert line == f"mcpctl serve: {node_files.config}: raft.hearbeat_ms: unknown key"


def test_wrong_type(node_files: NodeFiles) -> None:
    """A value of the wrong type: exit 2, one line naming the key."""
    node_files.write(raft={"heartbeat_ms": "fast"})
    line = refused(node_files.config)
    assert line.startswith(f"mcpctl serve: {node_files.config}: raft.heartbeat_ms: ")


def test_unknown_env_var(node_files: NodeFiles) -> None:
    """An MCP_ variable that matches no key: exit 2, one line naming the key."""
    line = refused(node_files.config, env=clean_env(MCP_RAFT__HEARTBEAT="20"))
    assert "raft.heartbeat: unknown key" in line


def test_unrelated_mcp_variables_do_not_stop_a_node(
    node_files: NodeFiles, procs: list[subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    """Model Context Protocol tools' MCP_ variables (no config key's shape) are left alone:
    the node starts and serves, and says at debug level which names it ignored (never
    their values); a path-shaped typo (MCP_RAFTT__TICK_MS) is still refused."""
    node_files.write(log={"format": "json", "level": "debug"})
    log = tmp_path / "node.log"
    env = clean_env(MCP_PYTHON="python", MCP_API_KEY="sk-not-logged", MCP_SERVER_URL="x")
    proc = start_node(node_files, procs, log, env=env)
    with Client([node_files.endpoint], timeout=5.0) as c:
        c.put("/started", "yes")
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(STOP_TIMEOUT_S) == 0, log.read_text()[-3000:]
    text = log.read_text()
    assert '"variables": ["MCP_API_KEY", "MCP_PYTHON", "MCP_SERVER_URL"]' in text, text[-3000:]
    assert "sk-not-logged" not in text
    line = refused(node_files.config, env=clean_env(MCP_PYTHON="python", MCP_RAFTT__TICK_MS="5"))
    assert line == "mcpctl serve: MCP_RAFTT__TICK_MS: raftt: unknown key", line


def test_bad_flag_override(node_files: NodeFiles) -> None:
    """`--set` with a key that does not exist: exit 2, one line naming the key."""
    line = refused(node_files.config, "--set", "limits.nope=3")
    assert "limits.nope: unknown key" in line


def test_missing_cluster_secret(node_files: NodeFiles) -> None:
    """No cluster secret at all: exit 2, one line saying which keys to set."""
    cluster = {k: v for k, v in node_files.doc["cluster"].items() if k != "secret_file"}
    node_files.write(cluster=cluster)
    line = refused(node_files.config)
    assert "cluster.secret or cluster.secret_file is required" in line
    assert not node_files.data_dir.exists(), "refused before touching the data dir"


def test_unreadable_secret_file(node_files: NodeFiles, tmp_path: Path) -> None:
    """A secret_file that is missing: exit 2, one line naming the file."""
    cluster = {**node_files.doc["cluster"], "secret_file": str(tmp_path / "no.secret")}
    node_files.write(cluster=cluster)
    line = refused(node_files.config)
    assert f"cluster.secret_file ({tmp_path / 'no.secret'}): cannot read" in line


# -- the environment ---------------------------------------------------------------------------


def test_client_port_in_use(node_files: NodeFiles) -> None:
    """Another process listens on the client port: exit 2, one line naming key and port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as holder:
        holder.bind(("127.0.0.1", node_files.client_port))
        holder.listen()
        line = refused(node_files.config)
    assert "server.listen" in line
    assert f"127.0.0.1:{node_files.client_port}" in line


def test_raft_port_in_use(node_files: NodeFiles) -> None:
    """Another process listens on the Raft port: exit 2, one line naming key and port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as holder:
        holder.bind(("127.0.0.1", node_files.raft_port))
        holder.listen()
        line = refused(node_files.config)
    assert "raft.listen" in line
    assert f"127.0.0.1:{node_files.raft_port}" in line


def test_data_dir_not_writable(node_files: NodeFiles) -> None:
    """A file where the data dir should be (tests run as root, so no chmod): exit 2, one line."""
    node_files.data_dir.write_text("not a directory")
    line = refused(node_files.config)
    assert line.startswith(f"mcpctl serve: data_dir: {node_files.data_dir} is not writable")


def test_data_dir_locked_by_a_running_node(
    node_files: NodeFiles, procs: list[subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    """A second node on the same data dir is refused while the first runs; the first is fine."""
    first = start_node(node_files, procs, tmp_path / "first.log")
    line = refused(node_files.config)
    assert line == f"mcpctl serve: data_dir: {node_files.data_dir} is in use by another node"
    assert first.poll() is None
    with Client([node_files.endpoint], timeout=5.0) as c:
        assert c.put("/still", "serving").revision > 0


# -- stopping ----------------------------------------------------------------------------------


def test_sigterm_stops_a_single_node_cluster_with_exit_0(
    node_files: NodeFiles, procs: list[subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    """SIGTERM on a serving 1-member node: graceful stop, exit 0, data dir unlocked."""
    log = tmp_path / "node.log"
    proc = start_node(node_files, procs, log)
    with Client([node_files.endpoint], timeout=5.0) as c:
        c.put("/before-stop", "x")
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(STOP_TIMEOUT_S) == 0, log.read_text()[-3000:]
    # The lock is released with the process: the same data dir starts again and kept the key.
    again = start_node(node_files, procs, log)
    with Client([node_files.endpoint], timeout=5.0) as c:
        got = c.get("/before-stop").first
    assert got is not None and got.text == "x"
    again.send_signal(signal.SIGINT)
    assert again.wait(STOP_TIMEOUT_S) == 0
