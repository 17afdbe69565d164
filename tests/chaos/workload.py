"""The workload: concurrent clients and watchers, every call recorded.

Clients run on threads of their own. Each picks, from its own
``random.Random`` (derived from the run's seed), a key among ``keys`` shared
ones and an op: put, compare-and-swap (a txn: compare the value it last saw,
or version 0 when it saw none, then put; the failure branch reads the key),
linearizable get or serializable get. Every written value is unique
(``c<client>-<seq>``), so every read can be traced to the write that made it.

Some clients are pinned to one member (so a cut-off member keeps getting
requests and the partition check has something to judge); the others hold
every endpoint and move on when one fails, as the SDK does. Watchers are
``tests.watchcheck`` recordings of SDK streams on the key prefix: roaming ones
from revision 1 and from "now", and one pinned to a member.

Every loop is bounded (a stop event, a deadline, an op budget) and pacing
between ops is a wait on the stop event, so stopping is immediate.
"""

from __future__ import annotations

import random
import threading
import time
from dataclasses import asdict, dataclass
from typing import Any

from mcpctl._proto.mcp.v1 import kv_pb2 as kv
from mcpctl.client import Client, GetResult
from mcpctl.errors import (
    DeadlineExceeded,
    McpError,
    OutcomeUnknown,
    ResourceExhausted,
    Unavailable,
)
from tests.chaos.history import History, Op, OpType, Result
from tests.chaos.leases import LeaseSpec, LeaseWorkload
from tests.watchcheck import Follower, Recorder, StreamRecord

PREFIX = "/chaos/"
# Per client: ops at most (with the run deadline, bounds every loop).
CLIENT_OPS_MAX = 200_000
RUN_DEADLINE_S_MAX = 3600.0
WATCH_PROGRESS_MS = 500
ERROR_MESSAGE_MAX = 200
# Client ids of the ops that are not the workload's own.
FINAL_CLIENT = -1
BURST_CLIENT = -2
PROBE_CLIENT_BASE = 1000

# Error kinds a client may legitimately see under faults; anything else is
# reported by the checker as an unexpected error.
EXPECTED_ERRORS = frozenset(
    {"unavailable", "outcome_unknown", "deadline_exceeded", "resource_exhausted"}
)


@dataclass(frozen=True, slots=True)
class WorkloadSpec:
    seed: int
    endpoints: dict[str, str]  # member name -> client endpoint
    clients: int = 6
    keys: int = 8
    think_ms: float = 15.0
    watchers: int = 3
    op_timeout_s: float = 3.0
    # Share of each op type (put, cas, get, sget).
    mix: tuple[int, int, int, int] = (30, 20, 35, 15)
    # The lease workload (tests.chaos.leases): owners that keep their leases
    # alive, owners that die, revokers, readers. None: no leases.
    leases: LeaseSpec | None = None

    @classmethod
    def of(cls, d: dict[str, Any]) -> WorkloadSpec:
        d = dict(d)
        if "mix" in d:
            d["mix"] = tuple(d["mix"])
        if d.get("leases") is not None:
            leases = dict(d["leases"])
            leases["ttls"] = tuple(leases.get("ttls", LeaseSpec().ttls))
            d["leases"] = LeaseSpec(**leases)
        return cls(**d)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def key_name(i: int) -> str:
    return f"{PREFIX}k{i}"


def _outcome(e: McpError, write: bool) -> Result:
    """What an error says about whether the op happened."""
    if not write:
        return Result.FAIL
    if isinstance(e, OutcomeUnknown | DeadlineExceeded):
        return Result.UNKNOWN
    if isinstance(e, Unavailable | ResourceExhausted):
        return Result.FAIL
    return Result.UNKNOWN  # unexpected: reported by the checker, assume nothing


def run_op(
    client: Client,
    client_id: int,
    op_type: OpType,
    key: str,
    *,
    value: str | None = None,
    expect: str | None = None,
    timeout_s: float,
) -> Op:
    """One call, timed and turned into an ``Op`` (never raises an ``McpError``)."""
    invoke = time.monotonic()
    base: dict[str, Any] = {"client": client_id, "type": op_type, "key": key, "invoke": invoke}
    if op_type in (OpType.PUT, OpType.CAS):
        base.update(value=value, expect=expect if op_type is OpType.CAS else None)
    try:
        fields = _call(client, op_type, key, value, expect, timeout_s)
    except McpError as e:
        result = _outcome(e, op_type in (OpType.PUT, OpType.CAS))
        return Op(
            **base,
            complete=time.monotonic(),
            result=result,
            error=e.kind,
            message=e.message[:ERROR_MESSAGE_MAX],
        )
    return Op(**base, complete=time.monotonic(), result=Result.OK, **fields)


def _call(
    client: Client,
    op_type: OpType,
    key: str,
    value: str | None,
    expect: str | None,
    timeout_s: float,
) -> dict[str, Any]:
    if op_type is OpType.PUT:
        assert value is not None
        put = client.put(key, value, timeout=timeout_s)
        return {"revision": put.revision, "member": put.header.member_name}
    if op_type is OpType.CAS:
        assert value is not None
        return _cas(client, key, expect, value, timeout_s)
    got = client.get(key, serializable=op_type is OpType.SGET, timeout=timeout_s)
    first = got.first
    return {
        "revision": got.header.revision,
        "member": got.header.member_name,
        "observed": first.text if first is not None else None,
        "observed_revision": first.mod_revision if first is not None else 0,
        "observed_known": True,
    }


def _cas(
    client: Client, key: str, expect: str | None, value: str, timeout_s: float
) -> dict[str, Any]:
    k = key.encode()
    compare = (
        kv.Compare(key=k, target=kv.Compare.VERSION, result=kv.Compare.EQUAL, version=0)
        if expect is None
        else kv.Compare(
            key=k, target=kv.Compare.VALUE, result=kv.Compare.EQUAL, value=expect.encode()
        )
    )
    res = client.txn(
        [compare],
        [kv.RequestOp(request_put=kv.PutRequest(key=k, value=value.encode()))],
        [kv.RequestOp(request_range=kv.RangeRequest(key=k))],
        timeout=timeout_s,
    )
    out: dict[str, Any] = {
        "revision": res.header.revision,
        "member": res.header.member_name,
        "succeeded": res.succeeded,
    }
    if not res.succeeded and res.responses:  # a replayed retry carries no read
        read = res.responses[0]
        assert isinstance(read, GetResult)
        kvs = read.kvs
        out["observed"] = kvs[0].value.decode() if kvs else None
        out["observed_revision"] = kvs[0].mod_revision if kvs else 0
        out["observed_known"] = True
    return out


class ClientLoop:
    """One client thread: random ops until stopped."""

    def __init__(
        self, spec: WorkloadSpec, client_id: int, client: Client, history: History
    ) -> None:
        self.spec = spec
        self.id = client_id
        self.client = client
        self.history = history
        self.rng = random.Random(f"{spec.seed}/client/{client_id}")
        self.seq = 0
        self.seen: dict[str, str | None] = {}
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"client {client_id}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def join(self, timeout_s: float) -> None:
        self._thread.join(timeout_s)
        if self._thread.is_alive():
            raise TimeoutError(f"client {self.id} did not stop in {timeout_s}s")

    def _run(self) -> None:
        deadline = time.monotonic() + RUN_DEADLINE_S_MAX
        try:
            for _ in range(CLIENT_OPS_MAX):
                if self._stop.is_set() or time.monotonic() > deadline:
                    return
                self.history.add(self._one())
                self._stop.wait(self.rng.uniform(0, 2 * self.spec.think_ms) / 1000)
        except BaseException as e:  # a bug in the workload: keep it visible
            self.error = e

    def _one(self) -> Op:
        key = key_name(self.rng.randrange(self.spec.keys))
        (op_type,) = self.rng.choices(list(OpType), weights=self.spec.mix)
        value = None
        if op_type in (OpType.PUT, OpType.CAS):
            self.seq += 1
            value = f"c{self.id}-{self.seq}"
        op = run_op(
            self.client,
            self.id,
            op_type,
            key,
            value=value,
            expect=self.seen.get(key),
            timeout_s=self.spec.op_timeout_s,
        )
        if op.wrote:
            self.seen[key] = op.value
        elif op.result is Result.OK and op.observed_known:
            self.seen[key] = op.observed
        return op


class Workload:
    """Every client and watcher of one run."""

    def __init__(self, spec: WorkloadSpec, history: History) -> None:
        self.spec = spec
        self.history = history
        names = sorted(spec.endpoints)
        endpoints = [spec.endpoints[n] for n in names]
        self.clients: list[Client] = []
        self.loops: list[ClientLoop] = []
        for i in range(spec.clients):
            if i < len(names):  # pinned: one member only
                client = Client([endpoints[i]], timeout=spec.op_timeout_s, attempts_max=2)
            else:  # roaming, each starting at a different member
                rotated = endpoints[i % len(endpoints) :] + endpoints[: i % len(endpoints)]
                client = Client(rotated, timeout=spec.op_timeout_s)
            self.clients.append(client)
            self.loops.append(ClientLoop(spec, i, client, history))
        self.recorder = Recorder()
        self.leases = (
            LeaseWorkload(spec.leases, spec.seed, endpoints) if spec.leases is not None else None
        )
        self.roaming_watchers: list[StreamRecord] = []
        self.followers: list[Follower] = []
        self._names = names
        self._endpoints = endpoints

    def start(self) -> None:
        for loop in self.loops:
            loop.start()
        if self.leases is not None:
            self.leases.start()
        for w in range(self.spec.watchers):
            self._watch(w)

    def _watch(self, w: int) -> None:
        pinned = w == 2
        if pinned:
            client = Client([self._endpoints[0]], timeout=self.spec.op_timeout_s)
        else:
            client = Client(self._endpoints, timeout=self.spec.op_timeout_s)
        self.clients.append(client)
        name = f"watch{w}-" + (
            f"pinned-{self._names[0]}" if pinned else ("from1" if w % 2 == 0 else "fromnow")
        )
        follower = self.recorder.follow(
            client,
            name,
            PREFIX,
            prefix=True,
            start_revision=1 if w % 2 == 0 else 0,
            progress_notify=True,
            progress_interval_ms=WATCH_PROGRESS_MS,
            deadline_s=RUN_DEADLINE_S_MAX,
        )
        self.followers.append(follower)
        if not pinned:
            self.roaming_watchers.append(follower.record)

    def stop_clients(self, timeout_s: float) -> None:
        for loop in self.loops:
            loop.stop()
        deadline = time.monotonic() + timeout_s
        for loop in self.loops:
            loop.join(max(0.1, deadline - time.monotonic()))
        if self.leases is not None:
            self.leases.stop(max(0.1, deadline - time.monotonic()))
        errors = [f"client {loop.id}: {loop.error!r}" for loop in self.loops if loop.error]
        if errors:
            raise AssertionError("workload clients failed: " + "; ".join(errors))

    def close(self) -> None:
        for loop in self.loops:
            loop.stop()
        if self.leases is not None:
            for actor in self.leases.actors:
                actor.stop()
        self.recorder.close()
        for client in self.clients:
            client.close()

    @property
    def records(self) -> list[StreamRecord]:
        return list(self.recorder.records)


__all__ = [
    "BURST_CLIENT",
    "EXPECTED_ERRORS",
    "FINAL_CLIENT",
    "PREFIX",
    "PROBE_CLIENT_BASE",
    "ClientLoop",
    "Workload",
    "WorkloadSpec",
    "key_name",
    "run_op",
]
