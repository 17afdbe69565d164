"""Lease benchmark (issue #14): keepalives and mass expiry, mcp-config next to
etcd, same machine, same client, same workload.

``python -m bench.lease_bench`` runs, for each server in turn (never both at
once, the first one alternating between runs), on a fresh local 3-member
cluster per run:

1. **Expiry** (on the idle cluster first): ``--expire-leases`` (1,000) leases
   of the smallest TTL both servers grant (``--expire-ttl``, 2 s: mcp-config's
   ``lease_ttl_min_s`` = 2 x the 1 s max election timeout; etcd's minimum,
   1.5 x its 1 s election timeout, rounded up, is 2 s too), each with one key
   under ``/exp/``, kept alive at TTL/3 while they are set up; then one
   keepalive for every lease at once and the stream is closed. Measured: the
   time from the last keepalive answer to the watch event that deleted the
   last key (a prefix watch on the leader, opened before), and the latency of
   a writer putting ``--writer-rate`` (100) keys/s to the leader, open loop,
   while the keys expire, next to its latency on the idle cluster before.
2. **Keepalive**: ``--leases`` (10,000) leases of ``--ttl`` (10 s), each with
   one key under ``/lease/``, granted and kept alive by ``--clients`` (2)
   client processes, each with one KeepAlive stream to the leader, renewing
   every lease TTL/3 after its last renewal was sent (as etcd's client and
   our SDK do; open loop: a late answer does not delay the next renewal).
   After one TTL/3 of warm-up, ``--duration`` (60) s are measured: keepalives
   answered per second (vs. asked: leases / (TTL/3)), round trip p50/p99 (send
   → answer on the same stream), the leader's CPU (utime + stime from /proc)
   per keepalive answered, the whole cluster's, the clients' CPU; then every
   member's RSS (as ``bench.memory_bench`` reads it) with the leases alive.

Results go to ``bench/results/<date>-lease.md`` and ``.json``; the report
(``bench/report.py``) puts them into bench/README.md. See bench/README.md.
"""

from __future__ import annotations

import abc
import argparse
import asyncio
import heapq
import math
import multiprocessing
import multiprocessing.connection
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections import Counter, deque
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc

from bench import common
from bench.adapters import ADAPTERS, Adapter, prefix_end
from bench.common import parse_servers
from bench.kv_bench import _loadavg, _versions
from bench.watch_bench import memory_reading
from bench.workload import percentile, proc_cpu_s, self_cpu_s
from mcpctl import limits
from mcpctl._proto.etcd.etcdserverpb import rpc_pb2 as rpc
from mcpctl._proto.etcd.etcdserverpb import rpc_pb2_grpc as rpc_grpc
from mcpctl._proto.etcd.mvccpb import kv_pb2 as mvcc
from mcpctl._proto.mcp.v1 import kv_pb2 as kv
from mcpctl._proto.mcp.v1 import kv_pb2_grpc as kv_grpc
from mcpctl._proto.mcp.v1 import lease_pb2 as mlease
from mcpctl._proto.mcp.v1 import lease_pb2_grpc as mlease_grpc
from mcpctl._proto.mcp.v1 import watch_pb2 as mwatch
from mcpctl._proto.mcp.v1 import watch_pb2_grpc as mwatch_grpc
from mcpctl.client import new_request_id

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "bench" / "results"
MCP, ETCD = "mcp-config", "etcd"
ROLES = ("leader", "follower 1", "follower 2")
KEEP_PREFIX = b"/lease/"
EXPIRE_PREFIX = b"/exp/"
WRITER_PREFIX = b"/w/"
VALUE = b"v" * 64
RPC_TIMEOUT_S = 10.0
SETUP_CONCURRENCY = 64  # grants + puts in flight, over all client processes
SETUP_ATTEMPTS_MAX = 5
SEND_TICK_S = 0.005  # the sender wakes this often and sends every renewal due
# --batch: mcp-config's batched keepalive (one message per sender tick), at most
# its LEASE_KEEPALIVE_BATCH_MAX ids per message.
KEEPALIVE_BATCH_MAX = limits.LEASE_KEEPALIVE_BATCH_MAX
DRAIN_TIMEOUT_S = 10.0
READY_TIMEOUT_S = 300.0  # every client process granted its leases
IDLE_BASELINE_S = 3.0  # writer on the idle cluster before the expiry set-up
EXPIRE_GRACE_S = 30.0  # on top of TTL + the server's grace + M / 500 per s
WRITER_TIMEOUT_S = 5.0
WRITER_IN_FLIGHT_MAX = 256
MIB = 2**20


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# -- one lease client per server ----------------------------------------------------------
class LeaseOps(abc.ABC):
    """Grant, put with a lease, a KeepAlive stream, a prefix count and a watch of
    DELETE events, on one channel, for one server's API."""

    answer_type: type  # the KeepAlive answer message

    def __init__(self, channel: grpc.aio.Channel) -> None:
        self.channel = channel

    @abc.abstractmethod
    async def grant(self, ttl: int) -> tuple[int, int]:
        """A new lease: (id, granted TTL)."""

    @abc.abstractmethod
    async def put(self, key: bytes, value: bytes, lease_id: int, timeout: float) -> None: ...

    @abc.abstractmethod
    def keepalive_call(self) -> Any:
        """A new bidi KeepAlive stream (``write`` requests, ``read`` answers)."""

    @abc.abstractmethod
    def keepalive_request(self, lease_id: int) -> Any: ...

    @abc.abstractmethod
    def keepalive_answer(self, resp: Any) -> tuple[int, int]:
        """(lease id, TTL left) of an answer; TTL <= 0: the lease is gone."""

    def keepalive_batch(self, lease_ids: list[int]) -> Any:
        """One request renewing every one of ``lease_ids`` (``--batch``)."""
        raise NotImplementedError(f"{type(self).__name__} has no batched keepalive")

    def keepalive_answers(self, resp: Any) -> list[tuple[int, int]]:
        """(lease id, TTL left) of each lease an answer covers."""
        return [self.keepalive_answer(resp)]

    @abc.abstractmethod
    async def count(self, prefix: bytes) -> int:
        """Keys under ``prefix`` (linearizable)."""

    @abc.abstractmethod
    def watch_deletes(self, prefix: bytes, created: asyncio.Event) -> AsyncIterator[int]:
        """A prefix watch from now: the number of DELETE events of each message."""


class McpLeaseOps(LeaseOps):
    answer_type = mlease.LeaseKeepAliveResponse

    def __init__(self, channel: grpc.aio.Channel) -> None:
        super().__init__(channel)
        self._lease = mlease_grpc.LeaseStub(channel)
        self._kv = kv_grpc.KVStub(channel)

    async def grant(self, ttl: int) -> tuple[int, int]:
        r = await self._lease.Grant(kv.LeaseGrantRequest(ttl=ttl), timeout=RPC_TIMEOUT_S)
        return r.id, r.ttl

    async def put(self, key: bytes, value: bytes, lease_id: int, timeout: float) -> None:
        req = kv.PutRequest(key=key, value=value, lease=lease_id, request_id=new_request_id())
        await self._kv.Put(req, timeout=timeout)

    def keepalive_call(self) -> Any:
        return self._lease.KeepAlive(None)  # requests are written with call.write()

    def keepalive_request(self, lease_id: int) -> Any:
        return mlease.LeaseKeepAliveRequest(id=lease_id)

    def keepalive_answer(self, resp: Any) -> tuple[int, int]:
        return resp.id, resp.ttl

    def keepalive_batch(self, lease_ids: list[int]) -> Any:
        return mlease.LeaseKeepAliveRequest(ids=lease_ids)

    def keepalive_answers(self, resp: Any) -> list[tuple[int, int]]:
        if resp.renewals:
            return [(r.id, r.ttl) for r in resp.renewals]
        return [self.keepalive_answer(resp)]

    async def count(self, prefix: bytes) -> int:
        req = kv.RangeRequest(key=prefix, prefix=True, count_only=True)
        return (await self._kv.Range(req, timeout=RPC_TIMEOUT_S)).count

    async def watch_deletes(self, prefix: bytes, created: asyncio.Event) -> AsyncIterator[int]:
        call = mwatch_grpc.WatchStub(self.channel).Watch(
            mwatch.WatchRequest(key=prefix, prefix=True)
        )
        try:
            async for resp in call:
                if resp.created:
                    created.set()
                n = sum(1 for ev in resp.events if ev.type == kv.Event.DELETE)
                if n:
                    yield n
            raise RuntimeError("watch stream ended by the server")
        finally:
            call.cancel()


class EtcdLeaseOps(LeaseOps):
    answer_type = rpc.LeaseKeepAliveResponse

    def __init__(self, channel: grpc.aio.Channel) -> None:
        super().__init__(channel)
        self._lease = rpc_grpc.LeaseStub(channel)
        self._kv = rpc_grpc.KVStub(channel)

    async def grant(self, ttl: int) -> tuple[int, int]:
        r = await self._lease.LeaseGrant(rpc.LeaseGrantRequest(TTL=ttl), timeout=RPC_TIMEOUT_S)
        if r.error:
            raise RuntimeError(f"etcd LeaseGrant: {r.error}")
        return r.ID, r.TTL

    async def put(self, key: bytes, value: bytes, lease_id: int, timeout: float) -> None:
        await self._kv.Put(rpc.PutRequest(key=key, value=value, lease=lease_id), timeout=timeout)

    def keepalive_call(self) -> Any:
        return self._lease.LeaseKeepAlive(None)

    def keepalive_request(self, lease_id: int) -> Any:
        return rpc.LeaseKeepAliveRequest(ID=lease_id)

    def keepalive_answer(self, resp: Any) -> tuple[int, int]:
        return resp.ID, resp.TTL

    async def count(self, prefix: bytes) -> int:
        req = rpc.RangeRequest(key=prefix, range_end=prefix_end(prefix), count_only=True)
        return (await self._kv.Range(req, timeout=RPC_TIMEOUT_S)).count

    async def watch_deletes(self, prefix: bytes, created: asyncio.Event) -> AsyncIterator[int]:
        call = rpc_grpc.WatchStub(self.channel).Watch(None)
        try:
            create = rpc.WatchCreateRequest(key=prefix, range_end=prefix_end(prefix))
            await call.write(rpc.WatchRequest(create_request=create))
            while True:
                resp = await call.read()
                if not isinstance(resp, rpc.WatchResponse):  # grpc.aio.EOF
                    raise RuntimeError("watch stream ended by the server")
                if resp.canceled:
                    raise RuntimeError(f"etcd cancelled the watch: {resp.cancel_reason!r}")
                if resp.created:
                    created.set()
                n = sum(1 for ev in resp.events if ev.type == mvcc.Event.DELETE)
                if n:
                    yield n
        finally:
            call.cancel()


LEASE_OPS: dict[str, type[LeaseOps]] = {MCP: McpLeaseOps, ETCD: EtcdLeaseOps}


# -- keeping leases alive -------------------------------------------------------------------
@dataclass
class KeeperStats:
    """What one keepalive stream measured inside the window (and a few totals)."""

    sent: int = 0  # renewals sent in the window
    answered: int = 0  # answers received in the window
    rtt_s: list[float] = field(default_factory=list)  # of renewals sent in the window
    late_s: list[float] = field(default_factory=list)  # send time - due time, in the window
    lost: int = 0  # answers with TTL <= 0 (any time)
    out_of_order: int = 0
    sent_total: int = 0
    answered_total: int = 0


class Keeper:
    """One KeepAlive stream for many leases: each lease is renewed ``period_s``
    after its previous renewal was *due* (open loop, a heap of due times; the
    leases' phases are spread evenly over the period), and
    every answer is matched to its request (answers come in request order on a
    stream, for both servers; a mismatch is counted)."""

    def __init__(self, ops: LeaseOps, period_s: float, batch: bool = False) -> None:
        self.ops = ops
        self.period_s = period_s
        self.batch = batch  # the leases due in one sender tick go in one message
        self.stats = KeeperStats()
        self.window = (math.inf, math.inf)
        self._heap: list[tuple[float, int]] = []
        self._requests: dict[int, Any] = {}
        self._pending: deque[tuple[int, float]] = deque()
        self._write_lock = asyncio.Lock()
        self._call: Any = None
        self._tasks: list[asyncio.Task[None]] = []
        self._paused = False
        self.last_answer_t = 0.0
        self.error: str | None = None

    def add(self, lease_id: int, due: float) -> None:
        self._requests[lease_id] = self.ops.keepalive_request(lease_id)
        heapq.heappush(self._heap, (due, lease_id))

    @property
    def leases(self) -> int:
        return len(self._requests)

    async def start(self) -> None:
        self._call = self.ops.keepalive_call()
        self._tasks = [
            asyncio.create_task(self._sender(), name="keepalive-sender"),
            asyncio.create_task(self._reader(), name="keepalive-reader"),
        ]

    async def _send(self, lease_id: int, due: float | None) -> None:
        await self._send_many([(lease_id, due)])

    async def _send_many(self, leases: list[tuple[int, float | None]]) -> None:
        """Renew these: one message each, or one for all of them with ``batch``."""
        async with self._write_lock:
            t = time.monotonic()
            for lease_id, due in leases:
                self._pending.append((lease_id, t))
                self.stats.sent_total += 1
                if self.window[0] <= t < self.window[1]:
                    self.stats.sent += 1
                    if due is not None:
                        self.stats.late_s.append(t - due)
            if self.batch:
                await self._call.write(self.ops.keepalive_batch([i for i, _ in leases]))
                return
            for lease_id, _ in leases:
                await self._call.write(self._requests[lease_id])

    async def _sender(self) -> None:
        try:
            while True:
                now = time.monotonic()
                due_now: list[tuple[int, float | None]] = []
                while not self._paused and self._heap and self._heap[0][0] <= now:
                    due, lease_id = heapq.heappop(self._heap)
                    heapq.heappush(self._heap, (due + self.period_s, lease_id))
                    due_now.append((lease_id, due))
                for i in range(0, len(due_now), KEEPALIVE_BATCH_MAX):
                    await self._send_many(due_now[i : i + KEEPALIVE_BATCH_MAX])
                await asyncio.sleep(SEND_TICK_S)
        except Exception as e:  # the stream failed: the reader or the result says how
            self.error = self.error or f"send: {type(e).__name__}: {e}"

    async def _reader(self) -> None:
        try:
            while True:
                resp = await self._call.read()
                if not isinstance(resp, self.ops.answer_type):  # grpc.aio.EOF
                    self.error = self.error or "keepalive stream ended by the server"
                    return
                t = time.monotonic()
                for lease_id, ttl in self.ops.keepalive_answers(resp):
                    sent_id, t_sent = self._pending.popleft()
                    self.stats.answered_total += 1
                    self.last_answer_t = t
                    if sent_id != lease_id:
                        self.stats.out_of_order += 1
                    if ttl <= 0:
                        self.stats.lost += 1
                    if self.window[0] <= t < self.window[1]:
                        self.stats.answered += 1
                    if self.window[0] <= t_sent < self.window[1]:
                        self.stats.rtt_s.append(t - t_sent)
        except grpc.aio.AioRpcError as e:
            if e.code() != grpc.StatusCode.CANCELLED:
                self.error = self.error or f"read: {e.code().name} {e.details()}"

    async def drain(self, timeout_s: float = DRAIN_TIMEOUT_S) -> None:
        """Wait until every renewal sent has its answer (bounded)."""
        deadline = time.monotonic() + timeout_s
        while self._pending and time.monotonic() < deadline and self.error is None:
            await asyncio.sleep(0.005)

    async def final_round(self) -> float:
        """Stop the schedule, renew every lease once more, wait for every answer;
        returns the time the last answer arrived."""
        self._paused = True
        leases: list[tuple[int, float | None]] = [(i, None) for i in self._requests]
        for i in range(0, len(leases), KEEPALIVE_BATCH_MAX):
            await self._send_many(leases[i : i + KEEPALIVE_BATCH_MAX])
        await self.drain()
        if self._pending:
            raise RuntimeError(f"{len(self._pending)} keepalives of the last round unanswered")
        return self.last_answer_t

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._call is not None:
            self._call.cancel()


async def grant_with_keys(
    ops: LeaseOps,
    keeper: Keeper,
    *,
    count: int,
    first: int,
    ttl: int,
    prefix: bytes,
    concurrency: int,
) -> tuple[int, dict[str, int]]:
    """Grant ``count`` leases, each kept alive by ``keeper`` from its grant on, and
    put one key on each; returns (the TTL granted, errors retried)."""
    pending = iter(range(first, first + count))
    errors: Counter[str] = Counter()
    granted: set[int] = set()
    t_base = time.monotonic()

    async def attempt(what: str, op: Any) -> Any:
        for _ in range(SETUP_ATTEMPTS_MAX):
            try:
                return await op()
            except grpc.aio.AioRpcError as e:
                errors[f"{what} {e.code().name}"] += 1
                await asyncio.sleep(0.1)
        raise RuntimeError(f"set-up: {what} failed {SETUP_ATTEMPTS_MAX} times")

    async def worker() -> None:
        for i in pending:
            lease_id, granted_ttl = await attempt("grant", lambda: ops.grant(ttl))
            granted.add(granted_ttl)
            # Renewal phases spread evenly over the period (by index), whatever the
            # grant rate was: the first renewal comes within one period of the grant.
            due, now = t_base + keeper.period_s * (i - first) / count, time.monotonic()
            due += math.ceil(max(0.0, now - due) / keeper.period_s) * keeper.period_s
            keeper.add(lease_id, due)
            key = prefix + b"k%06d" % i
            await attempt("put", lambda k=key, lid=lease_id: ops.put(k, VALUE, lid, RPC_TIMEOUT_S))

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    if len(granted) > 1:
        raise RuntimeError(f"leases granted with different TTLs: {sorted(granted)}")
    return (granted.pop() if granted else 0), dict(errors)


# -- keepalive client processes ---------------------------------------------------------------
@dataclass(frozen=True)
class WorkerPlan:
    server: str
    endpoint: str
    first: int
    count: int
    ttl: int
    concurrency: int
    batch: bool = False


def keepalive_process(plan: WorkerPlan, conn: multiprocessing.connection.Connection) -> None:
    """A client process: grant its leases with keys and keep them alive on one
    stream. Protocol on ``conn``: -> ("ready", info); <- ("window", start, end,
    stop); -> ("result", dict)."""
    try:
        conn.send(("result", asyncio.run(_keepalive_main(plan, conn))))
    except BaseException as e:  # the parent reports it
        conn.send(("error", f"{type(e).__name__}: {e}"))
    finally:
        conn.close()


async def _keepalive_main(
    plan: WorkerPlan, conn: multiprocessing.connection.Connection
) -> dict[str, Any]:
    channel = grpc.aio.insecure_channel(plan.endpoint)
    ops = LEASE_OPS[plan.server](channel)
    keeper = Keeper(ops, plan.ttl / 3, batch=plan.batch)
    try:
        await keeper.start()
        t0 = time.monotonic()
        granted_ttl, errors = await grant_with_keys(
            ops,
            keeper,
            count=plan.count,
            first=plan.first,
            ttl=plan.ttl,
            prefix=KEEP_PREFIX,
            concurrency=plan.concurrency,
        )
        conn.send(
            (
                "ready",
                {"granted_ttl": granted_ttl, "setup_s": time.monotonic() - t0, "errors": errors},
            )
        )
        while not conn.poll():
            await asyncio.sleep(0.05)
        _tag, start, end, stop = conn.recv()
        keeper.window = (start, end)
        await asyncio.sleep(max(0.0, start - time.monotonic()))
        cpu0 = self_cpu_s()
        await asyncio.sleep(max(0.0, end - time.monotonic()))
        cpu1 = self_cpu_s()
        await asyncio.sleep(max(0.0, stop - time.monotonic()))
        keeper._paused = True
        await keeper.drain()
        s = keeper.stats
        return {
            "leases": keeper.leases,
            "sent": s.sent,
            "answered": s.answered,
            "rtt_s": s.rtt_s,
            "send_late_p99_s": percentile(sorted(s.late_s), 0.99),
            "lost": s.lost,
            "out_of_order": s.out_of_order,
            "sent_total": s.sent_total,
            "answered_total": s.answered_total,
            "client_cpu_s": cpu1 - cpu0,
            "error": keeper.error,
        }
    finally:
        await keeper.stop()
        await channel.close(None)


async def keepalive_phase(
    adapter: Adapter, leader: str, roles: dict[str, str], args: argparse.Namespace
) -> dict[str, Any]:
    """N leases kept alive by ``args.clients`` processes; CPU, round trips, RSS."""
    ctx = multiprocessing.get_context("spawn")
    per = [args.leases // args.clients + (1 if i < args.leases % args.clients else 0)
           for i in range(args.clients)]  # fmt: skip
    procs: list[tuple[Any, multiprocessing.connection.Connection]] = []
    first = 0
    for i, count in enumerate(per):
        plan = WorkerPlan(
            server=adapter.name,
            endpoint=leader,
            first=first,
            count=count,
            ttl=args.ttl,
            concurrency=max(1, SETUP_CONCURRENCY // args.clients),
            batch=args.batch and adapter.name == MCP,
        )
        first += count
        parent_end, child_end = ctx.Pipe()
        proc = ctx.Process(
            target=keepalive_process, args=(plan, child_end), name=f"keepalive-{i}", daemon=True
        )
        proc.start()
        child_end.close()
        procs.append((proc, parent_end))
    out: dict[str, Any] = {"clients": args.clients, "leases": args.leases, "ttl_asked": args.ttl}
    try:
        t0 = time.monotonic()
        ready = [await asyncio.to_thread(_recv, c, "ready", READY_TIMEOUT_S) for _p, c in procs]
        out["setup_s"] = round(time.monotonic() - t0, 2)
        out["granted_ttl"] = ready[0]["granted_ttl"]
        out["setup_errors"] = dict(sum((Counter(r["errors"]) for r in ready), Counter()))
        period = out["granted_ttl"] / 3
        out["asked_per_s"] = args.leases / period
        start = time.monotonic() + period  # one renewal round of warm-up
        end = start + args.duration
        stop = end + 4.0  # RSS is read while the leases are kept alive
        for _p, c in procs:
            c.send(("window", start, end, stop))
        pids = adapter.pids()
        by_role = {role: pids[ep] for role, ep in roles.items()}
        await asyncio.sleep(max(0.0, start - time.monotonic()))
        cpu0 = {role: proc_cpu_s(pid) for role, pid in by_role.items()}
        load0 = os.getloadavg()[0]
        await asyncio.sleep(max(0.0, end - time.monotonic()))
        cpu1 = {role: proc_cpu_s(pid) for role, pid in by_role.items()}
        out["loadavg_1m"] = round((load0 + os.getloadavg()[0]) / 2, 2)
        readings = await asyncio.gather(*(memory_reading(adapter, roles[r]) for r in ROLES))
        out["rss_bytes"] = {r: m["rss"] for r, m in zip(ROLES, readings, strict=True)}
        results = [await asyncio.to_thread(_recv, c, "result", stop - time.monotonic() + 60)
                   for _p, c in procs]  # fmt: skip
    finally:
        for proc, c in procs:
            proc.join(10)
            if proc.is_alive():
                proc.kill()
                proc.join(5)
            c.close()
    errors = [r["error"] for r in results if r.get("error")]
    answered = sum(r["answered"] for r in results)
    rtts = sorted(x for r in results for x in r["rtt_s"])
    cpu = {role: cpu1[role] - cpu0[role] for role in ROLES}
    out.update(
        {
            "errors": errors,
            "sent": sum(r["sent"] for r in results),
            "answered": answered,
            "answered_per_s": answered / args.duration,
            "achieved_ratio": answered / args.duration / out["asked_per_s"],
            "rtt_p50_ms": percentile(rtts, 0.50) * 1000,
            "rtt_p99_ms": percentile(rtts, 0.99) * 1000,
            "rtt_max_ms": (rtts[-1] * 1000) if rtts else float("nan"),
            # how late renewals left after their due time: the worst client's p99
            "send_late_p99_ms": max(r["send_late_p99_s"] for r in results) * 1000,
            "lost": sum(r["lost"] for r in results),
            "out_of_order": sum(r["out_of_order"] for r in results),
            "leader_cpu_us_per_keepalive": cpu["leader"] / answered * 1e6 if answered else None,
            "cluster_cpu_us_per_keepalive": sum(cpu.values()) / answered * 1e6
            if answered
            else None,
            "member_cpu_cores": {role: cpu[role] / args.duration for role in ROLES},
            "client_cpu_cores": sum(r["client_cpu_s"] for r in results) / args.duration,
            "client_cpu_us_per_keepalive": sum(r["client_cpu_s"] for r in results) / answered * 1e6
            if answered
            else None,
        }
    )
    return out


def _recv(conn: multiprocessing.connection.Connection, tag: str, timeout_s: float) -> Any:
    if not conn.poll(max(0.1, timeout_s)):
        raise TimeoutError(f"no {tag!r} from a keepalive client after {timeout_s:.0f} s")
    got, payload = conn.recv()
    if got == "error":
        raise RuntimeError(f"keepalive client failed: {payload}")
    if got != tag:
        raise RuntimeError(f"keepalive client sent {got!r}, expected {tag!r}")
    return payload


# -- mass expiry ------------------------------------------------------------------------------
@dataclass
class Writer:
    """Puts at a fixed rate (open loop) to one endpoint; (send time, latency) of each."""

    ops: LeaseOps
    rate: float
    samples: list[tuple[float, float]] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)

    async def run(self, stop: asyncio.Event) -> None:
        in_flight: set[asyncio.Task[None]] = set()
        t_next = time.monotonic()
        seq = 0
        while not stop.is_set():
            now = time.monotonic()
            while t_next <= now and len(in_flight) < WRITER_IN_FLIGHT_MAX:
                seq += 1
                task = asyncio.create_task(self._one(WRITER_PREFIX + b"%08d" % seq))
                in_flight.add(task)
                task.add_done_callback(in_flight.discard)
                t_next += 1 / self.rate
            await asyncio.sleep(min(0.01, max(0.0, t_next - time.monotonic())))
        await asyncio.gather(*in_flight, return_exceptions=True)

    async def _one(self, key: bytes) -> None:
        t0 = time.monotonic()
        try:
            await self.ops.put(key, VALUE, 0, WRITER_TIMEOUT_S)
        except grpc.aio.AioRpcError as e:
            self.errors[e.code().name] += 1
            return
        self.samples.append((t0, time.monotonic() - t0))

    def between(self, start: float, end: float) -> dict[str, Any]:
        lat = sorted(d for t, d in self.samples if start <= t < end)
        return {
            "puts": len(lat),
            "p50_ms": percentile(lat, 0.50) * 1000,
            "p99_ms": percentile(lat, 0.99) * 1000,
            "max_ms": lat[-1] * 1000 if lat else float("nan"),
        }


async def expiry_phase(adapter: Adapter, leader: str, args: argparse.Namespace) -> dict[str, Any]:
    """M leases of the minimum TTL, renewed once more all at once, then left to expire."""
    out: dict[str, Any] = {"leases": args.expire_leases, "ttl_asked": args.expire_ttl}
    channel = grpc.aio.insecure_channel(leader)
    writer_channel = grpc.aio.insecure_channel(leader)
    ops = LEASE_OPS[adapter.name](channel)
    writer = Writer(LEASE_OPS[adapter.name](writer_channel), args.writer_rate)
    keeper = Keeper(ops, args.expire_ttl / 3)
    stop_writer = asyncio.Event()
    deleted = 0
    first_delete_t = math.nan
    all_deleted = asyncio.Event()
    all_deleted_t = math.nan
    created = asyncio.Event()

    async def watcher() -> None:
        nonlocal deleted, first_delete_t, all_deleted_t
        async for n in ops.watch_deletes(EXPIRE_PREFIX, created):
            t = time.monotonic()
            if deleted == 0:
                first_delete_t = t
            deleted += n
            if deleted >= args.expire_leases:
                all_deleted_t = t
                all_deleted.set()
                return

    tasks: list[asyncio.Task[None]] = []
    try:
        t_idle = time.monotonic()
        tasks.append(asyncio.create_task(writer.run(stop_writer)))
        tasks.append(asyncio.create_task(watcher()))
        await asyncio.wait_for(created.wait(), RPC_TIMEOUT_S)
        await asyncio.sleep(IDLE_BASELINE_S)
        t_setup = time.monotonic()
        await keeper.start()
        granted_ttl, errors = await grant_with_keys(
            ops,
            keeper,
            count=args.expire_leases,
            first=0,
            ttl=args.expire_ttl,
            prefix=EXPIRE_PREFIX,
            concurrency=SETUP_CONCURRENCY,
        )
        out["setup_s"] = round(time.monotonic() - t_setup, 2)
        out["setup_errors"] = errors
        out["granted_ttl"] = granted_ttl
        if deleted:
            raise RuntimeError(f"{deleted} keys expired during the set-up (a lease was lost)")
        t_last = await keeper.final_round()
        if keeper.stats.lost:
            raise RuntimeError(f"{keeper.stats.lost} leases lost before the last keepalive")
        await keeper.stop()  # no more keepalives: every lease now runs out
        cpu0 = {ep: proc_cpu_s(pid) for ep, pid in adapter.pids().items()}
        timeout = granted_ttl + 10 + args.expire_leases / 500 + EXPIRE_GRACE_S
        try:
            await asyncio.wait_for(all_deleted.wait(), timeout)
        except TimeoutError:
            raise RuntimeError(
                f"only {deleted} of {args.expire_leases} keys deleted {timeout:.0f} s after "
                "the last keepalive"
            ) from None
        cpu1 = {ep: proc_cpu_s(pid) for ep, pid in adapter.pids().items()}
        await asyncio.sleep(1.0)
        stop_writer.set()
        await tasks[0]
        left = await ops.count(EXPIRE_PREFIX)
        out.update(
            {
                "all_gone_s": all_deleted_t - t_last,
                "first_gone_s": first_delete_t - t_last,
                "spread_s": all_deleted_t - first_delete_t,
                "keys_left": left,
                "put_idle": writer.between(t_idle + 0.5, t_setup),
                "put_expiring": writer.between(t_last, all_deleted_t),
                "put_errors": dict(writer.errors),
                "cluster_cpu_cores_expiring": sum(cpu1[e] - cpu0[e] for e in cpu1)
                / max(1e-9, all_deleted_t - t_last),
                "writer_rate": args.writer_rate,
            }
        )
    finally:
        stop_writer.set()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await keeper.stop()
        await channel.close(None)
        await writer_channel.close(None)
    return out


# -- one run of one server --------------------------------------------------------------
async def bench_server(adapter: Adapter, run: int, args: argparse.Namespace) -> dict[str, Any]:
    result: dict[str, Any] = {"server": adapter.name, "run": run + 1}
    workdir = Path(tempfile.mkdtemp(prefix=f"leasebench-{adapter.name}-"))
    tagp = f"[{adapter.name} run {run + 1}]"
    try:
        t0 = time.perf_counter()
        await asyncio.to_thread(adapter.start, workdir)
        result["startup_s"] = round(time.perf_counter() - t0, 2)
        leader = await asyncio.to_thread(adapter.leader_endpoint)
        followers = [e for e in adapter.endpoints() if e != leader]
        roles = dict(zip(ROLES, [leader, *followers], strict=True))
        result["roles"] = roles
        result["term_start"] = await asyncio.to_thread(adapter.term)
        readings = await asyncio.gather(*(memory_reading(adapter, roles[r]) for r in ROLES))
        result["rss_empty_bytes"] = {r: m["rss"] for r, m in zip(ROLES, readings, strict=True)}
        if args.expire_leases:
            e = result["expiry"] = await expiry_phase(adapter, leader, args)
            log(
                f"{tagp} expiry of {args.expire_leases} leases (TTL {e['granted_ttl']} s): "
                f"all keys gone {e['all_gone_s']:.2f} s after the last keepalive (first "
                f"{e['first_gone_s']:.2f} s); put p50/p99 {e['put_expiring']['p50_ms']:.1f}/"
                f"{e['put_expiring']['p99_ms']:.1f} ms while expiring, "
                f"{e['put_idle']['p50_ms']:.1f}/{e['put_idle']['p99_ms']:.1f} ms idle"
            )
        if args.leases:
            k = result["keepalive"] = await keepalive_phase(adapter, leader, roles, args)
            log(
                f"{tagp} {args.leases} leases, TTL {k['granted_ttl']} s: "
                f"{k['answered_per_s']:.0f} keepalives/s answered of {k['asked_per_s']:.0f} "
                f"asked; RTT p50/p99 {k['rtt_p50_ms']:.2f}/{k['rtt_p99_ms']:.2f} ms; leader CPU "
                f"{k['leader_cpu_us_per_keepalive'] or math.nan:.0f} µs/keepalive, clients "
                f"{k['client_cpu_cores']:.2f} cores; RSS MiB "
                + " / ".join(f"{k['rss_bytes'][r] / MIB:.1f}" for r in ROLES)
                + (f"; ERRORS {k['errors']}" if k["errors"] else "")
            )
        result["term_end"] = await asyncio.to_thread(adapter.term)
    except Exception as e:  # one failed run must not lose the others
        common.record_failure(result, e, tagp, workdir, log)
    finally:
        await adapter.close_channels()
        await asyncio.to_thread(adapter.stop)
        await asyncio.to_thread(shutil.rmtree, workdir, True)
    return result


# -- summary ---------------------------------------------------------------------------
def _median(values: list[Any]) -> float:
    real = [v for v in values if isinstance(v, int | float) and not math.isnan(v)]
    return float(statistics.median(real)) if real else float("nan")


KEEPALIVE_METRICS = (
    "asked_per_s",
    "answered_per_s",
    "achieved_ratio",
    "rtt_p50_ms",
    "rtt_p99_ms",
    "send_late_p99_ms",
    "leader_cpu_us_per_keepalive",
    "cluster_cpu_us_per_keepalive",
    "client_cpu_cores",
    "client_cpu_us_per_keepalive",
    "granted_ttl",
    "setup_s",
    "loadavg_1m",
)
EXPIRY_METRICS = (
    "granted_ttl",
    "all_gone_s",
    "first_gone_s",
    "spread_s",
    "cluster_cpu_cores_expiring",
    "setup_s",
)


def summarize(runs: list[dict[str, Any]], server: str) -> dict[str, Any]:
    """Medians over the complete runs of ``server`` (each metric on its own)."""
    mine = [r for r in runs if r["server"] == server and "error" not in r]
    out: dict[str, Any] = {"runs": len(mine)}
    ka = [r["keepalive"] for r in mine if "keepalive" in r]
    if ka:
        k: dict[str, Any] = {m: _median([x.get(m) for x in ka]) for m in KEEPALIVE_METRICS}
        k["lost_total"] = sum(x["lost"] for x in ka)
        k["errors"] = [e for x in ka for e in x["errors"]]
        k["rss_bytes"] = {role: _median([x["rss_bytes"][role] for x in ka]) for role in ROLES}
        k["member_cpu_cores"] = {
            role: _median([x["member_cpu_cores"][role] for x in ka]) for role in ROLES
        }
        k["all_answered_per_s"] = [round(x["answered_per_s"]) for x in ka]
        k["rss_empty_bytes"] = {
            role: _median([r["rss_empty_bytes"][role] for r in mine]) for role in ROLES
        }
        k["leader_bytes_per_lease"] = _median(
            [
                (r["keepalive"]["rss_bytes"]["leader"] - r["rss_empty_bytes"]["leader"])
                / r["keepalive"]["leases"]
                for r in mine
                if "keepalive" in r
            ]
        )
        out["keepalive"] = k
    ex = [r["expiry"] for r in mine if "expiry" in r]
    if ex:
        e: dict[str, Any] = {m: _median([x.get(m) for x in ex]) for m in EXPIRY_METRICS}
        for phase in ("put_idle", "put_expiring"):
            e[phase] = {m: _median([x[phase][m] for x in ex]) for m in ("puts", "p50_ms", "p99_ms")}
        e["all_all_gone_s"] = [round(x["all_gone_s"], 2) for x in ex]
        e["keys_left_total"] = sum(x["keys_left"] for x in ex)
        e["put_errors"] = dict(sum((Counter(x["put_errors"]) for x in ex), Counter()))
        out["expiry"] = e
    return out


def _fmt(v: Any, digits: int = 0) -> str:
    if v is None or not isinstance(v, int | float) or math.isnan(v):
        return "—"
    return f"{v:,.{digits}f}"


def _ratio(a: Any, b: Any) -> str:
    if not isinstance(a, int | float) or not isinstance(b, int | float) or not b:
        return "—"
    return _fmt(a / b, 2)


def keepalive_lines(report: dict[str, Any]) -> list[str]:
    """The keepalive table (shared with bench/report.py)."""
    s = report["settings"]
    sm = report["summary"]
    batched = "; mcp-config batched, as its SDK sends them" if s.get("batch") else ""
    lines = [
        f"{s['leases']:,} leases x 1 key, TTL {s['ttl']} s, renewed every TTL/3 on "
        f"{s['clients']} keepalive stream(s) to the leader (one client process each{batched}), "
        f"{s['duration_s']:g} s measured (median of {s['runs']}):",
        "",
        "| | mcp-config | etcd | mcp-config / etcd |",
        "|---|---:|---:|---:|",
    ]
    rows: list[tuple[str, str, int]] = [
        ("keepalives/s asked", "asked_per_s", 0),
        ("keepalives/s answered", "answered_per_s", 0),
        ("round trip p50, ms", "rtt_p50_ms", 2),
        ("round trip p99, ms", "rtt_p99_ms", 2),
        ("leader CPU per keepalive, µs", "leader_cpu_us_per_keepalive", 0),
        ("cluster CPU per keepalive, µs", "cluster_cpu_us_per_keepalive", 0),
        ("client CPU per keepalive, µs", "client_cpu_us_per_keepalive", 0),
    ]
    ours = sm.get(MCP, {}).get("keepalive", {})
    theirs = sm.get(ETCD, {}).get("keepalive", {})
    for name, m, d in rows:
        lines.append(
            f"| {name} | {_fmt(ours.get(m), d)} | {_fmt(theirs.get(m), d)} "
            f"| {_ratio(ours.get(m), theirs.get(m))} |"
        )
    for role in ROLES:
        a = (ours.get("member_cpu_cores") or {}).get(role)
        b = (theirs.get("member_cpu_cores") or {}).get(role)
        lines.append(f"| {role} CPU, cores | {_fmt(a, 2)} | {_fmt(b, 2)} | {_ratio(a, b)} |")
    for role in ROLES:
        a0 = (ours.get("rss_empty_bytes") or {}).get(role)
        b0 = (theirs.get("rss_empty_bytes") or {}).get(role)
        a = (ours.get("rss_bytes") or {}).get(role)
        b = (theirs.get("rss_bytes") or {}).get(role)
        lines.append(
            f"| {role} RSS with the leases (empty), MiB | {_fmt(_mib(a), 1)} ({_fmt(_mib(a0), 1)}) "
            f"| {_fmt(_mib(b), 1)} ({_fmt(_mib(b0), 1)}) | {_ratio(a, b)} |"
        )
    lines.append(
        f"| leader RSS per lease (incl. its key), B | {_fmt(ours.get('leader_bytes_per_lease'))} "
        f"| {_fmt(theirs.get('leader_bytes_per_lease'))} "
        f"| {_ratio(ours.get('leader_bytes_per_lease'), theirs.get('leader_bytes_per_lease'))} |"
    )
    lines.append(
        f"| renewals answered TTL 0 (lease gone) / stream errors | {ours.get('lost_total', '—')} / "
        f"{len(ours.get('errors', []))} | {theirs.get('lost_total', '—')} / "
        f"{len(theirs.get('errors', []))} | |"
    )
    return lines


def expiry_lines(report: dict[str, Any]) -> list[str]:
    """The expiry table (shared with bench/report.py)."""
    s = report["settings"]
    sm = report["summary"]
    ours = sm.get(MCP, {}).get("expiry", {})
    theirs = sm.get(ETCD, {}).get("expiry", {})
    lines = [
        f"{s['expire_leases']:,} leases x 1 key, TTL {s['expire_ttl']} s asked, renewed once "
        "all at once and then left to expire; a writer puts "
        f"{s['writer_rate']:g} keys/s to the leader meanwhile (median of {s['runs']}):",
        "",
        "| | mcp-config | etcd | mcp-config / etcd |",
        "|---|---:|---:|---:|",
    ]
    rows: list[tuple[str, tuple[str, ...], int]] = [
        ("TTL granted, s", ("granted_ttl",), 0),
        ("last keepalive → every key gone, s", ("all_gone_s",), 2),
        ("last keepalive → first key gone, s", ("first_gone_s",), 2),
        ("put p50 while expiring, ms", ("put_expiring", "p50_ms"), 2),
        ("put p99 while expiring, ms", ("put_expiring", "p99_ms"), 2),
        ("put p50 on the idle cluster, ms", ("put_idle", "p50_ms"), 2),
        ("put p99 on the idle cluster, ms", ("put_idle", "p99_ms"), 2),
        ("cluster CPU while expiring, cores", ("cluster_cpu_cores_expiring",), 2),
    ]
    for name, path, d in rows:
        a, b = _dig(ours, *path), _dig(theirs, *path)
        lines.append(f"| {name} | {_fmt(a, d)} | {_fmt(b, d)} | {_ratio(a, b)} |")
    per_run = [
        ", ".join(_fmt(v, 2) for v in x.get("all_all_gone_s", [])) or "—" for x in (ours, theirs)
    ]
    lines.append(f"| every key gone, per run, s | {per_run[0]} | {per_run[1]} | |")
    return lines


def _dig(d: Any, *path: str) -> Any:
    for p in path:
        if not isinstance(d, dict):
            return None
        d = d.get(p)
    return d


def _mib(v: Any) -> float | None:
    return v / MIB if isinstance(v, int | float) and not math.isnan(v) else None


def render_markdown(report: dict[str, Any]) -> str:
    s = report["settings"]
    m = report["machine"]
    lines = [
        f"# Lease benchmark — {report['date']}",
        "",
        f"- {s['runs']} run(s) per server, each on a fresh 3-member cluster on 127.0.0.1; "
        "servers alternate (never run at once); median over runs. Each run measures the "
        "expiry first (idle cluster), then the keepalives.",
        f"- Machine: {m['cpus']} CPUs, shared and noisy; load average {m['loadavg_start']} at "
        f"start, {m['loadavg_end']} at end.",
        f"- Versions: {', '.join(f'{k} {v}' for k, v in report['versions'].items())}.",
    ]
    for server, reason in report["skipped"].items():
        lines.append(f"- **{server} skipped**: {reason}")
    if s["leases"]:
        lines += ["", "## Keepalives", "", *keepalive_lines(report)]
    if s["expire_leases"]:
        lines += ["", "## Expiry", "", *expiry_lines(report)]
    lines += [
        "",
        "## Runs",
        "",
        "| server | run | keepalives/s answered / asked | RTT p50 / p99 ms | leader µs "
        "per keepalive | clients, cores | load 1m | every key gone s | Raft term | note |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    for r in report["runs"]:
        k = r.get("keepalive") or {}
        e = r.get("expiry") or {}
        note = r.get("error", "") or "; ".join(k.get("errors") or [])
        lines.append(
            f"| {r['server']} | {r['run']} | {_fmt(k.get('answered_per_s'))} / "
            f"{_fmt(k.get('asked_per_s'))} | {_fmt(k.get('rtt_p50_ms'), 2)} / "
            f"{_fmt(k.get('rtt_p99_ms'), 2)} | {_fmt(k.get('leader_cpu_us_per_keepalive'))} "
            f"| {_fmt(k.get('client_cpu_cores'), 2)} | {_fmt(k.get('loadavg_1m'), 2)} "
            f"| {_fmt(e.get('all_gone_s'), 2)} "
            f"| {r.get('term_start', '—')} → {r.get('term_end', '—')} | {note} |"
        )
    lines.append("")
    return "\n".join(lines)


# -- main -------------------------------------------------------------------------------
def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m bench.lease_bench",
        description="Lease keepalives and mass expiry, mcp-config and etcd (issue #14).",
    )
    p.add_argument("--servers", default=",".join(ADAPTERS), help="comma-separated servers")
    p.add_argument("--runs", type=int, default=3, help="fresh clusters per server (3)")
    p.add_argument("--leases", type=int, default=10_000, help="leases kept alive (10000; 0 = skip)")
    p.add_argument("--ttl", type=int, default=10, help="TTL of the kept-alive leases, s (10)")
    p.add_argument("--duration", type=float, default=60.0, help="measured keepalive seconds (60)")
    p.add_argument("--clients", type=int, default=2, help="keepalive client processes (2)")
    p.add_argument(
        "--batch",
        action="store_true",
        help="mcp-config only: renew the leases due together with one batched message "
        "(LeaseKeepAliveRequest.ids, as the SDK does) instead of one message each",
    )
    p.add_argument(
        "--expire-leases", type=int, default=1000, help="leases left to expire (1000; 0 = skip)"
    )
    p.add_argument("--expire-ttl", type=int, default=2, help="their TTL, s (2: both minimums)")
    p.add_argument("--writer-rate", type=float, default=100.0, help="puts/s while expiring (100)")
    p.add_argument("--etcd-bin", default="etcd")
    p.add_argument("--out-dir", type=Path, default=DEFAULT_OUT)
    p.add_argument("--no-save", action="store_true", help="print the tables, write no files")
    p.add_argument(
        "--from-json",
        type=Path,
        default=None,
        help="re-render the .md next to a saved <date>-lease.json; run nothing",
    )
    p.add_argument(
        "--smoke",
        action="store_true",
        help="quick check: 1 run, 200 leases for 10 s, 100 expiring, no save",
    )
    args = p.parse_args(argv)
    parse_servers(p, args)
    if args.smoke:
        args.runs, args.duration = 1, min(args.duration, 10.0)
        args.leases, args.expire_leases = min(args.leases, 200), min(args.expire_leases, 100)
        args.no_save = True
    if not (1 <= args.runs <= 20) or not (0 <= args.leases <= 10_000):
        p.error("--runs must be in 1..20, --leases in 0..10000 (mcp-config's LEASES_MAX)")
    if not (0 <= args.expire_leases <= 10_000) or not (1 <= args.clients <= 16):
        p.error("--expire-leases must be in 0..10000, --clients in 1..16")
    if args.leases and args.leases < args.clients:
        p.error("--leases must be at least --clients")
    if not (3 <= args.ttl <= 3600) or not (1 <= args.expire_ttl <= 60):
        p.error("--ttl must be in 3..3600, --expire-ttl in 1..60")
    if not (1 <= args.duration <= 3600) or not (1 <= args.writer_rate <= 5000):
        p.error("--duration must be in 1..3600, --writer-rate in 1..5000")
    return args


def make_adapters(args: argparse.Namespace) -> list[Adapter]:
    return common.make_adapters(args, log, etcd_pprof=True)


async def bench(args: argparse.Namespace, adapters: list[Adapter]) -> dict[str, Any]:
    report: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d"),
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": {"cpus": os.cpu_count(), "loadavg_start": _loadavg()},
        "versions": _versions(adapters),
        "settings": {
            "servers": args.servers,
            "runs": args.runs,
            "leases": args.leases,
            "ttl": args.ttl,
            "duration_s": args.duration,
            "clients": args.clients,
            "batch": args.batch,
            "expire_leases": args.expire_leases,
            "expire_ttl": args.expire_ttl,
            "writer_rate": args.writer_rate,
            "value_bytes": len(VALUE),
        },
        "skipped": args.skipped,
        "runs": [],
    }
    for run in range(args.runs):
        order = adapters if run % 2 == 0 else list(reversed(adapters))
        for adapter in order:
            report["runs"].append(await bench_server(adapter, run, args))
    report["finished_at"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    report["machine"]["loadavg_end"] = _loadavg()
    report["summary"] = {a.name: summarize(report["runs"], a.name) for a in adapters}
    return report


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    report = common.run_and_save(
        args, "lease", lambda: make_adapters(args), bench, render_markdown, log
    )
    if report is None:
        return 0
    ran = [r for r in report["runs"] if "error" not in r]
    return 0 if ran else 1


if __name__ == "__main__":
    raise SystemExit(main())
