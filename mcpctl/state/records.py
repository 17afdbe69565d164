"""One compact record per key version, shared by the current state and the history.

A ``Version`` holds a key version's serialized ``KeyValue`` (``blob``, the
canonical protobuf bytes: the value is kept there and nowhere else) and the
few fields the store reads on every write (revisions, version, lease). The
store's key table and the history ring point at the same ``Version`` objects:
a put creates one, a later put or delete keeps it as the event's ``prev_kv``.
Versions are never changed after creation (sharing depends on it).

Protobuf messages are built only when answering, from wire bytes assembled
here and parsed once by the C runtime (``RangeResponse.FromString`` of many
blobs is ~6x cheaper than appending message objects one by one). Every
function here writes what ``SerializeToString(deterministic=True)`` would
(fields in number order, zero values left out): tests/unit/test_state_records.py
checks it, and the snapshot bytes stay what they were.
"""

from __future__ import annotations

from collections.abc import Iterable

from mcpctl._proto.mcp.v1 import kv_pb2 as kv

_BYTE = [bytes((i,)) for i in range(128)]
_U64 = 1 << 64


def varint(n: int) -> bytes:
    """Protobuf's base-128 varint (negative int64 as ten bytes, as protobuf does)."""
    if n < 0x80:
        if n >= 0:
            return _BYTE[n]
        n += _U64
    elif n < 0x4000:
        return bytes(((n & 0x7F) | 0x80, n >> 7))
    elif n < 0x200000:
        return bytes(((n & 0x7F) | 0x80, ((n >> 7) & 0x7F) | 0x80, n >> 14))
    elif 0x800000000 <= n < 0x40000000000:  # six bytes: every ms timestamp until 2109
        return bytes(
            (
                (n & 0x7F) | 0x80,
                ((n >> 7) & 0x7F) | 0x80,
                ((n >> 14) & 0x7F) | 0x80,
                ((n >> 21) & 0x7F) | 0x80,
                ((n >> 28) & 0x7F) | 0x80,
                n >> 35,
            )
        )
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def framed(tag: bytes, data: bytes) -> bytes:
    """One length-delimited field (bytes, string or message)."""
    return tag + varint(len(data)) + data


def key_value_wire(
    key: bytes, value: bytes, create_revision: int, mod_revision: int, version: int, lease: int
) -> bytes:
    """The canonical ``KeyValue`` bytes."""
    parts: list[bytes] = []
    if key:
        parts += (b"\x0a", varint(len(key)), key)
    if value:
        parts += (b"\x12", varint(len(value)), value)
    if create_revision:
        parts += (b"\x18", varint(create_revision))
    if mod_revision:
        parts += (b"\x20", varint(mod_revision))
    if version:
        parts += (b"\x28", varint(version))
    if lease:
        parts += (b"\x30", varint(lease))
    return b"".join(parts)


class Version:
    """One key version; immutable by convention (shared by state and history)."""

    __slots__ = ("blob", "create_revision", "key", "lease", "mod_revision", "version")

    def __init__(
        self,
        key: bytes,
        blob: bytes,
        create_revision: int,
        mod_revision: int,
        version: int,
        lease: int,
    ) -> None:
        self.key = key
        self.blob = blob
        self.create_revision = create_revision
        self.mod_revision = mod_revision
        self.version = version
        self.lease = lease

    @classmethod
    def new(
        cls,
        key: bytes,
        value: bytes,
        create_revision: int,
        mod_revision: int,
        version: int,
        lease: int,
    ) -> Version:
        blob = key_value_wire(key, value, create_revision, mod_revision, version, lease)
        return cls(key, blob, create_revision, mod_revision, version, lease)

    @classmethod
    def of(cls, item: kv.KeyValue) -> Version:
        """From a message (a snapshot's); protobuf's own bytes are canonical."""
        return cls(
            item.key,
            item.SerializeToString(deterministic=True),
            item.create_revision,
            item.mod_revision,
            item.version,
            item.lease,
        )

    @property
    def value(self) -> bytes:
        """Parsed from the blob on demand (only value compares need it)."""
        return kv.KeyValue.FromString(self.blob).value

    def message(self) -> kv.KeyValue:
        return kv.KeyValue.FromString(self.blob)

    def keys_only_wire(self) -> bytes:
        """The ``KeyValue`` of a keys_only read: no value, no lease."""
        return key_value_wire(
            self.key, b"", self.create_revision, self.mod_revision, self.version, 0
        )


def messages(versions: Iterable[Version]) -> list[kv.KeyValue]:
    """Many versions as messages, parsed in one go."""
    wire = b"".join(framed(b"\x12", v.blob) for v in versions)
    return list(kv.RangeResponse.FromString(wire).kvs)


# --- events and revisions ---------------------------------------------------------------
# An event is (new, prev): a PUT has ``new`` (prev None when the key was
# created); a DELETE has new None and ``prev`` (only existing keys are
# deleted). A revision keeps its events flat: (new0, prev0, new1, prev1, ...).
Events = tuple["Version | None", ...]


def event_wire(new: Version | None, prev: Version | None, revision: int) -> bytes:
    """The canonical ``Event`` bytes; a DELETE's kv is the key and its revision."""
    if new is not None:
        blob = new.blob
        if prev is None:
            return b"".join((b"\x12", varint(len(blob)), blob))
        was = prev.blob
        return b"".join((b"\x12", varint(len(blob)), blob, b"\x1a", varint(len(was)), was))
    assert prev is not None
    gone = key_value_wire(prev.key, b"", 0, revision, 0, 0)
    was = prev.blob
    return b"".join((b"\x08\x01\x12", varint(len(gone)), gone, b"\x1a", varint(len(was)), was))


def event_key(new: Version | None, prev: Version | None) -> bytes:
    return new.key if new is not None else prev.key  # type: ignore[union-attr]


class Revision:
    """One revision of the history: who wrote it, when, and its events.

    ``head`` is the revision and ``ts_ms`` fields already encoded (the time is
    needed only to answer, so it is kept in the form answers need).
    """

    __slots__ = ("events", "head", "identity", "nbytes", "revision")

    def __init__(self, revision: int, ts_ms: int, identity: str, events: Events) -> None:
        self.revision = revision
        if revision and ts_ms:
            self.head = b"".join((b"\x08", varint(revision), b"\x10", varint(ts_ms)))
        else:
            head = [b"\x08", varint(revision)] if revision else []
            if ts_ms:
                head += (b"\x10", varint(ts_ms))
            self.head = b"".join(head)
        self.identity = identity
        self.events = events
        # The serialized HistoryRevision's size (what the history's byte bound counts).
        self.nbytes = 0

    def pairs(self) -> Iterable[tuple[Version | None, Version | None]]:
        ev = self.events
        return zip(ev[0::2], ev[1::2], strict=True)

    def wire(self) -> bytes:
        """The canonical ``HistoryRevision`` bytes."""
        parts = [self.head]
        ev = self.events
        for i in range(0, len(ev), 2):
            one = event_wire(ev[i], ev[i + 1], self.revision)
            parts += (b"\x1a", varint(len(one)), one)
        if self.identity:
            who = self.identity.encode()
            parts += (b"\x22", varint(len(who)), who)
        return b"".join(parts)

    def entry_wire(self, new: Version | None, prev: Version | None) -> bytes:
        """The canonical ``HistoryEntry`` bytes of one of its events (same field
        numbers as HistoryRevision, one event)."""
        one = event_wire(new, prev, self.revision)
        parts = [self.head, b"\x1a", varint(len(one)), one]
        if self.identity:
            who = self.identity.encode()
            parts += (b"\x22", varint(len(who)), who)
        return b"".join(parts)
