"""The MCP document as keys under ``/mcp/``, and back (docs/mcp-config.md).

::

    /mcp/server                  {"host": ..., "port": ..., "context_path": ...}
    /mcp/routing                 {"policy": ..., "health_check_interval_s": ..., ...}
    /mcp/auth                    {"enabled": ..., "api_keys": [...]}
    /mcp/logging                 {"level": ...}
    /mcp/models/<name>           {"endpoint": ..., "weight": ..., ...}   one key per model
    /mcp/rate_limits/<identity>  {"requests_per_s": ..., "burst": ...}   one key per identity

Values are JSON text (a value written by hand may also be YAML). One key per
model means a service watching ``/mcp/models/`` (the demo subscriber) sees
exactly the models that changed, and a model's history is its key's history.

``encode`` is total on a valid ``McpConfig``; ``decode`` validates the keys
as one document and names the *key* in each problem
(``/mcp/models/gpt-4o: endpoint: not an http(s) URL``), never a value.
``decode(encode(doc)) == doc`` (models are kept in name order).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Final

from mcpctl.errors import InvalidArgument, NotFound
from mcpctl.fleet.keys import is_fleet_key
from mcpctl.mcp.schema import Loc, McpConfig, SchemaError, dotted, load_yaml, to_data, validate

ROOT: Final = "/mcp/"
MODELS: Final = ROOT + "models/"
RATE_LIMITS: Final = ROOT + "rate_limits/"
# Sections stored whole, one key each (document field -> key).
SECTIONS: Final = {
    "server": ROOT + "server",
    "routing": ROOT + "routing",
    "auth": ROOT + "auth",
    "logging": ROOT + "logging",
}
_SECTION_OF_KEY: Final = {key: name for name, key in SECTIONS.items()}


def dump_value(obj: Any) -> bytes:
    """The stored form of one value: JSON, fields in schema order."""
    return json.dumps(obj, ensure_ascii=False).encode("utf-8")


def load_value(key: str, value: bytes) -> Any:
    """A stored value: JSON, else YAML. ``InvalidArgument`` names the key, not the value."""
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError:
        raise SchemaError([f"{key}: not valid UTF-8"], "MCP config") from None
    try:
        return json.loads(text)
    except ValueError:
        pass
    return load_yaml(text, what=key)


def encode(doc: McpConfig) -> dict[str, bytes]:
    """Every key (sorted) and its value for one document."""
    data = to_data(doc)
    out = {key: dump_value(data[name]) for name, key in SECTIONS.items()}
    for model in data["models"]:
        name = model.pop("name")
        out[MODELS + name] = dump_value(model)
    for identity, limit in data["rate_limits"].items():
        out[RATE_LIMITS + identity] = dump_value(limit)
    return dict(sorted(out.items()))


class _Keys:
    """Where each part of the assembled document came from, to name keys in errors."""

    def __init__(self) -> None:
        self.model_keys: list[str] = []

    def where(self, loc: Loc) -> str:
        head, rest = (loc[0], loc[1:]) if loc else ("", ())
        if head == "models" and rest and isinstance(rest[0], int):
            index = rest[0]
            if 0 <= index < len(self.model_keys):
                return _join(self.model_keys[index], rest[1:])
        if head == "rate_limits" and rest and isinstance(rest[0], str):
            return _join(RATE_LIMITS + rest[0], rest[1:])
        if isinstance(head, str) and head in SECTIONS:
            return _join(SECTIONS[head], rest)
        if head == "models":
            return _join(MODELS, rest)
        return _join(ROOT, loc)


def _join(key: str, rest: Loc) -> str:
    return f"{key}: {dotted(rest)}" if rest else key


def decode(kvs: Mapping[str, bytes]) -> McpConfig:
    """The document the keys under ``/mcp/`` hold (fleet keys skipped).

    ``NotFound`` when there are none; ``SchemaError`` naming keys otherwise.
    """
    kvs = {k: v for k, v in kvs.items() if not is_fleet_key(k)}
    if not kvs:
        raise NotFound(f"no MCP config under {ROOT}")
    problems: list[str] = []
    keys = _Keys()
    data: dict[str, Any] = {"models": [], "rate_limits": {}}
    for key in sorted(kvs):
        try:
            value = load_value(key, kvs[key])
        except SchemaError as e:
            problems += e.problems
            continue
        except InvalidArgument as e:  # from load_yaml: names the key and the line
            problems.append(e.message)
            continue
        if key in _SECTION_OF_KEY:
            data[_SECTION_OF_KEY[key]] = value
        elif key.startswith(MODELS) and len(key) > len(MODELS):
            if isinstance(value, dict) and "name" in value:
                problems.append(f"{key}: name: set by the key, not the value")
                continue
            name = key[len(MODELS) :]
            data["models"].append({"name": name, **value} if isinstance(value, dict) else value)
            keys.model_keys.append(key)
        elif key.startswith(RATE_LIMITS) and len(key) > len(RATE_LIMITS):
            data["rate_limits"][key[len(RATE_LIMITS) :]] = value
        else:
            problems.append(f"{key}: not part of the MCP key layout (docs/mcp-config.md)")
    if problems:
        raise SchemaError(problems, "MCP config")
    return validate(data, keys.where, "MCP config")


__all__ = ["MODELS", "RATE_LIMITS", "ROOT", "SECTIONS", "decode", "dump_value", "encode"]
