"""The checkers: a recorded run against what the cluster promises.

Inputs (``RunData``): the op history, every watch stream, the reference (a
fresh watch of every key from revision 1 to the final revision, read after
recovery), each member's final state, and the faults with their times. Each
check returns ``Finding``s (values, so the checkers are unit-tested on
hand-made histories in tests/chaos/test_checkers.py):

- ``durability``: the reference is contiguous; every acknowledged write is in
  it at its acknowledged revision with exactly its change; every revision in
  it comes from a write that was acknowledged or of unknown outcome, never
  from one reported as not applied (``tests.watchcheck.check_reference``);
  every member ends at the final revision with exactly the reference's state;
- ``trace``: every value read (linearizable or serializable get, a failed
  CAS's read) was written by a write of this run, to that key, at the
  mod_revision the read reported, and that write was invoked before the read
  returned (no phantom or future values; serializable reads may be stale);
- ``linearizable``: each key's put/CAS/get history (``linearize``);
- ``partition``: a member cut off from the majority acknowledges no write and
  serves no linearizable read between the cut and the heal (it may still
  believe it leads for ``raft.leader_fallback_ms``);
- ``liveness``: after each fault heals, and during a fault that leaves a
  majority, a write invoked after that moment is acknowledged within
  ``LIVENESS_S``;
- ``watch``: the six promises on every stream (roaming streams must reach
  the final revision), and all watchers agree on every revision they share;
- ``errors``: no op ended with an error kind a client should never see.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tests.chaos import linearize
from tests.chaos.history import Op, OpType, Result
from tests.chaos.workload import EXPECTED_ERRORS, PREFIX
from tests.watchcheck import (
    Ev,
    EventType,
    Kind,
    Outcome,
    Reference,
    StreamRecord,
    WriteLog,
    check_reference,
    check_stream,
)

# A write must be acknowledged this soon after a fault heals (or starts, when
# a majority is left): election (<= 1 s) + reconnect (1 s) + a fallen-back
# leader rejoining with a higher term (another election) + client backoff.
LIVENESS_S = 10.0
EXAMPLES_MAX = 8


@dataclass(frozen=True, slots=True)
class Finding:
    check: str
    detail: str

    def __str__(self) -> str:
        return f"[{self.check}] {self.detail}"


@dataclass(frozen=True, slots=True)
class FaultRecord:
    """One injected fault: what, on which members, from ``start`` to ``end`` (healed)."""

    kind: str
    nodes: tuple[str, ...]
    start: float
    end: float
    # Members cut off from the majority between start and end (partitions).
    isolated: tuple[str, ...] = ()
    # A majority stayed up and connected during the fault (writes must go on).
    majority_kept: bool = False
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def of(cls, d: dict[str, Any]) -> FaultRecord:
        return cls(**{**d, "nodes": tuple(d["nodes"]), "isolated": tuple(d["isolated"])})


@dataclass(frozen=True, slots=True)
class MemberFinal:
    revision: int
    digest: str
    keys: int


@dataclass
class RunData:
    ops: list[Op]
    watches: list[StreamRecord]
    reference: StreamRecord
    final_revision: int
    members: dict[str, MemberFinal]
    faults: list[FaultRecord] = field(default_factory=list)


# ------------------------------------------------------------- serialization
def record_to_json(record: StreamRecord) -> str:
    messages = [
        [
            m.kind.value,
            m.revision,
            m.member,
            [[e.revision, e.key, e.type.value, e.value.decode("latin-1")] for e in m.events],
        ]
        for m in record.messages
    ]
    return json.dumps(
        {
            "name": record.name,
            "key": record.key,
            "prefix": record.prefix,
            "start_revision": record.start_revision,
            "end_code": record.end_code,
            "end_error": str(record.end_error) if record.end_error else None,
            "messages": messages,
        },
        separators=(",", ":"),
    )


def record_from_json(line: str) -> StreamRecord:
    d = json.loads(line)
    record = StreamRecord(
        d["name"], d["key"], prefix=d["prefix"], start_revision=d["start_revision"]
    )
    for kind, revision, member, events in d["messages"]:
        evs = [Ev(r, k, EventType(t), v.encode("latin-1")) for r, k, t, v in events]
        record.add(Kind(kind), revision, evs, member)
    record.ended = True
    record.end_code = d["end_code"]
    return record


def read_records(path: Path) -> list[StreamRecord]:
    with open(path) as f:
        return [record_from_json(line) for line in f if line.strip()]


def state_digest(items: Iterable[tuple[str, str, int]]) -> str:
    """One digest of a whole store: sorted (key, value, mod_revision)."""
    h = hashlib.sha256()
    for key, value, mod in sorted(items):
        h.update(f"{key}\0{value}\0{mod}\n".encode())
    return h.hexdigest()


# ------------------------------------------------------------------ helpers
def _examples(items: Sequence[object]) -> str:
    shown = "\n    ".join(str(i) for i in items[:EXAMPLES_MAX])
    more = f"\n    ... ({len(items)} in all)" if len(items) > EXAMPLES_MAX else ""
    return f"\n    {shown}{more}"


def reference_of(record: StreamRecord, final_revision: int) -> tuple[Reference, list[Finding]]:
    """The committed history [1, final] from the reference stream (itself checked)."""
    ref = Reference.of(record.events, start=1, final=final_revision)
    bad = [Finding("durability", f"reference stream: {v}") for v in check_stream(record, ref)]
    if record.covered < final_revision:
        bad.append(
            Finding("durability", f"reference reached {record.covered}, not {final_revision}")
        )
    return ref, bad


def write_log(ops: Iterable[Op]) -> WriteLog:
    log = WriteLog()
    for op in ops:
        if not op.is_write or op.value is None:
            continue
        change = [(op.key, EventType.PUT, op.value.encode())]
        if op.result is Result.OK:
            if op.wrote:
                log.record(change, Outcome.OK, op.revision)
        elif op.result is Result.UNKNOWN:
            log.record(change, Outcome.UNKNOWN, None)
        else:
            log.record(change, Outcome.FAILED, None)
    return log


def written_values(reference: Reference) -> dict[str, tuple[str, int]]:
    """value -> (key, revision) of every PUT the cluster committed."""
    out: dict[str, tuple[str, int]] = {}
    for revision, evs in reference.by_revision.items():
        for ev in evs:
            if ev.type is EventType.PUT:
                out[ev.value.decode("latin-1")] = (ev.key, revision)
    return out


def reference_state(reference: Reference) -> dict[str, tuple[str, int]]:
    """key -> (value, mod_revision) after every revision of the reference."""
    state: dict[str, tuple[str, int]] = {}
    for revision in sorted(reference.by_revision):
        for ev in reference.by_revision[revision]:
            if ev.type is EventType.PUT:
                state[ev.key] = (ev.value.decode("latin-1"), revision)
            else:
                state.pop(ev.key, None)
    return state


# ------------------------------------------------------------------- checks
def check_durability(
    reference: Reference, ops: Sequence[Op], final_revision: int, members: dict[str, MemberFinal]
) -> list[Finding]:
    out = [Finding("durability", str(v)) for v in check_reference(reference, write_log(ops))]
    state = reference_state(reference)
    expected = state_digest((k, v, r) for k, (v, r) in state.items())
    for name, m in sorted(members.items()):
        if m.revision != final_revision:
            out.append(
                Finding("durability", f"{name} ends at revision {m.revision}, not {final_revision}")
            )
        elif m.digest != expected:
            out.append(
                Finding(
                    "durability",
                    f"{name}'s state ({m.keys} keys) differs from the committed history "
                    f"({len(state)} keys) at revision {final_revision}",
                )
            )
    return out


def check_trace(ops: Sequence[Op], written: dict[str, tuple[str, int]]) -> list[Finding]:
    writers = {op.value: op for op in ops if op.is_write and op.value is not None}
    bad: list[str] = []
    for op in ops:
        if op.result is not Result.OK or not op.observed_known or op.observed is None:
            continue
        where = written.get(op.observed)
        writer = writers.get(op.observed)
        if where is None:
            bad.append(f"{op.short()}: read a value no committed write made")
        elif where != (op.key, op.observed_revision):
            bad.append(f"{op.short()}: the value was written to {where[0]} at revision {where[1]}")
        elif writer is None:
            bad.append(f"{op.short()}: read a value no client of this run wrote")
        elif writer.invoke > op.complete:
            bad.append(f"{op.short()}: read a value written later ({writer.short()})")
        if op.revision < op.observed_revision:
            bad.append(f"{op.short()}: answered at revision {op.revision}, below what it read")
    return [Finding("trace", f"{len(bad)} reads not traceable:{_examples(bad)}")] if bad else []


def check_linearizable(
    ops: Sequence[Op],
    written: dict[str, tuple[str, int]],
    *,
    steps_max: int = linearize.STEPS_MAX_DEFAULT,
) -> list[Finding]:
    mine = [op for op in ops if op.key.startswith(PREFIX)]
    results = linearize.check(mine, set(written), steps_max=steps_max)
    return [
        Finding("linearizable", str(r)) for r in results if r.verdict is not linearize.Verdict.OK
    ]


def check_partitions(ops: Sequence[Op], faults: Sequence[FaultRecord]) -> list[Finding]:
    out: list[Finding] = []
    for f in faults:
        for member in f.isolated:
            acked = [
                op
                for op in ops
                if op.member == member
                and op.result is Result.OK
                and op.type in (OpType.PUT, OpType.CAS, OpType.GET)
                and op.invoke >= f.start
                and op.complete <= f.end
            ]
            if acked:
                out.append(
                    Finding(
                        "partition",
                        f"{member}, cut off by {f.kind} from {f.start:.3f} to {f.end:.3f}, "
                        f"acknowledged {len(acked)} writes / linearizable reads:"
                        f"{_examples([op.short() for op in acked])}",
                    )
                )
    return out


def check_liveness(
    ops: Sequence[Op], faults: Sequence[FaultRecord], *, bound_s: float = LIVENESS_S
) -> list[Finding]:
    acks = sorted((op.invoke, op.complete) for op in ops if op.wrote)
    out: list[Finding] = []

    def first_ack_after(t: float) -> float:
        return min((c for i, c in acks if i >= t), default=math.inf)

    for f in faults:
        moments = [("healed", f.end)]
        if f.majority_kept:
            moments.append(("started", f.start))
        for what, t in moments:
            took = first_ack_after(t) - t
            if took > bound_s:
                shown = "no write acknowledged at all" if math.isinf(took) else f"{took:.1f}s"
                out.append(
                    Finding(
                        "liveness",
                        f"{f.kind} on {','.join(f.nodes)} {what} at {t:.3f}: first acknowledged "
                        f"write after {shown} (bound {bound_s:.0f}s)",
                    )
                )
    return out


def check_watches(
    records: Sequence[StreamRecord], reference: Reference, final_revision: int
) -> list[Finding]:
    out: list[Finding] = []
    for record in records:
        through = None if "pinned" in record.name else final_revision
        out += [Finding("watch", str(v)) for v in check_stream(record, reference, through=through)]
    # The merged history: every watcher that saw a revision saw the same changes.
    seen: dict[int, dict[str, Counter[tuple[str, EventType, bytes]]]] = {}
    for record in records:
        for m in record.messages:
            for r in sorted({ev.revision for ev in m.events}):
                got = Counter(ev.change for ev in m.events if ev.revision == r)
                seen.setdefault(r, {}).setdefault(record.name, got)
    split = [
        f"revision {r}: " + "; ".join(f"{n}={dict(c)}" for n, c in by.items())
        for r, by in sorted(seen.items())
        if len({tuple(sorted(c.items())) for c in by.values()}) > 1
    ]
    if split:
        out.append(Finding("watch", f"watchers disagree:{_examples(split)}"))
    return out


def check_errors(ops: Sequence[Op]) -> list[Finding]:
    odd = [
        f"{op.short()}: {op.message}" for op in ops if op.error and op.error not in EXPECTED_ERRORS
    ]
    return [Finding("errors", f"unexpected errors:{_examples(odd)}")] if odd else []


def check_run(data: RunData) -> list[Finding]:
    """Every check on one run."""
    reference, out = reference_of(data.reference, data.final_revision)
    written = written_values(reference)
    out += check_durability(reference, data.ops, data.final_revision, data.members)
    out += check_trace(data.ops, written)
    out += check_linearizable(data.ops, written)
    out += check_partitions(data.ops, data.faults)
    out += check_liveness(data.ops, data.faults)
    out += check_watches(data.watches, reference, data.final_revision)
    out += check_errors(data.ops)
    return out


__all__ = [
    "LIVENESS_S",
    "FaultRecord",
    "Finding",
    "MemberFinal",
    "RunData",
    "check_durability",
    "check_errors",
    "check_linearizable",
    "check_liveness",
    "check_partitions",
    "check_run",
    "check_trace",
    "check_watches",
    "read_records",
    "record_from_json",
    "record_to_json",
    "reference_of",
    "reference_state",
    "state_digest",
    "write_log",
    "written_values",
]
