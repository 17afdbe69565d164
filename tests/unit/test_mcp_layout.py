"""The key layout of the MCP document (mcpctl/mcp/layout.py, docs/mcp-config.md):
document -> keys -> document is the identity (checked on generated documents with
hypothesis), keys are one per model / rate limit / section, and keys that do not form
a valid document are reported by key, never by value."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mcpctl.errors import NotFound
from mcpctl.mcp import layout, plan
from mcpctl.mcp.schema import McpConfig, SchemaError, parse_document, to_yaml

SAMPLE = Path(__file__).resolve().parents[2] / "deploy" / "examples" / "mcp_config.yaml"


def sample() -> McpConfig:
    return parse_document(SAMPLE.read_text())


def test_one_key_per_model_rate_limit_and_section() -> None:
    """The sample maps to exactly the documented keys, values JSON without the model name."""
    kvs = layout.encode(sample())
    assert list(kvs) == [
        "/mcp/auth",
        "/mcp/logging",
        "/mcp/models/claude-sonnet",
        "/mcp/models/gpt-4o",
        "/mcp/models/llama-3-8b",
        "/mcp/rate_limits/ci",
        "/mcp/rate_limits/default",
        "/mcp/rate_limits/web",
        "/mcp/routing",
        "/mcp/server",
    ]
    assert json.loads(kvs["/mcp/models/gpt-4o"]) == {
        "endpoint": "https://api.openai.example.com/v1",
        "token_env": "OPENAI_API_KEY",
        "max_retries": 3,
        "timeout_s": 60.0,
        "weight": 3,
    }
    assert json.loads(kvs["/mcp/rate_limits/ci"]) == {"requests_per_s": 50.0, "burst": 100}
    assert json.loads(kvs["/mcp/logging"]) == {"level": "info"}


def test_sample_round_trips_through_keys() -> None:
    """decode(encode(doc)) == doc for the example document."""
    doc = sample()
    assert layout.decode(layout.encode(doc)) == doc


def test_hand_written_yaml_values_are_read() -> None:
    """A value put by hand as YAML (not JSON) decodes like the JSON the layout writes."""
    kvs = layout.encode(sample())
    kvs["/mcp/models/gpt-4o"] = b"endpoint: https://api.example.com/v1\nweight: 5\n"
    doc = layout.decode(kvs)
    gpt = next(m for m in doc.models if m.name == "gpt-4o")
    assert (gpt.endpoint, gpt.weight, gpt.max_retries) == ("https://api.example.com/v1", 5, 2)


BAD_KEYS = [
    ({"/mcp/models/gpt-4o": b'{"endpoint": "gopher://x"}'}, "/mcp/models/gpt-4o: endpoint:"),
    ({"/mcp/models/x y": b'{"endpoint": "http://h"}'}, "/mcp/models/x y: name: 1..128"),
    ({"/mcp/models/m": b'{"name": "m", "endpoint": "http://h"}'}, "/mcp/models/m: name: set by"),
    ({"/mcp/models/m": b"endpoint: [unclosed"}, "/mcp/models/m: not valid YAML at line 1"),
    ({"/mcp/models/m": b"\xff"}, "/mcp/models/m: not valid UTF-8"),
    ({"/mcp/models/m": b'"just a string"'}, "/mcp/models/m: input should be a valid dict"),
    ({"/mcp/limits/rps": b"100"}, "/mcp/limits/rps: not part of the MCP key layout"),
    ({"/mcp/server": b'{"port": 0}'}, "/mcp/server: port: input should be greater"),
    ({"/mcp/rate_limits/ci": b'{"burst": 3}'}, "/mcp/rate_limits/ci: requests_per_s: required"),
    (
        {"/mcp/routing": b'{"fallback_model": "x", "fallback": "model"}'},
        "/mcp/routing: fallback_model: names no model",
    ),
]


@pytest.mark.parametrize(("extra", "expected"), BAD_KEYS, ids=[e for _, e in BAD_KEYS])
def test_invalid_keys_are_named_by_key(extra: dict[str, bytes], expected: str) -> None:
    """A bad stored value is reported with its key (and field), on one line."""
    kvs = {**layout.encode(sample()), **extra}
    with pytest.raises(SchemaError) as info:
        layout.decode(kvs)
    assert len(info.value.problems) == 1, info.value.problems
    assert expected in info.value.problems[0], info.value.problems
    assert info.value.message.startswith("invalid MCP config: ")


def test_no_models_left_is_invalid() -> None:
    """Deleting every /mcp/models/ key by hand leaves an invalid config (models required)."""
    kvs = {k: v for k, v in layout.encode(sample()).items() if "/models/" not in k}
    with pytest.raises(SchemaError, match="/mcp/models/: list should have at least 1 item"):
        layout.decode(kvs)


def test_no_keys_is_not_found() -> None:
    """An empty /mcp/ is "no config", not an invalid one."""
    with pytest.raises(NotFound, match="no MCP config under /mcp/"):
        layout.decode({})


# --------------------------------------------------------------- generated documents
NAMES = st.from_regex(r"[a-z0-9][a-z0-9._:@-]{0,12}(/[a-z0-9][a-z0-9._-]{0,8})?", fullmatch=True)
IDENTITIES = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._:@-]{0,15}", fullmatch=True)
URLS = st.from_regex(
    r"https?://[a-z][a-z0-9-]{0,10}(\.[a-z]{2,5})?(:[1-9][0-9]{0,3})?(/[a-zA-Z0-9_.~-]{0,12})?",
    fullmatch=True,
)
PATHS = st.text(
    st.characters(blacklist_categories=("Cs", "Cc", "Zs", "Zl", "Zp")), min_size=1, max_size=30
).map(lambda s: "/" + s)
ENVS = st.from_regex(r"[A-Z_][A-Z0-9_]{0,20}", fullmatch=True)
SECONDS = st.floats(min_value=0.001, max_value=600, allow_nan=False)


@st.composite
def token_source(draw: st.DrawFn, *, required: bool) -> dict[str, Any]:
    options = ["file", "env"] if required else ["none", "file", "env"]
    kind = draw(st.sampled_from(options))
    if kind == "file":
        return {"token_file": draw(PATHS)}
    if kind == "env":
        return {"token_env": draw(ENVS)}
    return {}


@st.composite
def documents(draw: st.DrawFn) -> dict[str, Any]:
    """MCP documents as data, valid by construction (the property then checks the schema)."""
    names = draw(st.lists(NAMES, min_size=1, max_size=8, unique=True))
    models = []
    for name in names:
        model: dict[str, Any] = {"name": name, "endpoint": draw(URLS)}
        model.update(draw(token_source(required=False)))
        if draw(st.booleans()):
            model["max_retries"] = draw(st.integers(0, 10))
            model["timeout_s"] = draw(SECONDS)
            model["weight"] = draw(st.integers(1, 1000))
        models.append(model)
    doc: dict[str, Any] = {"models": draw(st.permutations(models))}
    if draw(st.booleans()):
        doc["server"] = {
            "host": draw(st.sampled_from(["0.0.0.0", "::", "mcp.internal", "10.1.2.3"])),
            "port": draw(st.integers(1, 65535)),
            "context_path": draw(st.sampled_from(["/", "/mcp", "/api/v1/mcp"])),
        }
    if draw(st.booleans()):
        fallback = draw(st.sampled_from(["fail", "any-healthy", "model"]))
        doc["routing"] = {
            "policy": draw(
                st.sampled_from(["dynamic", "least-request", "round-robin", "weighted"])
            ),
            "health_check_interval_s": draw(SECONDS),
            "timeout_s": draw(SECONDS),
            "fallback": fallback,
        }
        if fallback == "model":
            doc["routing"]["fallback_model"] = draw(st.sampled_from(names))
    if draw(st.booleans()):
        key_names = draw(st.lists(IDENTITIES, min_size=1, max_size=4, unique=True))
        doc["auth"] = {
            "enabled": draw(st.booleans()),
            "api_keys": [{"name": n, **draw(token_source(required=True))} for n in key_names],
        }
    limit = st.fixed_dictionaries(
        {"requests_per_s": st.floats(min_value=0.01, max_value=1e6, allow_nan=False)},
        optional={"burst": st.integers(1, 10_000)},
    )
    doc["rate_limits"] = draw(st.dictionaries(IDENTITIES, limit, max_size=5))
    if draw(st.booleans()):
        doc["logging"] = {"level": draw(st.sampled_from(["debug", "info", "warning", "error"]))}
    return doc


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(documents())
def test_generated_documents_round_trip_through_keys(data: dict[str, Any]) -> None:
    """document -> keys -> document is the identity, and keys -> document -> keys too."""
    doc = McpConfig.model_validate(data)
    kvs = layout.encode(doc)
    assert len(kvs) == len(layout.SECTIONS) + len(doc.models) + len(doc.rate_limits)
    assert all(k.startswith(layout.ROOT) for k in kvs)
    back = layout.decode(kvs)
    assert back == doc
    assert layout.encode(back) == kvs
    assert plan.diff(kvs, layout.encode(back)) == []


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(documents())
def test_generated_documents_round_trip_through_yaml(data: dict[str, Any]) -> None:
    """What export writes (to_yaml) parses back to the same config (what apply reads)."""
    doc = McpConfig.model_validate(data)
    assert parse_document(to_yaml(doc)) == doc


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(documents(), documents())
def test_diff_between_two_documents_turns_one_into_the_other(
    a: dict[str, Any], b: dict[str, Any]
) -> None:
    """Applying diff(keys(A), keys(B)) to keys(A) gives keys(B), touching only changed keys."""
    old = layout.encode(McpConfig.model_validate(a))
    new = layout.encode(McpConfig.model_validate(b))
    result = dict(old)
    for ch in plan.diff(old, new):
        assert (ch.prev_value is None) == (ch.op == "add")
        assert (ch.value is None) == (ch.op == "delete")
        if ch.value is None:
            del result[ch.key]
        else:
            result[ch.key] = ch.value
        assert old.get(ch.key) != new.get(ch.key)
    assert result == new
