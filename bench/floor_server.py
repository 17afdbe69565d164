"""The Python gRPC floor: mcp-config's KV service with nothing behind it.

``python -m bench.floor_server --listen 127.0.0.1:PORT`` serves ``mcp.v1.KV``
(the generated stubs) on grpc.aio, built with the very server options and
concurrency limit ``mcpctl serve`` uses (``server_options`` and
``limits.CONCURRENT_RPCS_MAX``, imported, not copied) and its way of routing
calls (``registry.routes_of``), in one process, on the default asyncio loop as
``mcpctl serve`` runs it. ``Put`` keeps the value in a plain dict and answers
with a header carrying an incrementing revision; ``Range`` answers at once
from that dict: one key (a fixed 256-byte value for a key never put) or, with
``prefix``, every key under it (the storm's 50-key read). No Raft, no auth, no
logging per call: what is left is the cost of terminating a unary gRPC call in
Python, which ``bench.kv_bench --servers ...,grpc-floor`` measures with the same
client and workload as mcp-config and etcd.

It also serves ``mcp.v1.Watch`` as the *streaming floor*: every ``Put`` encodes
its one event once (a whole ``WatchResponse``) and pushes the same bytes to
every open stream whose prefix matches, one message per event, sent as they are
(no per-stream encoding, no coalescing, no budget). ``bench.watch_bench
--servers ...,grpc-floor`` measures it with the same watch client, and
``bench.storm_bench --servers ...,grpc-floor`` (prefix read, prefix watch, then
single puts) the same way.

Readiness: once the port is bound and the server started, one line
``READY host:port`` goes to stdout (flushed); nothing else is ever written there.
The process stops on SIGTERM or SIGINT (exit code 0).
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from collections import deque
from collections.abc import AsyncIterator, Sequence
from typing import Any

import grpc

from mcpctl import limits
from mcpctl._proto.mcp.v1 import kv_pb2 as kv
from mcpctl._proto.mcp.v1 import kv_pb2_grpc as kv_grpc
from mcpctl._proto.mcp.v1 import watch_pb2 as watch
from mcpctl.server.app import server_options
from mcpctl.server.registry import routes_of

VALUE = b"v" * 256
READY_PREFIX = "READY "
STOP_GRACE_S = 0.5

Context = grpc.aio.ServicerContext[Any, Any]


class _Stream:
    def __init__(self, prefix: bytes) -> None:
        self.prefix = prefix
        self.queue: deque[bytes] = deque()
        self.wake = asyncio.Event()


class FloorWatch:
    """``mcp.v1.Watch`` (prefix watches, from now on): pre-encoded messages pushed
    to every matching stream, one per event. Unbounded queues: a benchmark tool."""

    def __init__(self) -> None:
        self._streams: set[_Stream] = set()

    def publish(self, key: bytes, value: bytes, revision: int) -> None:
        if not self._streams:
            return
        item = kv.KeyValue(
            key=key, value=value, create_revision=revision, mod_revision=revision, version=1
        )
        data = watch.WatchResponse(
            header=kv.ResponseHeader(revision=revision), events=[kv.Event(kv=item)]
        ).SerializeToString()
        for st in self._streams:
            if key.startswith(st.prefix):
                st.queue.append(data)
                st.wake.set()

    async def Watch(self, request: watch.WatchRequest, context: Context) -> AsyncIterator[bytes]:
        st = _Stream(request.key)
        self._streams.add(st)
        try:
            yield watch.WatchResponse(created=True).SerializeToString()
            while True:
                if st.queue:
                    yield st.queue.popleft()
                else:
                    st.wake.clear()
                    await st.wake.wait()
        finally:
            self._streams.discard(st)

    def handler(self) -> grpc.GenericRpcHandler[Any, Any]:
        method = grpc.unary_stream_rpc_method_handler(
            self.Watch,
            request_deserializer=watch.WatchRequest.FromString,
            response_serializer=None,  # the bytes are sent as they are
        )
        return grpc.method_handlers_generic_handler("mcp.v1.Watch", {"Watch": method})


class FloorKV(kv_grpc.KVServicer):
    """Put and Range answered immediately; the rest of the service is UNIMPLEMENTED."""

    def __init__(self, watches: FloorWatch | None = None) -> None:
        self._revision = 1
        self._watches = watches
        self._data: dict[bytes, tuple[bytes, int]] = {}  # key -> (value, mod revision)

    def _item(self, key: bytes, value: bytes, revision: int) -> kv.KeyValue:
        return kv.KeyValue(
            key=key, value=value, create_revision=revision, mod_revision=revision, version=1
        )

    async def Range(self, request: kv.RangeRequest, context: Context) -> kv.RangeResponse:
        header = kv.ResponseHeader(revision=self._revision)
        if request.prefix:  # a plain scan: the storm reads 50 keys of a small dict
            found = sorted((k, v) for k, v in self._data.items() if k.startswith(request.key))
            return kv.RangeResponse(header=header, kvs=[self._item(k, *v) for k, v in found])
        value, revision = self._data.get(request.key, (VALUE, 1))
        return kv.RangeResponse(header=header, kvs=[self._item(request.key, value, revision)])

    async def Put(self, request: kv.PutRequest, context: Context) -> kv.PutResponse:
        self._revision += 1
        self._data[request.key] = (request.value, self._revision)
        if self._watches is not None:
            self._watches.publish(request.key, request.value, self._revision)
        return kv.PutResponse(header=kv.ResponseHeader(revision=self._revision))

    async def _unimplemented(self, context: Context) -> Any:
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, "the gRPC floor serves Put and Range")

    async def DeleteRange(
        self, request: kv.DeleteRangeRequest, context: Context
    ) -> kv.DeleteRangeResponse:
        return await self._unimplemented(context)  # type: ignore[no-any-return]

    async def Txn(self, request: kv.TxnRequest, context: Context) -> kv.TxnResponse:
        return await self._unimplemented(context)  # type: ignore[no-any-return]

    async def Compact(
        self, request: kv.CompactionRequest, context: Context
    ) -> kv.CompactionResponse:
        return await self._unimplemented(context)  # type: ignore[no-any-return]

    async def History(self, request: kv.HistoryRequest, context: Context) -> kv.HistoryResponse:
        return await self._unimplemented(context)  # type: ignore[no-any-return]


class _Routed:
    """Takes the generated ``add_KVServicer_to_server``'s handlers into the server's
    routing table, as mcp-config registers its own (``registry.routes_of``: one
    generic handler, no registered methods, so grpc.aio waits on one pending
    request per call, not one per method)."""

    def __init__(self, server: grpc.aio.Server) -> None:
        self._handlers = routes_of(server).handlers

    def add_generic_rpc_handlers(self, generic_handlers: Any) -> None:
        """Ignored: the same handlers arrive, by name, below."""

    def add_registered_method_handlers(
        self, service: str, handlers: dict[str, grpc.RpcMethodHandler[Any, Any]]
    ) -> None:
        for name, handler in handlers.items():
            self._handlers[f"/{service}/{name}"] = handler


async def serve(address: str) -> int:
    server = grpc.aio.server(
        options=server_options(limits.VALUE_BYTES_MAX_DEFAULT),
        maximum_concurrent_rpcs=limits.CONCURRENT_RPCS_MAX,
    )
    watches = FloorWatch()
    kv_grpc.add_KVServicer_to_server(FloorKV(watches), _Routed(server))  # type: ignore[arg-type]
    server.add_generic_rpc_handlers((watches.handler(),))
    try:
        port = server.add_insecure_port(address)
    except RuntimeError:
        port = 0
    if port == 0:
        print(f"floor_server: cannot listen on {address} (port in use?)", file=sys.stderr)
        return 2
    await server.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    host = address.rsplit(":", 1)[0]
    print(f"{READY_PREFIX}{host}:{port}", flush=True)
    await stop.wait()
    await server.stop(STOP_GRACE_S)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m bench.floor_server",
        description="mcp.v1.KV and Watch on grpc.aio answering at once (no Raft, a dict).",
    )
    p.add_argument("--listen", required=True, help="host:port to serve on (port 0: any free port)")
    args = p.parse_args(argv)
    return asyncio.run(serve(args.listen))


if __name__ == "__main__":
    raise SystemExit(main())
