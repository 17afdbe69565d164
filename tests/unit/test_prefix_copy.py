"""The I/O-free part of both ConfigWatchers (``mcpctl/client/_prefix.py``): how
a watch message and a relist change the copy, and what they report."""

from __future__ import annotations

from mcpctl.client._prefix import Change, apply_batch, copy_differs, relist_changes
from mcpctl.client._values import Event, Header, KeyValue, WatchBatch


def kv(key: str, value: bytes, rev: int) -> KeyValue:
    return KeyValue(key, value, rev, rev, 1)


def batch(revision: int, *events: Event) -> WatchBatch:
    return WatchBatch(Header(1, 1, "n1", revision, 1), list(events))


def test_a_batch_is_applied_in_order_and_reports_previous_values() -> None:
    """A put over a key reports the old value; a delete removes the key; the
    events of one message are applied in order (a put then a delete of the
    same key leaves it absent)."""
    data = {"/a": kv("/a", b"old", 2)}
    changes = apply_batch(
        data,
        batch(
            5,
            Event("PUT", kv("/a", b"new", 5), None),
            Event("PUT", kv("/b", b"x", 5), None),
            Event("DELETE", kv("/b", b"", 5), None),
        ),
    )
    assert changes == [
        Change("PUT", "/a", b"new", b"old", 5),
        Change("PUT", "/b", b"x", None, 5),
        Change("DELETE", "/b", None, b"x", 5),
    ]
    assert data == {"/a": kv("/a", b"new", 5)}


def test_a_relist_reports_only_what_differs() -> None:
    """Rewritten and new keys are PUTs (with the old value), vanished keys are
    DELETEs at the read's revision, unchanged keys are not reported."""
    old = {
        "/same": kv("/same", b"s", 1),
        "/changed": kv("/changed", b"c1", 2),
        "/gone": kv("/gone", b"g", 3),
    }
    fresh = {
        "/same": kv("/same", b"s", 1),
        "/changed": kv("/changed", b"c2", 8),
        "/new": kv("/new", b"n", 9),
    }
    assert relist_changes(old, fresh, 10) == [
        Change("PUT", "/changed", b"c2", b"c1", 8),
        Change("PUT", "/new", b"n", None, 9),
        Change("DELETE", "/gone", None, b"g", 10),
    ]


def test_a_copy_differs_when_a_key_or_its_revision_does() -> None:
    data = {"/a": kv("/a", b"1", 4)}
    assert not copy_differs(data, [kv("/a", b"1", 4)])
    assert copy_differs(data, [kv("/a", b"1", 5)])
    assert copy_differs(data, [kv("/a", b"1", 4), kv("/b", b"2", 4)])
    assert copy_differs(data, [])
