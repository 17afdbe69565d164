"""The MCP document schema (mcpctl/mcp/schema.py): the sample is valid, every kind of
mistake is reported on one line that names its path (``models[2].endpoint: ...``), and
no value, secret or not, ever appears in a message, a traceback or a log line."""

from __future__ import annotations

import copy
import logging
import traceback
from pathlib import Path
from typing import Any

import pytest
import structlog
import yaml

from mcpctl.errors import InvalidArgument
from mcpctl.mcp import layout
from mcpctl.mcp.schema import (
    DOCUMENT_BYTES_MAX,
    McpConfig,
    SchemaError,
    parse_document,
    to_yaml,
    validate,
)

SAMPLE = Path(__file__).resolve().parents[2] / "deploy" / "examples" / "mcp_config.yaml"
SECRET = "sk-live-7f3a9c-SUPERSECRET"


def sample_data() -> dict[str, Any]:
    """The example document as data (models in file order: gpt-4o, claude-sonnet, llama)."""
    data: dict[str, Any] = yaml.safe_load(SAMPLE.read_text())
    return data


def problems(data: Any) -> list[str]:
    with pytest.raises(SchemaError) as info:
        validate(data)
    return info.value.problems


def test_the_example_document_is_valid() -> None:
    """deploy/examples/mcp_config.yaml (used by the README and the compose demo) validates."""
    doc = parse_document(SAMPLE.read_text())
    assert [m.name for m in doc.models] == ["claude-sonnet", "gpt-4o", "llama-3-8b"]
    assert doc.routing.policy == "least-request" and doc.routing.fallback_model == "llama-3-8b"
    assert doc.auth.enabled and [k.name for k in doc.auth.api_keys] == ["ci", "web"]
    assert doc.rate_limits["ci"].requests_per_s == 50 and doc.rate_limits["ci"].burst == 100


def test_sections_other_than_models_have_defaults() -> None:
    """A document with only models is complete: every other section takes its defaults."""
    doc = validate({"models": [{"name": "m", "endpoint": "http://127.0.0.1:8000"}]})
    assert doc.server.port == 8080 and doc.server.context_path == "/mcp"
    assert doc.routing.policy == "round-robin" and doc.routing.fallback == "fail"
    assert not doc.auth.enabled and doc.rate_limits == {} and doc.logging.level == "info"
    assert doc.models[0].weight == 1 and doc.models[0].max_retries == 2


def test_models_are_kept_in_name_order() -> None:
    """Model order carries no meaning (one key per model), so it is normalised by name."""
    data = {"models": [{"name": n, "endpoint": "http://h"} for n in ("b", "c", "a")]}
    assert [m.name for m in validate(data).models] == ["a", "b", "c"]


def _set(data: dict[str, Any], path: str, value: Any) -> None:
    """Set ``a.b[2].c`` in nested data; the value ``...`` deletes the field."""
    parts: list[str | int] = []
    for piece in path.replace("]", "").split("."):
        name, *indexes = piece.split("[")
        parts.append(name)
        parts += [int(i) for i in indexes]
    target: Any = data
    for part in parts[:-1]:
        target = target[part]
    if value is ...:
        del target[parts[-1]]
    else:
        target[parts[-1]] = value


ERRORS = [
    ("models[2].endpoint", "ftp://10.0.0.7/v1", "models[2].endpoint: not an http(s) URL"),
    ("models[0].endpoint", "not a url", "models[0].endpoint: not an http(s) URL"),
    (
        "models[1].endpoint",
        f"https://user:{SECRET}@api.example.com/v1",
        "models[1].endpoint: credentials in the URL; use token_file or token_env",
    ),
    ("models[0].name", "has space", "models[0].name: 1..128 characters"),
    ("models[0].max_retries", -1, "models[0].max_retries: input should be greater than or equal"),
    ("models[1].timeout_s", 0, "models[1].timeout_s: input should be greater than 0"),
    ("models[0].weight", "3", "models[0].weight: input should be a valid integer"),
    ("models[0].temperature", 0.2, "models[0].temperature: unknown field"),
    ("models[2].token_env", "lower case ok? no", "models[2].token_env: not an environment"),
    ("models[1].name", "gpt-4o", "models[1].name: duplicate of models[0]"),
    ("models[0].endpoint", ..., "models[0].endpoint: required"),
    ("models", [], "models: list should have at least 1 item"),
    ("models", ..., "models: required"),
    ("server.port", 70000, "server.port: input should be less than or equal to 65535"),
    ("server.port", "8080", "server.port: input should be a valid integer"),
    ("server.host", "bad host/", "server.host: not a host name or IP address"),
    ("server.context_path", "mcp", "server.context_path: must start with /"),
    ("routing.policy", "random", "routing.policy: input should be 'dynamic'"),
    ("routing.health_check_interval_s", -5, "routing.health_check_interval_s: input should be"),
    ("routing.fallback_model", "nope", "routing.fallback_model: names no model in models"),
    ("routing.fallback", "any-healthy", "routing: fallback_model is only used with fallback"),
    ("auth.api_keys", [], "auth: enabled needs at least one entry in api_keys"),
    ("auth.api_keys[1].token_env", ..., "auth.api_keys[1]: give token_file or token_env"),
    ("auth.api_keys[1].name", "ci", "auth.api_keys[1].name: duplicate of auth.api_keys[0]"),
    ("auth.enabled", "yes", "auth.enabled: input should be a valid boolean"),
    ("rate_limits.ci.requests_per_s", 0, "rate_limits.ci.requests_per_s: input should be greater"),
    ("rate_limits.web.burst", 0, "rate_limits.web.burst: input should be greater than or equal"),
    ("rate_limits.bad name", {"requests_per_s": 1}, "rate_limits (a name): 1..64"),
    ("logging.level", "verbose", "logging.level: input should be 'debug'"),
    ("colour", "blue", "colour: unknown field"),
]


@pytest.mark.parametrize(("path", "value", "expected"), ERRORS, ids=[e[2] for e in ERRORS])
def test_each_mistake_names_its_path(path: str, value: Any, expected: str) -> None:
    """One bad field gives exactly one problem line, starting with the field's path."""
    data = sample_data()
    _set(data, path, value)
    found = problems(data)
    assert len(found) == 1, found
    assert found[0].startswith(expected), found
    assert "\n" not in found[0]


def test_both_token_sources_are_refused() -> None:
    """A model names its token in a file or in an environment variable, not both."""
    data = sample_data()
    data["models"][0]["token_file"] = "/run/secrets/x"
    assert problems(data) == ["models[0]: give token_file or token_env, not both"]


def test_every_problem_is_listed_one_per_line() -> None:
    """Several mistakes: a title line, then one indented line per problem, all named."""
    data = sample_data()
    data["models"][2]["endpoint"] = "ftp://x"
    data["server"]["port"] = 0
    data["logging"]["level"] = "loud"
    with pytest.raises(SchemaError) as info:
        validate(data)
    lines = info.value.message.splitlines()
    assert lines[0] == "invalid MCP document (3 problems):"
    assert [line.split(":")[0].strip() for line in lines[1:]] == [
        "server.port",
        "models[2].endpoint",
        "logging.level",
    ]
    assert isinstance(info.value, InvalidArgument)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", "invalid MCP document: document: empty"),
        ("- a\n- b\n", "invalid MCP document: document: expected a mapping at the top level"),
        ("models: [\n", "document: not valid YAML at line 2, column 1"),
        ("logging: {level: info}\nlogging: {level: debug}\n", "duplicate key 'logging'"),
        (b"\xff\xfe", "document: not valid UTF-8"),
        ("#" * (DOCUMENT_BYTES_MAX + 1), f"over the limit of {DOCUMENT_BYTES_MAX}"),
    ],
    ids=["empty", "list", "syntax", "duplicate-key", "not-utf8", "too-big"],
)
def test_documents_that_are_not_mappings_are_refused(text: str | bytes, expected: str) -> None:
    """Unparseable, empty, non-mapping or oversized documents: one clear INVALID_ARGUMENT."""
    with pytest.raises(InvalidArgument) as info:
        parse_document(text)
    assert expected in info.value.message


# ------------------------------------------------------------------- secrets
def _secret_documents() -> list[tuple[str, str]]:
    """(id, YAML text) pairs: each carries SECRET somewhere the parser rejects."""
    base = sample_data()
    cases: list[tuple[str, dict[str, Any] | str]] = []
    d = copy.deepcopy(base)
    d["models"][0]["token"] = SECRET
    cases.append(("inline model token", d))
    d = copy.deepcopy(base)
    d["auth"]["api_keys"][0]["token"] = SECRET
    cases.append(("inline api key", d))
    d = copy.deepcopy(base)
    d["models"][1]["endpoint"] = f"https://admin:{SECRET}@api.example.com/v1"
    cases.append(("credentials in URL", d))
    d = copy.deepcopy(base)
    d["models"][1]["endpoint"] = f"https://{SECRET} bad"
    cases.append(("bad URL holding a secret", d))
    d = copy.deepcopy(base)
    d["models"][0]["api_key"] = SECRET
    cases.append(("unknown field holding a secret", d))
    d = copy.deepcopy(base)
    d["models"][0]["token_env"] = SECRET
    cases.append(("secret pasted as env name", d))
    d = copy.deepcopy(base)
    d["auth"]["api_keys"][0]["token_file"] = {"value": SECRET}
    cases.append(("secret of the wrong type", d))
    d = copy.deepcopy(base)
    d["rate_limits"][SECRET + "/+=="] = {"requests_per_s": 1}
    cases.append(("secret pasted as an identity", d))
    out = [(name, yaml.safe_dump(doc)) for name, doc in cases]
    out.append(("YAML error on a secret's line", f"models:\n  - token: '{SECRET}\n"))
    return out


SECRET_DOCUMENTS = _secret_documents()


@pytest.mark.parametrize(
    "text", [t for _, t in SECRET_DOCUMENTS], ids=[n for n, _ in SECRET_DOCUMENTS]
)
def test_no_secret_is_echoed(text: str, caplog: pytest.LogCaptureFixture) -> None:
    """The error (message, str, repr, traceback) and every log line leave secrets out."""
    caplog.set_level(logging.DEBUG)
    with structlog.testing.capture_logs() as logs, pytest.raises(InvalidArgument) as info:
        parse_document(text)
    err = info.value
    shown = [err.message, str(err), repr(err), "".join(traceback.format_exception(err))]
    shown += [r.getMessage() for r in caplog.records] + [str(e) for e in logs]
    assert not [s for s in shown if SECRET in s]
    assert not [s for s in shown if "SUPERSECRET" in s]


def test_an_inline_token_is_refused_with_the_way_out() -> None:
    """`token:` inline says to use token_file or token_env, at the token's path."""
    data = sample_data()
    data["models"][2]["token"] = SECRET
    assert problems(data) == [
        "models[2].token: inline secrets are not stored in the config store; "
        "use token_file or token_env"
    ]


def test_a_stored_value_with_a_secret_is_reported_by_key_without_it() -> None:
    """Keys written by hand (raw put) with an inline token: the key is named, not the value."""
    kvs = layout.encode(parse_document(SAMPLE.read_text()))
    kvs["/mcp/models/gpt-4o"] = (
        b'{"endpoint": "https://api.example.com", "token": "' + SECRET.encode() + b'"}'
    )
    with pytest.raises(SchemaError) as info:
        layout.decode(kvs)
    assert info.value.problems == [
        "/mcp/models/gpt-4o: token: inline secrets are not stored in the config store; "
        "use token_file or token_env"
    ]
    assert SECRET not in "".join(traceback.format_exception(info.value))


def test_yaml_out_reads_back_to_the_same_config() -> None:
    """to_yaml writes a document parse_document turns back into an equal config."""
    doc = parse_document(SAMPLE.read_text())
    text = to_yaml(doc, comment="exported at revision 7")
    assert text.startswith("# exported at revision 7\nserver:\n")
    assert parse_document(text) == doc
    assert isinstance(doc, McpConfig)
