"""``mcpctl dev``: a local N-node cluster on 127.0.0.1, in the foreground.

One ``mcpctl serve`` process per node (gRPC on PORT.., Raft on RAFT_PORT..),
configs and a random cluster secret written under ``--data-dir`` (kept, so the
same directory keeps the data across restarts), node logs in
``DATA_DIR/NAME/node.log`` and each running node's pid in ``DATA_DIR/NAME/node.pid``
(so ``kill -9 $(cat .mcp-dev/n1/node.pid)`` hits this cluster's n1 and nothing
else on the host). Prints the endpoints, then one ready line once
every node answers a linearizable read. A node that dies is restarted (at
most ``RESTARTS_MAX`` times); Ctrl-C or SIGTERM stops every node.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType
from typing import Any

from mcpctl.cli.exitcodes import Exit, UsageError

RESTARTS_MAX = 10
READY_TIMEOUT_S = 60.0
# How often the supervisor asks the nodes whether they are ready (a refused
# connection answers at once: without a wait the loop would spin), then, once
# ready, checks for dead nodes.
READY_POLL_S = 0.05
SUPERVISE_POLL_S = 0.2
STOP_GRACE_S = 10.0
NODES_MAX = 9


def register(sub: Any, parent: argparse.ArgumentParser) -> None:
    p = sub.add_parser("dev", parents=[parent], help="run a local cluster in the foreground")
    p.add_argument("--nodes", type=int, default=3, help="number of nodes (default 3)")
    p.add_argument("--port", type=int, default=7101, help="first client gRPC port (default 7101)")
    p.add_argument("--raft-port", type=int, default=None, help="first Raft port (default PORT+100)")
    p.add_argument(
        "--metrics-port",
        type=int,
        default=None,
        help="first Prometheus metrics port (default PORT+200)",
    )
    p.add_argument(
        "--console-port",
        type=int,
        default=None,
        help="first web console port (default PORT+300; 0: no console)",
    )
    p.add_argument(
        "--etcd-gateway-port",
        type=int,
        default=None,
        help="first etcd JSON gateway port (default PORT+400; 0: no gateway)",
    )
    p.add_argument("--data-dir", default=".mcp-dev", help="data directory (default .mcp-dev)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.set_defaults(run=run)


def write_configs(
    data_dir: Path,
    nodes: int,
    port: int,
    raft_port: int,
    host: str = "127.0.0.1",
    metrics_port: int | None = None,
    console_port: int | None = None,
    etcd_gateway_port: int | None = None,
) -> list[Path]:
    """Write one node.yaml per node (and the cluster secret) under data_dir."""
    import secrets

    import yaml

    data_dir.mkdir(parents=True, exist_ok=True)
    secret_file = data_dir / "cluster.secret"
    if not secret_file.exists():
        fd = os.open(secret_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_urlsafe(32) + "\n")
    members = [
        {"name": f"n{i + 1}", "raft": f"{host}:{raft_port + i}", "client": f"{host}:{port + i}"}
        for i in range(nodes)
    ]
    paths = []
    for m in members:
        node_dir = data_dir / m["name"]
        node_dir.mkdir(exist_ok=True)
        cfg = {
            "name": m["name"],
            "data_dir": str((node_dir / "data").resolve()),
            "cluster": {
                "name": "mcp-dev",
                "members": members,
                "secret_file": str(secret_file.resolve()),
            },
            "log": {"format": "console", "level": "info"},
        }
        if metrics_port is not None:
            index = members.index(m)
            cfg["metrics"] = {"listen": f"{host}:{metrics_port + index}"}
        if console_port:
            cfg["console"] = {"listen": f"{host}:{console_port + members.index(m)}"}
        if etcd_gateway_port:
            cfg["etcd_gateway"] = {"listen": f"{host}:{etcd_gateway_port + members.index(m)}"}
        path = node_dir / "node.yaml"
        path.write_text(yaml.safe_dump(cfg, sort_keys=False))
        paths.append(path)
    return paths


class _Supervisor:
    def __init__(self, configs: list[Path]) -> None:
        self.configs = configs
        self.procs: dict[Path, subprocess.Popen[bytes]] = {}
        self.restarts: dict[Path, int] = dict.fromkeys(configs, 0)
        self.stopping = False

    def start(self, cfg: Path) -> None:
        log = open(cfg.parent / "node.log", "ab")  # noqa: SIM115 - owned by the child
        self.procs[cfg] = subprocess.Popen(
            [sys.executable, "-m", "mcpctl", "serve", "--config", str(cfg)],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        log.close()
        _pid_file(cfg).write_text(f"{self.procs[cfg].pid}\n")

    def check(self) -> int | None:
        """Restart dead nodes; returns an exit code when the cluster cannot go on."""
        for cfg, proc in list(self.procs.items()):
            code = proc.poll()
            if code is None or self.stopping:
                continue
            name = cfg.parent.name
            if code == 0:
                print(f"node {name} stopped (exit 0); not restarting", flush=True)
                del self.procs[cfg]
                _pid_file(cfg).unlink(missing_ok=True)
                continue
            if code == Exit.USAGE:
                tail = _last_line(cfg.parent / "node.log")
                print(f"node {name} cannot start: {tail}", file=sys.stderr, flush=True)
                return int(Exit.USAGE)
            if self.restarts[cfg] >= RESTARTS_MAX:
                print(f"node {name} keeps dying (exit {code}); giving up", file=sys.stderr)
                return int(Exit.NODE_FAILED)
            self.restarts[cfg] += 1
            print(f"node {name} exited ({_describe(code)}); restarting", flush=True)
            self.start(cfg)
        return None

    def stop(self) -> None:
        self.stopping = True
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_S
        for proc in self.procs.values():
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for cfg in self.procs:
            _pid_file(cfg).unlink(missing_ok=True)


def _pid_file(cfg: Path) -> Path:
    """Where a node's pid is kept while it runs (next to its node.yaml)."""
    return cfg.parent / "node.pid"


def _describe(code: int) -> str:
    return f"signal {-code}" if code < 0 else f"exit code {code}"


def _last_line(path: Path) -> str:
    try:
        lines = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return "(no log)"
    return lines[-1] if lines else "(empty log)"


def _all_ready(endpoints: list[str]) -> bool:
    from mcpctl.client import Client
    from mcpctl.errors import McpError

    for endpoint in endpoints:
        try:
            with Client([endpoint], timeout=1.0, attempts_max=1) as c:
                c.get("/", prefix=True, count_only=True)
        except McpError:
            return False
    return True


def run(args: argparse.Namespace) -> int:
    if not 1 <= args.nodes <= NODES_MAX:
        raise UsageError("dev", f"--nodes must be 1..{NODES_MAX}")
    raft_port = args.raft_port if args.raft_port is not None else args.port + 100
    metrics_port = args.metrics_port if args.metrics_port is not None else args.port + 200
    console_port = args.console_port if args.console_port is not None else args.port + 300
    gateway_port = args.etcd_gateway_port if args.etcd_gateway_port is not None else args.port + 400
    ports = (
        args.port,
        raft_port,
        metrics_port,
        *([console_port] if console_port else []),
        *([gateway_port] if gateway_port else []),
    )
    ranges = [set(range(p, p + args.nodes)) for p in ports]
    overlap = any(a & b for i, a in enumerate(ranges) for b in ranges[i + 1 :])
    if overlap or max(max(r) for r in ranges) > 65535 or min(min(r) for r in ranges) < 1:
        raise UsageError(
            "dev",
            "client, Raft, metrics, console and etcd gateway port ranges overlap or are invalid",
        )
    data_dir = Path(args.data_dir)
    configs = write_configs(
        data_dir,
        args.nodes,
        args.port,
        raft_port,
        args.host,
        metrics_port=metrics_port,
        console_port=console_port,
        etcd_gateway_port=gateway_port,
    )
    endpoints = [f"{args.host}:{args.port + i}" for i in range(args.nodes)]
    sup = _Supervisor(configs)
    stop = {"now": False}

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop["now"] = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    print(f"starting {args.nodes} nodes, data in {data_dir.resolve()}", flush=True)
    for i, cfg in enumerate(configs):
        print(
            f"  {cfg.parent.name}: grpc {endpoints[i]}  "
            f"metrics http://{args.host}:{metrics_port + i}/metrics  "
            f"log {cfg.parent / 'node.log'}"
        )
        if console_port:
            print(f"  {cfg.parent.name}: console http://{args.host}:{console_port + i}/")
        sup.start(cfg)
    code: int | None = None
    ready = False
    started = time.monotonic()
    try:
        while not stop["now"] and code is None:
            code = sup.check()
            if not ready and code is None:
                if _all_ready(endpoints):
                    ready = True
                    print(
                        f"ready: {args.nodes} nodes, endpoints {','.join(endpoints)} "
                        "(Ctrl-C to stop)",
                        flush=True,
                    )
                elif time.monotonic() - started > READY_TIMEOUT_S:
                    print("mcpctl dev: cluster not ready in time; see node logs", file=sys.stderr)
                    code = int(Exit.UNAVAILABLE)
            time.sleep(SUPERVISE_POLL_S if ready else READY_POLL_S)
    finally:
        print("stopping nodes", flush=True)
        sup.stop()
    return int(Exit.OK) if code is None else code
