"""bench.floor_server as the KV bench runs it: a real process on 127.0.0.1 that
answers Range and Put at once through mcp-config's routing table, and
UNIMPLEMENTED (not a crash) for the rest of the service."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from mcpctl._proto.mcp.v1 import kv_pb2 as kv
from mcpctl._proto.mcp.v1 import kv_pb2_grpc as kv_grpc

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def endpoint() -> Iterator[str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench.floor_server", "--listen", "127.0.0.1:0"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().decode()  # blocks until READY (or EOF on a crash)
        assert line.startswith("READY 127.0.0.1:"), line
        yield line.removeprefix("READY ").strip()
    finally:
        proc.terminate()
        assert proc.wait(30) == 0


def test_range_put_answered_and_the_rest_unimplemented(endpoint: str) -> None:
    with grpc.insecure_channel(endpoint) as channel:
        stub = kv_grpc.KVStub(channel)
        got = stub.Range(kv.RangeRequest(key=b"/k", serializable=True), timeout=10)
        assert [(i.key, len(i.value)) for i in got.kvs] == [(b"/k", 256)]
        first = stub.Put(kv.PutRequest(key=b"/k", value=b"v"), timeout=10).header.revision
        assert stub.Put(kv.PutRequest(key=b"/k", value=b"v"), timeout=10).header.revision == (
            first + 1
        )
        with pytest.raises(grpc.RpcError) as e:
            stub.DeleteRange(kv.DeleteRangeRequest(key=b"/k"), timeout=10)
        assert e.value.code() == grpc.StatusCode.UNIMPLEMENTED
        with pytest.raises(grpc.RpcError) as e:  # not a KV method at all: no route
            channel.unary_unary("/mcp.v1.KV/Nope", None, None)(b"", timeout=10)
        assert e.value.code() == grpc.StatusCode.UNIMPLEMENTED


def test_range_answers_what_was_put_and_a_prefix_from_the_dict(endpoint: str) -> None:
    # The storm bench reads a prefix from the floor: answered from what was put.
    with grpc.insecure_channel(endpoint) as channel:
        stub = kv_grpc.KVStub(channel)
        for key in (b"/p/b", b"/p/a", b"/q/c"):
            stub.Put(kv.PutRequest(key=key, value=b"v" + key), timeout=10)
        got = stub.Range(kv.RangeRequest(key=b"/p/", prefix=True, serializable=True), timeout=10)
        assert [(i.key, i.value) for i in got.kvs] == [(b"/p/a", b"v/p/a"), (b"/p/b", b"v/p/b")]
        assert (
            0 < got.kvs[1].mod_revision < got.kvs[0].mod_revision <= got.header.revision
        )  # b first
        one = stub.Range(kv.RangeRequest(key=b"/q/c"), timeout=10)
        assert [(i.key, i.value) for i in one.kvs] == [(b"/q/c", b"v/q/c")]
        empty = stub.Range(kv.RangeRequest(key=b"/none/", prefix=True), timeout=10)
        assert list(empty.kvs) == []
