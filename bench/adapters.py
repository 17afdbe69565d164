"""One small adapter per server, all with the same shape, so one workload loop
measures any of them.

An adapter starts a fresh local 3-member cluster on 127.0.0.1, names its
leader's and a follower's endpoint, and offers ``put``/``get`` over one
grpc.aio channel to an endpoint chosen with ``connect``. Everything it starts
it stops in ``stop``.
"""

from __future__ import annotations

import abc
import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import grpc

from bench.etcd_proto import rpc_pb2 as rpc
from bench.etcd_proto import rpc_pb2_grpc as rpc_grpc
from mcpctl._proto.mcp.v1 import kv_pb2 as kv
from mcpctl._proto.mcp.v1 import kv_pb2_grpc as kv_grpc
from mcpctl.client import new_request_id
from tests.cluster import Cluster, free_ports, wait_for

RPC_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 10.0
READY_TIMEOUT_S = 30.0


class AdapterUnavailable(Exception):
    """The server cannot be run on this machine (e.g. its binary is missing)."""


class Adapter(abc.ABC):
    """A server under test: a local 3-member cluster plus a tiny async KV client."""

    name: str = ""

    # -- cluster ---------------------------------------------------------------
    def check_available(self) -> None:  # noqa: B027 - optional hook, default: always
        """Raise ``AdapterUnavailable`` with a clear reason if it cannot run here."""

    @abc.abstractmethod
    def start(self, workdir: Path) -> None:
        """Start a fresh 3-member cluster with its data under ``workdir``; wait until ready."""

    @abc.abstractmethod
    def stop(self) -> None:
        """Stop every process ``start`` started (idempotent)."""

    @abc.abstractmethod
    def leader_endpoint(self) -> str:
        """``host:port`` of the member the cluster agrees is the leader (waits for one)."""

    @abc.abstractmethod
    def follower_endpoint(self) -> str:
        """``host:port`` of one member that is not the leader."""

    @abc.abstractmethod
    def pids(self) -> dict[str, int]:
        """Endpoint -> pid of each running member (for CPU accounting)."""

    @abc.abstractmethod
    def term(self) -> int:
        """The highest Raft term any member reports (election churn shows here)."""

    @abc.abstractmethod
    def version(self) -> str: ...

    # -- client ------------------------------------------------------------------
    @abc.abstractmethod
    async def connect(self, endpoint: str) -> None:
        """Open the channel that ``put`` and ``get`` use."""

    @abc.abstractmethod
    async def disconnect(self) -> None: ...

    @abc.abstractmethod
    async def put(self, key: bytes, value: bytes) -> None: ...

    @abc.abstractmethod
    async def get(self, key: bytes, serializable: bool) -> bool:
        """Read one key; True when it was found."""

    # -- CLI -----------------------------------------------------------------------
    @abc.abstractmethod
    def cli_get(self, key: str) -> tuple[list[str], dict[str, str]] | None:
        """argv and environment of this server's CLI reading ``key`` (None: no CLI)."""


def _clean_env(drop_prefixes: tuple[str, ...]) -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(drop_prefixes)}


def _leader_first(endpoints: list[str], leader: str) -> str:
    return ",".join([leader, *[e for e in endpoints if e != leader]])


# ------------------------------------------------------------------------------
class McpConfigAdapter(Adapter):
    """mcp-config: ``python -m mcpctl serve`` x3 through tests.cluster.Cluster."""

    name = "mcp-config"

    def __init__(self) -> None:
        self._cluster: Cluster | None = None
        self._channel: grpc.aio.Channel | None = None
        self._stub: kv_grpc.KVAsyncStub | None = None

    @property
    def cluster(self) -> Cluster:
        assert self._cluster is not None, "cluster not started"
        return self._cluster

    def start(self, workdir: Path) -> None:
        self._cluster = Cluster(workdir, size=3)
        try:
            self._cluster.start_all()
            self._cluster.leader()
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        if self._cluster is None:
            return
        running = [n.proc for n in self._cluster.nodes if n.proc is not None and n.running]
        for proc in running:
            proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT_S
        for proc in running:
            with contextlib.suppress(subprocess.TimeoutExpired):  # close() kills it
                proc.wait(max(0.1, deadline - time.monotonic()))
        self._cluster.close()
        self._cluster = None

    def leader_endpoint(self) -> str:
        return self.cluster.leader().endpoint

    def follower_endpoint(self) -> str:
        return self.cluster.followers()[0].endpoint

    def pids(self) -> dict[str, int]:
        return {n.endpoint: n.proc.pid for n in self.cluster.nodes if n.proc and n.running}

    def term(self) -> int:
        return max(self.cluster.status(n).term for n in self.cluster.nodes if n.running)

    def version(self) -> str:
        from mcpctl import __version__

        return __version__

    async def connect(self, endpoint: str) -> None:
        await self.disconnect()
        self._channel = grpc.aio.insecure_channel(endpoint)
        self._stub = kv_grpc.KVStub(self._channel)

    async def disconnect(self) -> None:
        if self._channel is not None:
            await self._channel.close(None)
        self._channel = None
        self._stub = None

    async def put(self, key: bytes, value: bytes) -> None:
        assert self._stub is not None
        # Like the SDK: every write carries a request id (at-most-once retries).
        req = kv.PutRequest(key=key, value=value, request_id=new_request_id())
        await self._stub.Put(req, timeout=RPC_TIMEOUT_S)

    async def get(self, key: bytes, serializable: bool) -> bool:
        assert self._stub is not None
        req = kv.RangeRequest(key=key, serializable=serializable)
        resp = await self._stub.Range(req, timeout=RPC_TIMEOUT_S)
        return len(resp.kvs) == 1

    def cli_get(self, key: str) -> tuple[list[str], dict[str, str]] | None:
        script = Path(sys.executable).parent / "mcpctl"
        argv = [str(script)] if script.exists() else [sys.executable, "-m", "mcpctl"]
        endpoints = _leader_first(self.cluster.endpoints, self.leader_endpoint())
        return [*argv, "--endpoints", endpoints, "get", key], _clean_env(("MCPCTL_", "MCP_"))


# ------------------------------------------------------------------------------
class EtcdAdapter(Adapter):
    """etcd: Debian's ``etcd-server`` binary, 3 members on free 127.0.0.1 ports.

    Data goes to a directory under ``workdir`` (a temp dir on the local disk):
    etcd fdatasyncs its WAL on every batch, PySyncObj never fsyncs.
    """

    name = "etcd"

    def __init__(self, binary: str = "etcd", ctl: str = "etcdctl") -> None:
        self._binary = binary
        self._ctl = ctl
        self._procs: list[subprocess.Popen[bytes]] = []
        self._endpoints: list[str] = []
        self._channel: grpc.aio.Channel | None = None
        self._stub: rpc_grpc.KVAsyncStub | None = None

    def check_available(self) -> None:
        if shutil.which(self._binary) is None:
            raise AdapterUnavailable(
                f"`{self._binary}` not found on PATH: install Debian's etcd-server "
                "(apt-get install -y etcd-server) to compare with etcd"
            )

    def start(self, workdir: Path) -> None:
        self.check_available()
        ports = free_ports(6)
        names = [f"e{i + 1}" for i in range(3)]
        client = [f"127.0.0.1:{p}" for p in ports[:3]]
        peer = [f"http://127.0.0.1:{p}" for p in ports[3:]]
        initial = ",".join(f"{n}={u}" for n, u in zip(names, peer, strict=True))
        token = f"bench-{secrets.token_hex(4)}"
        env = _clean_env(("ETCD_", "ETCDCTL_"))
        self._endpoints = client
        try:
            for i, name in enumerate(names):
                member_dir = workdir / name
                member_dir.mkdir(parents=True, exist_ok=True)
                argv = [
                    self._binary,
                    "--name", name,
                    "--data-dir", str(member_dir / "data"),
                    "--listen-client-urls", f"http://{client[i]}",
                    "--advertise-client-urls", f"http://{client[i]}",
                    "--listen-peer-urls", peer[i],
                    "--initial-advertise-peer-urls", peer[i],
                    "--initial-cluster", initial,
                    "--initial-cluster-token", token,
                    "--initial-cluster-state", "new",
                    "--logger", "zap",
                    "--log-outputs", "stderr",
                    "--log-level", "warn",
                ]  # fmt: skip
                with open(member_dir / "etcd.log", "ab") as log:
                    self._procs.append(
                        subprocess.Popen(
                            argv,
                            stdout=log,
                            stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL,
                            env=env,
                        )
                    )
            wait_for("etcd members to agree on a leader", self._agreed_leader, READY_TIMEOUT_S)
            wait_for("etcd to serve a linearizable read", self._reads_ok, READY_TIMEOUT_S)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        for p in self._procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT_S
        for p in self._procs:
            try:
                p.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(STOP_TIMEOUT_S)
        self._procs = []

    def _status(self, endpoint: str) -> rpc.StatusResponse:
        for p in self._procs:
            if p.poll() is not None:
                raise RuntimeError(f"an etcd member exited with code {p.returncode}")
        with grpc.insecure_channel(endpoint) as ch:
            stub = rpc_grpc.MaintenanceStub(ch)
            resp: rpc.StatusResponse = stub.Status(rpc.StatusRequest(), timeout=1.0)
            return resp

    def _agreed_leader(self) -> str | None:
        try:
            statuses = {e: self._status(e) for e in self._endpoints}
        except grpc.RpcError:
            return None
        leaders = {s.leader for s in statuses.values()}
        if len(leaders) != 1 or 0 in leaders:
            return None
        leader_id = leaders.pop()
        for endpoint, s in statuses.items():
            if s.header.member_id == leader_id:
                return endpoint
        return None

    def _reads_ok(self) -> bool:
        for endpoint in self._endpoints:
            try:
                with grpc.insecure_channel(endpoint) as ch:
                    rpc_grpc.KVStub(ch).Range(rpc.RangeRequest(key=b"/"), timeout=1.0)
            except grpc.RpcError:
                return False
        return True

    def leader_endpoint(self) -> str:
        return wait_for("etcd members to agree on a leader", self._agreed_leader, READY_TIMEOUT_S)

    def follower_endpoint(self) -> str:
        leader = self.leader_endpoint()
        return next(e for e in self._endpoints if e != leader)

    def pids(self) -> dict[str, int]:
        return {
            e: p.pid for e, p in zip(self._endpoints, self._procs, strict=True) if p.poll() is None
        }

    def term(self) -> int:
        return max(self._status(e).raftTerm for e in self._endpoints)

    def version(self) -> str:
        try:
            out = subprocess.run(
                [self._binary, "--version"], capture_output=True, text=True, timeout=10
            ).stdout
        except (OSError, subprocess.TimeoutExpired):
            return "(version unknown)"
        first = out.splitlines()[0] if out else ""
        # "etcd Version: 3.4.23"
        return first.split(":", 1)[1].strip() if ":" in first else "(version unknown)"

    async def connect(self, endpoint: str) -> None:
        await self.disconnect()
        self._channel = grpc.aio.insecure_channel(endpoint)
        self._stub = rpc_grpc.KVStub(self._channel)

    async def disconnect(self) -> None:
        if self._channel is not None:
            await self._channel.close(None)
        self._channel = None
        self._stub = None

    async def put(self, key: bytes, value: bytes) -> None:
        assert self._stub is not None
        await self._stub.Put(rpc.PutRequest(key=key, value=value), timeout=RPC_TIMEOUT_S)

    async def get(self, key: bytes, serializable: bool) -> bool:
        assert self._stub is not None
        req = rpc.RangeRequest(key=key, serializable=serializable)
        resp = await self._stub.Range(req, timeout=RPC_TIMEOUT_S)
        return len(resp.kvs) == 1

    def cli_get(self, key: str) -> tuple[list[str], dict[str, str]] | None:
        path = shutil.which(self._ctl)
        if path is None:
            return None
        endpoints = _leader_first(self._endpoints, self.leader_endpoint())
        env = _clean_env(("ETCD_", "ETCDCTL_"))
        env["ETCDCTL_API"] = "3"
        return [path, f"--endpoints={endpoints}", "get", key], env


ADAPTERS: dict[str, type[Adapter]] = {
    McpConfigAdapter.name: McpConfigAdapter,
    EtcdAdapter.name: EtcdAdapter,
}
