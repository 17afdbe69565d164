"""``wait_connected`` (mcpctl/client/_transport.py): whether a channel connects,
decided without leaving a thread behind. grpc's ``Channel.subscribe`` starts a
poller thread that outlives the subscription by up to 0.2 s, and closing the
channel waits for it: every short-lived client (``mcpctl get``) paid that."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from concurrent import futures

import grpc
import pytest

from mcpctl.client._transport import wait_connected


@pytest.fixture
def server_address() -> Iterator[str]:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=1))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        server.stop(None)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


def threads_after(address: str, timeout_s: float) -> tuple[bool, set[threading.Thread]]:
    before = set(threading.enumerate())
    channel = grpc.insecure_channel(address)
    try:
        connected = wait_connected(channel, timeout_s)
        left = {t for t in threading.enumerate() if t not in before and t.is_alive()}
    finally:
        channel.close()
    return connected, left


def test_a_listening_server_connects_and_no_thread_is_left(server_address: str) -> None:
    connected, left = threads_after(server_address, 10.0)
    assert connected is True
    assert not left, [t.name for t in left]


def test_a_refused_connection_is_not_connected_and_no_thread_is_left() -> None:
    connected, left = threads_after(f"127.0.0.1:{free_port()}", 10.0)
    assert connected is False
    assert not left, [t.name for t in left]


def test_no_time_left_is_not_connected() -> None:
    connected, _ = threads_after(f"127.0.0.1:{free_port()}", 0.0)
    assert connected is False
