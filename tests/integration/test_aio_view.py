"""The asyncio McpConfigView on a real 3-node cluster: the same decisions as the
sync one (test_mcp_view.py), from the same ``judge``: an apply is one update
naming the models added; a raw put that breaks the schema is reported (by key,
never by value) and the last valid config stays; fixing it is one update."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

import mcpctl.aio
from mcpctl.client import Client
from mcpctl.client.mcp import McpClient
from mcpctl.client.view import ConfigUpdate, InvalidConfig
from mcpctl.mcp.schema import parse_document
from tests.cluster import Cluster

pytestmark = pytest.mark.cluster

SAMPLE = Path(__file__).resolve().parents[2] / "deploy" / "examples" / "mcp_config.yaml"
WAIT_S = 60.0


async def scenario(cluster: Cluster) -> None:
    updates: list[ConfigUpdate] = []
    invalid: list[InvalidConfig] = []

    async def on_update(update: ConfigUpdate) -> None:  # a coroutine callback
        updates.append(update)

    text = SAMPLE.read_text()
    sync = Client(cluster.endpoints, timeout=30.0)
    async with (
        mcpctl.aio.Client(cluster.endpoints, timeout=30.0) as client,
        mcpctl.aio.McpConfigView(client, on_update=on_update, on_invalid=invalid.append) as view,
    ):
        assert view.config is None and view.revision == 0
        # An empty /mcp/ is no config (as the sync view says).
        assert [i.problems for i in invalid] == [("no MCP config under /mcp/",)]
        applied = McpClient(sync).apply(text).revision
        assert await view.wait_for_revision(applied, WAIT_S)
        expected = parse_document(text)
        assert view.config == expected and view.revision == applied
        [first] = updates
        assert first.previous is None and set(first.added) == {m.name for m in expected.models}

        secret = "sk-live-AIO-VIEW-SECRET"
        bad = b'{"endpoint": "ftp://nowhere", "token": "' + secret.encode() + b'"}'
        broken = sync.put("/mcp/models/gpt-4o", bad).revision
        assert await view.wait_for_revision(broken, WAIT_S)
        _empty, problem = invalid
        assert problem.revision == broken and problem.kept_revision == applied
        assert "/mcp/models/gpt-4o: endpoint: not an http(s) URL" in problem.problems
        assert secret not in repr(problem)
        assert view.config == expected and view.invalid == problem

        fixed = sync.put("/mcp/models/gpt-4o", '{"endpoint": "https://new.example/v1"}').revision
        assert await view.wait_for_revision(fixed, WAIT_S)
        assert view.invalid is None and view.revision == fixed
        assert updates[-1].changed == ("gpt-4o",) and len(updates) == 2
        assert view.models["gpt-4o"].endpoint == "https://new.example/v1"
    sync.close()


def test_the_async_view_reports_updates_and_invalid_configs(cluster: Cluster) -> None:
    asyncio.run(scenario(cluster))
