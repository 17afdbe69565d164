"""Linearizability of one key's history: a register with compare-and-swap.

A bounded Wing-Gong search (the algorithm of Knossos and Porcupine, with
Lowe's memoization of (linearized set, state)): walk the history's call and
return events in time order; at a call, try to linearize that op now (the
model must accept it); at a return whose op is not yet linearized, undo the
last choice. A history is linearizable when every op is placed.

The model (``step``): state is the key's value, ``None`` when absent.

- put v: always possible; the state becomes v.
- cas e->v that succeeded: possible only when the state is e; becomes v.
- cas e->v that failed: possible only when the state is not e (and, when its
  failure branch read the key, equals what it read); no change.
- get (linearizable): possible only when the state is what it returned.

Ops of unknown outcome: the caller decides (``prepare``) which of them took
effect, from the committed history (the watch reference): one that did is a
write that completes at +infinity (it may be placed anywhere after its
invocation); one that did not is dropped, since a write that never took
effect, or a CAS that failed its compare, has no effect and returned nothing.
Failed ops and serializable reads are not part of the search (serializable
reads are checked by ``checks.check_trace`` instead).

The search is bounded by ``steps_max``; past it the answer is
``INCONCLUSIVE`` (reported as a failure: keep histories per key small). A
violation names the window: the op whose return could not be passed at the
deepest point the search reached, the ops concurrent with it, and the last
ops placed before it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from tests.chaos.history import Op, OpType, Result

STEPS_MAX_DEFAULT = 2_000_000
WINDOW_OPS_MAX = 12


class Verdict(StrEnum):
    OK = "ok"
    VIOLATION = "violation"
    INCONCLUSIVE = "inconclusive"


@dataclass(frozen=True, slots=True)
class KeyResult:
    key: str
    verdict: Verdict
    ops: int
    steps: int
    detail: str = ""

    def __str__(self) -> str:
        return f"{self.key}: {self.verdict.value} ({self.ops} ops): {self.detail}"


def step(state: str | None, op: Op) -> tuple[bool, str | None]:
    """The register model: may ``op`` happen in ``state``, and the state after it."""
    if op.type is OpType.PUT:
        return True, op.value
    if op.type is OpType.CAS:
        if op.succeeded:
            return (state == op.expect), op.value
        if state == op.expect:
            return False, state
        # A failed CAS read the key in its failure branch (unless replayed).
        return (not op.observed_known or state == op.observed), state
    if op.type is OpType.GET:
        return state == op.observed, state
    raise AssertionError(f"not a linearizable op: {op.type}")


def prepare(ops: Iterable[Op], applied_values: set[str]) -> list[Op]:
    """The ops of one key that enter the search (see the module docstring).

    ``applied_values``: values that the committed history shows were written
    (unique values make a write identifiable by its value).
    """
    out: list[Op] = []
    for op in ops:
        if op.type is OpType.SGET or op.result is Result.FAIL:
            continue
        if op.result is Result.UNKNOWN:
            if not op.is_write or op.value not in applied_values:
                continue  # never took effect: no trace, no result
            # It took effect: a write (a CAS that succeeded) completing "never".
            op = Op(
                client=op.client,
                type=op.type,
                key=op.key,
                invoke=op.invoke,
                complete=math.inf,
                result=Result.UNKNOWN,
                value=op.value,
                expect=op.expect,
                succeeded=True if op.type is OpType.CAS else None,
            )
        out.append(op)
    return out


@dataclass(eq=False, slots=True)
class _Entry:
    time: float
    call: bool
    index: int  # the op
    match: _Entry | None = None  # a call's return entry
    prev: _Entry | None = None
    next: _Entry | None = None


@dataclass(slots=True)
class _Search:
    ops: Sequence[Op]
    head: _Entry = field(default_factory=lambda: _Entry(-math.inf, False, -1))
    deepest: int = -1
    stuck_at: int = -1  # the op whose return stopped the deepest attempt
    placed_at_deepest: list[int] = field(default_factory=list)

    def build(self) -> None:
        entries: list[_Entry] = []
        for i, op in enumerate(self.ops):
            call = _Entry(op.invoke, True, i)
            ret = _Entry(op.complete, False, i)
            call.match = ret
            entries += [call, ret]
        # Calls before returns at the same instant: treat touching ops as concurrent.
        entries.sort(key=lambda e: (e.time, 0 if e.call else 1))
        prev = self.head
        for e in entries:
            prev.next = e
            e.prev = prev
            prev = e


def _lift(entry: _Entry) -> None:
    """Take a call and its return out of the list."""
    assert entry.prev is not None and entry.match is not None
    entry.prev.next = entry.next
    if entry.next is not None:
        entry.next.prev = entry.prev
    ret = entry.match
    assert ret.prev is not None
    ret.prev.next = ret.next
    if ret.next is not None:
        ret.next.prev = ret.prev


def _unlift(entry: _Entry) -> None:
    ret = entry.match
    assert ret is not None and ret.prev is not None and entry.prev is not None
    ret.prev.next = ret
    if ret.next is not None:
        ret.next.prev = ret
    entry.prev.next = entry
    if entry.next is not None:
        entry.next.prev = entry


def check_key(
    key: str,
    ops: Sequence[Op],
    *,
    initial: str | None = None,
    steps_max: int = STEPS_MAX_DEFAULT,
) -> KeyResult:
    """Is this one key's (prepared) history linearizable? Bounded by ``steps_max``."""
    search = _Search(ops)
    search.build()
    head = search.head
    state = initial
    linearized = 0
    stack: list[tuple[_Entry, str | None]] = []
    cache: set[tuple[int, str | None]] = set()
    entry = head.next
    steps = 0
    while head.next is not None:
        steps += 1
        if steps > steps_max:
            return KeyResult(key, Verdict.INCONCLUSIVE, len(ops), steps, "search bound reached")
        assert entry is not None, "the list ends with a return entry"
        if entry.call:
            ok, after = step(state, ops[entry.index])
            if ok:
                lin = linearized | (1 << entry.index)
                if (lin, after) not in cache:
                    cache.add((lin, after))
                    stack.append((entry, state))
                    state, linearized = after, lin
                    _lift(entry)
                    entry = head.next
                    continue
            entry = entry.next
            continue
        # A return whose call is still in the list: it must have been placed.
        if len(stack) > search.deepest:
            search.deepest = len(stack)
            search.stuck_at = entry.index
            search.placed_at_deepest = [e.index for e, _ in stack[-WINDOW_OPS_MAX:]]
        if not stack:
            return KeyResult(key, Verdict.VIOLATION, len(ops), steps, _window(search))
        top, state = stack.pop()
        linearized &= ~(1 << top.index)
        _unlift(top)
        entry = top.next
    return KeyResult(key, Verdict.OK, len(ops), steps)


def _window(search: _Search) -> str:
    ops = search.ops
    stuck = ops[search.stuck_at]
    concurrent = [
        op
        for op in ops
        if op is not stuck and op.invoke <= stuck.complete and op.complete >= stuck.invoke
    ][:WINDOW_OPS_MAX]
    placed = [ops[i] for i in search.placed_at_deepest]
    lines = [
        f"no linearization places {stuck.short()}",
        f"  after the longest valid prefix ({search.deepest} ops), ending with:",
        *(f"    {op.short()}" for op in placed),
        "  concurrent with it:",
        *(f"    {op.short()}" for op in concurrent),
    ]
    return "\n".join(lines)


def check(
    ops: Iterable[Op], applied_values: set[str], *, steps_max: int = STEPS_MAX_DEFAULT
) -> list[KeyResult]:
    """Every key of a history, each on its own (linearizability is local)."""
    by_key: dict[str, list[Op]] = {}
    for op in ops:
        by_key.setdefault(op.key, []).append(op)
    return [
        check_key(key, prepare(key_ops, applied_values), steps_max=steps_max)
        for key, key_ops in sorted(by_key.items())
    ]


__all__ = ["KeyResult", "Verdict", "check", "check_key", "prepare", "step"]
