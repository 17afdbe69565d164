"""Running one scripted scenario against a server and recording its answers,
normalized so etcd's and mcp-config's can be compared field by field.

Ignored: member and cluster ids, raft terms (they differ by design). Revisions
are recorded relative to the scenario's base revision (each server has its own
history before the scenario). Errors are recorded as (code, etcd's message).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from typing import Any

import grpc
from google.protobuf.json_format import MessageToDict
from google.protobuf.message import Message

from mcpctl._proto.etcd.etcdserverpb import rpc_pb2 as rpc
from mcpctl._proto.etcd.etcdserverpb import rpc_pb2_grpc as rpc_grpc

CALL_TIMEOUT_S = 10.0
_REVISIONS = {"revision", "create_revision", "mod_revision", "compact_revision"}
_IGNORED = {"cluster_id", "member_id", "raft_term"}


class Recorder:
    """Calls on one server, recording normalized answers."""

    def __init__(self, endpoint: str) -> None:
        self.channel = grpc.insecure_channel(endpoint)
        self.kv = rpc_grpc.KVStub(self.channel)
        self.lease = rpc_grpc.LeaseStub(self.channel)
        self.watch = rpc_grpc.WatchStub(self.channel)
        self.cluster = rpc_grpc.ClusterStub(self.channel)
        self.maintenance = rpc_grpc.MaintenanceStub(self.channel)
        self.base = self.kv.Range(
            rpc.RangeRequest(key=b"\0"), timeout=CALL_TIMEOUT_S
        ).header.revision
        self.log: list[Any] = []

    def close(self) -> None:
        self.channel.close()

    def rev(self, relative: int) -> int:
        """An absolute revision from one relative to the scenario's base."""
        return self.base + relative

    def norm(self, msg: Message) -> Any:
        return _normalize(MessageToDict(msg, preserving_proto_field_name=True), self.base)

    def call(self, label: str, fn: Callable[..., Message], request: Message) -> Message | None:
        """fn(request); records the answer or the error."""
        try:
            resp = fn(request, timeout=CALL_TIMEOUT_S)
        except grpc.RpcError as e:
            self.log.append((label, "error", e.code().name, e.details()))
            return None
        self.log.append((label, self.norm(resp)))
        return resp

    def record(self, label: str, value: Any) -> None:
        self.log.append((label, value))


def _normalize(value: Any, base: int) -> Any:
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if k in _IGNORED:
                continue
            if k in _REVISIONS and isinstance(v, str | int) and int(v) > 0:
                out[k] = int(v) - base
            else:
                out[k] = _normalize(v, base)
        return out
    if isinstance(value, list):
        return [_normalize(v, base) for v in value]
    return value


class WatchStream:
    """One bidi Watch stream: send requests, read answers with a deadline."""

    def __init__(self, rec: Recorder) -> None:
        self._requests: queue.Queue[rpc.WatchRequest | None] = queue.Queue()
        self._answers: queue.Queue[rpc.WatchResponse | grpc.RpcError] = queue.Queue()
        self._call = rec.watch.Watch(self._iter(), timeout=60)
        threading.Thread(target=self._read, daemon=True).start()

    def _iter(self) -> Iterator[rpc.WatchRequest]:
        while True:
            item = self._requests.get()
            if item is None:
                return
            yield item

    def _read(self) -> None:
        try:
            for resp in self._call:
                self._answers.put(resp)
        except grpc.RpcError as e:
            self._answers.put(e)

    def send(self, req: rpc.WatchRequest) -> None:
        self._requests.put(req)

    def next(self, timeout: float = CALL_TIMEOUT_S) -> rpc.WatchResponse:
        got = self._answers.get(timeout=timeout)
        if isinstance(got, grpc.RpcError):
            raise got
        return got

    def quiet(self, timeout: float = 0.5) -> bool:
        """Nothing more arrives within ``timeout``."""
        try:
            self._answers.get(timeout=timeout)
        except queue.Empty:
            return True
        return False

    def close(self) -> None:
        self._requests.put(None)
        self._call.cancel()  # type: ignore[no-untyped-call]
