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
- ``errors``: no op ended with an error kind a client should never see;
- ``lease-end`` (b): every lease that ended (revoked or expired) lost all its
  keys in one revision holding exactly its keys and nothing else (so an
  expiry is one revision per lease), at most once, at the revision its acked
  revoke named; no key of a lease is written after the lease ended;
- ``lease-alive`` (a): no lease was expired while its owner held a promise:
  a keepalive *sent* at s and answered with ttl T promises the lease until
  s + T; the expiry's revision R committed no later than ``e_up(R)``, the
  earliest completion of any answer (KV or lease) whose header revision is
  R or more. ``e_up(R) < s + T`` is a violation (see ``check_lease_alive``);
- ``lease-read`` (c): no read returns a key of a lease after the revision
  that deleted it: not at a header revision >= R, and no linearizable read
  invoked after ``e_up(R)``.
"""

from __future__ import annotations

import bisect
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
from tests.chaos.leases import LEASE_PREFIX, LeaseOp, LeaseOpKind
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
    lease_ops: list[LeaseOp] = field(default_factory=list)


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
def lease_write_log(log: WriteLog, lease_ops: Iterable[LeaseOp], reference: Reference) -> None:
    """Add the lease workload's writes to ``log``: each attach as a put, and each
    revision made only of DELETEs of lease keys (a revoke or an expiry, judged
    by ``check_lease_ends``) as a write of unknown outcome with those changes."""
    for op in lease_ops:
        if op.kind is not LeaseOpKind.ATTACH or op.value is None:
            continue
        change = [(op.key, EventType.PUT, op.value.encode())]
        if op.result is Result.OK:
            log.record(change, Outcome.OK, op.revision)
        elif op.result is Result.UNKNOWN:
            log.record(change, Outcome.UNKNOWN, None)
        else:
            log.record(change, Outcome.FAILED, None)
    for evs in reference.by_revision.values():
        if evs and all(ev.type is EventType.DELETE and _is_lease_key(ev.key) for ev in evs):
            log.record([ev.change for ev in evs], Outcome.UNKNOWN, None)


def check_durability(
    reference: Reference,
    ops: Sequence[Op],
    final_revision: int,
    members: dict[str, MemberFinal],
    lease_ops: Sequence[LeaseOp] = (),
) -> list[Finding]:
    log = write_log(ops)
    lease_write_log(log, lease_ops, reference)
    out = [Finding("durability", str(v)) for v in check_reference(reference, log)]
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


# ------------------------------------------------------------------- leases
LEASE_EXPECTED_ERRORS = EXPECTED_ERRORS | {"lease_not_found"}


def _is_lease_key(key: str) -> bool:
    return key.startswith(LEASE_PREFIX)


@dataclass(frozen=True, slots=True)
class LeaseEnd:
    """The revision that deleted a lease's keys (its revoke or its expiry)."""

    lease: int
    revision: int
    keys: tuple[str, ...]


def attached(lease_ops: Iterable[LeaseOp]) -> dict[str, tuple[int, str | None]]:
    """key -> (lease, value) of every attach the workload tried (any outcome)."""
    return {op.key: (op.lease, op.value) for op in lease_ops if op.kind is LeaseOpKind.ATTACH}


def check_lease_ends(
    reference: Reference, lease_ops: Sequence[LeaseOp]
) -> tuple[dict[int, LeaseEnd], list[Finding]]:
    """(b): find every lease's end in the committed history and check its shape.

    Walks the reference in revision order, keeping which lease keys are live.
    A revision that deletes a lease key must delete only lease keys, all of
    one lease, and exactly the keys of that lease that are live: all of them
    in that one revision (a revoke's or an expiry's; one revision per lease).
    A lease ends at most once, and no key of it is written afterwards. An
    acked revoke of a lease that had keys names its end revision."""
    owner = attached(lease_ops)
    live: dict[str, int] = {}
    ends: dict[int, LeaseEnd] = {}
    bad: list[str] = []
    for r in sorted(reference.by_revision):
        evs = reference.by_revision[r]
        mine = [ev for ev in evs if _is_lease_key(ev.key)]
        if not mine:
            continue
        for ev in mine:
            if ev.type is not EventType.PUT:
                continue
            lease = owner.get(ev.key, (0, None))[0]
            if not lease:
                bad.append(f"revision {r}: put {ev.key}, which no attach of the workload wrote")
            elif lease in ends:
                bad.append(
                    f"revision {r}: put {ev.key} of lease {lease}, which ended at revision "
                    f"{ends[lease].revision}"
                )
            else:
                live[ev.key] = lease
        deletes = [ev for ev in mine if ev.type is EventType.DELETE]
        if not deletes:
            continue
        leases = {owner.get(ev.key, (0, None))[0] for ev in deletes}
        if len(deletes) != len(evs):
            others = sorted({ev.key for ev in evs} - {ev.key for ev in deletes})
            bad.append(f"revision {r}: lease keys deleted together with other changes {others}")
        if len(leases) != 1 or 0 in leases:
            bad.append(f"revision {r}: deletes keys of several leases {sorted(leases)}")
        else:
            (lease,) = leases
            got = tuple(sorted(ev.key for ev in deletes))
            expected = tuple(sorted(k for k, owner_lease in live.items() if owner_lease == lease))
            if lease in ends:
                bad.append(
                    f"revision {r}: lease {lease}'s keys deleted again (it ended at revision "
                    f"{ends[lease].revision})"
                )
            elif got != expected:
                bad.append(
                    f"revision {r}: lease {lease} ended deleting {list(got)}, but its live keys "
                    f"were {list(expected)} (not all in one revision)"
                )
            if lease not in ends:
                ends[lease] = LeaseEnd(lease, r, got)
        for ev in deletes:
            live.pop(ev.key, None)
    leases_live = set(live.values())
    for op in lease_ops:
        if op.kind is not LeaseOpKind.REVOKE or op.result is not Result.OK:
            continue
        end = ends.get(op.lease)
        if end is None and op.lease in leases_live:
            bad.append(f"{op.short()}: acked, but the lease's keys were never deleted")
        elif end is not None and end.revision != op.revision:
            bad.append(
                f"{op.short()}: acked at revision {op.revision}, but the lease's keys were "
                f"deleted at revision {end.revision}"
            )
    findings = (
        [Finding("lease-end", f"{len(bad)} lease ends out of shape:{_examples(bad)}")]
        if bad
        else []
    )
    return ends, findings


class CommitBound:
    """``e_up(R)``: the latest time revision R can have committed, from the answers.

    Any answer whose header revision is R or more (a read served at it, a
    write acked at it, a keepalive answered by a member that applied it)
    completed after R committed, so R committed no later than the earliest
    such completion. Measured on the clients' side only (the invocation and
    completion stamps of ``time.monotonic()``, one clock for the machine)."""

    def __init__(self, ops: Iterable[Op], lease_ops: Iterable[LeaseOp]) -> None:
        answers = sorted(
            [(op.revision, op.complete) for op in ops if op.result is Result.OK and op.revision]
            + [
                (op.revision, op.complete)
                for op in lease_ops
                if op.result is Result.OK and op.revision
            ]
        )
        self._revisions = [r for r, _ in answers]
        self._earliest_from: list[float] = [math.inf] * (len(answers) + 1)
        for i in range(len(answers) - 1, -1, -1):
            self._earliest_from[i] = min(answers[i][1], self._earliest_from[i + 1])

    def __call__(self, revision: int) -> float:
        return self._earliest_from[bisect.bisect_left(self._revisions, revision)]


def check_lease_alive(
    ends: dict[int, LeaseEnd], lease_ops: Sequence[LeaseOp], e_up: CommitBound
) -> list[Finding]:
    """(a): no lease ended while a keepalive answer still promised it time.

    A keepalive sent at s and answered with ttl T (T > 0) renewed the lease on
    the leader's clock at some r >= s, to r + T: that clock expires it no
    sooner, and a new leader's grace covers what a deposed one answered
    (docs/leases.md; the TTLs are small enough for it, tests.chaos.leases).
    The lease's end revision R committed by ``e_up(R)``. So ``e_up(R) < s + T``
    proves an expiry inside a promised TTL: every slop (the answer's own
    delay, the commit's, the clock's tick) only moves s earlier or e_up later,
    never towards a false alarm. Leases whose owner revoked them (acked or of
    unknown outcome) are left out: a revoke is the owner's own end."""
    revoked = {
        op.lease
        for op in lease_ops
        if op.kind is LeaseOpKind.REVOKE and op.result is not Result.FAIL
    }
    renewals: dict[int, list[LeaseOp]] = {}
    for op in lease_ops:
        if op.renewed:
            renewals.setdefault(op.lease, []).append(op)
    bad: list[str] = []
    for lease, end in sorted(ends.items()):
        if lease in revoked:
            continue
        committed_by = e_up(end.revision)
        promised = [op for op in renewals.get(lease, []) if op.invoke + op.ttl > committed_by]
        if promised:
            last = max(promised, key=lambda op: op.invoke + op.ttl)
            bad.append(
                f"lease {lease} expired at revision {end.revision} (committed by "
                f"{committed_by:.3f}) while promised until {last.invoke + last.ttl:.3f}: "
                f"{last.short()}"
            )
    return (
        [Finding("lease-alive", f"{len(bad)} kept-alive leases expired:{_examples(bad)}")]
        if bad
        else []
    )


def check_lease_reads(
    ends: dict[int, LeaseEnd], lease_ops: Sequence[LeaseOp], e_up: CommitBound
) -> list[Finding]:
    """(c): no read returns a key of a lease after the revision that deleted it.

    A read served at header revision >= R saw the state after R; a
    linearizable read invoked after ``e_up(R)`` started after R committed.
    Either returning the key is a violation (lease keys are never written
    again once their lease ended: ``check_lease_ends``). A read must also
    return the value its key's attach wrote."""
    owner = attached(lease_ops)
    bad: list[str] = []
    for op in lease_ops:
        if op.kind is not LeaseOpKind.READ or op.result is not Result.OK or op.value is None:
            continue
        lease, value = owner.get(op.key, (0, None))
        if op.value != value:
            bad.append(f"{op.short()}: read a value no attach wrote to the key")
            continue
        end = ends.get(lease)
        if end is None:
            continue
        if op.revision >= end.revision:
            bad.append(
                f"{op.short()}: read at revision {op.revision}, after lease {lease} ended at "
                f"revision {end.revision}"
            )
        elif not op.serializable and op.invoke > e_up(end.revision):
            bad.append(
                f"{op.short()}: linearizable read invoked after lease {lease}'s end (revision "
                f"{end.revision}) committed, by {e_up(end.revision):.3f}"
            )
    return (
        [Finding("lease-read", f"{len(bad)} reads of ended leases' keys:{_examples(bad)}")]
        if bad
        else []
    )


def check_lease_errors(lease_ops: Sequence[LeaseOp]) -> list[Finding]:
    odd = [
        f"{op.short()}: {op.message}"
        for op in lease_ops
        if op.error and op.error not in LEASE_EXPECTED_ERRORS
    ]
    return [Finding("errors", f"unexpected lease errors:{_examples(odd)}")] if odd else []


def check_leases(
    reference: Reference, lease_ops: Sequence[LeaseOp], ops: Sequence[Op]
) -> list[Finding]:
    """(a), (b), (c) and the lease workload's errors."""
    if not lease_ops:
        return []
    ends, out = check_lease_ends(reference, lease_ops)
    e_up = CommitBound(ops, lease_ops)
    out += check_lease_alive(ends, lease_ops, e_up)
    out += check_lease_reads(ends, lease_ops, e_up)
    out += check_lease_errors(lease_ops)
    return out


def check_run(data: RunData) -> list[Finding]:
    """Every check on one run."""
    reference, out = reference_of(data.reference, data.final_revision)
    written = written_values(reference)
    out += check_durability(reference, data.ops, data.final_revision, data.members, data.lease_ops)
    out += check_trace(data.ops, written)
    out += check_linearizable(data.ops, written)
    out += check_partitions(data.ops, data.faults)
    out += check_liveness(data.ops, data.faults)
    out += check_watches(data.watches, reference, data.final_revision)
    out += check_errors(data.ops)
    out += check_leases(reference, data.lease_ops, data.ops)
    return out


__all__ = [
    "LIVENESS_S",
    "CommitBound",
    "FaultRecord",
    "Finding",
    "LeaseEnd",
    "MemberFinal",
    "RunData",
    "check_durability",
    "check_errors",
    "check_lease_alive",
    "check_lease_ends",
    "check_lease_errors",
    "check_lease_reads",
    "check_leases",
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
