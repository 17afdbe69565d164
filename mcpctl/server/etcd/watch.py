"""``etcdserverpb.Watch``: one bidi stream carrying many watches, over the hub.

Each created watch is one watch stream of the hub (``mcpctl.server.hub``:
its promises, limits and slow-watcher handling unchanged) on the span's
covering key or prefix; its messages are filtered to the span and the
create's filters, tagged with the watch id and merged onto the etcd stream
through a bounded queue (``ETCD_WATCH_STREAM_QUEUE_MAX``: a slow client makes
the hub catch its watchers up from history, as on mcp.v1).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from mcpctl import limits, validate
from mcpctl._proto.etcd.etcdserverpb import rpc_pb2 as rpc
from mcpctl._proto.mcp.v1 import kv_pb2 as kv
from mcpctl._proto.mcp.v1 import watch_pb2 as watch
from mcpctl.errors import Compacted, InvalidArgument, McpError, Unavailable
from mcpctl.server import auth
from mcpctl.server.errors import BadRequest, rpc_stream
from mcpctl.server.etcd.convert import KeySpan, event, header
from mcpctl.server.etcd.errors import DUPLICATE_WATCH_ID, etcd_error
from mcpctl.server.hub import WatchHub
from mcpctl.server.node import Node

if TYPE_CHECKING:
    from mcpctl.server.etcd.guard import EtcdGuard

SERVICE = rpc.DESCRIPTOR.services_by_name["Watch"]
_NOPUT = rpc.WatchCreateRequest.NOPUT
_NODELETE = rpc.WatchCreateRequest.NODELETE
_PUT = kv.Event.PUT
_DELETE = kv.Event.DELETE
# etcd's id for answers that belong to no watch (progress of the whole stream).
NO_WATCH_ID = -1


class _Ended(Exception):
    """The whole etcd stream ends with this error (e.g. the member lost its leader)."""

    def __init__(self, error: McpError) -> None:
        self.error = error


class WatchServicer:
    def __init__(self, node: Node, hub: WatchHub, guard: EtcdGuard | None = None) -> None:
        self._node = node
        self._hub = hub
        self.guard = guard

    @rpc_stream
    async def Watch(
        self, requests: AsyncIterator[rpc.WatchRequest | BadRequest]
    ) -> AsyncIterator[rpc.WatchResponse]:
        session = _Session(self._node, self._hub, self.guard)
        async for msg in session.run(requests):
            yield msg


class _Session:
    def __init__(self, node: Node, hub: WatchHub, guard: EtcdGuard | None) -> None:
        self._node = node
        self._hub = hub
        self._guard = guard
        self._out: asyncio.Queue[rpc.WatchResponse | _Ended] = asyncio.Queue(
            limits.ETCD_WATCH_STREAM_QUEUE_MAX
        )
        self._watches: dict[int, asyncio.Task[None]] = {}
        self._next_id = 0

    async def run(
        self, requests: AsyncIterator[rpc.WatchRequest | BadRequest]
    ) -> AsyncIterator[rpc.WatchResponse]:
        reader = asyncio.create_task(self._read(requests))
        try:
            while True:
                msg = await self._out.get()
                if isinstance(msg, _Ended):
                    raise msg.error
                yield msg
        finally:
            reader.cancel()
            for task in self._watches.values():
                task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.gather(reader, *self._watches.values(), return_exceptions=True)

    def _header(self) -> rpc.ResponseHeader:
        return header(self._node.header())

    async def _read(self, requests: AsyncIterator[rpc.WatchRequest | BadRequest]) -> None:
        try:
            async for request in requests:
                if isinstance(request, BadRequest):
                    raise InvalidArgument(request.error)
                which = request.WhichOneof("request_union")
                if which == "create_request":
                    await self._create(request.create_request)
                elif which == "cancel_request":
                    await self._cancel(request.cancel_request.watch_id)
                elif which == "progress_request":
                    await self._out.put(
                        rpc.WatchResponse(header=self._header(), watch_id=NO_WATCH_ID)
                    )
        except McpError as e:
            await self._out.put(_Ended(e))
        # The client closed its side: the watches go on (as etcd's).

    async def _create(self, create: rpc.WatchCreateRequest) -> None:
        wid = create.watch_id
        if wid > 0 and wid in self._watches:
            await self._refuse(NO_WATCH_ID, DUPLICATE_WATCH_ID)
            return
        if wid <= 0:
            while self._next_id in self._watches:
                self._next_id += 1
            wid = self._next_id
            self._next_id += 1
        if len(self._watches) >= limits.ETCD_WATCHES_PER_STREAM_MAX:
            await self._refuse(
                wid,
                f"mcp-config: {limits.ETCD_WATCHES_PER_STREAM_MAX} watches are open on this "
                "stream (ETCD_WATCHES_PER_STREAM_MAX); open another stream",
            )
            return
        try:
            span = KeySpan.of(create.key, create.range_end)
            if self._guard is not None and self._guard.enabled:
                self._guard.authorize_watch(auth.current_identity.get(), span)
        except McpError as e:
            await self._refuse(wid, etcd_error(e).message)
            return
        self._watches[wid] = asyncio.create_task(self._pump(wid, create, span))

    async def _refuse(self, wid: int, reason: str) -> None:
        await self._out.put(
            rpc.WatchResponse(
                header=self._header(),
                watch_id=wid,
                created=True,
                canceled=True,
                cancel_reason=reason,
            )
        )

    async def _cancel(self, wid: int) -> None:
        task = self._watches.pop(wid, None)
        if task is None:
            return
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await self._out.put(rpc.WatchResponse(header=self._header(), watch_id=wid, canceled=True))

    async def _pump(self, wid: int, create: rpc.WatchCreateRequest, span: KeySpan) -> None:
        cover = span.cover()
        if span.single:
            try:
                validate.check_key(span.key)
            except McpError:  # such a key is never stored: watch a prefix nothing matches
                cover = KeySpan(span.guard_prefix(), b"").cover()
        else:
            cover = KeySpan(span.guard_prefix(), b"").cover()
        req = watch.WatchRequest(
            key=cover.key,
            prefix=cover.prefix,
            start_revision=max(create.start_revision, 0),
            prev_kv=create.prev_kv,
            progress_notify=create.progress_notify,
        )
        try:
            stream = self._hub.stream(req)
            try:
                await self._relay(wid, create, span, stream)
            finally:  # closes the hub's watcher now, not when collected
                await stream.aclose()  # type: ignore[attr-defined]
        except Compacted as e:
            # As etcd 3.4: header revision 0, compact_revision, no reason (clients
            # turn compact_revision into ErrCompacted themselves).
            head = self._header()
            head.revision = 0
            await self._out.put(
                rpc.WatchResponse(
                    header=head, watch_id=wid, canceled=True, compact_revision=e.compact_revision
                )
            )
        except Unavailable as e:
            await self._out.put(_Ended(e))
        except McpError as e:
            await self._out.put(
                rpc.WatchResponse(
                    header=self._header(),
                    watch_id=wid,
                    created=False,
                    canceled=True,
                    cancel_reason=etcd_error(e).message,
                )
            )
        finally:
            if self._watches.get(wid) is asyncio.current_task():
                del self._watches[wid]

    async def _relay(
        self,
        wid: int,
        create: rpc.WatchCreateRequest,
        span: KeySpan,
        stream: AsyncIterator[watch.WatchResponse],
    ) -> None:
        skip = set(create.filters)
        async for msg in stream:
            if msg.created or msg.progress:
                out = rpc.WatchResponse(
                    header=header(msg.header), watch_id=wid, created=msg.created
                )
                await self._out.put(out)
                continue
            events = [
                event(ev, prev_kv=create.prev_kv)
                for ev in msg.events
                if span.contains(ev.kv.key)
                and not (ev.type == _PUT and _NOPUT in skip)
                and not (ev.type == _DELETE and _NODELETE in skip)
            ]
            if events:
                await self._out.put(
                    rpc.WatchResponse(header=header(msg.header), watch_id=wid, events=events)
                )
