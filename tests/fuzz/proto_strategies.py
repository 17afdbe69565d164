"""Hypothesis strategies for arbitrary-but-typed protobuf messages, from descriptors.

``messages(descriptor, flavour)`` walks a message descriptor and draws a
value for every field by its type, one random branch (or none) of each
``oneof``, and nested messages to a bounded depth, so the same walker covers
every RPC, including fields added later. Two flavours:

- ``hostile``: integers biased to edges (0, -1, 2^31, 2^63-1, -2^63, ...),
  out-of-range enum numbers (proto3 enums are open, so they reach the
  server), arbitrary text, and repeated fields just over their limit;
- ``plausible``: small non-negative integers, known enum values, short
  lists: requests that often pass validation, so the state machine, the
  watch hub and the txn paths behind the checks get exercised too.

``Flavour.overrides`` replaces the strategy of a field by its name (keys,
values, request ids, ...).

``mutated(data)`` garbles serialized bytes: truncation, flipped bytes, junk
appended, a length prefix that lies.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from google.protobuf import message_factory
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from hypothesis import strategies as st

INT64_EDGES = (0, 1, -1, 2**31 - 1, 2**31, 2**32, 2**53 + 1, 2**63 - 1, -(2**63), -(2**63) + 1)
UINT64_EDGES = (0, 1, 2**31, 2**32 - 1, 2**32, 2**63, 2**64 - 1)
UINT32_EDGES = (0, 1, 99, 100, 600_000, 600_001, 2**31, 2**32 - 1)
INT32_EDGES = (0, 1, -1, 2**31 - 1, -(2**31))

# Repeated fields get 0..REPEATED_MAX elements (or `over` for the named ones).
REPEATED_MAX = 3
DEPTH_MAX = 4


@dataclass(frozen=True)
class Flavour:
    """How to draw fields: ``plausible`` (often valid) or hostile, plus per-name overrides."""

    plausible: bool
    overrides: Mapping[str, st.SearchStrategy[Any]] = field(default_factory=dict)
    # Repeated fields (by name) that sometimes get exactly this many elements.
    over_limit: Mapping[str, int] = field(default_factory=dict)


def _ints(lo: int, hi: int, edges: tuple[int, ...]) -> st.SearchStrategy[int]:
    # Small values hit real revisions and versions; edges and the full range hit the checks.
    return st.one_of(
        st.integers(max(lo, -2), min(hi, 40)), st.sampled_from(edges), st.integers(lo, hi)
    )


# Plausible: revisions, limits and counts of a small store; 100 and 1000 are
# also valid watch progress intervals.
PLAUSIBLE_INTS = st.one_of(st.integers(0, 40), st.sampled_from([100, 1000]))


def scalar(fd: FieldDescriptor, flavour: Flavour) -> st.SearchStrategy[Any]:
    """A strategy for one value of a non-message field, by its wire type."""
    override = flavour.overrides.get(fd.name)
    if override is not None:
        return override
    return _plausible(fd) if flavour.plausible else _hostile(fd)


def _plausible(fd: FieldDescriptor) -> st.SearchStrategy[Any]:
    t = fd.type
    if t == FieldDescriptor.TYPE_BOOL:
        return st.booleans()
    if t == FieldDescriptor.TYPE_ENUM:
        return st.sampled_from(_enum_numbers(fd))
    if t == FieldDescriptor.TYPE_STRING:
        return st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=12)
    if t == FieldDescriptor.TYPE_BYTES:
        return st.binary(max_size=12)
    if t in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
        return st.floats(0, 100)
    return PLAUSIBLE_INTS


def _hostile(fd: FieldDescriptor) -> st.SearchStrategy[Any]:
    t = fd.type
    if t in (
        FieldDescriptor.TYPE_INT64,
        FieldDescriptor.TYPE_SINT64,
        FieldDescriptor.TYPE_SFIXED64,
    ):
        return _ints(-(2**63), 2**63 - 1, INT64_EDGES)
    if t in (FieldDescriptor.TYPE_UINT64, FieldDescriptor.TYPE_FIXED64):
        return _ints(0, 2**64 - 1, UINT64_EDGES)
    if t in (FieldDescriptor.TYPE_UINT32, FieldDescriptor.TYPE_FIXED32):
        return _ints(0, 2**32 - 1, UINT32_EDGES)
    if t in (
        FieldDescriptor.TYPE_INT32,
        FieldDescriptor.TYPE_SINT32,
        FieldDescriptor.TYPE_SFIXED32,
    ):
        return _ints(-(2**31), 2**31 - 1, INT32_EDGES)
    if t == FieldDescriptor.TYPE_BOOL:
        return st.booleans()
    if t == FieldDescriptor.TYPE_ENUM:
        return st.one_of(st.sampled_from(_enum_numbers(fd)), st.integers(-(2**31), 2**31 - 1))
    if t == FieldDescriptor.TYPE_STRING:
        return st.text(max_size=70)
    if t == FieldDescriptor.TYPE_BYTES:
        return st.binary(max_size=70)
    if t in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
        return st.floats(allow_nan=True, allow_infinity=True, width=32)
    raise AssertionError(f"no strategy for {fd.full_name} (type {t})")


def _enum_numbers(fd: FieldDescriptor) -> list[int]:
    assert fd.enum_type is not None, fd.full_name
    return [v.number for v in fd.enum_type.values]


def _synthetic(fd: FieldDescriptor) -> bool:
    """A proto3 `optional` field sits alone in a oneof named after it."""
    oneof = fd.containing_oneof
    return oneof is not None and oneof.name == f"_{fd.name}" and len(oneof.fields) == 1


@st.composite
def messages(
    draw: st.DrawFn,
    descriptor: Descriptor,
    flavour: Flavour,
    depth: int = 0,
) -> Message:
    """One message of ``descriptor``'s type with every field drawn (or left unset)."""
    msg: Message = message_factory.GetMessageClass(descriptor)()
    chosen: set[str] = set()
    for oneof in descriptor.oneofs:
        if len(oneof.fields) == 1 and oneof.fields[0].name == oneof.name[1:]:
            continue  # synthetic (proto3 optional): handled as a plain field below
        pick = draw(st.sampled_from([None, *(f.name for f in oneof.fields)]))
        if pick is not None:
            chosen.add(pick)
    for fd in descriptor.fields:
        in_oneof = fd.containing_oneof is not None and not _synthetic(fd)
        if in_oneof and fd.name not in chosen:
            continue
        if not in_oneof and not draw(st.booleans()):
            continue  # unset: the proto3 default (or absent, for optional)
        _set_field(draw, msg, fd, flavour, depth)
    return msg


def _set_field(
    draw: st.DrawFn,
    msg: Message,
    fd: FieldDescriptor,
    flavour: Flavour,
    depth: int,
) -> None:
    is_message = fd.type == FieldDescriptor.TYPE_MESSAGE
    if is_message and depth >= DEPTH_MAX:
        return
    one: st.SearchStrategy[Any]
    if is_message:
        assert fd.message_type is not None, fd.full_name
        one = messages(fd.message_type, flavour, depth + 1)
    else:
        one = scalar(fd, flavour)
    if not fd.is_repeated:
        value = draw(one)
        if is_message:
            getattr(msg, fd.name).CopyFrom(value)
        else:
            setattr(msg, fd.name, value)
        return
    counts = [st.integers(0, REPEATED_MAX)]
    if fd.name in flavour.over_limit:
        counts.append(st.just(flavour.over_limit[fd.name]))
    count = draw(st.one_of(*counts))
    # Past a handful, repeat what was drawn: a list over a limit needs its
    # length, not hundreds of distinct draws.
    distinct = [draw(one) for _ in range(min(count, REPEATED_MAX))]
    container = getattr(msg, fd.name)
    for i in range(count):
        item = distinct[i % len(distinct)]
        if is_message:
            container.add().CopyFrom(item)
        else:
            container.append(item)


@st.composite
def mutated(draw: st.DrawFn, data: bytes) -> bytes:
    """``data`` garbled: cut short, bytes flipped, junk appended or a lying length in front."""
    how = draw(st.sampled_from(["truncate", "flip", "append", "lying_length", "splice"]))
    if how == "truncate" and data:
        return data[: draw(st.integers(0, len(data) - 1))]
    if how == "flip" and data:
        out = bytearray(data)
        for _ in range(draw(st.integers(1, 4))):
            i = draw(st.integers(0, len(out) - 1))
            out[i] ^= draw(st.integers(1, 255))
        return bytes(out)
    if how == "lying_length":
        # A length-delimited field 1 whose varint length claims far more than follows.
        claimed = draw(st.sampled_from([0x7F, 0x3FFF, 2**28 - 1, 2**35]))
        varint = bytearray()
        while True:
            byte, claimed = claimed & 0x7F, claimed >> 7
            varint.append(byte | (0x80 if claimed else 0))
            if not claimed:
                break
        return b"\x0a" + bytes(varint) + data
    if how == "splice" and data:
        i = draw(st.integers(0, len(data)))
        return data[:i] + draw(st.binary(min_size=1, max_size=16)) + data[i:]
    return data + draw(st.binary(min_size=1, max_size=32))
