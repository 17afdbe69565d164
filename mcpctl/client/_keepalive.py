"""``Keeper``: the one thread and one KeepAlive stream of a ``Client`` that
renew all its leases (the rules are in ``_lease``'s docstring).

Time comes from ``Timing`` (``monotonic``, ``wait``, ``uniform``): unit tests
drive the thread with a fake clock (tests/unit/test_client_lease.py).
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import grpc

from mcpctl import limits
from mcpctl.client._rules import Timing, check_lease_room, error_of
from mcpctl.client._values import Header, LeaseKeepAlive
from mcpctl.errors import DeadlineExceeded, McpError, Unavailable

if TYPE_CHECKING:
    from mcpctl.client._lease import Lease

log = logging.getLogger("mcpctl.client.lease")

# Opens the KeepAlive call on an endpoint, sending what the iterator yields.
OpenKeepAlive = Callable[[str, Iterator[Any]], Any]


class _Stream:
    """One open KeepAlive call on one endpoint: send ids, read their answers."""

    def __init__(self, endpoint: str, open_call: OpenKeepAlive) -> None:
        self.endpoint = endpoint
        self._requests: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._call = open_call(endpoint, iter(self._requests.get, None))

    def exchange(self, ids: list[int], wait_s: float) -> dict[int, LeaseKeepAlive]:
        """The answer for each of ``ids``; an ``McpError`` when the stream fails or
        answers do not come within ``wait_s``."""
        from mcpctl._proto.mcp.v1 import lease_pb2

        batch = limits.LEASE_KEEPALIVE_BATCH_MAX  # one message per batch, not per lease
        for i in range(0, len(ids), batch):
            self._requests.put(lease_pb2.LeaseKeepAliveRequest(ids=ids[i : i + batch]))
        expired = threading.Event()

        def give_up() -> None:
            expired.set()
            self._call.cancel()

        timer = threading.Timer(max(0.0, wait_s), give_up)
        timer.daemon = True
        timer.start()
        answers: dict[int, LeaseKeepAlive] = {}
        wanted = set(ids)
        try:
            while len(answers) < len(wanted):
                msg = next(self._call)
                header = Header.of(msg.header)
                for r in msg.renewals:
                    if r.id in wanted:
                        answers[r.id] = LeaseKeepAlive(header, r.id, r.ttl, r.error)
        except StopIteration:
            raise Unavailable(f"{self.endpoint} ended the keepalive stream") from None
        except grpc.RpcError as e:
            if expired.is_set():
                raise DeadlineExceeded(
                    f"no keepalive answer within {wait_s:.1f}s from {self.endpoint}"
                ) from None
            raise error_of(e)[0] from None
        finally:
            timer.cancel()
        return answers

    def close(self) -> None:
        self._requests.put(None)  # ends the request iterator grpc reads from
        self._call.cancel()


class Keeper:
    """Renews every lease of one Client on one stream, on one daemon thread
    (started with the first lease). See the module docstring for the rules."""

    def __init__(
        self, endpoints: list[str], open_call: OpenKeepAlive, timeout_s: float, timing: Timing
    ) -> None:
        self._endpoints = endpoints
        self._open_call = open_call
        self._timeout_s = timeout_s
        self._timing = timing
        self._lock = threading.Lock()
        self._leases: dict[int, Lease] = {}
        self._wake = threading.Event()
        self._closed = threading.Event()
        self._thread: threading.Thread | None = None
        self._stream: _Stream | None = None
        self._current = 0  # index into endpoints of the next stream
        self._failures = 0  # failed attempts in a row
        self._backoff_s = limits.CLIENT_BACKOFF_S_MIN
        self._retry_s = 0.0  # no attempt before this (a pause after a failed round)
        self._last: McpError | None = None

    def check_room(self) -> None:
        """``ResourceExhausted`` when this Client keeps ``CLIENT_LEASES_MAX`` leases."""
        with self._lock:
            check_lease_room(len(self._leases))

    def add(self, lease: Lease) -> None:
        self.check_room()
        with self._lock:
            if self._closed.is_set():
                raise ValueError("the client is closed")
            self._leases[lease.id] = lease
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self.run, name="mcpctl-lease-keepalive", daemon=True
                )
                self._thread.start()
        self._wake.set()

    def remove(self, lease: Lease) -> None:
        with self._lock:
            if self._leases.get(lease.id) is lease:
                del self._leases[lease.id]
        self._wake.set()

    def close(self) -> None:
        """Stop renewing (leases then expire on the cluster) and end the thread."""
        self._closed.set()
        self._wake.set()
        stream = self._stream
        if stream is not None:
            stream.close()  # a wait for answers ends now
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(self._timeout_s)

    # -- the thread --------------------------------------------------------------------
    def run(self) -> None:
        try:
            while not self._closed.is_set():
                self._wake.clear()
                delay_s = self.step()
                if self._closed.is_set():
                    break
                self._timing.wait(self._wake, delay_s)
        except Exception as e:  # a bug: say so on every lease rather than die silently
            log.exception("lease keepalive thread failed")
            with self._lock:
                leases = list(self._leases.values())
            for lease in leases:
                self._lose(lease, f"the keepalive thread failed: {e!r}")
        finally:
            self._drop_stream()

    def step(self) -> float | None:
        """Drop the leases that ran out, renew those due; the seconds until there is
        something to do again (None: no lease to keep)."""
        now = self._timing.monotonic()
        with self._lock:
            leases = list(self._leases.values())
        for lease in leases:
            if now >= lease._expires_s:
                last = f" (last error: {self._last.message})" if self._last else ""
                self._lose(lease, f"not renewed within its TTL of {lease.ttl}s{last}")
        leases = [lease for lease in leases if not lease.lost.is_set()]
        due = [lease for lease in leases if lease._next_s <= now]
        # One round at most: each endpoint once, until one renews or a pause is due.
        for _ in range(len(self._endpoints) if due else 0):
            if self._timing.monotonic() < self._retry_s or self._renew(due):
                break
        with self._lock:
            leases = list(self._leases.values())
        if not leases:
            self._drop_stream()
            return None
        # A renewal is due at next_s (not before a pause ends); a loss at expires_s.
        at = min(min(max(lease._next_s, self._retry_s), lease._expires_s) for lease in leases)
        return max(0.0, at - self._timing.monotonic())

    def _renew(self, due: list[Lease]) -> bool:
        """Renew ``due`` on the stream (opened on the current endpoint if need be);
        False when the attempt failed."""
        now = self._timing.monotonic()
        wait_s = min(self._timeout_s, min(lease._expires_s for lease in due) - now)
        try:
            if self._stream is None:
                endpoint = self._endpoints[self._current % len(self._endpoints)]
                self._stream = _Stream(endpoint, self._open_call)
            answers = self._stream.exchange([lease.id for lease in due], wait_s)
        except McpError as err:
            self._failed(err)
            return False
        self._failures, self._backoff_s, self._last = 0, limits.CLIENT_BACKOFF_S_MIN, None
        for lease in due:
            answer = answers[lease.id]
            if answer.ttl <= 0:
                self._lose(lease, f"{answer.error or 'lease not found'}: revoked or expired")
                continue
            with self._lock:
                if self._leases.get(lease.id) is not lease:
                    continue  # revoked meanwhile
                lease._renewed(now, answer.ttl)
            if lease.on_renewed is not None:
                self._callback(lease.on_renewed, lease, answer.ttl)
        return True

    def _failed(self, err: McpError) -> None:
        """Next attempt on the next endpoint; after a failed round, a pause first."""
        self._last = err
        self._drop_stream()
        self._current += 1
        self._failures += 1
        if self._failures % len(self._endpoints) == 0:
            pause_s = self._backoff_s * self._timing.uniform(0.5, 1.0)
            self._backoff_s = min(self._backoff_s * 2, limits.CLIENT_BACKOFF_S_MAX)
            self._retry_s = self._timing.monotonic() + pause_s
        log.info("lease keepalive failed (%s); next: %s", err.message, self._next_endpoint())

    def _next_endpoint(self) -> str:
        return self._endpoints[self._current % len(self._endpoints)]

    def _drop_stream(self) -> None:
        stream, self._stream = self._stream, None
        if stream is not None:
            stream.close()

    def _lose(self, lease: Lease, reason: str) -> None:
        with self._lock:
            if self._leases.get(lease.id) is not lease:
                return  # revoked or lost already
            del self._leases[lease.id]
        lease.lost_reason = reason
        lease.lost.set()
        if lease.on_lost is not None:
            self._callback(lease.on_lost, lease)

    @staticmethod
    def _callback(fn: Callable[..., None], *args: Any) -> None:
        try:
            fn(*args)
        except Exception:  # the user's code must not stop the other leases' renewals
            log.exception("lease callback %r failed", fn)
