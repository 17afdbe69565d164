"""etcd's Range answer over key-values the store selected (pure).

As etcd's server: ``count`` is every key in the span at the revision (before
the mod/create revision filters); the filters, then the sort, then ``limit``
apply; ``more`` says keys were left out. ``keys_only`` drops values,
``count_only`` every key-value. An answer is also cut at
``RANGE_RESPONSE_BYTES_MAX`` (``more`` set), as every range of ours is.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from mcpctl import limits
from mcpctl._proto.etcd.etcdserverpb import rpc_pb2 as rpc
from mcpctl._proto.mcp.v1 import kv_pb2 as kv
from mcpctl.server.etcd.convert import KeySpan, key_value

_R = rpc.RangeRequest
_SORT_KEYS: dict[int, Callable[[kv.KeyValue], int | bytes]] = {
    _R.KEY: lambda i: i.key,
    _R.VERSION: lambda i: i.version,
    _R.CREATE: lambda i: i.create_revision,
    _R.MOD: lambda i: i.mod_revision,
    _R.VALUE: lambda i: i.value,
}


def _kept(req: rpc.RangeRequest, item: kv.KeyValue) -> bool:
    if req.min_mod_revision and item.mod_revision < req.min_mod_revision:
        return False
    if req.max_mod_revision and item.mod_revision > req.max_mod_revision:
        return False
    if req.min_create_revision and item.create_revision < req.min_create_revision:
        return False
    return not (req.max_create_revision and item.create_revision > req.max_create_revision)


def answer(
    req: rpc.RangeRequest,
    span: KeySpan,
    items: Iterable[kv.KeyValue],
    response_bytes_max: int = limits.RANGE_RESPONSE_BYTES_MAX,
) -> rpc.RangeResponse:
    """The RangeResponse (without header) for ``items``: a superset of the span, in key order."""
    matched = [i for i in items if span.contains(i.key)]
    resp = rpc.RangeResponse(count=len(matched))
    if req.count_only:
        return resp
    kept = [i for i in matched if _kept(req, i)]
    order = req.sort_order
    if req.sort_target != _R.KEY and order == _R.NONE:
        order = _R.ASCEND
    if order != _R.NONE:
        by = _SORT_KEYS.get(req.sort_target, _SORT_KEYS[_R.KEY])
        kept.sort(key=by, reverse=order == _R.DESCEND)
    if req.limit > 0 and len(kept) > req.limit:
        kept = kept[: req.limit]
        resp.more = True
    size = 0
    for item in kept:
        size += len(item.key) + (0 if req.keys_only else len(item.value)) + 32
        if size > response_bytes_max and resp.kvs:
            resp.more = True
            break
        resp.kvs.append(key_value(item, keys_only=req.keys_only))
    return resp
