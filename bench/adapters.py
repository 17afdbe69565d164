"""One small adapter per server, all with the same shape, so one workload loop
measures any of them.

An adapter starts a fresh local 3-member cluster on 127.0.0.1, names its
leader's and a follower's endpoint, and offers ``put``/``get`` over one
grpc.aio channel to an endpoint chosen with ``connect``. Everything it starts
it stops in ``stop``.

For the watch and failover benchmarks it also talks to any member at once
(``put_at``/``get_at``/``watch_values``, one pooled channel per endpoint,
closed by ``close_channels``) and can ``kill_member`` (kill -9).
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import os
import secrets
import selectors
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path

import grpc

from mcpctl._proto.etcd.etcdserverpb import rpc_pb2 as rpc
from mcpctl._proto.etcd.etcdserverpb import rpc_pb2_grpc as rpc_grpc
from mcpctl._proto.mcp.v1 import kv_pb2 as kv
from mcpctl._proto.mcp.v1 import kv_pb2_grpc as kv_grpc
from mcpctl._proto.mcp.v1 import watch_pb2 as mwatch
from mcpctl._proto.mcp.v1 import watch_pb2_grpc as mwatch_grpc
from mcpctl.client import new_request_id
from tests.cluster import Cluster, free_ports, wait_for

RPC_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 10.0
READY_TIMEOUT_S = 30.0
ROOT = Path(__file__).resolve().parents[1]


class AdapterUnavailable(Exception):
    """The server cannot be run on this machine (e.g. its binary is missing)."""


class Adapter(abc.ABC):
    """A server under test: a local 3-member cluster plus a tiny async KV client."""

    name: str = ""

    def __init__(self) -> None:
        # One channel per endpoint for put_at / get_at / watch_values.
        self._pool: dict[str, grpc.aio.Channel] = {}

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

    # -- any member at once (watch and failover benchmarks) -------------------------
    @abc.abstractmethod
    def endpoints(self) -> list[str]:
        """Every member's endpoint, running or not, in a stable order."""

    @abc.abstractmethod
    def kill_member(self, endpoint: str) -> None:
        """kill -9 the member at ``endpoint`` and reap it (it stays down)."""

    def pooled_channel(self, endpoint: str) -> grpc.aio.Channel:
        """The shared channel to ``endpoint`` (opened on first use, on the running loop)."""
        channel = self._pool.get(endpoint)
        if channel is None:
            channel = self._pool[endpoint] = grpc.aio.insecure_channel(endpoint)
        return channel

    async def close_channels(self) -> None:
        pool, self._pool = self._pool, {}
        for channel in pool.values():
            await channel.close(None)

    @abc.abstractmethod
    async def put_at(self, endpoint: str, key: bytes, value: bytes, timeout: float) -> None:
        """One put sent to ``endpoint`` (no retry); raises grpc.aio.AioRpcError on failure."""

    @abc.abstractmethod
    async def get_at(self, endpoint: str, key: bytes) -> bytes | None:
        """Linearizable read of ``key`` at ``endpoint``: its value, or None if absent."""

    @abc.abstractmethod
    def watch_values(
        self, endpoint: str, prefix: bytes, created: asyncio.Event
    ) -> AsyncIterator[list[bytes]]:
        """One watch stream on ``prefix`` at ``endpoint``, from now on.

        Sets ``created`` when the server confirms the watch, then yields the
        values of the events of each message received (one list per message).
        Ends by raising grpc.aio.AioRpcError or RuntimeError; cancelling the
        consumer cancels the stream.
        """


def _clean_env(drop_prefixes: tuple[str, ...]) -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(drop_prefixes)}


def _leader_first(endpoints: list[str], leader: str) -> str:
    return ",".join([leader, *[e for e in endpoints if e != leader]])


# ------------------------------------------------------------------------------
class McpKVClient(Adapter):
    """The client half shared by every server of the ``mcp.v1.KV`` API: one channel,
    puts with a request id as the SDK sends them, gets by key."""

    def __init__(self) -> None:
        super().__init__()
        self._channel: grpc.aio.Channel | None = None
        self._stub: kv_grpc.KVAsyncStub | None = None

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

    async def put_at(self, endpoint: str, key: bytes, value: bytes, timeout: float) -> None:
        stub = kv_grpc.KVStub(self.pooled_channel(endpoint))
        req = kv.PutRequest(key=key, value=value, request_id=new_request_id())
        await stub.Put(req, timeout=timeout)

    async def get_at(self, endpoint: str, key: bytes) -> bytes | None:
        stub = kv_grpc.KVStub(self.pooled_channel(endpoint))
        resp = await stub.Range(kv.RangeRequest(key=key), timeout=RPC_TIMEOUT_S)
        return resp.kvs[0].value if resp.kvs else None


class McpConfigAdapter(McpKVClient):
    """mcp-config: ``python -m mcpctl serve`` x3 through tests.cluster.Cluster."""

    name = "mcp-config"

    def __init__(self) -> None:
        super().__init__()
        self._cluster: Cluster | None = None

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

    def cli_get(self, key: str) -> tuple[list[str], dict[str, str]] | None:
        script = Path(sys.executable).parent / "mcpctl"
        argv = [str(script)] if script.exists() else [sys.executable, "-m", "mcpctl"]
        endpoints = _leader_first(self.cluster.endpoints, self.leader_endpoint())
        return [*argv, "--endpoints", endpoints, "get", key], _clean_env(("MCPCTL_", "MCP_"))

    def endpoints(self) -> list[str]:
        return self.cluster.endpoints

    def kill_member(self, endpoint: str) -> None:
        node = next(n for n in self.cluster.nodes if n.endpoint == endpoint)
        self.cluster.kill(node)

    async def watch_values(
        self, endpoint: str, prefix: bytes, created: asyncio.Event
    ) -> AsyncIterator[list[bytes]]:
        stub = mwatch_grpc.WatchStub(self.pooled_channel(endpoint))
        call = stub.Watch(mwatch.WatchRequest(key=prefix, prefix=True))
        try:
            async for resp in call:
                if resp.created:
                    created.set()
                elif resp.events:
                    yield [ev.kv.value for ev in resp.events]
            raise RuntimeError(f"watch stream at {endpoint} ended by the server")
        finally:
            call.cancel()


# ------------------------------------------------------------------------------
class EtcdAdapter(Adapter):
    """etcd: Debian's ``etcd-server`` binary, 3 members on free 127.0.0.1 ports.

    Data goes to a directory under ``workdir`` (a temp dir on the local disk):
    etcd fdatasyncs its WAL on every batch (mcp-config its journal: raft.durability).
    """

    name = "etcd"

    def __init__(self, binary: str = "etcd", ctl: str = "etcdctl", pprof: bool = False) -> None:
        super().__init__()
        self._binary = binary
        self._ctl = ctl
        # --enable-pprof: /debug/pprof on the client port (forced GC for memory readings).
        self._pprof = pprof
        self._procs: list[subprocess.Popen[bytes]] = []
        self._endpoints: list[str] = []
        self._killed: set[str] = set()
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
        self._killed = set()
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
                    *(["--enable-pprof"] if self._pprof else []),
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

    def _alive(self) -> list[str]:
        return [e for e in self._endpoints if e not in self._killed]

    def _status(self, endpoint: str) -> rpc.StatusResponse:
        for e, p in zip(self._endpoints, self._procs, strict=False):
            if e not in self._killed and p.poll() is not None:
                raise RuntimeError(f"etcd member {e} exited with code {p.returncode}")
        with grpc.insecure_channel(endpoint) as ch:
            stub = rpc_grpc.MaintenanceStub(ch)
            resp: rpc.StatusResponse = stub.Status(rpc.StatusRequest(), timeout=1.0)
            return resp

    def _agreed_leader(self) -> str | None:
        try:
            statuses = {e: self._status(e) for e in self._alive()}
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
        for endpoint in self._alive():
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
        return next(e for e in self._alive() if e != leader)

    def pids(self) -> dict[str, int]:
        return {
            e: p.pid for e, p in zip(self._endpoints, self._procs, strict=True) if p.poll() is None
        }

    def term(self) -> int:
        return max(self._status(e).raftTerm for e in self._alive())

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

    def endpoints(self) -> list[str]:
        return list(self._endpoints)

    def force_gc(self, endpoint: str) -> None:
        """Run a Go GC in the member (a heap profile with gc=1; needs pprof=True)."""
        with urllib.request.urlopen(f"http://{endpoint}/debug/pprof/heap?gc=1", timeout=10) as r:
            r.read()

    def metrics(self, endpoint: str, prefix: str) -> dict[str, float]:
        """The member's unlabelled Prometheus samples named ``prefix*`` (prefix removed)."""
        with urllib.request.urlopen(f"http://{endpoint}/metrics", timeout=10) as r:
            text = r.read().decode()
        out: dict[str, float] = {}
        for line in text.splitlines():
            if line.startswith(prefix) and " " in line and "{" not in line:
                name, value = line.rsplit(" ", 1)
                out[name.removeprefix(prefix)] = float(value)
        return out

    def kill_member(self, endpoint: str) -> None:
        proc = self._procs[self._endpoints.index(endpoint)]
        self._killed.add(endpoint)
        proc.kill()
        proc.wait(STOP_TIMEOUT_S)

    async def put_at(self, endpoint: str, key: bytes, value: bytes, timeout: float) -> None:
        stub = rpc_grpc.KVStub(self.pooled_channel(endpoint))
        await stub.Put(rpc.PutRequest(key=key, value=value), timeout=timeout)

    async def get_at(self, endpoint: str, key: bytes) -> bytes | None:
        stub = rpc_grpc.KVStub(self.pooled_channel(endpoint))
        resp = await stub.Range(rpc.RangeRequest(key=key), timeout=RPC_TIMEOUT_S)
        return resp.kvs[0].value if resp.kvs else None

    async def watch_values(
        self, endpoint: str, prefix: bytes, created: asyncio.Event
    ) -> AsyncIterator[list[bytes]]:
        # One watch per bidi stream (the same shape as mcp-config's streams).
        stub = rpc_grpc.WatchStub(self.pooled_channel(endpoint))
        call = stub.Watch(None)  # requests are written with call.write()
        try:
            create = rpc.WatchCreateRequest(key=prefix, range_end=prefix_end(prefix))
            await call.write(rpc.WatchRequest(create_request=create))
            while True:
                resp = await call.read()
                if not isinstance(resp, rpc.WatchResponse):  # grpc.aio.EOF
                    raise RuntimeError(f"watch stream at {endpoint} ended by the server")
                if resp.canceled:
                    raise RuntimeError(f"etcd cancelled the watch: {resp.cancel_reason!r}")
                if resp.created:
                    created.set()
                if resp.events:
                    yield [ev.kv.value for ev in resp.events]
        finally:
            call.cancel()


# ------------------------------------------------------------------------------
class McpEtcdAdapter(McpConfigAdapter):
    """mcp-config's etcd v3 API (docs/etcd-compat.md): the same cluster as
    ``mcp-config``, driven by the etcd adapter's client code and etcd's protos, so
    the native ``mcp.v1`` path and the etcd path of mcp-config compare directly
    (the etcd client sends no request id; the native one does, as the SDK)."""

    name = "mcp-config-etcd"

    def __init__(self) -> None:
        super().__init__()
        self._etcd = EtcdAdapter()

    async def connect(self, endpoint: str) -> None:
        await self._etcd.connect(endpoint)

    async def disconnect(self) -> None:
        await self._etcd.disconnect()

    async def put(self, key: bytes, value: bytes) -> None:
        await self._etcd.put(key, value)

    async def get(self, key: bytes, serializable: bool) -> bool:
        return await self._etcd.get(key, serializable)

    async def put_at(self, endpoint: str, key: bytes, value: bytes, timeout: float) -> None:
        await self._etcd.put_at(endpoint, key, value, timeout)

    async def get_at(self, endpoint: str, key: bytes) -> bytes | None:
        return await self._etcd.get_at(endpoint, key)

    async def close_channels(self) -> None:
        await self._etcd.close_channels()
        await super().close_channels()

    def watch_values(
        self, endpoint: str, prefix: bytes, created: asyncio.Event
    ) -> AsyncIterator[list[bytes]]:
        return self._etcd.watch_values(endpoint, prefix, created)


# ------------------------------------------------------------------------------
class GrpcFloorAdapter(McpKVClient):
    """The Python gRPC floor: one ``python -m bench.floor_server`` process serving
    ``mcp.v1.KV`` with mcp-config's server options, answering Put and Range at once
    (no Raft, no state). Same client as mcp-config. It is its own "leader" and
    "follower", so put-follower measures exactly what put-leader does.
    """

    name = "grpc-floor"

    def __init__(self) -> None:
        super().__init__()
        self._proc: subprocess.Popen[bytes] | None = None
        self._endpoint = ""

    def start(self, workdir: Path) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        endpoint = f"127.0.0.1:{free_ports(1)[0]}"
        argv = [sys.executable, "-m", "bench.floor_server", "--listen", endpoint]
        log_path = workdir / "floor_server.log"
        with open(log_path, "ab") as log:
            self._proc = subprocess.Popen(
                argv,
                stdout=subprocess.PIPE,
                stderr=log,
                stdin=subprocess.DEVNULL,
                cwd=ROOT,
                env=_clean_env(("MCPCTL_", "MCP_")),
            )
        try:
            self._endpoint = self._wait_ready(time.monotonic() + READY_TIMEOUT_S)
        except BaseException:
            self.stop()
            raise

    def _wait_ready(self, deadline: float) -> str:
        """The endpoint from the server's ``READY host:port`` line, once it answers.

        Blocks on the pipe and on gRPC's connectivity with a deadline (no sleeps).
        """
        assert self._proc is not None and self._proc.stdout is not None
        fd = self._proc.stdout.fileno()
        buf = b""
        with selectors.DefaultSelector() as sel:
            sel.register(fd, selectors.EVENT_READ)
            while b"\n" not in buf:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"grpc-floor not ready after {READY_TIMEOUT_S}s")
                if not sel.select(left):
                    continue
                chunk = os.read(fd, 4096)
                if not chunk:  # EOF: the server exited (its stderr is in the log)
                    code = self._proc.wait(STOP_TIMEOUT_S)
                    raise RuntimeError(f"grpc-floor exited with code {code} before it was ready")
                buf += chunk
        line = buf.split(b"\n", 1)[0].decode()
        if not line.startswith("READY "):
            raise RuntimeError(f"grpc-floor: unexpected first line {line!r}")
        endpoint = line.removeprefix("READY ").strip()
        with grpc.insecure_channel(endpoint) as ch:
            grpc.channel_ready_future(ch).result(timeout=max(0.1, deadline - time.monotonic()))
        return endpoint

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(STOP_TIMEOUT_S)
        if proc.stdout is not None:
            proc.stdout.close()

    def leader_endpoint(self) -> str:
        assert self._endpoint, "grpc-floor not started"
        return self._endpoint

    def follower_endpoint(self) -> str:
        return self.leader_endpoint()  # one process: put-follower == put-leader

    def pids(self) -> dict[str, int]:
        if self._proc is None or self._proc.poll() is not None:
            return {}
        return {self._endpoint: self._proc.pid}

    def term(self) -> int:
        return 1  # no Raft

    def version(self) -> str:
        return "grpc.aio floor (no Raft)"

    def cli_get(self, key: str) -> tuple[list[str], dict[str, str]] | None:
        # The floor of a Python CLI read (bench.cli_floor): argparse, grpc, one Range.
        assert self._endpoint, "grpc-floor not started"
        argv = [sys.executable, "-m", "bench.cli_floor", "--endpoints", self._endpoint, "get", key]
        return argv, _clean_env(("MCPCTL_", "MCP_")) | {"PYTHONPATH": str(ROOT)}

    def endpoints(self) -> list[str]:
        return [self._endpoint] if self._endpoint else []

    def kill_member(self, endpoint: str) -> None:
        if self._proc is not None and endpoint == self._endpoint:
            self._proc.kill()
            self._proc.wait(STOP_TIMEOUT_S)

    async def watch_values(
        self, endpoint: str, prefix: bytes, created: asyncio.Event
    ) -> AsyncIterator[list[bytes]]:
        # The streaming floor (floor_server.FloorWatch), read as mcp-config's streams.
        stub = mwatch_grpc.WatchStub(self.pooled_channel(endpoint))
        call = stub.Watch(mwatch.WatchRequest(key=prefix, prefix=True))
        try:
            async for resp in call:
                if resp.created:
                    created.set()
                elif resp.events:
                    yield [ev.kv.value for ev in resp.events]
            raise RuntimeError(f"watch stream at {endpoint} ended by the server")
        finally:
            call.cancel()


def prefix_end(prefix: bytes) -> bytes:
    """etcd's range_end for "every key starting with ``prefix``" (non-empty prefix)."""
    end = bytearray(prefix)
    for i in range(len(end) - 1, -1, -1):
        if end[i] < 0xFF:
            end[i] += 1
            return bytes(end[: i + 1])
    return b"\0"


# The servers every benchmark compares (and their default).
ADAPTERS: dict[str, type[Adapter]] = {
    McpConfigAdapter.name: McpConfigAdapter,
    EtcdAdapter.name: EtcdAdapter,
}
# The KV benchmark can add the Python gRPC floor (opt-in: ``--servers ...,grpc-floor``).
KV_ADAPTERS: dict[str, type[Adapter]] = {
    **ADAPTERS,
    GrpcFloorAdapter.name: GrpcFloorAdapter,
    # mcp-config's etcd API, driven by the etcd client (opt-in: ``--servers ...,mcp-config-etcd``).
    McpEtcdAdapter.name: McpEtcdAdapter,
}
