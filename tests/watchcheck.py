"""Record watch streams and check them against the watch promises (DESIGN §4).

A test records what each stream received (``Recorder`` -> ``StreamRecord``)
and what it wrote (``WriteLog``), reads a *reference history* at the end
(``read_reference``: a fresh watch from an early revision on a healthy node,
or ``Reference.from_record`` of a stream that kept up), then checks:

- ``check_reference``: the reference is a contiguous run of revisions, every
  acknowledged write is in it at its acknowledged revision with exactly its
  changes, and every revision in it was written by a logged write that was
  acknowledged or of unknown outcome (never one that failed);
- ``check_stream``: the six promises on one recorded stream —
  ORDERED (event revisions never go down, within and across messages; an
  events message's header names its last event), UNIQUE (no (revision, key)
  twice), RELIABLE (every matching reference event between the stream's start
  and the last revision it saw or was told about is there, and nothing else),
  ATOMIC (the events of one revision come in exactly one message, all of
  them), RESUMABLE (after a reconnect the stream goes on at exactly the next
  revision), BOOKMARKABLE (a progress message's revision is >= every event
  revision already received);
- ``count_check``: a cheap event count for large fan-outs.

Violations are values (``Violation``), so the checker itself is unit-tested
with hand-made histories (tests/unit/test_watchcheck.py); ``assert_ok``
turns a list of them into one readable assertion.

Streams are recorded from the SDK (``WatchBatch``, one logical stream across
reconnects: every underlying call starts with a ``created`` message) or from
raw gRPC (``WatchResponse``). ``Recorder.follow``/``follow_raw`` run a stream
on a thread of its own; waits on a record (``wait_covered``, ``wait_ended``)
are condition waits with a deadline, never sleeps.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

import grpc

from mcpctl import limits
from mcpctl._proto.mcp.v1 import kv_pb2, watch_pb2, watch_pb2_grpc
from mcpctl.client import Client, WatchBatch
from mcpctl.errors import (
    DeadlineExceeded,
    McpError,
    OutcomeUnknown,
    Unavailable,
    from_status,
)

# How many examples a violation message lists before "...".
EXAMPLES_MAX = 5
# Bounds on one recorded stream (a runaway stream fails instead of eating memory).
STREAM_MESSAGES_MAX = 1_000_000
FOLLOW_DEADLINE_S_DEFAULT = 300.0
REFERENCE_TIMEOUT_S_DEFAULT = 60.0
REFERENCE_PROGRESS_MS = 200


class Promise(StrEnum):
    ORDERED = "ordered"
    UNIQUE = "unique"
    RELIABLE = "reliable"
    ATOMIC = "atomic"
    RESUMABLE = "resumable"
    BOOKMARKABLE = "bookmarkable"
    # Not a stream promise: the reference history against the write log.
    HISTORY = "history"


@dataclass(frozen=True, slots=True)
class Violation:
    promise: Promise
    stream: str
    detail: str

    def __str__(self) -> str:
        return f"[{self.promise.value}] {self.stream}: {self.detail}"


class EventType(StrEnum):
    PUT = "PUT"
    DELETE = "DELETE"


@dataclass(frozen=True, slots=True)
class Ev:
    """One event as delivered; ``value`` is b"" for a DELETE."""

    revision: int
    key: str
    type: EventType
    value: bytes
    prev_value: bytes | None = field(default=None, compare=False)

    @property
    def change(self) -> tuple[str, EventType, bytes]:
        return (self.key, self.type, self.value)


class Kind(StrEnum):
    CREATED = "created"
    PROGRESS = "progress"
    EVENTS = "events"


@dataclass(frozen=True, slots=True)
class Message:
    kind: Kind
    revision: int  # header.revision
    events: tuple[Ev, ...]
    member: str
    connection: int  # 0 for the first underlying call, +1 at each reconnect


def ev_of_proto(ev: kv_pb2.Event) -> Ev:
    deleted = ev.type == kv_pb2.Event.DELETE
    return Ev(
        revision=ev.kv.mod_revision,
        key=ev.kv.key.decode("utf-8", "surrogateescape"),
        type=EventType.DELETE if deleted else EventType.PUT,
        value=b"" if deleted else ev.kv.value,
        prev_value=ev.prev_kv.value if ev.HasField("prev_kv") else None,
    )


def _kind(created: bool, progress: bool) -> Kind:
    if created:
        return Kind.CREATED
    return Kind.PROGRESS if progress else Kind.EVENTS


# ----------------------------------------------------------------- recording
class StreamRecord:
    """Everything one logical watch stream received, and how it ended."""

    def __init__(self, name: str, key: str, *, prefix: bool, start_revision: int) -> None:
        self.name = name
        self.key = key
        self.prefix = prefix
        self.start_revision = start_revision
        self.messages: list[Message] = []
        # connection -> the start_revision the client asked for (when known).
        self.requested_starts: dict[int, int] = {0: start_revision}
        self.ended = False
        self.end_error: McpError | None = None
        self.end_code: str | None = None  # gRPC status code name, None = ended cleanly
        self.end_metadata: dict[str, str] = {}  # trailers of a raw call that ended with an error
        self._connection = -1
        self._pending_start: int | None = None
        self._cond = threading.Condition()
        self._last_event_revision = 0
        self._last_bookmark = 0
        self._event_count = 0

    def matches(self, key: str) -> bool:
        return key.startswith(self.key) if self.prefix else key == self.key

    # -- adding ----------------------------------------------------------------
    def add(self, kind: Kind, revision: int, events: Sequence[Ev], member: str) -> None:
        with self._cond:
            if kind is Kind.CREATED:
                self._connection += 1
                if self._pending_start is not None:
                    self.requested_starts[self._connection] = self._pending_start
                    self._pending_start = None
            if len(self.messages) >= STREAM_MESSAGES_MAX:
                raise AssertionError(f"{self.name}: more than {STREAM_MESSAGES_MAX} messages")
            self.messages.append(
                Message(kind, revision, tuple(events), member, max(self._connection, 0))
            )
            if events:
                self._last_event_revision = max(self._last_event_revision, events[-1].revision)
                self._event_count += len(events)
            if kind is Kind.PROGRESS:
                self._last_bookmark = max(self._last_bookmark, revision)
            self._cond.notify_all()

    def add_batch(self, batch: WatchBatch) -> None:
        """A message as the SDK (``WatchStream``) delivers it."""
        events = [
            Ev(
                e.kv.mod_revision,
                e.kv.key,
                EventType(e.type),
                b"" if e.type == "DELETE" else e.kv.value,
                e.prev_kv.value if e.prev_kv is not None else None,
            )
            for e in batch.events
        ]
        self.add(
            _kind(batch.created, batch.progress), batch.revision, events, batch.header.member_name
        )

    def add_response(self, msg: watch_pb2.WatchResponse) -> None:
        """A message as raw gRPC delivers it."""
        self.add(
            _kind(msg.created, msg.progress),
            msg.header.revision,
            [ev_of_proto(e) for e in msg.events],
            msg.header.member_name,
        )

    def reconnect(self, start_revision: int) -> None:
        """The client opens a new call from ``start_revision`` (its next message is created)."""
        with self._cond:
            self._pending_start = start_revision

    def finish(
        self,
        error: McpError | None,
        code: str | None = None,
        metadata: dict[str, str] | None = None,
    ) -> None:
        with self._cond:
            self.ended = True
            self.end_error = error
            self.end_code = code if code is not None else (error.code if error else None)
            self.end_metadata = dict(metadata or {})
            self._cond.notify_all()

    # -- reading -----------------------------------------------------------------
    @property
    def events(self) -> list[Ev]:
        with self._cond:
            return [ev for m in self.messages for ev in m.events]

    @property
    def event_count(self) -> int:
        with self._cond:
            return self._event_count

    @property
    def last_event_revision(self) -> int:
        with self._cond:
            return self._last_event_revision

    @property
    def connections(self) -> int:
        with self._cond:
            return self._connection + 1

    @property
    def effective_start(self) -> int:
        """The first revision this stream owes: start_revision, or created + 1."""
        if self.start_revision:
            return self.start_revision
        with self._cond:
            for m in self.messages:
                if m.kind is Kind.CREATED:
                    return m.revision + 1
        return 1

    @property
    def covered(self) -> int:
        """Every matching event up to this revision has been received (if the stream is right)."""
        with self._cond:
            return max(self._last_event_revision, self._last_bookmark)

    def wait_covered(self, revision: int, timeout_s: float) -> None:
        """Wait until the stream has seen (events or a bookmark) ``revision``."""
        with self._cond:
            ok = self._cond.wait_for(
                lambda: (
                    self.ended or max(self._last_event_revision, self._last_bookmark) >= revision
                ),
                timeout_s,
            )
            reached = max(self._last_event_revision, self._last_bookmark)
            if reached >= revision:
                return
            why = f"ended with {self.end_code}: {self.end_error}" if ok else "timed out"
        raise TimeoutError(f"{self.name}: reached revision {reached}, not {revision} ({why})")

    def wait_ended(self, timeout_s: float) -> None:
        with self._cond:
            if not self._cond.wait_for(lambda: self.ended, timeout_s):
                raise TimeoutError(f"{self.name}: still open after {timeout_s}s")

    def wait(self, what: str, predicate: Callable[[StreamRecord], bool], timeout_s: float) -> None:
        """Wait until ``predicate(self)`` holds (checked at each message and at the end)."""
        with self._cond:
            if not self._cond.wait_for(lambda: predicate(self) or self.ended, timeout_s):
                raise TimeoutError(f"{self.name}: timed out after {timeout_s}s waiting for {what}")
            if not predicate(self):
                raise AssertionError(
                    f"{self.name}: ended ({self.end_code}: {self.end_error}) before {what}"
                )

    def wait_messages(self, count: int, timeout_s: float) -> None:
        with self._cond:
            if not self._cond.wait_for(
                lambda: self.ended or len(self.messages) >= count, timeout_s
            ):
                raise TimeoutError(f"{self.name}: fewer than {count} messages after {timeout_s}s")
            if len(self.messages) < count:
                raise AssertionError(f"{self.name}: ended ({self.end_code}) after {self.messages}")

    def __repr__(self) -> str:
        return (
            f"StreamRecord({self.name!r}, key={self.key!r}, prefix={self.prefix}, "
            f"start={self.start_revision}, messages={len(self.messages)}, "
            f"covered={self.covered}, end={self.end_code})"
        )


class Follower:
    """A stream read on a thread of its own until closed, ended or its deadline."""

    def __init__(
        self,
        record: StreamRecord,
        run: Callable[[], None],
        cancel: Callable[[], None],
        deadline_s: float,
    ) -> None:
        self.record = record
        self._cancel = cancel
        self._thread = threading.Thread(target=run, name=f"follow {record.name}", daemon=True)
        self._timer = threading.Timer(deadline_s, cancel)
        self._timer.daemon = True
        self._thread.start()
        self._timer.start()

    def close(self, timeout_s: float = 10.0) -> None:
        self._timer.cancel()
        self._cancel()
        self._thread.join(timeout_s)
        if self._thread.is_alive():
            raise AssertionError(f"{self.record.name}: reader thread did not stop")


class Recorder:
    """Creates, runs and keeps the records of every stream of a test."""

    def __init__(self) -> None:
        self.records: list[StreamRecord] = []
        self._followers: list[Follower] = []
        self._lock = threading.Lock()

    def stream(self, name: str, key: str, *, prefix: bool, start_revision: int) -> StreamRecord:
        record = StreamRecord(name, key, prefix=prefix, start_revision=start_revision)
        with self._lock:
            self.records.append(record)
        return record

    def follow(
        self,
        client: Client,
        name: str,
        key: str,
        *,
        prefix: bool = False,
        start_revision: int = 0,
        prev_kv: bool = False,
        progress_notify: bool = False,
        progress_interval_ms: int = 0,
        deadline_s: float = FOLLOW_DEADLINE_S_DEFAULT,
    ) -> Follower:
        """An SDK ``WatchStream`` (resumes on other members) recorded as one stream."""
        record = self.stream(name, key, prefix=prefix, start_revision=start_revision)
        stream = client.watch(
            key,
            prefix=prefix,
            start_revision=start_revision,
            prev_kv=prev_kv,
            progress_notify=progress_notify,
            progress_interval_ms=progress_interval_ms,
        )

        def run() -> None:
            try:
                for batch in stream:
                    record.add_batch(batch)
            except McpError as e:
                record.finish(e)
            except Exception as e:  # a bug in the SDK: keep it visible
                record.finish(McpError(f"{type(e).__name__}: {e}"), "CLIENT_BUG")
            else:
                record.finish(None)

        follower = Follower(record, run, stream.close, deadline_s)
        with self._lock:
            self._followers.append(follower)
        return follower

    def follow_raw(
        self,
        endpoint: str,
        name: str,
        key: str,
        *,
        prefix: bool = False,
        start_revision: int = 0,
        prev_kv: bool = False,
        progress_notify: bool = False,
        progress_interval_ms: int = 0,
        deadline_s: float = FOLLOW_DEADLINE_S_DEFAULT,
    ) -> Follower:
        """One raw gRPC call on a channel of its own (no resume: its end is recorded)."""
        record = self.stream(name, key, prefix=prefix, start_revision=start_revision)
        channel = grpc.insecure_channel(
            endpoint, options=[("grpc.max_receive_message_length", limits.GRPC_SEND_BYTES_MAX)]
        )
        req = watch_pb2.WatchRequest(
            key=key.encode(),
            prefix=prefix,
            start_revision=start_revision,
            prev_kv=prev_kv,
            progress_notify=progress_notify,
            progress_interval_ms=progress_interval_ms,
        )
        call = watch_pb2_grpc.WatchStub(channel).Watch(req, timeout=deadline_s)

        def run() -> None:
            try:
                for msg in call:
                    record.add_response(msg)
            except grpc.RpcError as e:
                record.finish(rpc_error(e), e.code().name, trailers(e))
            else:
                record.finish(None)
            finally:
                channel.close()

        follower = Follower(record, run, call.cancel, deadline_s)
        with self._lock:
            self._followers.append(follower)
        return follower

    def close(self) -> None:
        with self._lock:
            followers = list(self._followers)
            self._followers.clear()
        for f in followers:
            f.close()

    def __enter__(self) -> Recorder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def trailers(e: grpc.RpcError) -> dict[str, str]:
    metadata: dict[str, str] = {}
    for item in e.trailing_metadata() or ():
        if isinstance(item.value, str):
            metadata[item.key] = item.value
    return metadata


def rpc_error(e: grpc.RpcError) -> McpError:
    """The ``McpError`` a raw call ended with (rebuilt from code and trailers)."""
    code: grpc.StatusCode = e.code()
    return from_status(code.name, e.details() or "", trailers(e))


# ------------------------------------------------------------------ write log
class Outcome(StrEnum):
    OK = "ok"  # acknowledged, at a known revision
    UNKNOWN = "unknown"  # may or may not have been applied
    FAILED = "failed"  # certainly not applied


@dataclass(frozen=True, slots=True)
class Write:
    changes: tuple[tuple[str, EventType, bytes], ...]  # (key, type, value)
    outcome: Outcome
    revision: int | None


class WriteLog:
    """Every write a test issued, with its outcome (thread-safe)."""

    def __init__(self) -> None:
        self.writes: list[Write] = []
        self._lock = threading.Lock()

    def record(
        self,
        changes: Iterable[tuple[str, EventType, bytes]],
        outcome: Outcome,
        revision: int | None,
    ) -> None:
        with self._lock:
            self.writes.append(Write(tuple(changes), outcome, revision))

    def _do(
        self, changes: list[tuple[str, EventType, bytes]], call: Callable[[], int]
    ) -> int | None:
        """Run a write; record its outcome. Returns its revision, None if not known."""
        try:
            revision = call()
        except (OutcomeUnknown, DeadlineExceeded):
            self.record(changes, Outcome.UNKNOWN, None)
            return None
        except Unavailable:
            self.record(changes, Outcome.FAILED, None)
            return None
        self.record(changes, Outcome.OK, revision)
        return revision

    def put(self, client: Client, key: str, value: bytes) -> int | None:
        return self._do([(key, EventType.PUT, value)], lambda: client.put(key, value).revision)

    def delete(self, client: Client, key: str) -> int | None:
        """Delete one key that exists (a delete of nothing writes no revision)."""

        def call() -> int:
            res = client.delete(key)
            assert res.deleted == 1, f"delete {key}: deleted {res.deleted}"
            return res.header.revision

        return self._do([(key, EventType.DELETE, b"")], call)

    def txn_puts(self, client: Client, items: Sequence[tuple[str, bytes]]) -> int | None:
        """One txn that puts every (key, value): one revision."""
        ops = [
            kv_pb2.RequestOp(request_put=kv_pb2.PutRequest(key=k.encode(), value=v))
            for k, v in items
        ]

        def call() -> int:
            res = client.txn(success=ops)
            assert res.succeeded
            return res.header.revision

        return self._do([(k, EventType.PUT, v) for k, v in items], call)

    def since(self, revision: int) -> WriteLog:
        """The writes acknowledged at ``revision`` or later, and those of unknown revision."""
        out = WriteLog()
        with self._lock:
            writes = list(self.writes)
        for w in writes:
            if w.revision is None or w.revision >= revision:
                out.record(w.changes, w.outcome, w.revision)
        return out

    @property
    def acked(self) -> list[Write]:
        with self._lock:
            return [w for w in self.writes if w.outcome is Outcome.OK]

    def __len__(self) -> int:
        with self._lock:
            return len(self.writes)


class Writer:
    """Puts on a thread of its own: ``count`` of them (bounded), each logged.

    Failed writes (not applied, outcome unknown) are logged and the writer
    goes on; an unexpected error stops it and is raised by ``join``.
    """

    def __init__(
        self,
        client: Client,
        log: WriteLog,
        *,
        count: int,
        key: Callable[[int], str],
        value: Callable[[int], bytes],
    ) -> None:
        self.log = log
        self.done = 0
        self._client = client
        self._count = count
        self._key = key
        self._value = value
        self._error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="writer", daemon=True)

    def start(self) -> Writer:
        self._thread.start()
        return self

    def _run(self) -> None:
        try:
            for i in range(self._count):
                if self._stop.is_set():
                    return
                self.log.put(self._client, self._key(i), self._value(i))
                self.done = i + 1
        except BaseException as e:
            self._error = e

    @property
    def finished(self) -> bool:
        return self._thread.ident is not None and not self._thread.is_alive()

    def join(self, timeout_s: float) -> None:
        self._thread.join(timeout_s)
        if self._thread.is_alive():
            self._stop.set()
            raise TimeoutError(f"writer: {self.done} of {self._count} writes after {timeout_s}s")
        if self._error is not None:
            raise AssertionError(f"writer failed after {self.done} writes") from self._error

    def stop(self, timeout_s: float = 30.0) -> None:
        self._stop.set()
        self._thread.join(timeout_s)


# ------------------------------------------------------------------ reference
@dataclass
class Reference:
    """The events of every revision in [start, final], as the cluster committed them."""

    start: int
    final: int
    by_revision: dict[int, tuple[Ev, ...]]

    @classmethod
    def of(cls, events: Iterable[Ev], *, start: int, final: int) -> Reference:
        grouped: dict[int, list[Ev]] = {}
        for ev in events:
            if start <= ev.revision <= final:
                grouped.setdefault(ev.revision, []).append(ev)
        return cls(start, final, {r: tuple(evs) for r, evs in grouped.items()})

    @classmethod
    def from_record(cls, record: StreamRecord, *, final: int) -> Reference:
        """A stream on every key that kept up serves as the reference."""
        assert record.key == "" and record.prefix, "a reference watches every key"
        return cls.of(record.events, start=record.effective_start, final=final)

    def matching(self, record: StreamRecord, lo: int, hi: int) -> list[Ev]:
        return [
            ev
            for r in range(max(lo, self.start), min(hi, self.final) + 1)
            for ev in self.by_revision.get(r, ())
            if record.matches(ev.key)
        ]

    def covers(self, revision: int) -> bool:
        return self.start <= revision <= self.final


def read_reference(
    client: Client,
    final_revision: int,
    *,
    start_revision: int = 1,
    timeout_s: float = REFERENCE_TIMEOUT_S_DEFAULT,
) -> Reference:
    """Every event from ``start_revision`` to ``final_revision``, through a fresh watch."""
    record = StreamRecord("reference", "", prefix=True, start_revision=start_revision)
    stream = client.watch(
        "",
        prefix=True,
        start_revision=start_revision,
        progress_notify=True,
        progress_interval_ms=REFERENCE_PROGRESS_MS,
    )
    timer = threading.Timer(timeout_s, stream.close)
    timer.daemon = True
    timer.start()
    try:
        with stream:
            for count, batch in enumerate(stream):
                if count >= STREAM_MESSAGES_MAX:
                    raise AssertionError("reference: too many messages")
                record.add_batch(batch)
                if record.covered >= final_revision:
                    break
    finally:
        timer.cancel()
    if record.covered < final_revision:
        raise TimeoutError(
            f"reference reached revision {record.covered}, not {final_revision}, in {timeout_s}s"
        )
    ref = Reference.of(record.events, start=start_revision, final=final_revision)
    violations = check_stream(record, ref)
    assert_ok(violations, "the reference stream itself")
    return ref


def check_reference(reference: Reference, log: WriteLog | None = None) -> list[Violation]:
    """The reference is contiguous and agrees with the write log (see module doc)."""
    out: list[Violation] = []

    def bad(detail: str) -> None:
        out.append(Violation(Promise.HISTORY, "reference", detail))

    missing = [
        r for r in range(reference.start, reference.final + 1) if r not in reference.by_revision
    ]
    if missing:
        bad(f"revisions without events (every revision is a write): {_examples(missing)}")
    if log is None:
        return out
    explained: set[int] = set()
    for w in log.acked:
        assert w.revision is not None
        if not reference.covers(w.revision):
            bad(f"acknowledged write at revision {w.revision} outside the reference range")
            continue
        got = Counter(ev.change for ev in reference.by_revision.get(w.revision, ()))
        if got != Counter(w.changes):
            bad(f"revision {w.revision}: acknowledged {list(w.changes)}, history has {dict(got)}")
        explained.add(w.revision)
    unknown = [w for w in log.writes if w.outcome is Outcome.UNKNOWN]
    failed = [w for w in log.writes if w.outcome is Outcome.FAILED]
    for r, evs in sorted(reference.by_revision.items()):
        if r in explained:
            continue
        changes = Counter(ev.change for ev in evs)
        match = next((w for w in unknown if Counter(w.changes) == changes), None)
        if match is not None:
            unknown.remove(match)
            continue
        if any(Counter(w.changes) == changes for w in failed):
            bad(f"revision {r}: a write reported as not applied was applied: {dict(changes)}")
        else:
            bad(f"revision {r}: written by no logged write: {dict(changes)}")
    return out


# ------------------------------------------------------------------- checking
def _examples(items: Sequence[object]) -> str:
    shown = ", ".join(str(i) for i in items[:EXAMPLES_MAX])
    more = f", ... ({len(items)} in all)" if len(items) > EXAMPLES_MAX else ""
    return f"{shown}{more}"


def check_stream(
    record: StreamRecord, reference: Reference, *, through: int | None = None
) -> list[Violation]:
    """The six promises on one recorded stream (see the module docstring).

    ``through``: the stream must have reached (events or a bookmark) this
    revision; without it, RELIABLE checks up to where the stream got.
    """
    messages = list(record.messages)
    out: list[Violation] = []

    def bad(promise: Promise, detail: str) -> None:
        out.append(Violation(promise, record.name, detail))

    _check_ordered(messages, bad)
    _check_unique(record, messages, reference, bad)
    _check_reliable(record, messages, reference, through, bad)
    _check_atomic(record, messages, reference, bad)
    _check_resumable(record, messages, reference, bad)
    _check_bookmarkable(messages, bad)
    return out


Bad = Callable[[Promise, str], None]


def _check_ordered(messages: list[Message], bad: Bad) -> None:
    last = 0
    for i, m in enumerate(messages):
        for ev in m.events:
            if ev.revision < last:
                bad(Promise.ORDERED, f"message {i}: revision {ev.revision} after {last}")
            last = max(last, ev.revision)
        if m.events and m.revision != m.events[-1].revision:
            bad(
                Promise.ORDERED,
                f"message {i}: header revision {m.revision} is not its last event's "
                f"({m.events[-1].revision})",
            )


def _check_unique(
    record: StreamRecord, messages: list[Message], reference: Reference, bad: Bad
) -> None:
    seen = Counter((ev.revision, ev.key) for m in messages for ev in m.events)
    owed = Counter((ev.revision, ev.key) for evs in reference.by_revision.values() for ev in evs)
    twice = sorted(k for k, n in seen.items() if n > max(1, owed.get(k, 0)))
    if twice:
        bad(Promise.UNIQUE, f"delivered more than once: {_examples(twice)}")


def _check_reliable(
    record: StreamRecord,
    messages: list[Message],
    reference: Reference,
    through: int | None,
    bad: Bad,
) -> None:
    start = record.effective_start
    delivered = [ev for m in messages for ev in m.events]
    reached = max(
        [start - 1]
        + [ev.revision for ev in delivered]
        + [m.revision for m in messages if m.kind is Kind.PROGRESS]
    )
    if through is not None and reached < through:
        bad(Promise.RELIABLE, f"reached revision {reached}, expected at least {through}")
    ref_changes = {(r, ev.change) for r, evs in reference.by_revision.items() for ev in evs}
    foreign = [
        (ev.revision, ev.key)
        for ev in delivered
        if not record.matches(ev.key)
        or ev.revision < start
        or (reference.covers(ev.revision) and (ev.revision, ev.change) not in ref_changes)
    ]
    if foreign:
        bad(Promise.RELIABLE, f"events that are not in the history or filter: {_examples(foreign)}")
    got = Counter((ev.revision, ev.change) for ev in delivered)
    owed = Counter((ev.revision, ev.change) for ev in reference.matching(record, start, reached))
    missing = sorted((r, c[0]) for (r, c), n in owed.items() if got[(r, c)] < n)
    if missing:
        bad(Promise.RELIABLE, f"gap: missing {_examples(missing)} (stream reached {reached})")


def _check_atomic(
    record: StreamRecord, messages: list[Message], reference: Reference, bad: Bad
) -> None:
    where: dict[int, list[int]] = {}
    for i, m in enumerate(messages):
        for r in sorted({ev.revision for ev in m.events}):
            where.setdefault(r, []).append(i)
            if not reference.covers(r):
                continue
            got = Counter(ev.change for ev in m.events if ev.revision == r)
            owed = Counter(
                ev.change for ev in reference.by_revision.get(r, ()) if record.matches(ev.key)
            )
            if got != owed:
                bad(
                    Promise.ATOMIC,
                    f"message {i} has {sum(got.values())} of the {sum(owed.values())} "
                    f"events of revision {r}",
                )
    split = sorted(r for r, idx in where.items() if len(idx) > 1)
    if split:
        bad(Promise.ATOMIC, f"revisions split over several messages: {_examples(split)}")


def _check_resumable(
    record: StreamRecord, messages: list[Message], reference: Reference, bad: Bad
) -> None:
    position = record.effective_start - 1  # everything up to here was received
    last_event = position
    connection = 0
    expect_first = False
    for i, m in enumerate(messages):
        if m.connection != connection:
            connection = m.connection
            asked = record.requested_starts.get(connection)
            if asked is not None and not last_event + 1 <= asked <= position + 1:
                bad(
                    Promise.RESUMABLE,
                    f"connection {connection} asked for revision {asked}; the next one "
                    f"owed is {last_event + 1}..{position + 1}",
                )
            expect_first = True
        if m.events and expect_first:
            expect_first = False
            owed = reference.matching(record, position + 1, reference.final)
            first = m.events[0].revision
            if first <= last_event:
                bad(
                    Promise.RESUMABLE,
                    f"message {i}: after reconnect {connection} the stream went back to "
                    f"revision {first} (had {last_event})",
                )
            elif owed and reference.covers(first) and first != owed[0].revision:
                bad(
                    Promise.RESUMABLE,
                    f"message {i}: after reconnect {connection} the stream went on at "
                    f"revision {first}, not at the next one ({owed[0].revision})",
                )
        for ev in m.events:
            last_event = max(last_event, ev.revision)
        position = max(position, last_event)
        if m.kind is Kind.PROGRESS:
            position = max(position, m.revision)


def _check_bookmarkable(messages: list[Message], bad: Bad) -> None:
    last = 0
    for i, m in enumerate(messages):
        if m.kind is Kind.PROGRESS and m.revision < last:
            bad(
                Promise.BOOKMARKABLE,
                f"message {i}: bookmark {m.revision} below an event already received ({last})",
            )
        for ev in m.events:
            last = max(last, ev.revision)


def count_check(record: StreamRecord, reference: Reference, *, through: int) -> list[Violation]:
    """Cheap RELIABLE/UNIQUE: exactly as many events as the reference owes up to ``through``."""
    owed = len(reference.matching(record, record.effective_start, through))
    got = sum(1 for ev in record.events if ev.revision <= through)
    if got != owed:
        return [
            Violation(
                Promise.RELIABLE, record.name, f"{got} events up to {through}, expected {owed}"
            )
        ]
    return []


def check_all(
    records: Iterable[StreamRecord],
    reference: Reference,
    log: WriteLog | None,
    *,
    through: int | None = None,
) -> list[Violation]:
    out = check_reference(reference, log)
    for record in records:
        out += check_stream(record, reference, through=through)
    return out


def assert_ok(violations: Sequence[Violation], what: str = "watch streams") -> None:
    if violations:
        lines = "\n  ".join(str(v) for v in violations[:40])
        more = f"\n  ... {len(violations)} in all" if len(violations) > 40 else ""
        raise AssertionError(f"{what} broke a watch promise:\n  {lines}{more}")


def final_revision(client: Client) -> int:
    """The cluster's current revision (a linearizable read)."""
    return client.get("/", prefix=True, count_only=True).header.revision


def wait_all_covered(records: Iterable[StreamRecord], revision: int, timeout_s: float) -> None:
    """Every record reaches ``revision``; one overall deadline."""
    deadline = time.monotonic() + timeout_s
    for record in records:
        record.wait_covered(revision, max(0.1, deadline - time.monotonic()))


__all__ = [
    "Ev",
    "EventType",
    "Follower",
    "Kind",
    "Message",
    "Outcome",
    "Promise",
    "Recorder",
    "Reference",
    "StreamRecord",
    "Violation",
    "Write",
    "WriteLog",
    "Writer",
    "assert_ok",
    "check_all",
    "check_reference",
    "check_stream",
    "count_check",
    "final_revision",
    "read_reference",
    "rpc_error",
    "trailers",
    "wait_all_covered",
]
