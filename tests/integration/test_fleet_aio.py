"""The live fleet on the asyncio SDK (mcpctl/fleet/aio.py) on a real 3-node
cluster: registrations on asyncio leases, an asyncio picker whose picks follow
the weights and whose copy follows load reports and drains, the sync picker
seeing the same instances, close() leaving at once, and re-registration after
someone else revoked the lease (the drain survives it)."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable, Iterator

import pytest

import mcpctl.aio
from mcpctl.fleet.aio import InstancePicker, Registration
from mcpctl.fleet.operator import set_operator
from mcpctl.fleet.picker import InstancePicker as SyncPicker
from mcpctl.mcp.schema import SchemaError
from tests.cluster import Cluster, running_cluster, wait_for

pytestmark = pytest.mark.cluster

PICKS = 4000
# 4,000 draws: the standard deviation of a share is <= 0.008; 0.04 is 5 sigma.
SHARE_TOLERANCE = 0.04
WAIT_S = 30.0


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with running_cluster(tmp_path_factory.mktemp("fleet-aio")) as c:
        yield c


async def until(what: str, check: Callable[[], bool], timeout_s: float = WAIT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


def test_asyncio_registration_and_picker(cluster: Cluster) -> None:
    async def scenario() -> None:
        async with mcpctl.aio.Client(cluster.endpoints, timeout=30.0) as client:
            with pytest.raises(SchemaError, match="endpoint: not an http"):
                Registration(client, model="am", endpoint="ftp://x")
            one = await Registration(
                client, model="am", endpoint="http://a1.test:80", instance_id="a1"
            ).start()
            three = await Registration(
                client, model="am", endpoint="http://a3.test:80", weight=3, instance_id="a3"
            ).start()
            changes: list[int] = []
            picker = await InstancePicker(
                client, "am", on_change=lambda inst: changes.append(len(inst))
            ).start()
            try:
                await until("two instances", lambda: len(picker.instances()) == 2)
                counts = Counter(picker.pick() for _ in range(PICKS))
                assert abs(counts["http://a3.test:80"] / PICKS - 0.75) < SHARE_TOLERANCE, counts
                one.report(in_flight=9)
                await until("the report", lambda: picker.instances()[0].in_flight == 9)
                with cluster.client() as sync, SyncPicker(sync, "am") as seen:
                    assert [i.id for i in seen.instances()] == ["a1", "a3"]
                    set_operator(sync, "am", "a3", draining=True)
                await until("the drain", lambda: picker.instances()[1].operator.draining)
                assert {picker.pick() for _ in range(200)} == {"http://a1.test:80"}
                first = three.lease_id
                await client.revoke(first)
                await until("a3 registered again", lambda: three.registrations == 2)
                assert three.lease_id not in (0, first)
                await until("a3 back", lambda: len(picker.instances()) == 2)
                assert picker.instances()[1].operator.draining  # the drain outlived it
                closed_at = time.monotonic()
                await one.close()
                await until("a1 gone", lambda: len(picker.instances()) == 1, timeout_s=5)
                assert time.monotonic() - closed_at < 5  # no TTL wait
                assert changes, "on_change never ran"
            finally:
                await picker.stop()
                await one.close()
                await three.close()
        with cluster.client() as sync:
            set_operator(sync, "am", "a3", draining=False)
            wait_for(
                "no instances left", lambda: not sync.get("/mcp/instances/am/", prefix=True).kvs
            )

    asyncio.run(scenario())
