"""Key spans and range answers: how the store selects keys and bounds a read.

Pure helpers shared by the store's reads and writes and by the history
(which matches its events against a span).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from mcpctl._proto.mcp.v1 import kv_pb2 as kv


@dataclass(slots=True)
class Span:
    """A key, or every key under a prefix."""

    key: bytes
    prefix: bool

    def matches(self, key: bytes) -> bool:
        return key.startswith(self.key) if self.prefix else key == self.key


def fill(
    req: kv.RangeRequest, items: Iterator[kv.KeyValue], response_bytes_max: int
) -> kv.RangeResponse:
    resp = kv.RangeResponse()
    size = 0
    for item in items:
        resp.count += 1
        if req.count_only or resp.more:
            continue
        if (req.limit and len(resp.kvs) >= req.limit) or size >= response_bytes_max:
            resp.more = True
            continue
        if req.keys_only:
            resp.kvs.add(
                key=item.key,
                create_revision=item.create_revision,
                mod_revision=item.mod_revision,
                version=item.version,
            )
            size += len(item.key) + 32
        else:
            resp.kvs.append(item)
            size += len(item.key) + len(item.value) + 32
    return resp


def show(key: bytes) -> str:
    return repr(key.decode("utf-8", "replace"))
