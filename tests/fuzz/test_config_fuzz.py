"""Random and malformed node config files: refused with one clear line, never a crash.

``mcpctl.server.config.load`` gets many hypothesis-generated documents in-process:
random nested mappings, lists and scalars; a valid config with one known key
(any depth, found by walking the pydantic model) set to a value of the wrong
type or out of range (huge numbers, NaN, bytes, nested junk); unknown keys at
random depths; YAML text garbled character by character; random
``MCP_*`` variables. It either returns a config or raises ``ConfigError``
with one non-empty line that starts with the file's path — never another
exception.

``python -m mcpctl serve --config F`` gets fewer of them (a process each):
it must exit with code 2, print nothing on stdout and exactly one line on
stderr. No generated config can start a node: ``cluster.secret`` and
``cluster.secret_file`` are always removed (a config that is otherwise valid
is refused for the missing secret, before anything is bound or written) and
``MCP_*`` variables are not passed on.

Inputs that break these promises today (non-UTF-8 bytes, nesting deeper than
PyYAML's recursion allows, integers past Python's 4300-digit limit, an
impossible date, a NUL in a path, a 5,000-character address echoed whole) are
pinned by xfail(strict=True) tests at the end, so the generated documents
above stay within what is fixed; once mcpctl/server/config.py handles them, they
belong in the generated ones too.
"""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from mcpctl.server import config
from mcpctl.server.config import ConfigError, NodeConfig

SERVE_TIMEOUT_S = 30.0
EXIT_USAGE = 2
# Examples: in-process loads are cheap; each serve run is a Python process (~0.4 s).
LOAD_EXAMPLES = 300
SERVE_EXAMPLES = 20
# A message that echoes a huge value is one line, but not a clear one.
MESSAGE_CHARS_MAX = 300

MEMBERS = [
    {"name": f"n{i}", "raft": f"127.0.0.1:{7200 + i}", "client": f"127.0.0.1:{7100 + i}"}
    for i in (1, 2, 3)
]


def base_doc() -> dict[str, Any]:
    """A valid config except for the secret (never present: see the module docstring)."""
    return {
        "name": "n1",
        "data_dir": "/nonexistent/mcp-fuzz/n1",
        "cluster": {"name": "fuzz", "members": [dict(m) for m in MEMBERS]},
        "raft": {"heartbeat_ms": 50},
        "log": {"level": "info"},
    }


def without_secret(doc: Any) -> Any:
    """``doc`` with cluster.secret and cluster.secret_file removed, if it has a cluster."""
    if isinstance(doc, dict) and isinstance(doc.get("cluster"), dict):
        doc["cluster"].pop("secret", None)
        doc["cluster"].pop("secret_file", None)
    return doc


# -- the key paths of the model ---------------------------------------------------------------

KeyPath = tuple[str | int, ...]


def _models_in(annotation: Any) -> Iterator[tuple[type[BaseModel], bool]]:
    """Pydantic models inside ``annotation`` (through Optional, list, Annotated), and
    whether each sits in a list."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        yield annotation, False
        return
    origin = typing.get_origin(annotation)
    for arg in typing.get_args(annotation):
        for model, in_list in _models_in(arg):
            yield model, in_list or origin is list


def key_paths(model: type[BaseModel], prefix: KeyPath = ()) -> list[KeyPath]:
    """Every key path of ``model``; a list of models contributes its element 0."""
    out: list[KeyPath] = []
    for name, info in model.model_fields.items():
        path = (*prefix, name)
        out.append(path)
        for sub, in_list in _models_in(info.annotation):
            out.extend(key_paths(sub, (*path, 0) if in_list else path))
    return out


KEY_PATHS = key_paths(NodeConfig)
KEY_NAMES = sorted({str(p[-1]) for p in KEY_PATHS if isinstance(p[-1], str)})


def set_path(doc: dict[str, Any], path: KeyPath, value: Any) -> None:
    """Set ``value`` at ``path``, creating the sections (and list element 0) on the way."""
    node: Any = doc
    for part, nxt in itertools.pairwise(path):
        empty: Any = [{}] if isinstance(nxt, int) else {}
        if isinstance(part, int):
            while len(node) <= part:
                node.append({})
            if not isinstance(node[part], dict | list):
                node[part] = empty
            node = node[part]
        else:
            if not isinstance(node.get(part), dict | list):
                node[part] = empty
            node = node[part]
    node[path[-1]] = value


# -- strategies --------------------------------------------------------------------------------

SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.sampled_from([0, -1, 2**31, 2**63, -(2**63) - 1, 10**300]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    st.sampled_from(["", "0.0.0.0:0", "h:70000", "json", "debug", "n1", "yes", "~", "1e999"]),
    st.binary(max_size=12),  # YAML !!binary: bytes where text is expected
)
KEYS = st.one_of(st.sampled_from(KEY_NAMES), st.text(min_size=1, max_size=12))
JUNK = st.recursive(
    SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(KEYS, inner, max_size=4)),
    max_leaves=24,
)


@st.composite
def wrong_value_at_a_known_key(draw: st.DrawFn) -> dict[str, Any]:
    """The valid base config with one known key (at any depth) set to junk."""
    doc = base_doc()
    set_path(doc, draw(st.sampled_from(KEY_PATHS)), draw(JUNK))
    return doc


@st.composite
def unknown_key_somewhere(draw: st.DrawFn) -> dict[str, Any]:
    """The valid base config with an unknown key added in a random section."""
    doc = base_doc()
    sections = [p for p in KEY_PATHS if len(p) < 4]
    path = (*draw(st.sampled_from(sections))[:-1], draw(st.text(min_size=1, max_size=12)))
    set_path(doc, path, draw(JUNK))
    return doc


DOCUMENTS = st.one_of(
    JUNK,
    wrong_value_at_a_known_key(),
    wrong_value_at_a_known_key(),
    unknown_key_somewhere(),
    st.just(base_doc()),
)

# Characters that make YAML mean something else (or nothing).
YAML_SPECIALS = st.sampled_from(list(":-[]{}&*!|>'\"%@`#,?\t\n\r\x00\x85\ufeff"))


@st.composite
def garbled_text(draw: st.DrawFn) -> str:
    """A valid config's YAML with a few characters deleted, replaced or inserted."""
    text = yaml.safe_dump(base_doc())
    for _ in range(draw(st.integers(1, 4))):
        i = draw(st.integers(0, len(text)))
        how = draw(st.sampled_from(["delete", "replace", "insert"]))
        junk = draw(st.one_of(YAML_SPECIALS, st.text(min_size=1, max_size=3)))
        if how == "delete":
            text = text[:i] + text[i + 1 :]
        elif how == "replace":
            text = text[:i] + junk + text[i + 1 :]
        else:
            text = text[:i] + junk + text[i:]
    return text


def dump(doc: Any) -> str:
    return yaml.safe_dump(without_secret(doc), allow_unicode=True)


TEXTS = st.one_of(
    DOCUMENTS.map(dump),
    garbled_text(),
    st.text(max_size=200),
    st.sampled_from(["", "\n", "---\n", "--- !!map {}\n", "...\n", "%YAML 1.1\n---\n", "null\n"]),
    st.sampled_from(["---\na: 1\n---\nb: 2\n", "? a\n", "&a [*a]\n", "a: &a {b: *a}\n"]),
)

SETTINGS = settings(
    deadline=None,
    derandomize=True,
    database=None,
    print_blob=False,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


def assert_one_clear_line(message: str, path: Path) -> None:
    assert message, "an empty message"
    assert "\n" not in message and "\r" not in message, f"not one line: {message!r}"
    assert message.startswith(str(path)), f"does not name the file: {message!r}"
    tail = message[len(str(path)) :]
    assert len(tail) <= MESSAGE_CHARS_MAX, f"{len(tail)} characters: {message[:400]!r}..."


def load_or_config_error(path: Path, env: dict[str, str] | None = None) -> NodeConfig | str:
    """``load``'s config, or its ConfigError message; any other exception propagates."""
    try:
        return config.load(path, env=env or {})
    except ConfigError as e:
        return str(e)


# -- in-process ---------------------------------------------------------------------------------


@settings(SETTINGS, max_examples=LOAD_EXAMPLES)
@given(text=TEXTS)
def test_load_random_documents(tmp_path: Path, text: str) -> None:
    """load() on arbitrary YAML returns a config or raises one ConfigError line naming the file."""
    path = tmp_path / "node.yaml"
    path.write_text(text, encoding="utf-8")
    got = load_or_config_error(path)
    if isinstance(got, str):
        assert_one_clear_line(got, path)


@settings(SETTINGS, max_examples=LOAD_EXAMPLES // 2)
@given(doc=wrong_value_at_a_known_key())
def test_wrong_value_names_its_section(tmp_path: Path, doc: dict[str, Any]) -> None:
    """A wrong value at a known key is refused naming that key's top-level section."""
    path = tmp_path / "node.yaml"
    path.write_text(dump(doc), encoding="utf-8")
    got = load_or_config_error(path)
    if isinstance(got, NodeConfig):
        return  # the junk happened to be a valid value there
    assert_one_clear_line(got, path)
    base = base_doc()
    changed = [k for k in doc if k not in base or doc[k] != base[k]]
    assert changed, "the generator changed nothing"
    assert any(k in got for k in changed), f"{got!r} names none of {changed}"


ENV_NAMES = st.one_of(
    st.sampled_from(KEY_PATHS).map(
        lambda p: "MCP_" + "__".join(str(x).upper() for x in p if isinstance(x, str))
    ),
    st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=12).map(
        lambda s: "MCP_" + s
    ),
)
ENV_VALUES = st.one_of(
    st.text(max_size=40).filter(lambda s: "\x00" not in s),
    JUNK.map(lambda v: yaml.safe_dump(v, default_flow_style=True).strip()),
)


@settings(SETTINGS, max_examples=LOAD_EXAMPLES // 2)
@given(env=st.dictionaries(ENV_NAMES, ENV_VALUES, max_size=3))
def test_load_random_environment(tmp_path: Path, env: dict[str, str]) -> None:
    """Random MCP_* variables over a valid file: a config or one ConfigError line, nothing else."""
    path = tmp_path / "node.yaml"
    path.write_text(dump(base_doc()), encoding="utf-8")
    try:
        config.load(path, env=env)
    except ConfigError as e:
        message = str(e)
        assert message and "\n" not in message, f"not one line: {message!r}"


# -- mcpctl serve -------------------------------------------------------------------------------


def serve(path: Path) -> subprocess.CompletedProcess[bytes]:
    """``python -m mcpctl serve --config PATH`` without any MCP_* / MCPCTL_* variable."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MCP_", "MCPCTL_"))}
    return subprocess.run(
        [sys.executable, "-m", "mcpctl", "serve", "--config", str(path)],
        capture_output=True,
        timeout=SERVE_TIMEOUT_S,  # raises (and kills it) rather than hang
        env=env,
        stdin=subprocess.DEVNULL,
        cwd=path.parent,
    )


def assert_refused_in_one_line(proc: subprocess.CompletedProcess[bytes]) -> str:
    stderr = proc.stderr.decode("utf-8", "replace")
    assert proc.returncode == EXIT_USAGE, f"exit {proc.returncode}, stderr: {stderr[-2000:]!r}"
    assert proc.stdout == b"", f"stdout: {proc.stdout[:500]!r}"
    lines = stderr.splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got {len(lines)}: {stderr[-2000:]!r}"
    assert lines[0].startswith("mcpctl serve: "), f"not the serve refusal: {lines[0]!r}"
    return lines[0]


@settings(SETTINGS, max_examples=SERVE_EXAMPLES)
@given(text=TEXTS)
def test_serve_refuses_random_documents(tmp_path: Path, text: str) -> None:
    """`mcpctl serve` on a random config exits 2 with exactly one line on stderr."""
    path = tmp_path / "node.yaml"
    path.write_text(text, encoding="utf-8")
    assert_refused_in_one_line(serve(path))


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"\n\n\n",
        b"\xef\xbb\xbfname: n1\n",  # a UTF-8 byte order mark
        b"name: [\n",
        b"\t- a\n",
        b"\x00",
        b"!!python/object/apply:os.system ['true']\n",
        b"a: &a [*a, *a]\n" * 3,
        dump(base_doc()).encode(),  # valid but for the secret
    ],
    ids=[
        "empty",
        "newlines",
        "bom",
        "open-bracket",
        "tab",
        "nul",
        "python-tag",
        "aliases",
        "no-secret",
    ],
)
def test_serve_refuses_edge_cases(tmp_path: Path, content: bytes) -> None:
    """Edge-case files (empty, BOM, tags, aliases, no secret): exit 2 and one line."""
    path = tmp_path / "node.yaml"
    path.write_bytes(content)
    assert_refused_in_one_line(serve(path))


# -- known gaps (mcpctl/server/config.py); see the module docstring ---------------------------

KNOWN_GAPS = {
    "non-utf8": b"name: n1\ndata_dir: /x\xff\xfe\n",
    "latin1": "name: caf\u00e9\n".encode("latin-1"),
    "utf16": "name: n1\n".encode("utf-16"),
    "deep-flow": b"a: " + b"[" * 600 + b"]" * 600 + b"\n",
    "deep-block": "".join("  " * i + f"k{i}:\n" for i in range(600)).encode(),
    "long-integer": b"raft:\n  heartbeat_ms: " + b"9" * 5000 + b"\n",
    "bad-date": b"name: 2001-13-45\n",
}


@pytest.mark.parametrize("content", list(KNOWN_GAPS.values()), ids=list(KNOWN_GAPS))
def test_load_refuses_undecodable_files_with_config_error(tmp_path: Path, content: bytes) -> None:
    """Bytes that are not UTF-8 YAML within limits are one ConfigError naming the file."""
    path = tmp_path / "node.yaml"
    path.write_bytes(content)
    got = load_or_config_error(path)
    assert isinstance(got, str)
    assert_one_clear_line(got, path)


@pytest.mark.parametrize("content", list(KNOWN_GAPS.values()), ids=list(KNOWN_GAPS))
def test_serve_refuses_undecodable_files_in_one_line(tmp_path: Path, content: bytes) -> None:
    """`mcpctl serve` on such a file: exit 2 and one 'mcpctl serve:' line naming the file."""
    path = tmp_path / "node.yaml"
    path.write_bytes(content)
    line = assert_refused_in_one_line(serve(path))
    assert str(path) in line, f"does not name the file: {line!r}"


@pytest.mark.parametrize("value", ["[" * 600 + "]" * 600, "9" * 5000], ids=["deep", "long-int"])
def test_load_refuses_bad_env_values_with_config_error(tmp_path: Path, value: str) -> None:
    """An MCP_* value too deep or too long to parse is one ConfigError naming the variable."""
    path = tmp_path / "node.yaml"
    path.write_text(dump(base_doc()), encoding="utf-8")
    with pytest.raises(ConfigError, match="MCP_LOG__LEVEL"):
        config.load(path, env={"MCP_LOG__LEVEL": value})


def test_nul_in_secret_file_is_a_config_error(tmp_path: Path) -> None:
    """A secret_file path with a NUL byte is refused as a ConfigError naming the key."""
    doc = base_doc()
    doc["cluster"]["secret_file"] = str(tmp_path / "se\x00cret")
    path = tmp_path / "node.yaml"
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    with pytest.raises(ConfigError, match="secret_file"):
        config.load(path, env={}).cluster_secret()


@pytest.mark.parametrize("key", [("server", "listen"), ("cluster", "members", 1, "raft")])
def test_long_bad_value_is_not_echoed_whole(tmp_path: Path, key: KeyPath) -> None:
    """A long bad value makes a short message: the key is named, the value cut."""
    doc = base_doc()
    set_path(doc, key, "x" * 5000)
    path = tmp_path / "node.yaml"
    path.write_text(dump(doc), encoding="utf-8")
    got = load_or_config_error(path)
    assert isinstance(got, str), "a 5,000-character address was accepted"
    assert_one_clear_line(got, path)


def test_base_document_is_valid_but_cannot_start_a_node(tmp_path: Path) -> None:
    """The base config loads (mutations are judged against a valid one) and has no secret."""
    path = tmp_path / "node.yaml"
    path.write_text(dump(base_doc()), encoding="utf-8")
    cfg = config.load(path, env={})
    assert cfg.name == "n1" and len(cfg.cluster.members) == 3
    with pytest.raises(ConfigError, match="secret"):
        cfg.cluster_secret()
    # The model walk reaches into lists and optional sections.
    for deep in [("cluster", "members", 0, "raft"), ("server", "tls", "cert_file")]:
        assert deep in KEY_PATHS, deep
