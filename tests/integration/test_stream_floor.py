"""The streaming floor of the watch benchmark (bench/floor_server.py ``FloorWatch``):
a real floor process, a real watch through the bench's client, real puts."""

from __future__ import annotations

import asyncio
from pathlib import Path

from bench.adapters import GrpcFloorAdapter


def test_the_floor_pushes_each_put_to_every_matching_stream_once(tmp_path: Path) -> None:
    adapter = GrpcFloorAdapter()
    adapter.start(tmp_path)

    async def scenario() -> tuple[list[list[bytes]], list[list[bytes]]]:
        endpoint = adapter.leader_endpoint()
        got: tuple[list[list[bytes]], list[list[bytes]]] = ([], [])
        created = [asyncio.Event(), asyncio.Event()]

        async def read(i: int, prefix: bytes, count: int) -> None:
            async for values in adapter.watch_values(endpoint, prefix, created[i]):
                got[i].append(values)
                if len(got[i]) == count:
                    return

        tasks = [
            asyncio.create_task(read(0, b"/a/", 2)),
            asyncio.create_task(read(1, b"/b/", 1)),
        ]
        await asyncio.wait_for(asyncio.gather(*(c.wait() for c in created)), 30)
        for key in (b"/a/x", b"/b/y", b"/a/z"):
            await adapter.put_at(endpoint, key, b"v-" + key, 10.0)
        await asyncio.wait_for(asyncio.gather(*tasks), 30)
        await adapter.close_channels()
        return got

    try:
        both, one = asyncio.run(scenario())
    finally:
        adapter.stop()
    assert both == [[b"v-/a/x"], [b"v-/a/z"]]  # one message per event, only its prefix
    assert one == [[b"v-/b/y"]]
