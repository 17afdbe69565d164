"""Jinja2 templates of ``mcpctl render``: what a template sees, and rendering.

A template sees (docs/render.md):

- ``keys``: every key its ``reads`` cover -> its value as text (UTF-8);
- ``key(name, default)``: one value; a missing key without a default fails;
- ``prefix(p)``: the keys under ``p`` (within its reads) -> values, sorted;
- ``mcp`` / ``models``: the typed MCP config and its models by name
  (``reads.mcp``), undefined while there is no valid config;
- ``instances``: model -> its registered instances, by id, as the fleet
  decodes them (``mcpctl.render.fleet``: endpoint, host, port, effective
  weight, operator state, health and load, ...), and ``serving``: model ->
  the ones a picker would choose from (``reads.instances``);
- ``revision``, ``stale``; filters ``fromjson`` (and Jinja's ``tojson``).

``trim_blocks`` and ``lstrip_blocks`` are on: a line holding only a block
tag leaves nothing in the output.

Undefined is strict: a missing key, attribute or variable fails the render
loudly (nothing is written) unless the template gives a default
(``| default(...)`` or ``key(name, default)``). The environment is sandboxed:
values are data, never code.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2
from jinja2.sandbox import SandboxedEnvironment

from mcpctl import limits
from mcpctl.fleet.select import Instance
from mcpctl.mcp.schema import McpConfig
from mcpctl.render.config import Template
from mcpctl.render.fleet import by_model

_MISSING: Any = object()


class RenderError(Exception):
    """A template could not be rendered; the message is one line."""


@dataclass(frozen=True)
class Data:
    """What the sources hold now: keys (of every watched key or prefix), the
    live fleet (``fleet.decode``), the MCP config (None: none valid yet)."""

    kvs: Mapping[str, bytes] = field(default_factory=dict)
    instances: Sequence[Instance] = ()
    mcp: McpConfig | None = None
    revision: int = 0
    stale: bool = False


def environment() -> SandboxedEnvironment:
    env = SandboxedEnvironment(
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        keep_trailing_newline=True,
        # Block tags take their line with them (as Ansible does): `{% for %}`
        # on its own line leaves no blank line behind.
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["fromjson"] = _fromjson
    return env


def _fromjson(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError as e:
        raise RenderError(f"fromjson: not JSON ({e})") from None


def load_source(path: Path) -> str:
    try:
        with open(path, "rb") as f:
            data = f.read(limits.RENDER_TEMPLATE_BYTES_MAX + 1)
    except OSError as e:
        raise RenderError(f"cannot read the template {path}: {e.strerror}") from None
    if len(data) > limits.RENDER_TEMPLATE_BYTES_MAX:
        raise RenderError(
            f"the template {path} is over RENDER_TEMPLATE_BYTES_MAX "
            f"({limits.RENDER_TEMPLATE_BYTES_MAX} bytes)"
        )
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise RenderError(f"the template {path} is not UTF-8") from None


def compile_template(env: SandboxedEnvironment, t: Template) -> jinja2.Template:
    source = load_source(t.src)
    try:
        return env.from_string(source)
    except jinja2.TemplateSyntaxError as e:
        raise RenderError(f"{t.src}:{e.lineno}: {e.message}") from None


def context(t: Template, data: Data) -> dict[str, Any]:
    reads = t.reads
    visible = {
        k: v.decode("utf-8", "replace")
        for k, v in data.kvs.items()
        if k in reads.keys or any(k.startswith(p) for p in reads.prefixes)
    }

    def key(name: str, default: Any = _MISSING) -> Any:
        if name in visible:
            return visible[name]
        if default is not _MISSING:
            return default
        if not reads.covers(name):
            raise RenderError(f"key {name} is not in this template's reads")
        raise RenderError(f"key {name} is missing (give a default: key({name!r}, '...'))")

    def prefix(p: str) -> dict[str, str]:
        if not any(p.startswith(q) for q in reads.prefixes):
            raise RenderError(f"prefix {p} is not within this template's reads.prefixes")
        return {k: visible[k] for k in sorted(visible) if k.startswith(p)}

    ctx: dict[str, Any] = {
        "keys": visible,
        "key": key,
        "prefix": prefix,
        "revision": data.revision,
        "stale": data.stale,
    }
    if reads.mcp and data.mcp is not None:
        ctx["mcp"] = data.mcp
        ctx["models"] = {m.name: m for m in data.mcp.models}
    if reads.instances:
        ctx["instances"], ctx["serving"] = by_model(data.instances, reads.protect_threshold)
    return ctx


def render(template: jinja2.Template, t: Template, data: Data) -> bytes:
    """The rendered file; ``RenderError`` (one line) when it cannot be."""
    try:
        text = template.render(context(t, data))
    except RenderError:
        raise
    except jinja2.UndefinedError as e:
        hint = " (no valid MCP config yet)" if "'mcp'" in str(e) or "'models'" in str(e) else ""
        raise RenderError(f"undefined: {e.message}{hint}") from None
    except jinja2.TemplateError as e:
        raise RenderError(f"{type(e).__name__}: {e.message}") from None
    except Exception as e:  # a filter or a method raising on bad data
        raise RenderError(f"{type(e).__name__}: {e}") from None
    out = text.encode("utf-8")
    if len(out) > limits.RENDER_OUTPUT_BYTES_MAX:
        raise RenderError(
            f"rendered {len(out)} bytes, over RENDER_OUTPUT_BYTES_MAX "
            f"({limits.RENDER_OUTPUT_BYTES_MAX})"
        )
    return out
