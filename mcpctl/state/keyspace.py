"""Key spans, compares and range answers: how the store selects keys and bounds a read.

Pure helpers shared by the store's reads and writes and by the history
(which matches its events against a span).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from mcpctl._proto.mcp.v1 import kv_pb2 as kv
from mcpctl.state.records import Version, framed, varint


@dataclass(slots=True)
class Span:
    """A key, or every key under a prefix."""

    key: bytes
    prefix: bool

    def matches(self, key: bytes) -> bool:
        return key.startswith(self.key) if self.prefix else key == self.key


def fill(
    req: kv.RangeRequest, items: Iterator[Version], response_bytes_max: int
) -> kv.RangeResponse:
    """The answer, assembled as wire bytes and parsed once (records.py)."""
    return kv.RangeResponse.FromString(fill_wire(req, items, response_bytes_max))


def fill_wire(req: kv.RangeRequest, items: Iterator[Version], response_bytes_max: int) -> bytes:
    """The answer as the wire bytes of a ``RangeResponse`` without its header."""
    parts: list[bytes] = []
    count = 0
    more = False
    size = 0
    for item in items:
        count += 1
        if req.count_only or more:
            continue
        if (req.limit and len(parts) >= req.limit) or size >= response_bytes_max:
            more = True
            continue
        if req.keys_only:
            parts.append(framed(b"\x12", item.keys_only_wire()))
            size += len(item.key) + 32
        else:
            parts.append(framed(b"\x12", item.blob))
            # The blob is the key, the value and a few varints.
            size += len(item.blob) + 16
    if more:
        parts.append(b"\x18\x01")
    if count:
        parts += (b"\x20", varint(count))
    return b"".join(parts)


def compare_one(cur: Version | None, c: kv.Compare) -> bool:
    """Whether one key's version (None: absent) passes a txn compare."""
    target = c.target
    actual: int | bytes
    wanted: int | bytes
    if target == kv.Compare.VERSION:
        actual, wanted = (cur.version if cur else 0), c.version
    elif target == kv.Compare.CREATE:
        actual, wanted = (cur.create_revision if cur else 0), c.create_revision
    elif target == kv.Compare.MOD:
        actual, wanted = (cur.mod_revision if cur else 0), c.mod_revision
    else:
        actual, wanted = (cur.value if cur else b""), c.value
    return holds(c.result, actual, wanted)


def holds(result: int, actual: int | bytes, wanted: int | bytes) -> bool:
    if result == kv.Compare.EQUAL:
        return actual == wanted
    if result == kv.Compare.NOT_EQUAL:
        return actual != wanted
    if result == kv.Compare.GREATER:
        return actual > wanted  # type: ignore[operator]
    return actual < wanted  # type: ignore[operator]


def show(key: bytes) -> str:
    return repr(key.decode("utf-8", "replace"))
