"""etcd Watch behaviour the differential suite cannot compare with etcd (its
timing differs by design, docs/etcd-compat.md): progress_notify bookmarks,
a cancel of an unknown id, a client that half-closes its side."""

from __future__ import annotations

import grpc
import pytest

from mcpctl import limits
from mcpctl._proto.etcd.etcdserverpb import rpc_pb2 as rpc
from mcpctl._proto.etcd.etcdserverpb import rpc_pb2_grpc as rpc_grpc
from tests.cluster import Cluster
from tests.etcd.difftools import Recorder, WatchStream

pytestmark = pytest.mark.cluster


def test_progress_notify_sends_bookmarks_while_idle(cluster: Cluster) -> None:
    rec = Recorder(cluster.nodes[0].endpoint)
    w = WatchStream(rec)
    try:
        put = rec.kv.Put(rpc.PutRequest(key=b"/pn/a", value=b"1"), timeout=10)
        create = rpc.WatchCreateRequest(key=b"/pn/", range_end=b"/pn0", progress_notify=True)
        w.send(rpc.WatchRequest(create_request=create))
        created = w.next()
        assert created.created and created.watch_id == 0
        # Nothing changes under /pn/: a bookmark (no events) within the interval.
        bookmark = w.next(timeout=limits.WATCH_PROGRESS_INTERVAL_S_DEFAULT * 3)
        assert bookmark.watch_id == 0 and not bookmark.events and not bookmark.created
        assert bookmark.header.revision >= put.header.revision
        # A cancel of an id that is not open is ignored (as etcd's); the stream goes on.
        w.send(rpc.WatchRequest(cancel_request=rpc.WatchCancelRequest(watch_id=99)))
        w.send(rpc.WatchRequest(cancel_request=rpc.WatchCancelRequest(watch_id=0)))
        canceled = w.next()
        assert canceled.canceled and canceled.watch_id == 0
    finally:
        w.close()
        rec.close()


def test_watch_goes_on_after_the_client_half_closes(cluster: Cluster) -> None:
    with grpc.insecure_channel(cluster.nodes[1].endpoint) as ch:
        create = rpc.WatchCreateRequest(key=b"/hc/k")
        call = rpc_grpc.WatchStub(ch).Watch(
            iter([rpc.WatchRequest(create_request=create)]), timeout=20
        )
        answers = iter(call)
        assert next(answers).created
        rpc_grpc.KVStub(ch).Put(rpc.PutRequest(key=b"/hc/k", value=b"v"), timeout=10)
        got = next(answers)
        assert [e.kv.value for e in got.events] == [b"v"]
        call.cancel()  # type: ignore[no-untyped-call]
