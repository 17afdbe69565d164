"""The console's pure parts, without a network: the HTTP error mapping and the
status feed (one computation per tick shared by every stream, bounded queues,
bounded streams, snapshots in order, nothing computed while nobody watches)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from mcpctl import errors
from mcpctl.mcp.schema import SchemaError, parse_document
from mcpctl.server.console.diff import display_text, line_diff
from mcpctl.server.console.feed import FeedLimits, Snapshot, StatusFeed
from mcpctl.server.console.http import HTTP_STATUS, RequestTooLarge, error_body, http_status

FAST = FeedLimits(tick_s=0.01, in_flight_max=3, streams_max=2, samples_max=5, queue_max=2)


def every_error_class() -> list[type[errors.McpError]]:
    seen: list[type[errors.McpError]] = []
    todo: list[type[errors.McpError]] = [errors.McpError]
    while todo:
        cls = todo.pop()
        seen.append(cls)
        todo.extend(cls.__subclasses__())
    return [c for c in seen if c is not errors.McpError]


def test_every_error_class_has_a_deliberate_http_status() -> None:
    """Each class in the error tree (errors.py) maps through its gRPC code; none
    falls through to 500 except Internal, and the statuses are the documented ones."""
    for cls in every_error_class():
        assert cls.code in HTTP_STATUS, f"{cls.__name__} ({cls.code}) has no HTTP status"
    expected = {
        errors.InvalidArgument: 400,
        errors.NotFound: 404,
        errors.CompareFailed: 409,
        errors.FailedPrecondition: 409,
        errors.Unauthenticated: 401,
        errors.PermissionDenied: 403,
        errors.ResourceExhausted: 429,
        errors.Unavailable: 503,
        errors.OutcomeUnknown: 503,
        errors.DeadlineExceeded: 504,
        errors.Internal: 500,
        SchemaError: 400,
    }
    for cls, status in expected.items():
        err = SchemaError(["x: y"]) if cls is SchemaError else cls("boom")
        assert http_status(err) == status, cls.__name__
    assert http_status(errors.Compacted(1, 5)) == 409
    assert http_status(RequestTooLarge("big")) == 413


def test_error_bodies_are_one_line_with_the_problems_listed() -> None:
    """A multi-line error (several schema problems) becomes one line; the problems
    come as a list, each naming its path and none the value."""
    with pytest.raises(SchemaError) as caught:
        parse_document("models:\n  - name: a\n    endpoint: ftp://secret.example\n    weight: -1\n")
    body = error_body(caught.value)
    text = json.dumps(body)
    assert "\n" not in body["message"] and "secret" not in text
    assert body["error"] == "invalid_argument"
    assert body["problems"] == [
        "models[0].endpoint: not an http(s) URL",
        "models[0].weight: input should be greater than or equal to 0",
    ]
    assert body["message"].startswith("invalid MCP document (2 problems): models[0].endpoint")
    assert error_body(errors.NotFound("no key '/a'")) == {
        "error": "not_found",
        "message": "no key '/a'",
    }


class Counter:
    """A stand-in for the cluster status: counts its calls, optionally slow."""

    def __init__(self, delays_s: list[float] | None = None) -> None:
        self.calls = 0
        self.delays_s = delays_s or []

    async def __call__(self) -> Snapshot:
        self.calls += 1
        n = self.calls
        if n <= len(self.delays_s):
            await asyncio.sleep(self.delays_s[n - 1])
        return {"ts_ms": n, "members": [{"id": "n1", "lag_ms": n, "reachable": True}], "n": n}


async def take(feed: StatusFeed, stream: Any, count: int) -> list[Snapshot]:
    out = []
    for _ in range(count):
        item = await asyncio.wait_for(stream.queue.get(), 5.0)
        assert item is not None
        out.append(item)
    return out


def test_one_computation_per_tick_is_shared_by_every_stream() -> None:
    """Two open streams get the very same snapshots from one computation each tick,
    in order; the chart's samples are kept, bounded."""

    async def run() -> None:
        compute = Counter()
        feed = StatusFeed(compute, FAST)
        a, b = feed.open(), feed.open()
        got_a = await take(feed, a, 2)
        got_b = await take(feed, b, 2)
        assert [s["seq"] for s in got_a] == [s["seq"] for s in got_b]
        assert all(x is y for x, y in zip(got_a, got_b, strict=True))
        await asyncio.sleep(0.2)
        assert compute.calls == feed.computed  # not once per stream
        assert len(feed.samples()) == FAST.samples_max
        assert feed.samples()[-1]["lag_ms"] == {"n1": feed.samples()[-1]["ts_ms"]}
        await feed.close()

    asyncio.run(run())


def test_streams_are_bounded_and_slow_ones_keep_only_the_newest() -> None:
    """Past streams_max: ResourceExhausted. A stream nobody reads holds at most
    queue_max snapshots, the newest ones; closing the feed ends every stream."""

    async def run() -> None:
        feed = StatusFeed(Counter(), FAST)
        slow = feed.open()
        feed.open()
        with pytest.raises(errors.ResourceExhausted):
            feed.open()
        await asyncio.sleep(0.2)
        assert slow.queue.qsize() == FAST.queue_max and slow.dropped > 0
        newest = [slow.queue.get_nowait(), slow.queue.get_nowait()]
        assert newest[0] is not None and newest[1] is not None
        assert newest[0]["seq"] < newest[1]["seq"]
        await feed.close()
        assert await asyncio.wait_for(slow.queue.get(), 1.0) is None
        with pytest.raises(errors.ResourceExhausted):
            feed.open()

    asyncio.run(run())


def test_slow_computations_overlap_but_never_publish_out_of_order() -> None:
    """A member that does not answer makes a computation slow: later ones still
    publish each tick (at most in_flight_max at once), and the slow one's late
    result is dropped instead of going back in time."""

    async def run() -> None:
        compute = Counter(delays_s=[0.3])  # the first computation is slow
        feed = StatusFeed(compute, FAST)
        stream = feed.open()
        first = await take(feed, stream, 3)
        assert first[0]["seq"] > 1  # the later computations were not held up
        await asyncio.sleep(0.4)  # the slow one has finished by now
        seqs = [s["seq"] for s in first]
        while not stream.queue.empty():
            item = stream.queue.get_nowait()
            assert item is not None
            seqs.append(item["seq"])
        assert seqs == sorted(seqs) and 1 not in seqs
        await feed.close()

    asyncio.run(run())


def test_nothing_is_computed_while_no_stream_is_open() -> None:
    """The feed computes only while someone watches (an idle console costs nothing)."""

    async def run() -> None:
        compute = Counter()
        feed = StatusFeed(compute, FAST)
        await asyncio.sleep(0.05)
        assert compute.calls == 0
        stream = feed.open()
        await take(feed, stream, 1)
        feed.close_stream(stream)
        await asyncio.sleep(0.05)
        calls = compute.calls
        await asyncio.sleep(0.1)
        assert compute.calls == calls
        await feed.close()

    asyncio.run(run())


# -- the config page's diff (computed on the node) ---------------------------------------


def test_line_diff_keeps_common_lines_and_marks_changes_in_order() -> None:
    """A changed line shows as removed then added, between the unchanged ones."""
    assert line_diff("a\nb\nc", "a\nB\nc\nd") == [
        (" ", "a"),
        ("-", "b"),
        ("+", "B"),
        (" ", "c"),
        ("+", "d"),
    ]


def test_line_diff_of_equal_and_empty_values() -> None:
    """Equal values diff to no change; an absent value (empty) adds every line."""
    assert [op for op, _ in line_diff("x\ny", "x\ny")] == [" ", " "]
    assert line_diff("", "x") == [("-", ""), ("+", "x")]


def test_line_diff_past_its_bound_is_a_whole_replacement() -> None:
    """More lines than the limit on a side: every old line removed, every new one added."""
    old, new = "a\nb\nc", "a\nb\nd"
    assert line_diff(old, new, lines_max=2) == [
        ("-", "a"),
        ("-", "b"),
        ("-", "c"),
        ("+", "a"),
        ("+", "b"),
        ("+", "d"),
    ]


def test_json_values_are_compared_indented_so_a_field_is_a_line() -> None:
    """Two JSON values on one line each differ in exactly the field that changed."""
    a = display_text(b'{"endpoint": "https://a", "weight": 3}')
    b = display_text(b'{"endpoint": "https://b", "weight": 3}')
    ops = line_diff(a, b)
    assert [line for op, line in ops if op == "-"] == ['  "endpoint": "https://a",']
    assert [line for op, line in ops if op == "+"] == ['  "endpoint": "https://b",']
    assert display_text(b"not: json") == "not: json"
