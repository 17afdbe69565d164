"""Which MCP_ environment variables are node config (issue #19, item 8).

``MCP_`` is also the prefix of every Model Context Protocol tool's variables, so an
unrelated ``MCP_PYTHON`` or ``MCP_API_KEY`` must not stop a node. The rule: a variable
is ours when its first segment is a top-level key (``MCP_NAME``, ``MCP_SERVER__...``) or
when it is a path (has ``__``); ours are checked like the file, so a typo inside a known
section, or in a path, is still refused. Anything else is left alone and named by
``foreign_env`` (for a debug line).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from mcpctl.server import config
from mcpctl.server.config import ConfigError

SECRET = "s3cret-value-0123456789"
MEMBERS = [{"name": "n1", "raft": "127.0.0.1:7201", "client": "127.0.0.1:7101"}]
UNRELATED = {
    "MCP_PYTHON": "python",
    "MCP_API_KEY": "sk-123",
    "MCP_SERVER_URL": "http://localhost:3000/mcp",
    "MCP_LOG_LEVEL": "verbose",
    "MCP_TIMEOUT": "[not yaml",
    "MCP_BOGUS": "1",
}


@pytest.fixture
def node_yaml(tmp_path: Path) -> Path:
    path = tmp_path / "node.yaml"
    doc = {
        "name": "n1",
        "data_dir": str(tmp_path / "data"),
        "cluster": {"members": MEMBERS, "secret": SECRET},
    }
    path.write_text(yaml.safe_dump(doc))
    return path


@pytest.mark.parametrize("name", sorted(UNRELATED))
def test_an_unrelated_mcp_variable_is_ignored(node_yaml: Path, name: str) -> None:
    """Each variable shaped like no config key loads the config unchanged."""
    assert config.load(node_yaml, env={name: UNRELATED[name]}) == config.load(node_yaml, env={})


def test_ours_still_apply_next_to_unrelated_ones(node_yaml: Path) -> None:
    """Top-level keys and section paths are read; the unrelated ones are named, sorted."""
    env = {**UNRELATED, "MCP_NAME": "n1", "MCP_RAFT__TICK_MS": "7", "MCP_LOG__LEVEL": "debug"}
    cfg = config.load(node_yaml, env=env)
    assert (cfg.raft.tick_ms, cfg.log.level) == (7, "debug")
    assert config.foreign_env(env) == sorted(UNRELATED)


def test_config_from_env_alone_uses_top_level_keys(tmp_path: Path) -> None:
    """MCP_NAME and MCP_DATA_DIR are top-level keys, so a config can still come from env."""
    env = {
        "MCP_NAME": "n1",
        "MCP_DATA_DIR": str(tmp_path),
        "MCP_CLUSTER__MEMBERS": json.dumps(MEMBERS),
        "MCP_CLUSTER__SECRET": SECRET,
        "MCP_PYTHON": "python",
    }
    cfg = config.load(None, env=env)
    assert (cfg.name, cfg.data_dir) == ("n1", tmp_path)


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("MCP_RAFT__HEARTBEAT", "MCP_RAFT__HEARTBEAT: raft.heartbeat: unknown key"),
        ("MCP_RAFTT__TICK_MS", "MCP_RAFTT__TICK_MS: raftt: unknown key"),
        (
            "MCP_SERVER",
            "MCP_SERVER: server: Input should be a valid dictionary or instance of ServerSettings",
        ),
    ],
)
def test_our_variables_are_still_checked(node_yaml: Path, name: str, message: str) -> None:
    """An unknown key inside a known section, a path with an unknown section, or a section
    given a scalar: refused with one line naming the variable."""
    with pytest.raises(ConfigError) as info:
        config.load(node_yaml, env={name: "5", "MCP_PYTHON": "python"})
    assert str(info.value) == message
