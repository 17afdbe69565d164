"""The operation history: one ``Op`` per client call, recorded as it completes.

Every op carries its client id, type, key, the value it wrote or read, the
invoke and complete times (``time.monotonic()``, which is one clock for every
process on the machine and every network namespace), its result and the
revision the answer named. Results are three-valued, as in Jepsen:

- ``ok``: the cluster answered; the op happened (for a CAS: ``succeeded``
  says which branch);
- ``fail``: the op certainly did not happen (``Unavailable``, queue full, or
  any failed read: reads have no effect);
- ``unknown``: a write that may or may not have happened (``OutcomeUnknown``,
  ``DeadlineExceeded``); the checkers let it take effect at any time after its
  invocation, or never.

Histories travel from the worker to the test process as JSON lines.
"""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, replace
from enum import StrEnum
from pathlib import Path

# One history holds at most this many ops (a runaway workload fails loudly).
OPS_MAX = 1_000_000


class OpType(StrEnum):
    PUT = "put"
    CAS = "cas"  # txn: compare value (or version 0 when absent), then put
    GET = "get"  # linearizable
    SGET = "sget"  # serializable: local, may be stale


WRITES = (OpType.PUT, OpType.CAS)


class Result(StrEnum):
    OK = "ok"
    FAIL = "fail"
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class Op:
    """One client call. ``None`` as a value means "the key is absent"."""

    client: int
    type: OpType
    key: str
    invoke: float
    complete: float
    result: Result
    # put/cas: the value written. get/sget: unused (None).
    value: str | None = None
    # cas: the value compared against (None: the key must not exist).
    expect: str | None = None
    # get/sget: the value read; a failed cas: the current value its failure
    # branch read. None: absent (or nothing read).
    observed: str | None = None
    # get/sget/failed cas: mod_revision of the value read (0 when absent).
    observed_revision: int = 0
    # Whether ``observed`` holds a read: a failed CAS answered from the
    # request-id cache (a retry) carries no read.
    observed_known: bool = False
    # cas: which branch ran (None unless ok).
    succeeded: bool | None = None
    # The header revision of the answer (ok only): for a write, its revision.
    revision: int = 0
    # header.member_name: who answered ("" without an answer).
    member: str = ""
    # The error kind (mcp-error), "" when ok, and its message (shortened).
    error: str = ""
    message: str = ""

    @property
    def is_write(self) -> bool:
        return self.type in WRITES

    @property
    def wrote(self) -> bool:
        """Certainly changed the key (an acked put, or an acked CAS that succeeded)."""
        if self.result is not Result.OK:
            return False
        return self.type is OpType.PUT or (self.type is OpType.CAS and bool(self.succeeded))

    @property
    def may_have_written(self) -> bool:
        return self.wrote or (self.is_write and self.result is Result.UNKNOWN)

    def to_json(self) -> str:
        d = asdict(self)
        if math.isinf(self.complete):
            d["complete"] = None
        return json.dumps(d, separators=(",", ":"))

    @classmethod
    def from_json(cls, line: str) -> Op:
        d = json.loads(line)
        d["type"] = OpType(d["type"])
        d["result"] = Result(d["result"])
        if d["complete"] is None:
            d["complete"] = math.inf
        return cls(**d)

    def short(self) -> str:
        """A one-line description for violation reports."""
        what = {
            OpType.PUT: f"put {self.value}",
            OpType.CAS: f"cas {self.expect}->{self.value}",
            OpType.GET: "get",
            OpType.SGET: "sget",
        }[self.type]
        if self.result is Result.OK:
            if self.type in (OpType.GET, OpType.SGET):
                got = f"= {self.observed}@{self.observed_revision}"
            elif self.type is OpType.CAS:
                got = (
                    f"succeeded@{self.revision}"
                    if self.succeeded
                    else f"failed (saw {self.observed})"
                )
            else:
                got = f"@{self.revision}"
        else:
            got = f"{self.result.value} ({self.error})"
        return (
            f"c{self.client} {what} {self.key} {got} [{self.invoke:.3f}, "
            f"{self.complete:.3f}] by {self.member or '-'}"
        )

    def with_complete(self, complete: float) -> Op:
        return replace(self, complete=complete)


class History:
    """A thread-safe, bounded list of ops."""

    def __init__(self) -> None:
        self._ops: list[Op] = []
        self._lock = threading.Lock()

    def add(self, op: Op) -> None:
        with self._lock:
            if len(self._ops) >= OPS_MAX:
                raise AssertionError(f"history: more than {OPS_MAX} ops")
            self._ops.append(op)

    def __len__(self) -> int:
        with self._lock:
            return len(self._ops)

    @property
    def ops(self) -> list[Op]:
        with self._lock:
            return list(self._ops)

    def dump(self, path: Path) -> None:
        write_ops(path, self.ops)


def write_ops(path: Path, ops: Iterable[Op]) -> None:
    with open(path, "w") as f:
        for op in ops:
            f.write(op.to_json() + "\n")


def read_ops(path: Path) -> list[Op]:
    return list(_lines(path))


def _lines(path: Path) -> Iterator[Op]:
    with open(path) as f:
        for line in f:
            if line.strip():
                yield Op.from_json(line)


__all__ = ["WRITES", "History", "Op", "OpType", "Result", "read_ops", "write_ops"]
