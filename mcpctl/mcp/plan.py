"""Apply, export and rollback: a diff, then ONE guarded txn (server side).

Every write reads the keys under a prefix at a revision R, computes the
changes, and writes them in one txn whose compares say "nothing under the
prefix changed since R"::

    MOD   LESS  R+1  (prefix)   no key was created or modified after R
    COUNT EQUAL n    (prefix)   no key was deleted (n = the keys at R)

So watchers see the whole change at one revision or nothing, and a writer
that raced the diff makes the txn fail: ``CompareFailed`` ("... changed
since revision R; re-run ..."), never a silent overwrite. A write with no
changes writes nothing (no new revision).

Reads and writes go through a ``KVBackend`` (``mcpctl.server.node.Node`` in the
server): there is no second implementation of either here. The time budget
of one call is shared by its reads and its txn.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from mcpctl import limits
from mcpctl._proto.mcp.v1 import kv_pb2 as kv
from mcpctl.errors import (
    Compacted,
    CompareFailed,
    DeadlineExceeded,
    FailedPrecondition,
    InvalidArgument,
    ResourceExhausted,
)
from mcpctl.fleet.keys import is_fleet_key

Op = Literal["add", "change", "delete"]


class KVBackend(Protocol):
    """What plan needs from a node: linearizable (or past) reads and txns."""

    async def range(self, req: kv.RangeRequest, timeout_s: float) -> kv.RangeResponse: ...

    async def txn(self, req: kv.TxnRequest, timeout_s: float) -> kv.TxnResponse: ...


@dataclass(frozen=True, slots=True)
class Change:
    """One key a write changes: ``prev_value`` None for add, ``value`` None for delete."""

    op: Op
    key: str
    prev_value: bytes | None
    value: bytes | None


@dataclass(frozen=True, slots=True)
class Outcome:
    changes: list[Change]
    # The revision the changes were computed against.
    read_revision: int
    # The revision the txn created (0: dry run, or nothing to write).
    revision: int


# -- the diff ----------------------------------------------------------------------
def _parsed(value: bytes) -> Any:
    """A value as data (JSON, else YAML), or the bytes themselves when it is neither."""
    try:
        return json.loads(value)
    except ValueError:
        pass
    import yaml  # here: the CLI imports this module for Change and should start fast

    try:
        return yaml.safe_load(value)
    except (yaml.YAMLError, UnicodeDecodeError):
        return value


def same_value(a: bytes, b: bytes) -> bool:
    """Equal bytes, or equal data (``{"a": 1}`` and ``a: 1`` are the same config)."""
    return a == b or _parsed(a) == _parsed(b)


def diff(
    current: Mapping[str, bytes], desired: Mapping[str, bytes], *, exact: bool = False
) -> list[Change]:
    """The changes that turn ``current`` into ``desired``, by key.

    Values that hold the same data count as equal unless ``exact``.
    """
    out: list[Change] = []
    for key in sorted(current.keys() | desired.keys()):
        old, new = current.get(key), desired.get(key)
        if old is None and new is not None:
            out.append(Change("add", key, None, new))
        elif new is None and old is not None:
            out.append(Change("delete", key, old, None))
        elif old is not None and new is not None:
            unchanged = old == new if exact else same_value(old, new)
            if not unchanged:
                out.append(Change("change", key, old, new))
    return out


def field_changes(change: Change) -> Iterator[tuple[str, Any, Any]]:
    """``(path, old, new)`` for each field that differs, for JSON/YAML object values.

    A value that is not an object is one field named ``""``. Missing is ``None``.
    """
    old = _parsed(change.prev_value) if change.prev_value is not None else None
    new = _parsed(change.value) if change.value is not None else None
    # An added (deleted) object lists its fields as set from (to) nothing.
    if old is None and isinstance(new, dict):
        old = {}
    elif new is None and isinstance(old, dict):
        new = {}
    yield from _walk("", old, new)


def _walk(path: str, old: Any, new: Any) -> Iterator[tuple[str, Any, Any]]:
    if isinstance(old, dict) and isinstance(new, dict):
        for k in list(old) + [k for k in new if k not in old]:
            yield from _walk(f"{path}.{k}" if path else str(k), old.get(k), new.get(k))
    elif isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        for i, (a, b) in enumerate(zip(old, new, strict=True)):
            yield from _walk(f"{path}[{i}]", a, b)
    elif old != new:
        yield path, old, new


# -- the guarded txn -------------------------------------------------------------
def guard(key: bytes, prefix: bool, read_revision: int, count: int) -> list[kv.Compare]:
    """Compares that hold only if nothing under ``key`` changed since ``read_revision``."""
    return [
        kv.Compare(
            key=key,
            prefix=prefix,
            target=kv.Compare.MOD,
            result=kv.Compare.LESS,
            mod_revision=read_revision + 1,
        ),
        kv.Compare(
            key=key,
            prefix=prefix,
            target=kv.Compare.COUNT,
            result=kv.Compare.EQUAL,
            count=count,
        ),
    ]


def txn_request(
    changes: list[Change], compares: list[kv.Compare], request_id: str
) -> kv.TxnRequest:
    if len(changes) > limits.TXN_OPS_MAX:
        raise InvalidArgument(
            f"the change writes {len(changes)} keys; one txn writes at most "
            f"{limits.TXN_OPS_MAX} (split it in two applies)"
        )
    ops = []
    for ch in changes:
        key = ch.key.encode("utf-8")
        if ch.value is None:
            ops.append(kv.RequestOp(request_delete_range=kv.DeleteRangeRequest(key=key)))
        else:
            ops.append(kv.RequestOp(request_put=kv.PutRequest(key=key, value=ch.value)))
    return kv.TxnRequest(compare=compares, success=ops, request_id=request_id)


class _Budget:
    """One deadline shared by the reads and the write of one call."""

    def __init__(self, timeout_s: float) -> None:
        self._deadline = time.monotonic() + timeout_s

    def left(self) -> float:
        remaining = self._deadline - time.monotonic()
        if remaining <= 0:
            raise DeadlineExceeded("the deadline passed before the call finished; nothing written")
        return remaining


async def read(
    backend: KVBackend,
    key: bytes,
    prefix: bool,
    revision: int,
    budget: _Budget,
    *,
    serializable: bool = False,
) -> tuple[dict[str, bytes], int]:
    """The keys (under ``key``) at ``revision`` (0 = latest) and the revision read."""
    req = kv.RangeRequest(key=key, prefix=prefix, revision=revision, serializable=serializable)
    resp = await backend.range(req, budget.left())
    if resp.more:
        raise ResourceExhausted(
            f"{key.decode('utf-8', 'replace')!r} holds more than one read returns"
        )
    kvs = {item.key.decode("utf-8"): item.value for item in resp.kvs}
    return kvs, revision or resp.header.revision


async def write(
    backend: KVBackend,
    key: bytes,
    prefix: bool,
    changes: list[Change],
    read_revision: int,
    count: int,
    request_id: str,
    budget: _Budget,
    *,
    stale: str,
) -> int:
    """Write ``changes`` in one txn guarded since ``read_revision``; the new revision
    (0 when there was nothing to write). ``stale`` is the message when the guard fails."""
    req = txn_request(changes, guard(key, prefix, read_revision, count), request_id)
    resp = await backend.txn(req, budget.left())
    if not resp.succeeded:
        raise CompareFailed(stale)
    return resp.header.revision if changes else 0


# -- the operations ------------------------------------------------------------------
# layout.ROOT as bytes (layout imports pydantic; this module stays light for the CLI).
ROOT_KEY = b"/mcp/"


async def apply(
    backend: KVBackend,
    document: str,
    *,
    dry_run: bool,
    expected_revision: int,
    request_id: str,
    timeout_s: float,
) -> Outcome:
    """Validate the document, diff it against /mcp/ at R, write the difference at once.

    R is ``expected_revision`` when given (what a dry run showed), else the
    latest revision. With R given and nothing to change, the guard is still
    checked, so a config changed since R is never reported as applied.
    """
    from mcpctl.mcp import layout, schema  # here: pydantic only when validating (CLI start-up)

    if expected_revision < 0:
        raise InvalidArgument("apply.expected_revision: must not be negative")
    desired = layout.encode(schema.parse_document(document))
    budget = _Budget(timeout_s)
    everything, read_revision = await read(backend, ROOT_KEY, True, expected_revision, budget)
    current = config_keys(everything)
    changes = diff(current, desired)
    if dry_run or (not changes and not expected_revision):
        return Outcome(changes, read_revision, 0)
    req = txn_request(changes, config_guard(current, read_revision), request_id)
    resp = await backend.txn(req, budget.left())
    if not resp.succeeded:
        raise CompareFailed(
            f"the live MCP config changed since revision {read_revision}; re-run apply"
        )
    return Outcome(changes, read_revision, resp.header.revision if changes else 0)


def config_keys(kvs: Mapping[str, bytes]) -> dict[str, bytes]:
    """``kvs`` without the live fleet's keys (docs/fleet.md): desired config only."""
    return {k: v for k, v in kvs.items() if not is_fleet_key(k)}


# The parts of the MCP layout (layout.py; here as text: layout imports pydantic).
_SECTION_KEYS = ("/mcp/auth", "/mcp/logging", "/mcp/routing", "/mcp/server")
_PREFIXES = ("/mcp/models/", "/mcp/rate_limits/")


def config_guard(current: Mapping[str, bytes], read_revision: int) -> list[kv.Compare]:
    """Compares that hold only if no desired-config key under /mcp/ changed
    since ``read_revision``: the fleet under /mcp/ changes all the time (load
    reports) and must not make every apply fail, so /mcp/ is guarded part by
    part: each section key, each layout prefix (and its count), and each other
    key ``current`` holds (apply deletes those)."""
    out: list[kv.Compare] = []
    for key in _SECTION_KEYS:
        out += guard(key.encode(), False, read_revision, int(key in current))
    for prefix in _PREFIXES:
        count = sum(1 for k in current if k.startswith(prefix))
        out += guard(prefix.encode(), True, read_revision, count)
    others = [k for k in current if k not in _SECTION_KEYS and not k.startswith(_PREFIXES)]
    for key in sorted(others):
        out += guard(key.encode(), False, read_revision, 1)
    return out


async def export(backend: KVBackend, revision: int, timeout_s: float) -> tuple[str, int]:
    """The keys under /mcp/ at ``revision`` (0 = latest) as one YAML document."""
    from mcpctl.mcp import layout, schema  # here: pydantic only when validating (CLI start-up)

    if revision < 0:
        raise InvalidArgument("export.revision: must not be negative")
    kvs, read_revision = await read(backend, ROOT_KEY, True, revision, _Budget(timeout_s))
    try:
        doc = layout.decode(config_keys(kvs))
    except schema.SchemaError as e:
        title = f"the keys under {layout.ROOT} at revision {read_revision} are not a valid config"
        raise FailedPrecondition(schema.describe(e.problems, title)) from None
    comment = f"MCP config exported from mcp-config at revision {read_revision}"
    return schema.to_yaml(doc, comment=comment), read_revision


async def rollback(
    backend: KVBackend,
    key: bytes,
    *,
    prefix: bool,
    to_revision: int,
    dry_run: bool,
    request_id: str,
    timeout_s: float,
) -> Outcome:
    """Make ``key`` (every key under it, with ``prefix``) what it was at ``to_revision``.

    Keys that did not exist then are deleted; the values are written back
    byte for byte, in one guarded txn, as a new revision.
    """
    if to_revision <= 0:
        raise InvalidArgument("rollback.to_revision: must be positive")
    budget = _Budget(timeout_s)
    current, read_revision = await read(backend, key, prefix, 0, budget)
    if to_revision > read_revision:
        raise InvalidArgument(
            f"rollback.to_revision: {to_revision} is in the future "
            f"(current revision {read_revision})"
        )
    try:
        # Serializable: this member just proved it is at read_revision or later.
        past, _ = await read(backend, key, prefix, to_revision, budget, serializable=True)
    except Compacted as e:
        raise compacted(to_revision, e.compact_revision) from None
    changes = diff(current, past, exact=True)
    if dry_run or not changes:
        return Outcome(changes, read_revision, 0)
    what = f"{'prefix' if prefix else 'key'} {key.decode('utf-8', 'replace')!r}"
    stale = f"{what} changed since revision {read_revision}; re-run rollback"
    revision = await write(
        backend, key, prefix, changes, read_revision, len(current), request_id, budget, stale=stale
    )
    return Outcome(changes, read_revision, revision)


def compacted(revision: int, compact_revision: int) -> Compacted:
    """``Compacted`` with a message that says what to do."""
    err = Compacted(revision, compact_revision)
    err.message = (
        f"cannot roll back to revision {revision}: it has been compacted; "
        f"the oldest revision still available is {compact_revision}"
    )
    err.args = (err.message,)
    return err


__all__ = [
    "Change",
    "KVBackend",
    "Outcome",
    "apply",
    "compacted",
    "diff",
    "export",
    "field_changes",
    "guard",
    "rollback",
    "same_value",
    "txn_request",
]
