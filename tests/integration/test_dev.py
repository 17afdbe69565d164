"""`mcpctl dev` (DESIGN §7): a local N-node cluster in the foreground that prints a
ready line, serves the real CLI, stops every node on SIGTERM, keeps its data across
restarts in the same --data-dir, and restarts a node that dies."""

from __future__ import annotations

import contextlib
import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from mcpctl.client import Client
from tests.cluster import free_ports, wait_for

pytestmark = pytest.mark.cluster

NODES = 3
# dev itself gives up after 60 s; allow a little more before calling it a hang.
READY_TIMEOUT_S = 75.0
STOP_TIMEOUT_S = 30.0
CLI_TIMEOUT_S = 60.0
# Where `mcpctl dev` puts each node's ports, from PORT: client, metrics, console,
# etcd JSON gateway.
DEV_PORT_OFFSETS = (0, 200, 300, 400)


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_range(count: int, avoid: set[int], offsets: tuple[int, ...] = (0,)) -> int:
    """A base port such that ``count`` consecutive ports from base + each offset are
    free (none of them in ``avoid``): dev puts metrics at PORT+200, the console
    at PORT+300 and etcd's JSON gateway at PORT+400."""
    for _ in range(200):
        (base,) = free_ports(1)
        ports = {base + off + i for off in offsets for i in range(count)}
        if max(ports) <= 65535 and not ports & avoid and all(_port_free(p) for p in ports):
            return base
    raise RuntimeError(f"no {count} consecutive free ports found at offsets {offsets}")


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("MCP_", "MCPCTL_"))}


def node_pids(data_dir: Path) -> dict[str, int]:
    """Running `mcpctl serve` processes whose config lives under ``data_dir``, by node name."""
    root = str(data_dir.resolve()) + os.sep
    found: dict[str, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            raw = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        args = [a.decode("utf-8", "replace") for a in raw.split(b"\0") if a]
        if "serve" not in args or "--config" not in args[:-1]:
            continue
        config = Path(args[args.index("--config") + 1])
        if not config.is_absolute():  # relative to that process's own working directory
            try:
                config = Path(os.readlink(entry / "cwd")) / config
            except OSError:
                continue
        if str(config.resolve()).startswith(root):
            found[config.parent.name] = int(entry.name)
    return found


class Dev:
    """One `python -m mcpctl dev` process and a bounded, line-by-line view of its stdout."""

    def __init__(self, data_dir: Path, port: int, raft_port: int) -> None:
        self.data_dir = data_dir
        self.endpoints = [f"127.0.0.1:{port + i}" for i in range(NODES)]
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        self.proc = subprocess.Popen(
            [
                *(sys.executable, "-m", "mcpctl", "dev", "--nodes", str(NODES)),
                *("--port", str(port), "--raft-port", str(raft_port)),
                *("--data-dir", str(data_dir)),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=clean_env(),
            text=True,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    def wait_line(self, match: Callable[[str], bool], what: str, timeout_s: float) -> str:
        """The next stdout line that ``match``es, waiting at most ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no {what} line in {timeout_s}s; output so far: {self.lines}")
            try:
                line = self._queue.get(timeout=remaining)
            except queue.Empty:
                continue
            if line is None:
                self._queue.put(None)  # stay at end of output for later waits
                raise AssertionError(f"dev exited before a {what} line: {self.lines}")
            self.lines.append(line)
            if match(line):
                return line

    def wait_ready(self) -> str:
        return self.wait_line(lambda s: s.startswith("ready:"), "ready", READY_TIMEOUT_S)

    def cli(self, *args: str) -> str:
        proc = subprocess.run(
            [sys.executable, "-m", "mcpctl", "--endpoints", ",".join(self.endpoints), *args],
            capture_output=True,
            text=True,
            timeout=CLI_TIMEOUT_S,
            env=clean_env(),
        )
        assert proc.returncode == 0, f"mcpctl {args}: {proc.stderr}"
        return proc.stdout

    def terminate(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(STOP_TIMEOUT_S)
        self._reader.join(STOP_TIMEOUT_S)
        while True:  # keep the tail of the output for assertions and diagnostics
            try:
                line = self._queue.get_nowait()
            except queue.Empty:
                break
            if line is not None:
                self.lines.append(line)
        return code

    def close(self) -> None:
        """Stop dev if a test left it running, and any node it left behind (by pid)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(STOP_TIMEOUT_S)
        for pid in node_pids(self.data_dir).values():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


@pytest.fixture
def start_dev(tmp_path: Path) -> Iterator[Callable[[], Dev]]:
    """Start `mcpctl dev` on fresh free ports, always on the same --data-dir for this test."""
    client_port = free_range(NODES, set(), offsets=DEV_PORT_OFFSETS)
    taken = {client_port + off + i for off in DEV_PORT_OFFSETS for i in range(NODES)}
    raft_port = free_range(NODES, taken)
    data_dir = tmp_path / "dev"
    started: list[Dev] = []

    def start() -> Dev:
        dev = Dev(data_dir, client_port, raft_port)
        started.append(dev)
        return dev

    yield start
    for dev in started:
        dev.close()


def test_dev_serves_the_cli_and_sigterm_stops_every_node(start_dev: Callable[[], Dev]) -> None:
    """dev prints a ready line naming the endpoints; put/get work through the real CLI;
    SIGTERM makes dev exit 0 and leaves no `mcpctl serve` process behind."""
    dev = start_dev()
    ready = dev.wait_ready()
    assert ",".join(dev.endpoints) in ready
    assert set(node_pids(dev.data_dir)) == {"n1", "n2", "n3"}
    # The web console is on by default, one per node, and its URL is printed.
    first_port = int(dev.endpoints[0].rsplit(":", 1)[1])
    console = f"http://127.0.0.1:{first_port + 300}/"
    assert f"  n1: console {console}" in dev.lines
    status = httpx.get(console + "api/status", timeout=10.0).json()
    assert sorted(m["id"] for m in status["members"]) == ["n1", "n2", "n3"]

    assert dev.cli("put", "/dev/greeting", "hello") == "OK\n"
    assert dev.cli("get", "/dev/greeting") == "/dev/greeting\nhello\n"
    # Every node has it: read each one on its own.
    for endpoint in dev.endpoints:
        with Client([endpoint], timeout=10.0) as c:
            got = c.get("/dev/greeting").first
            assert got is not None and got.text == "hello"

    assert dev.terminate() == 0
    assert "stopping nodes" in dev.lines
    assert node_pids(dev.data_dir) == {}


def test_dev_restart_on_the_same_data_dir_keeps_the_data(start_dev: Callable[[], Dev]) -> None:
    """Stopping dev and starting it again with the same --data-dir keeps every key."""
    first = start_dev()
    first.wait_ready()
    first.cli("put", "/dev/kept", "v1")
    first.cli("put", "/dev/kept", "v2")
    revision_before = json.loads(first.cli("-w", "json", "put", "/dev/other", "x"))["header"][
        "revision"
    ]
    assert first.terminate() == 0

    second = start_dev()
    second.wait_ready()
    assert second.cli("get", "/dev/kept") == "/dev/kept\nv2\n"
    with Client(second.endpoints, timeout=10.0) as c:
        got = c.get("/dev/kept").first
        assert got is not None and got.version == 2
        assert c.put("/dev/after", "y").revision == revision_before + 1
    assert second.terminate() == 0


def test_dev_restarts_a_node_killed_with_sigkill(start_dev: Callable[[], Dev]) -> None:
    """kill -9 of one node: dev says it is restarting it, and the node serves again."""
    dev = start_dev()
    dev.wait_ready()
    dev.cli("put", "/dev/before-kill", "x")
    victim_pid = node_pids(dev.data_dir)["n2"]
    os.kill(victim_pid, signal.SIGKILL)

    line = dev.wait_line(lambda s: "restarting" in s, "restarting", READY_TIMEOUT_S)
    assert line.startswith("node n2 exited") and "signal 9" in line

    def new_n2() -> int | None:
        pid = node_pids(dev.data_dir).get("n2")
        return pid if pid is not None and pid != victim_pid else None

    wait_for("a new n2 process", new_n2)

    def n2_serves() -> bool:
        with Client([dev.endpoints[1]], timeout=1.0, attempts_max=1) as c:
            got = c.get("/dev/before-kill").first
            return got is not None and got.text == "x"

    wait_for("the restarted n2 to serve linearizable reads", n2_serves, READY_TIMEOUT_S)
    with Client([dev.endpoints[1]], timeout=10.0) as c:
        c.put("/dev/after-restart", "y")
    assert dev.terminate() == 0
    assert node_pids(dev.data_dir) == {}
