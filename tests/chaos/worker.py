"""``python -m tests.chaos.worker RUN_DIR``: every client call of a chaos run.

The test process never talks to the cluster itself: with namespaces it must
not (an address of a namespace host, dialled from the root namespace, leaves
the machine), so the worker runs inside the harness namespace
(``ip netns exec <harness> python -m tests.chaos.worker ...``); on loopback
it runs as a plain subprocess, the same code either way.

Protocol: one JSON object per line on stdin (``{"id": n, "cmd": ..., ...}``),
one answer per line on stdout (``{"id": n, "ok": true, "result": ...}`` or
``{"ok": false, "error": ...}``); logs go to stderr. Commands run one at a
time; the workload's clients and watchers run on threads meanwhile. Files
written into RUN_DIR: ``history.jsonl`` (ops), ``watches.jsonl`` (streams),
``reference.jsonl`` (the reference stream), ``final.json``.

``WorkerProcess`` is the test process's side: start, ``call`` with a
deadline, stop.

Safety: before dialling any non-loopback endpoint the worker checks that its
namespace has no default route, so a mistake fails here ("Network is
unreachable") instead of sending traffic off the machine.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import os
import queue
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, Any

import grpc

from mcpctl._proto.mcp.v1 import kv_pb2 as kv
from mcpctl._proto.mcp.v1 import kv_pb2_grpc as kv_grpc
from mcpctl.client import Client
from mcpctl.errors import ERROR_KIND_KEY, McpError
from tests.chaos.checks import record_to_json, state_digest
from tests.chaos.history import History, Op, OpType, Result
from tests.chaos.leases import (
    LEASE_PREFIX,
    LeaseOpKind,
    LeaseOwner,
    LeaseReader,
    LeaseRecorder,
    Registry,
)
from tests.chaos.workload import (
    BURST_CLIENT,
    FINAL_CLIENT,
    PROBE_CLIENT_BASE,
    Workload,
    WorkloadSpec,
    key_name,
    run_op,
)
from tests.leaseclient import LeaseClient
from tests.watchcheck import StreamRecord, trailers, wait_all_covered

POLL_S = 0.05
STATUS_TIMEOUT_S = 1.0
CALL_TIMEOUT_S_DEFAULT = 60.0
BURST_ATTEMPTS_MAX = 20
BURST_WRITE_TIMEOUT_S = 10.0
REFERENCE_PROGRESS_MS = 200
PROBE_THREADS = 4
PROBE_STATUS_S = 0.1
# The TTL of the lease that lease_probe_unknown grants (it is never kept alive).
TTL_PROBE_S = 10
# After the lease workload stops, every lease key must expire within this:
# TTL (3 s) + a new leader's grace (4 s) + margin for a leader change and load.
LEASE_DRAIN_S = 30.0


class WorkerError(Exception):
    """A command failed in the worker (its message says why)."""


# ================================================================ the worker
def _has_default_route() -> bool:
    with open("/proc/net/route") as f:
        next(f, None)
        return any(line.split()[1] == "00000000" for line in f if len(line.split()) > 1)


def _check_safe(endpoints: Sequence[str]) -> None:
    for e in endpoints:
        host = e.rpartition(":")[0].strip("[]")
        if not ipaddress.ip_address(host).is_loopback and _has_default_route():
            raise WorkerError(
                f"refusing to dial {e}: this namespace has a default route (run the worker "
                "in the harness namespace)"
            )


def _wait(what: str, check: Callable[[], Any], timeout_s: float) -> Any:
    deadline = time.monotonic() + timeout_s
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            got = check()
            if got:
                return got
        except (McpError, OSError) as e:
            last = e
        time.sleep(POLL_S)
    raise WorkerError(f"timed out after {timeout_s:.0f}s waiting for {what} (last error: {last})")


class Worker:
    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        self.history = History()
        self.members: dict[str, str] = {}
        self.workload: Workload | None = None
        self.probes = 0
        # Lease owners and pollers started one by one (the lease partition test).
        self.lease_recorder = LeaseRecorder()
        self.lease_owners: dict[str, LeaseOwner] = {}
        self.lease_pollers: list[LeaseReader] = []

    # -- commands ---------------------------------------------------------
    def cmd_members(self, endpoints: dict[str, str]) -> None:
        _check_safe(list(endpoints.values()))
        self.members = dict(endpoints)

    def cmd_start(self, spec: dict[str, Any]) -> None:
        assert self.workload is None, "the workload is already running"
        workload_spec = WorkloadSpec.of(spec)
        _check_safe(list(workload_spec.endpoints.values()))
        self.workload = Workload(workload_spec, self.history)
        self.workload.start()

    def _status(self, name: str) -> dict[str, Any]:
        endpoint = self.members[name]
        try:
            with Client([endpoint], timeout=STATUS_TIMEOUT_S, attempts_max=1) as c:
                st = c.status(endpoint)
        except McpError as e:
            return {"error": e.message[:200]}
        return {
            "role": st.role,
            "leader": st.leader,
            "term": st.term,
            "revision": st.revision,
            "commit_index": st.commit_index,
            "applied_index": st.applied_index,
            "last_contact_ms": st.last_contact_ms,
        }

    def cmd_status(self, names: list[str]) -> dict[str, Any]:
        return {n: self._status(n) for n in names}

    def cmd_kv(
        self, name: str, key: str, value: str | None, serializable: bool, timeout_s: float
    ) -> dict[str, Any]:
        """One put (``value`` given) or get on ``name`` alone: its revision, or the value
        read (None: no such key), or the error code."""
        with Client([self.members[name]], timeout=timeout_s, attempts_max=1) as c:
            try:
                if value is not None:
                    return {"revision": c.put(key, value).revision}
                got = c.get(key, serializable=serializable).first
            except McpError as e:
                return {"error": e.code}
        return {"value": got.text if got is not None else None}

    def cmd_wait_leader(self, names: list[str], timeout_s: float) -> str:
        def agreed() -> str | None:
            views = [self._status(n) for n in names]
            leaders = {v.get("leader") for v in views}
            if len(leaders) != 1:
                return None
            leader = leaders.pop()
            if leader not in names:
                return None
            me = views[names.index(leader)]
            return str(leader) if me.get("role") == "leader" else None

        result: str = _wait(f"one leader agreed by {names}", agreed, timeout_s)
        return result

    def cmd_wait_ready(self, names: list[str], timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        for name in names:

            def ok(name: str = name) -> bool:
                with Client([self.members[name]], timeout=1.0, attempts_max=1) as c:
                    c.get("/", prefix=True, count_only=True)
                return True

            _wait(f"{name} to serve linearizable reads", ok, max(0.1, deadline - time.monotonic()))

    def cmd_wait_write(self, since: float, timeout_s: float) -> float | None:
        """The completion time of the first acknowledged write invoked at ``since`` or later."""

        def found() -> float | None:
            done = [op.complete for op in self.history.ops if op.wrote and op.invoke >= since]
            return min(done) if done else None

        try:
            result: float = _wait("an acknowledged write", found, timeout_s)
        except WorkerError:
            return None
        return result

    def cmd_wait_ops(self, count: int, timeout_s: float) -> int:
        """Wait until ``count`` more ops completed (any result); returns how many did."""
        start = len(self.history)
        deadline = time.monotonic() + timeout_s
        while len(self.history) - start < count and time.monotonic() < deadline:
            time.sleep(POLL_S)
        return len(self.history) - start

    def cmd_probe(self, name: str, duration_s: float, op_timeout_s: float) -> list[dict[str, Any]]:
        """What a cut-off member does: for ``duration_s``, writes and linearizable reads
        pinned to ``name`` on three threads (recorded as ops), and its own status
        every ``PROBE_STATUS_S`` (returned)."""
        deadline = time.monotonic() + duration_s
        stop = threading.Event()

        def probe(client_id: int) -> None:
            with Client([self.members[name]], timeout=op_timeout_s, attempts_max=1) as c:
                for seq in range(1, 10_000):
                    if time.monotonic() >= deadline:
                        return
                    key = key_name(seq % 2)
                    if client_id % 2:
                        op = run_op(c, client_id, OpType.GET, key, timeout_s=op_timeout_s)
                    else:
                        value = f"p{client_id}-{seq}"
                        op = run_op(
                            c, client_id, OpType.PUT, key, value=value, timeout_s=op_timeout_s
                        )
                    self.history.add(op)

        threads = []
        for _ in range(PROBE_THREADS):
            self.probes += 1
            t = threading.Thread(target=probe, args=(PROBE_CLIENT_BASE + self.probes,), daemon=True)
            t.start()
            threads.append(t)
        seen: list[dict[str, Any]] = []
        while time.monotonic() < deadline and len(seen) < 10_000:
            seen.append({"t": time.monotonic(), **self._status(name)})
            stop.wait(PROBE_STATUS_S)
        for t in threads:
            t.join(op_timeout_s + 5)
        return seen

    # -- leases, one owner at a time (tests/chaos/test_lease_partition.py) -----------
    def cmd_lease_hold(self, name: str, ttl: int, keys: int, op_timeout_s: float = 3.0) -> None:
        """An owner that grants a ``ttl`` lease, attaches ``keys`` keys
        (``tests.chaos.leases.lease_key(name, 1, i)``) and keeps it alive every
        ttl/3 on whichever member leads, until silenced or stopped."""
        assert name not in self.lease_owners, name
        owner = LeaseOwner(
            name,
            "keep",
            list(self.members.values()),
            self.lease_recorder,
            Registry(),
            seed=name,
            ttls=(ttl,),
            keys=keys,
            op_timeout_s=op_timeout_s,
        )
        self.lease_owners[name] = owner
        owner.start()

    def cmd_lease_wait(self, name: str, renewals: int, since: float, timeout_s: float) -> float:
        """Wait until ``name`` got ``renewals`` successful keepalive answers to
        keepalives sent at ``since`` or later; returns the last one's completion."""

        def renewed() -> float | None:
            got = [
                op.complete
                for op in self.lease_recorder.ops
                if op.owner == name and op.renewed and op.invoke >= since
            ]
            return got[renewals - 1] if len(got) >= renewals else None

        result: float = _wait(f"{renewals} keepalives of {name}", renewed, timeout_s)
        return result

    def cmd_lease_probe_unknown(self, grant_on: list[str], ask: str, timeout_s: float) -> str:
        """Grant a lease through whichever of ``grant_on`` leads, then send one
        keepalive for it to ``ask`` (a member that cannot know it, e.g. a leader
        cut off before the grant). Returns what ``ask`` said: ``ttl=N`` or the
        error's kind."""

        def grant() -> int | None:
            for name in grant_on:
                try:
                    return int(client.grant(TTL_PROBE_S, endpoint=self.members[name]).id)
                except McpError:
                    continue
            return None

        names = [*grant_on, ask]
        with LeaseClient([self.members[n] for n in names], timeout_s=1.0) as client:
            lease_id: int = _wait(f"a lease granted through {grant_on}", grant, timeout_s)
            try:
                (answer,) = client.keepalive_once(self.members[ask], [lease_id], timeout_s=2.0)
            except McpError as e:
                return type(e).__name__
        return f"ttl={answer.ttl}"

    def cmd_lease_silence(self, name: str) -> float:
        """The owner stops keeping its lease alive (a dead owner); returns when."""
        self.lease_owners[name].silenced.set()
        return time.monotonic()

    def cmd_lease_poll(self, keys: list[str], names: list[str], interval_s: float) -> None:
        """Linearizable reads of ``keys`` pinned to each of ``names``, every ``interval_s``."""
        registry = Registry()
        for key in keys:
            registry.add(key, 0)
        for name in names:
            poller = LeaseReader(
                f"poll-{name}",
                [self.members[name]],
                self.lease_recorder,
                registry,
                seed=f"poll-{name}",
                op_timeout_s=1.0,
                think_s=interval_s / 2,
                serializable_share=0.0,
                pinned=True,
            )
            self.lease_pollers.append(poller)
            poller.start()

    def cmd_lease_wait_gone(self, key: str, since: float, timeout_s: float) -> dict[str, Any]:
        """The first poll, invoked at ``since`` or later, that read ``key`` absent."""

        def gone() -> dict[str, Any] | None:
            for op in self.lease_recorder.ops:
                if (
                    op.kind is LeaseOpKind.READ
                    and op.key == key
                    and op.result is Result.OK
                    and op.value is None
                    and op.invoke >= since
                ):
                    return {"complete": op.complete, "member": op.member, "revision": op.revision}
            return None

        result: dict[str, Any] = _wait(f"a read of {key} absent", gone, timeout_s)
        return result

    def cmd_lease_stop(self, timeout_s: float) -> list[str]:
        """Stop every owner and poller; returns every lease op as JSON lines."""
        actors = [*self.lease_owners.values(), *self.lease_pollers]
        for actor in actors:
            actor.stop()
        deadline = time.monotonic() + timeout_s
        for actor in actors:
            actor.join(max(0.1, deadline - time.monotonic()))
        errors = [f"{a.name}: {a.error!r}" for a in actors if a.error]
        if errors:
            raise WorkerError("lease actors failed: " + "; ".join(errors))
        return [op.to_json() for op in self.lease_recorder.ops]

    def cmd_key_history(self, name: str, key: str, prefix: bool) -> list[list[Any]]:
        """[revision, event type, identity, key] of ``key``'s history on ``name``, oldest first."""
        with Client([self.members[name]], timeout=5.0, attempts_max=1) as c:
            resp = c.history(key, prefix=prefix)
        return [
            [e.revision, e.event.type, e.identity, e.event.kv.key] for e in reversed(resp.entries)
        ]

    def cmd_ops(self, since: float) -> list[str]:
        """Every op invoked at ``since`` or later, as ``Op.to_json`` lines."""
        return [op.to_json() for op in self.history.ops if op.invoke >= since]

    def cmd_member_add(self, name: str, raft: str, client: str, timeout_s: float) -> list[str]:
        _check_safe([client])
        with Client(list(self.members.values()), timeout=timeout_s) as c:
            members = c.member_add(name, raft, client, timeout=timeout_s)
        self.members[name] = client
        return [m.name for m in members]

    def cmd_member_remove(self, name: str, timeout_s: float) -> list[str]:
        others = [e for n, e in self.members.items() if n != name]
        with Client(others, timeout=timeout_s) as c:
            members = c.member_remove(name, timeout=timeout_s)
        self.members.pop(name, None)
        return [m.name for m in members]

    def cmd_burst(self, total: int, concurrency: int, names: list[str]) -> dict[str, int]:
        endpoints = [self.members[n] for n in names]
        ops = asyncio.run(_burst(endpoints, total, concurrency))
        for op in ops:
            self.history.add(op)
        counts: dict[str, int] = {}
        for op in ops:
            counts[op.result.value] = counts.get(op.result.value, 0) + 1
        return counts

    def cmd_stop(self, timeout_s: float) -> int:
        if self.workload is not None:
            self.workload.stop_clients(timeout_s)
        return len(self.history)

    def cmd_finish(self, names: list[str], keys: int, timeout_s: float) -> dict[str, Any]:
        """After recovery: final reads, every member's state, the reference, the streams."""
        deadline = time.monotonic() + timeout_s

        def left() -> float:
            return max(0.5, deadline - time.monotonic())

        endpoints = [self.members[n] for n in names]
        with Client(endpoints, timeout=5.0) as c:
            drained = self._drain_leases(c, min(LEASE_DRAIN_S, left()))
            final: int = _wait(
                "a linearizable read of the final revision",
                lambda: c.get("/", prefix=True, count_only=True).header.revision,
                left(),
            )
            for i in range(keys):  # final reads: part of the linearizability check
                op = run_op(c, FINAL_CLIENT, OpType.GET, key_name(i), timeout_s=5.0)
                self.history.add(op)
            members = {n: self._final_state(n, final, left()) for n in names}
            reference = self._reference(c, final, left())
        if self.workload is not None:
            roaming = self.workload.roaming_watchers
            try:
                wait_all_covered(roaming, final, left())
            finally:
                self.workload.close()
        self.history.dump(self.run_dir / "history.jsonl")
        if self.workload is not None and self.workload.leases is not None:
            self.workload.leases.recorder.dump(self.run_dir / "leases.jsonl")
        records = self.workload.records if self.workload is not None else []
        with open(self.run_dir / "watches.jsonl", "w") as f:
            for r in records:
                f.write(record_to_json(r) + "\n")
        with open(self.run_dir / "reference.jsonl", "w") as f:
            f.write(record_to_json(reference) + "\n")
        result = {"revision": final, "members": members, "lease_drain_s": drained}
        (self.run_dir / "final.json").write_text(json.dumps(result))
        return result

    def _drain_leases(self, client: Client, timeout_s: float) -> float | None:
        """With the lease workload stopped, wait until every lease key expired, so
        no expiry writes a revision after the final one; returns how long that
        took (None: not within ``timeout_s``, or no lease workload)."""
        if self.workload is None or self.workload.leases is None:
            return None
        start = time.monotonic()

        def drained() -> bool:
            return client.get(LEASE_PREFIX, prefix=True, count_only=True).count == 0

        try:
            _wait("every lease key to expire", drained, timeout_s)
        except WorkerError:
            return None
        return time.monotonic() - start

    def _final_state(self, name: str, final: int, timeout_s: float) -> dict[str, Any]:
        endpoint = self.members[name]
        with Client([endpoint], timeout=5.0, attempts_max=1) as c:

            def caught_up() -> bool:
                return (
                    c.get("/", prefix=True, serializable=True, count_only=True).header.revision
                    >= final
                )

            _wait(f"{name} to apply revision {final}", caught_up, timeout_s)
            got = c.get("", prefix=True, serializable=True, timeout=30.0)
        assert not got.more, "the final state does not fit one range answer"
        items = [(kv_.key, kv_.text, kv_.mod_revision) for kv_ in got.kvs]
        return {"revision": got.header.revision, "digest": state_digest(items), "keys": len(items)}

    def _reference(self, client: Client, final: int, timeout_s: float) -> StreamRecord:
        record = StreamRecord("reference", "", prefix=True, start_revision=1)
        stream = client.watch(
            "",
            prefix=True,
            start_revision=1,
            progress_notify=True,
            progress_interval_ms=REFERENCE_PROGRESS_MS,
        )
        timer = threading.Timer(timeout_s, stream.close)
        timer.daemon = True
        timer.start()
        try:
            with stream:
                for batch in stream:
                    record.add_batch(batch)
                    if record.covered >= final:
                        break
        except McpError as e:
            record.finish(e)
        finally:
            timer.cancel()
        return record

    # -- the loop -----------------------------------------------------------
    def serve(self, stdin: IO[str], stdout: IO[str]) -> None:
        for line in stdin:
            if not line.strip():
                continue
            msg = json.loads(line)
            cmd = msg.pop("cmd")
            ident = msg.pop("id")
            if cmd == "exit":
                self.close()
                stdout.write(json.dumps({"id": ident, "ok": True, "result": None}) + "\n")
                stdout.flush()
                return
            try:
                result = getattr(self, f"cmd_{cmd}")(**msg)
                answer = {"id": ident, "ok": True, "result": result}
            except Exception as e:
                answer = {"id": ident, "ok": False, "error": f"{type(e).__name__}: {e}"}
            stdout.write(json.dumps(answer) + "\n")
            stdout.flush()
        self.close()

    def close(self) -> None:
        if self.workload is not None:
            self.workload.close()
        for actor in [*self.lease_owners.values(), *self.lease_pollers]:
            actor.stop()


async def _burst(endpoints: list[str], total: int, concurrency: int) -> list[Op]:
    """``total`` puts of unique keys under /burst/, each retried (same request id) on
    other members; each one's outcome recorded."""
    channels = [grpc.aio.insecure_channel(e) for e in endpoints]
    stubs = [kv_grpc.KVStub(ch) for ch in channels]
    ops: list[Op] = []
    indexes = iter(range(total))
    retry = {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
    }

    async def one(w: int, i: int) -> Op:
        key, value = f"/burst/{i}", f"b{i}"
        req = kv.PutRequest(key=key.encode(), value=value.encode(), request_id=uuid.uuid4().hex)
        invoke = time.monotonic()
        maybe = False
        error = ""
        for attempt in range(BURST_ATTEMPTS_MAX):
            try:
                resp = await stubs[(w + attempt) % len(stubs)].Put(
                    req, timeout=BURST_WRITE_TIMEOUT_S
                )
            except grpc.aio.AioRpcError as e:
                kind = trailers(e).get(ERROR_KIND_KEY, "")
                error = str(kind) or e.code().name.lower()
                maybe = (
                    maybe
                    or e.code() == grpc.StatusCode.DEADLINE_EXCEEDED
                    or kind == "outcome_unknown"
                    or (
                        e.code() == grpc.StatusCode.UNAVAILABLE
                        and not kind
                        and "failed to connect" not in (e.details() or "")
                    )
                )
                if e.code() not in retry:
                    break
                await asyncio.sleep(0.05 * (attempt + 1))
                continue
            return Op(
                BURST_CLIENT,
                OpType.PUT,
                key,
                invoke,
                time.monotonic(),
                Result.OK,
                value=value,
                revision=resp.header.revision,
                member=resp.header.member_name,
            )
        result = Result.UNKNOWN if maybe else Result.FAIL
        return Op(
            BURST_CLIENT,
            OpType.PUT,
            key,
            invoke,
            time.monotonic(),
            result,
            value=value,
            error=error,
        )

    async def worker(w: int) -> None:
        for i in indexes:
            ops.append(await one(w, i))

    try:
        await asyncio.gather(*(worker(w) for w in range(concurrency)))
    finally:
        for ch in channels:
            await ch.close(None)
    return ops


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1:
        print("usage: python -m tests.chaos.worker RUN_DIR", file=sys.stderr)
        return 2
    worker = Worker(Path(args[0]))
    worker.serve(sys.stdin, sys.stdout)
    return 0


# ========================================================== the test's side
class WorkerProcess:
    """The worker as seen from the test process: JSON lines over pipes, each call
    with its own deadline."""

    def __init__(self, run_dir: Path, prefix: Sequence[str] = ()) -> None:
        self.run_dir = run_dir
        self._log = open(run_dir / "worker.log", "ab")  # noqa: SIM115 - closed in stop()
        env = {k: v for k, v in os.environ.items() if not k.startswith("MCP_")}
        env["PYTHONPATH"] = str(Path(__file__).resolve().parents[2])
        self.proc = subprocess.Popen(
            [*prefix, sys.executable, "-m", "tests.chaos.worker", str(run_dir)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
            env=env,
            cwd=str(Path(__file__).resolve().parents[2]),
        )
        self._answers: queue.Queue[str | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, name="worker stdout", daemon=True)
        self._reader.start()
        self._next = 0

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._answers.put(line)
        self._answers.put(None)

    def call(self, cmd: str, *, deadline_s: float | None = None, **args: Any) -> Any:
        """Run one command; wait at most ``deadline_s`` (default: the command's own
        ``timeout_s`` plus a margin, or ``CALL_TIMEOUT_S_DEFAULT``)."""
        assert self.proc.stdin is not None
        if deadline_s is None:
            own = args.get("timeout_s")
            deadline_s = float(own) + 30 if own is not None else CALL_TIMEOUT_S_DEFAULT
        timeout_s = deadline_s
        self._next += 1
        ident = self._next
        self.proc.stdin.write(json.dumps({"id": ident, "cmd": cmd, **args}) + "\n")
        self.proc.stdin.flush()
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                line = self._answers.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                raise TimeoutError(f"worker: no answer to {cmd} within {timeout_s:.0f}s") from None
            if line is None:
                raise WorkerError(
                    f"worker exited (code {self.proc.poll()}); see {self.run_dir}/worker.log"
                )
            answer = json.loads(line)
            if answer["id"] != ident:
                continue  # an answer to a call that timed out earlier
            if not answer["ok"]:
                raise WorkerError(f"{cmd}: {answer['error']}")
            return answer["result"]

    def stop(self, timeout_s: float = 20.0) -> None:
        try:
            if self.proc.poll() is None:
                self.call("exit", deadline_s=timeout_s)
                self.proc.wait(timeout_s)
        except (TimeoutError, WorkerError, OSError, subprocess.TimeoutExpired):
            pass
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait(10)
            self._log.close()


if __name__ == "__main__":
    sys.exit(main())
