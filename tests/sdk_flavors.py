"""The sync and the asyncio SDK clients behind one blocking interface, so one
scenario runs against both (tests/integration/test_sdk_both.py).

Nothing is faked: ``SyncFlavor`` drives ``mcpctl.client.Client``;
``AsyncFlavor`` runs a real ``mcpctl.aio.Client`` on an event loop in its own
thread and waits for each coroutine. Watches of both feed a ``queue.Queue``
(a batch, or the exception that ended the stream).
"""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import Coroutine
from typing import Any, Protocol, TypeVar

from mcpctl.aio import Client as AsyncClient
from mcpctl.aio import ConfigWatcher as AsyncConfigWatcher
from mcpctl.client import Client, KeyValue, WatchBatch
from mcpctl.client.watcher import Change, ConfigWatcher

T = TypeVar("T")
Item = WatchBatch | BaseException


class Watching(Protocol):
    batches: queue.Queue[Item]

    def close(self) -> None: ...


class LeaseLike(Protocol):
    id: int

    def wait_lost(self, timeout_s: float) -> str | None: ...


class WatcherLike(Protocol):
    """A started ConfigWatcher: every ``on_change`` call lands in ``changes``."""

    changes: queue.Queue[list[Change]]

    def wait_for_revision(self, revision: int, timeout_s: float) -> bool: ...

    def snapshot(self) -> dict[str, KeyValue]: ...

    def stop(self) -> None: ...


class Flavor(Protocol):
    name: str
    client: Any  # the real client: Client or AsyncClient

    def config_watcher(self, prefix: str) -> WatcherLike: ...

    def call(self, method: str, *args: Any, **kwargs: Any) -> Any: ...

    def watch(self, key: str, **kwargs: Any) -> Watching: ...

    def grant(self, ttl: int) -> LeaseLike: ...

    def close(self) -> None: ...


class _SyncWatch:
    def __init__(self, client: Client, key: str, kwargs: dict[str, Any]) -> None:
        self.batches: queue.Queue[Item] = queue.Queue()
        self._stream = client.watch(key, **kwargs)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            for batch in self._stream:
                self.batches.put(batch)
        except BaseException as e:
            self.batches.put(e)

    def close(self) -> None:
        self._stream.close()
        self._thread.join(10)


class _SyncLease:
    def __init__(self, client: Client, ttl: int) -> None:
        self._lease = client.grant(ttl)
        self.id = self._lease.id

    def wait_lost(self, timeout_s: float) -> str | None:
        return self._lease.lost_reason if self._lease.lost.wait(timeout_s) else None


class SyncFlavor:
    name = "sync"

    def __init__(self, endpoints: list[str], **options: Any) -> None:
        self.client = Client(endpoints, **options)

    def call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        return getattr(self.client, method)(*args, **kwargs)

    def watch(self, key: str, **kwargs: Any) -> Watching:
        return _SyncWatch(self.client, key, kwargs)

    def grant(self, ttl: int) -> LeaseLike:
        return _SyncLease(self.client, ttl)

    def config_watcher(self, prefix: str) -> WatcherLike:
        changes: queue.Queue[list[Change]] = queue.Queue()
        watcher = ConfigWatcher(self.client, prefix, on_change=changes.put).start()

        class Handle:
            def __init__(self) -> None:
                self.changes = changes

            def wait_for_revision(self, revision: int, timeout_s: float) -> bool:
                return watcher.wait_for_revision(revision, timeout_s)

            def snapshot(self) -> dict[str, KeyValue]:
                return watcher.snapshot()

            def stop(self) -> None:
                watcher.stop()

        return Handle()

    def close(self) -> None:
        self.client.close()


class AsyncFlavor:
    name = "async"

    def __init__(self, endpoints: list[str], **options: Any) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()

        async def make() -> AsyncClient:  # grpc.aio channels belong to the running loop
            return AsyncClient(endpoints, **options)

        self.client = self.run(make())

    def run(self, coro: Coroutine[Any, Any, T], timeout_s: float = 120.0) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout_s)

    def call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        return self.run(getattr(self.client, method)(*args, **kwargs))

    def watch(self, key: str, **kwargs: Any) -> Watching:
        flavor = self
        stream = self.client.watch(key, **kwargs)

        class Watch:
            batches: queue.Queue[Item] = queue.Queue()

            def close(self) -> None:
                flavor._loop.call_soon_threadsafe(stream.close)
                done.result(10)

        watch = Watch()

        async def pump() -> None:
            try:
                async for batch in stream:
                    watch.batches.put(batch)
            except BaseException as e:
                watch.batches.put(e)

        done = asyncio.run_coroutine_threadsafe(pump(), self._loop)
        return watch

    def grant(self, ttl: int) -> LeaseLike:
        lease = self.call("grant", ttl)
        flavor = self

        class Handle:
            id = lease.id

            def wait_lost(self, timeout_s: float) -> str | None:
                async def wait() -> bool:
                    try:
                        await asyncio.wait_for(lease.lost.wait(), timeout_s)
                    except TimeoutError:
                        return False
                    return True

                if not flavor.run(wait(), timeout_s + 10):
                    return None
                reason: str | None = lease.lost_reason
                return reason

        return Handle()

    def config_watcher(self, prefix: str) -> WatcherLike:
        changes: queue.Queue[list[Change]] = queue.Queue()

        async def on_change(batch: list[Change]) -> None:  # a coroutine callback
            changes.put(batch)

        async def start() -> AsyncConfigWatcher:
            return await AsyncConfigWatcher(self.client, prefix, on_change=on_change).start()

        watcher = self.run(start())
        flavor = self

        class Handle:
            def __init__(self) -> None:
                self.changes = changes

            def wait_for_revision(self, revision: int, timeout_s: float) -> bool:
                return flavor.run(watcher.wait_for_revision(revision, timeout_s), timeout_s + 10)

            def snapshot(self) -> dict[str, KeyValue]:
                return watcher.snapshot()

            def stop(self) -> None:
                flavor.run(watcher.stop())

        return Handle()

    def close(self) -> None:
        self.run(self.client.close())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()


def flavor_of(name: str, endpoints: list[str], **options: Any) -> Flavor:
    return SyncFlavor(endpoints, **options) if name == "sync" else AsyncFlavor(endpoints, **options)
