"""The lease workload: owners that keep leases alive, owners that die, revokers, readers.

Every call is recorded as a ``LeaseOp`` (one clock: ``time.monotonic()``,
shared by every process and namespace of the machine), so the lease checkers
in ``checks`` can judge the run afterwards:

- a **keeper** grants a lease (TTL drawn from ``ttls``), attaches keys to it
  and keeps it alive every TTL/3 until the workload stops, moving to another
  member when one answers UNAVAILABLE ("not the leader") or does not answer
  in time; a ttl-0 answer ("lease not found") is final, as for an etcd
  client: it grants a new lease;
- a **dead** owner does the same for 0-3 keepalives, then stops (a ``stop``
  record) and never touches that lease again: the cluster must expire it;
- a **revoker** keeps its lease alive for 0-2 keepalives, then revokes it;
- a **reader** reads keys of every lease (linearizable or serializable) and
  records what it saw and the answer's header revision.

Keys are ``LEASE_PREFIX<owner>/<seq>/<i>`` with the unique value
``<owner>-<seq>-<i>``: one lease's keys are never written again once it ends,
so every read and every DELETE names its lease. Writes are sent to one member
per attempt: UNAVAILABLE (not applied) moves to the next member, an unknown
outcome is recorded as such and never retried blind.

The TTLs are 2 or 3 s: with keepalives every TTL/3, the new leader's grace
(docs/leases.md) then covers every keepalive a deposed leader may still have
answered (within ``leader_fallback_ms``, or right after a 3 s SIGSTOP), so
"a positive answer to a keepalive sent at s: the lease lives until s + TTL"
is a promise the server makes for every fault the campaign injects.
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from enum import StrEnum
from functools import partial
from pathlib import Path
from typing import Any

from mcpctl._proto.mcp.v1 import kv_pb2 as kv
from mcpctl.errors import DeadlineExceeded, LeaseNotFound, McpError, OutcomeUnknown, Unavailable
from tests.chaos.history import Result
from tests.leaseclient import LeaseClient

LEASE_PREFIX = "/chaos-lease/"
# Per owner thread: leases and calls at most (with the stop event and the
# run's deadline, bounds every loop).
LEASES_PER_OWNER_MAX = 10_000
CALLS_PER_OWNER_MAX = 1_000_000
RUN_DEADLINE_S_MAX = 3600.0
LEASE_OPS_MAX = 1_000_000
REGISTRY_MAX = 256
ERROR_MESSAGE_MAX = 200
RETRY_PAUSE_S = 0.05


class LeaseOpKind(StrEnum):
    GRANT = "grant"
    ATTACH = "attach"  # a put with the lease
    KEEPALIVE = "keepalive"
    REVOKE = "revoke"
    READ = "read"
    STOP = "stop"  # the owner stops keeping this lease alive (invoke = complete = when)


@dataclass(frozen=True, slots=True)
class LeaseOp:
    owner: str
    kind: LeaseOpKind
    invoke: float  # for a keepalive: when the request was sent
    complete: float
    result: Result
    lease: int = 0
    # grant: the TTL granted; keepalive: the answer's ttl (0: "lease not found").
    ttl: int = 0
    key: str = ""
    # attach: the value written; read: the value read (None: absent).
    value: str | None = None
    # The answer's header revision (attach: the put's revision). 0 without an answer.
    revision: int = 0
    serializable: bool = False
    member: str = ""
    error: str = ""
    message: str = ""

    @property
    def renewed(self) -> bool:
        """A keepalive answered with the lease alive."""
        return self.kind is LeaseOpKind.KEEPALIVE and self.result is Result.OK and self.ttl > 0

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def from_json(cls, line: str) -> LeaseOp:
        d = json.loads(line)
        d["kind"] = LeaseOpKind(d["kind"])
        d["result"] = Result(d["result"])
        return cls(**d)

    def short(self) -> str:
        got = self.error or (f"ttl {self.ttl}" if self.kind is LeaseOpKind.KEEPALIVE else "ok")
        what = f" {self.key}={self.value}" if self.key else ""
        return (
            f"{self.owner} {self.kind.value} lease {self.lease}{what} {self.result.value} ({got}) "
            f"@{self.revision} [{self.invoke:.3f}, {self.complete:.3f}] by {self.member or '-'}"
        )


class LeaseRecorder:
    """A thread-safe, bounded list of lease ops."""

    def __init__(self) -> None:
        self._ops: list[LeaseOp] = []
        self._lock = threading.Lock()

    def add(self, op: LeaseOp) -> LeaseOp:
        with self._lock:
            if len(self._ops) >= LEASE_OPS_MAX:
                raise AssertionError(f"lease history: more than {LEASE_OPS_MAX} ops")
            self._ops.append(op)
        return op

    @property
    def ops(self) -> list[LeaseOp]:
        with self._lock:
            return list(self._ops)

    def dump(self, path: Path) -> None:
        write_lease_ops(path, self.ops)


def write_lease_ops(path: Path, ops: list[LeaseOp]) -> None:
    with open(path, "w") as f:
        for op in ops:
            f.write(op.to_json() + "\n")


def read_lease_ops(path: Path) -> list[LeaseOp]:
    if not path.exists():
        return []
    with open(path) as f:
        return [LeaseOp.from_json(line) for line in f if line.strip()]


def lease_key(owner: str, seq: int, i: int) -> str:
    return f"{LEASE_PREFIX}{owner}/{seq}/{i}"


def _write_result(e: McpError) -> Result:
    if isinstance(e, OutcomeUnknown | DeadlineExceeded):
        return Result.UNKNOWN
    if isinstance(e, Unavailable | LeaseNotFound):
        return Result.FAIL  # not applied
    return Result.UNKNOWN  # unexpected: reported by the checker, assume nothing


class Registry:
    """Keys attached to some lease, for the readers (the newest REGISTRY_MAX)."""

    def __init__(self) -> None:
        self._keys: list[tuple[str, int]] = []
        self._lock = threading.Lock()

    def add(self, key: str, lease: int) -> None:
        with self._lock:
            self._keys.append((key, lease))
            del self._keys[:-REGISTRY_MAX]

    def pick(self, rng: random.Random) -> tuple[str, int] | None:
        with self._lock:
            return rng.choice(self._keys) if self._keys else None


class Stopped(Exception):
    """The owner's stop event fired (or its budget ran out)."""


class LeaseActor:
    """What every lease thread shares: a client on every endpoint, the member it
    is on now, the recorder, bounded pacing."""

    def __init__(
        self,
        name: str,
        endpoints: list[str],
        recorder: LeaseRecorder,
        *,
        seed: str,
        op_timeout_s: float,
    ) -> None:
        self.name = name
        self.client = LeaseClient(endpoints, timeout_s=op_timeout_s)
        self.endpoints = list(endpoints)
        self.recorder = recorder
        self.rng = random.Random(seed)
        self.op_timeout_s = op_timeout_s
        self.at = self.rng.randrange(len(endpoints))
        self.stop_event = threading.Event()
        self.error: BaseException | None = None
        self._calls = 0
        self._deadline = time.monotonic() + RUN_DEADLINE_S_MAX
        self._thread = threading.Thread(target=self._main, name=f"lease {name}", daemon=True)

    # -- life -------------------------------------------------------------------------
    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self.stop_event.set()

    def join(self, timeout_s: float) -> None:
        self._thread.join(timeout_s)
        if self._thread.is_alive():
            raise TimeoutError(f"lease actor {self.name} did not stop in {timeout_s}s")
        self.client.close()

    def _main(self) -> None:
        try:
            self.run()
        except Stopped:
            pass
        except BaseException as e:  # a bug in the workload: keep it visible
            self.error = e

    def run(self) -> None:
        raise NotImplementedError

    # -- helpers ----------------------------------------------------------------------
    @property
    def endpoint(self) -> str:
        return self.endpoints[self.at % len(self.endpoints)]

    def rotate(self) -> None:
        self.at += 1

    def pause(self, seconds: float) -> None:
        """Wait, unless stopped (then raise ``Stopped``)."""
        self._calls += 1
        if (
            self.stop_event.wait(max(0.0, seconds))
            or self._calls > CALLS_PER_OWNER_MAX
            or time.monotonic() > self._deadline
        ):
            raise Stopped

    def write(
        self, kind: LeaseOpKind, call: Callable[[str], dict[str, Any]], **fields: Any
    ) -> LeaseOp:
        """A write (grant, attach, revoke) on one member at a time: UNAVAILABLE
        (not applied) moves to the next member, at most once per member;
        ``call(endpoint)`` returns the answer's fields (lease, ttl, revision,
        member)."""
        invoke = time.monotonic()
        err: McpError | None = None
        for _ in range(len(self.endpoints)):
            try:
                answer = call(self.endpoint)
            except McpError as e:
                err = e
                if type(e) is Unavailable:  # not OutcomeUnknown, its subclass
                    self.rotate()
                    continue
                break
            return self.recorder.add(
                LeaseOp(
                    self.name,
                    kind,
                    invoke,
                    time.monotonic(),
                    Result.OK,
                    **{**fields, **answer},
                )
            )
        assert err is not None
        return self.recorder.add(
            LeaseOp(
                self.name,
                kind,
                invoke,
                time.monotonic(),
                _write_result(err),
                error=err.kind,
                message=err.message[:ERROR_MESSAGE_MAX],
                **fields,
            )
        )


class LeaseOwner(LeaseActor):
    """A keeper, a dead owner or a revoker (module docstring)."""

    def __init__(
        self,
        name: str,
        mode: str,
        endpoints: list[str],
        recorder: LeaseRecorder,
        registry: Registry,
        *,
        seed: str,
        ttls: tuple[int, ...],
        keys: int,
        op_timeout_s: float,
    ) -> None:
        assert mode in ("keep", "dead", "revoke"), mode
        super().__init__(name, endpoints, recorder, seed=seed, op_timeout_s=op_timeout_s)
        self.mode = mode
        self.registry = registry
        self.ttls = ttls
        self.keys = keys
        # Set by silence(): the owner stops keeping its current lease alive.
        self.silenced = threading.Event()

    def run(self) -> None:
        for seq in range(1, LEASES_PER_OWNER_MAX + 1):
            lease, ttl = self.grant()
            if not lease:
                self.pause(0.2)
                continue
            self.attach(lease, seq)
            rounds: int | None = None
            if self.mode == "dead":
                rounds = self.rng.randint(0, 3)
            elif self.mode == "revoke":
                rounds = self.rng.randint(0, 2)
            alive = self.keep(lease, ttl, rounds)
            if self.mode == "keep" and alive:
                return  # stopped or silenced
            if self.mode == "dead" and alive:
                self.record_stop(lease)
                self.pause(self.rng.uniform(0, ttl))
            elif self.mode == "revoke" and alive:
                self.write(LeaseOpKind.REVOKE, partial(self._revoke, lease=lease), lease=lease)

    def grant(self) -> tuple[int, int]:
        """A new lease: (id, granted TTL), or (0, 0) when the grant failed or its
        outcome is unknown."""
        ttl = self.rng.choice(self.ttls)

        def call(endpoint: str) -> dict[str, Any]:
            resp = self.client.grant(ttl, endpoint=endpoint)
            return {
                "lease": resp.id,
                "ttl": resp.ttl,  # the member raises a TTL below the minimum
                "revision": resp.header.revision,
                "member": resp.header.member_name,
            }

        op = self.write(LeaseOpKind.GRANT, call, ttl=ttl)
        return (op.lease, op.ttl) if op.result is Result.OK else (0, 0)

    def attach(self, lease: int, seq: int) -> None:
        for i in range(self.keys):
            key, value = lease_key(self.name, seq, i), f"{self.name}-{seq}-{i}"

            def call(endpoint: str, key: str = key, value: str = value) -> dict[str, Any]:
                return {"revision": self.client.put(key, value, lease, endpoint=endpoint)}

            op = self.write(LeaseOpKind.ATTACH, call, lease=lease, key=key, value=value)
            if op.result is not Result.FAIL:
                self.registry.add(key, lease)

    def _revoke(self, endpoint: str, lease: int) -> dict[str, Any]:
        resp = self.client.revoke(lease, endpoint=endpoint)
        return {"revision": resp.header.revision, "member": resp.header.member_name}

    def keep(self, lease: int, ttl: int, rounds: int | None) -> bool:
        """Keepalives every ttl/3 (``rounds`` successful ones, or until stopped or
        silenced). False: the lease is gone (a ttl-0 answer)."""
        interval = ttl / 3
        done = 0
        next_at = time.monotonic() + interval
        while rounds is None or done < rounds:
            if self.silenced.is_set():
                return True
            try:
                self.pause(next_at - time.monotonic())
            except Stopped:
                self.record_stop(lease)
                raise
            if self.silenced.is_set():
                return True
            op = self.keepalive(lease, interval)
            if op.result is not Result.OK:
                self.rotate()  # a follower, a member without a clock, or no answer
                next_at = time.monotonic() + RETRY_PAUSE_S
                continue
            if op.ttl <= 0:
                return False
            done += 1
            next_at = op.invoke + interval
        return True

    def keepalive(self, lease: int, timeout_s: float) -> LeaseOp:
        endpoint = self.endpoint
        invoke = time.monotonic()
        try:
            (answer,) = self.client.keepalive_once(endpoint, [lease], timeout_s=timeout_s)
        except McpError as e:
            return self.recorder.add(
                LeaseOp(
                    self.name,
                    LeaseOpKind.KEEPALIVE,
                    invoke,
                    time.monotonic(),
                    Result.FAIL,
                    lease=lease,
                    error=e.kind,
                    message=e.message[:ERROR_MESSAGE_MAX],
                )
            )
        return self.recorder.add(
            LeaseOp(
                self.name,
                LeaseOpKind.KEEPALIVE,
                invoke,
                time.monotonic(),
                Result.OK,
                lease=lease,
                ttl=int(answer.ttl),
                revision=answer.header.revision,
                member=answer.header.member_name,
                message=answer.error,
            )
        )

    def record_stop(self, lease: int) -> None:
        now = time.monotonic()
        self.recorder.add(LeaseOp(self.name, LeaseOpKind.STOP, now, now, Result.OK, lease=lease))


class LeaseReader(LeaseActor):
    """Reads keys of every lease, linearizable or serializable, from any member."""

    def __init__(
        self,
        name: str,
        endpoints: list[str],
        recorder: LeaseRecorder,
        registry: Registry,
        *,
        seed: str,
        op_timeout_s: float,
        think_s: float = 0.03,
        serializable_share: float = 0.3,
        pinned: bool = False,
    ) -> None:
        super().__init__(name, endpoints, recorder, seed=seed, op_timeout_s=op_timeout_s)
        self.registry = registry
        self.think_s = think_s
        self.serializable_share = serializable_share
        self.pinned = pinned

    def run(self) -> None:
        while True:
            self.pause(self.rng.uniform(0, 2 * self.think_s))
            picked = self.registry.pick(self.rng)
            if picked is None:
                continue
            key, lease = picked
            self.read(key, lease, serializable=self.rng.random() < self.serializable_share)
            if not self.pinned:
                self.rotate()

    def read(self, key: str, lease: int, *, serializable: bool) -> LeaseOp:
        invoke = time.monotonic()
        try:
            resp = self.client.range(key, serializable=serializable, endpoint=self.endpoint)
        except McpError as e:
            return self.recorder.add(
                LeaseOp(
                    self.name,
                    LeaseOpKind.READ,
                    invoke,
                    time.monotonic(),
                    Result.FAIL,
                    lease=lease,
                    key=key,
                    serializable=serializable,
                    error=e.kind,
                    message=e.message[:ERROR_MESSAGE_MAX],
                )
            )
        first: kv.KeyValue | None = resp.kvs[0] if resp.kvs else None
        return self.recorder.add(
            LeaseOp(
                self.name,
                LeaseOpKind.READ,
                invoke,
                time.monotonic(),
                Result.OK,
                lease=lease,
                key=key,
                value=first.value.decode() if first is not None else None,
                revision=resp.header.revision,
                serializable=serializable,
                member=resp.header.member_name,
            )
        )


@dataclass(frozen=True, slots=True)
class LeaseSpec:
    keepers: int = 2
    dead: int = 2
    revokers: int = 1
    readers: int = 1
    ttls: tuple[int, ...] = (2, 3)
    keys: int = 2
    op_timeout_s: float = 3.0


class LeaseWorkload:
    """Every lease thread of one run."""

    def __init__(self, spec: LeaseSpec, seed: int, endpoints: list[str]) -> None:
        self.recorder = LeaseRecorder()
        self.registry = Registry()
        self.actors: list[LeaseActor] = []
        roles = (
            [("keep", i) for i in range(spec.keepers)]
            + [("dead", i) for i in range(spec.dead)]
            + [("revoke", i) for i in range(spec.revokers)]
        )
        for mode, i in roles:
            name = f"{mode}{i}"
            self.actors.append(
                LeaseOwner(
                    name,
                    mode,
                    endpoints,
                    self.recorder,
                    self.registry,
                    seed=f"{seed}/lease/{name}",
                    ttls=spec.ttls,
                    keys=spec.keys,
                    op_timeout_s=spec.op_timeout_s,
                )
            )
        for i in range(spec.readers):
            self.actors.append(
                LeaseReader(
                    f"read{i}",
                    endpoints,
                    self.recorder,
                    self.registry,
                    seed=f"{seed}/lease/read{i}",
                    op_timeout_s=spec.op_timeout_s,
                )
            )

    def start(self) -> None:
        for actor in self.actors:
            actor.start()

    def stop(self, timeout_s: float) -> None:
        for actor in self.actors:
            actor.stop()
        deadline = time.monotonic() + timeout_s
        for actor in self.actors:
            actor.join(max(0.1, deadline - time.monotonic()))
        errors = [f"{a.name}: {a.error!r}" for a in self.actors if a.error]
        if errors:
            raise AssertionError("lease workload failed: " + "; ".join(errors))


__all__ = [
    "LEASE_PREFIX",
    "LeaseOp",
    "LeaseOpKind",
    "LeaseOwner",
    "LeaseReader",
    "LeaseRecorder",
    "LeaseSpec",
    "LeaseWorkload",
    "Registry",
    "lease_key",
    "read_lease_ops",
    "write_lease_ops",
]
