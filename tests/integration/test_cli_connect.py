"""How the CLI and SDK fail to connect (issue #19, items 5 and 6), over real gRPC:

- `mcpctl watch --timeout T` bounds the first connection: against a dead endpoint it
  exits at once, against a member that takes the call and never answers it exits when
  T passes; once the watch is established, T no longer applies.
- One dead endpoint fails as fast as three: a refused connection on every endpoint
  ends the call instead of retrying the same refusal with backoff.
- `--endpoints garbage` says the port is missing, not that DNS failed.

No cluster: the endpoints are free ports nothing listens on, or a small gRPC server
speaking the real mcp.v1.Watch service. The time bounds are the behaviour under test
and have wide margins (the old behaviour took 2.3 s at the very least, or forever).
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent import futures
from typing import Any

import grpc
import pytest

from mcpctl._proto.mcp.v1 import kv_pb2, watch_pb2, watch_pb2_grpc
from mcpctl.client import Client
from mcpctl.errors import Unavailable
from tests.cluster import free_ports

EXIT_TIMEOUT_S = 60.0
# The old retry loop over one dead endpoint slept at least 2.3 s (8 jittered pauses).
FAST_S = 2.0


def mcpctl(*args: str) -> tuple[subprocess.CompletedProcess[str], float]:
    """Run the real CLI; its result and how long it took."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MCP_", "MCPCTL_"))}
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "mcpctl", *args],
        capture_output=True,
        text=True,
        timeout=EXIT_TIMEOUT_S,
        env=env,
        stdin=subprocess.DEVNULL,
    )
    return done, time.monotonic() - started


class SilentWatch(watch_pb2_grpc.WatchServicer):
    """A member that takes every watch and never answers (``created=False``), or
    answers ``created`` and then stays quiet (``created=True``) until the test ends."""

    def __init__(self, created: bool) -> None:
        self.created = created
        self.done = threading.Event()

    def Watch(self, request: watch_pb2.WatchRequest, context: Any) -> Iterator[Any]:
        if self.created:
            header = kv_pb2.ResponseHeader(revision=7)
            yield watch_pb2.WatchResponse(header=header, created=True)
        self.done.wait(EXIT_TIMEOUT_S)


@pytest.fixture(params=[False, True], ids=["silent", "created-then-idle"])
def silent_member(request: pytest.FixtureRequest) -> Iterator[tuple[str, bool]]:
    servicer = SilentWatch(created=request.param)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    watch_pb2_grpc.add_WatchServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield f"127.0.0.1:{port}", request.param
    finally:
        servicer.done.set()
        server.stop(grace=None)


def test_watch_timeout_bounds_only_the_first_connection(silent_member: tuple[str, bool]) -> None:
    """A member that never answers the watch: exit 3 when --timeout passes. A member
    that answered: the watch is established and outlives --timeout."""
    endpoint, created = silent_member
    args = ("--endpoints", endpoint, "--timeout", "1", "watch", "/a")
    if not created:
        done, took = mcpctl(*args)
        assert done.returncode == 3, done.stderr
        assert took < 1 + FAST_S, took
        assert done.stderr.strip() == (
            f"mcpctl: deadline exceeded: no watch established within 1.0s from {endpoint}"
        ), done.stderr
        return
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MCP_", "MCPCTL_"))}
    proc = subprocess.Popen(
        [sys.executable, "-m", "mcpctl", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        stdin=subprocess.DEVNULL,
    )
    try:
        with pytest.raises(subprocess.TimeoutExpired):
            proc.wait(3.0)  # three times --timeout, and still watching
    finally:
        proc.kill()
        proc.communicate(timeout=EXIT_TIMEOUT_S)


def test_watch_against_a_dead_endpoint_exits_at_once_despite_a_long_timeout() -> None:
    """Nothing listens: the watch fails now with the connection error, exit 3 (it used
    to retry 30 times, ~20 s, whatever --timeout said)."""
    (port,) = free_ports(1)
    done, took = mcpctl("--endpoints", f"127.0.0.1:{port}", "--timeout", "30", "watch", "/a")
    assert done.returncode == 3, done.stderr
    assert took < FAST_S, took
    assert done.stderr.startswith("mcpctl: unavailable: failed to connect"), done.stderr
    assert len(done.stderr.splitlines()) == 1, done.stderr


@pytest.mark.parametrize("count", [1, 3])
def test_dead_endpoints_fail_fast_one_or_three(count: int) -> None:
    """One dead endpoint fails as fast as three (it took 3.3-4.6 s: eight attempts at the
    same refusal, with backoff between them); the error is Unavailable (not applied)."""
    endpoints = [f"127.0.0.1:{port}" for port in free_ports(count)]
    with Client(endpoints, timeout=30.0) as client:
        started = time.monotonic()
        with pytest.raises(Unavailable) as failed:
            client.put("/a", "1")
        took = time.monotonic() - started
    assert type(failed.value) is Unavailable  # refused: never "may have been applied"
    assert took < FAST_S, took


HOST_PORT = "write host:port (e.g. 127.0.0.1:7101)"


@pytest.mark.parametrize(
    ("endpoint", "problem"),
    [
        ("garbage", f"'garbage' has no port: {HOST_PORT}"),
        ("garbage:", f"'garbage:' has no port: {HOST_PORT}"),
        ("[::1]", f"'[::1]' has no port: {HOST_PORT}"),
        (":7101", f"':7101' has no host: {HOST_PORT}"),
        ("127.0.0.1:70000", "'127.0.0.1:70000': port 70000 is not in 1..65535"),
    ],
)
def test_an_endpoint_without_a_port_is_a_usage_error(endpoint: str, problem: str) -> None:
    """`--endpoints garbage` names the missing port (exit 2), not a DNS failure."""
    done, _ = mcpctl("--endpoints", f"127.0.0.1:7101,{endpoint}", "get", "/a")
    assert (done.returncode, done.stderr) == (2, f"mcpctl: error: endpoint {problem}\n")
