"""bench.fanout_cost: the hub's and the floor's send path driven without gRPC;
every stream must get every put (a missing message would hang it: bounded)."""

from __future__ import annotations

import asyncio

import pytest

from bench import fanout_cost


@pytest.mark.parametrize("server", ["mcp-config", "grpc-floor"])
@pytest.mark.parametrize("wrapped", [False, True])
def test_every_stream_gets_every_put_and_a_cost_comes_out(server: str, wrapped: bool) -> None:
    us = asyncio.run(
        asyncio.wait_for(fanout_cost.cpu_per_message(server, 5, 20, wrapped), timeout=60)
    )
    assert us > 0


def test_the_command_prints_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert fanout_cost.main(["--streams", "3", "--rounds", "5"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and out[0].startswith("mcp-config, 3 streams: ")
