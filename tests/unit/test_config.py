"""Node configuration loading (DESIGN §6): defaults < YAML < MCP_* env < overrides,
and every refusal is one ConfigError line that names the key, file or line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from mcpctl.server import config
from mcpctl.server.config import ConfigError, NodeConfig

SECRET = "s3cret-value-0123456789"

MEMBERS: list[dict[str, str]] = [
    {"name": "n1", "raft": "127.0.0.1:7201", "client": "127.0.0.1:7101"},
    {"name": "n2", "raft": "127.0.0.1:7202", "client": "127.0.0.1:7102"},
    {"name": "n3", "raft": "127.0.0.1:7203", "client": "127.0.0.1:7103"},
]


def base_doc(**extra: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "name": "n1",
        "data_dir": "/var/lib/mcp/n1",
        "cluster": {"name": "prod", "members": [dict(m) for m in MEMBERS], "secret": SECRET},
    }
    doc.update(extra)
    return doc


def write_yaml(tmp_path: Path, doc: Any, name: str = "node.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def load_error(
    path: Path | None,
    *,
    env: dict[str, str] | None = None,
    overrides: dict[str, Any] | None = None,
) -> str:
    """The ConfigError message ``load`` raises; it must be exactly one line."""
    with pytest.raises(ConfigError) as info:
        config.load(path, env=env or {}, overrides=overrides)
    message = str(info.value)
    assert message and "\n" not in message, f"not one line: {message!r}"
    return message


# -- precedence ------------------------------------------------------------------------


def test_defaults_fill_everything_the_file_leaves_out(tmp_path: Path) -> None:
    """A minimal file (name, data_dir, members, secret) gets the documented defaults."""
    cfg = config.load(write_yaml(tmp_path, base_doc()), env={})
    assert cfg.raft.heartbeat_ms == 50
    assert cfg.raft.election_timeout_min_ms == 500
    assert cfg.raft.election_timeout_max_ms == 1000
    assert cfg.limits.value_bytes_max == 1024 * 1024
    assert cfg.log.level == "info" and cfg.log.format == "json"
    assert cfg.server.listen is None
    # Without an explicit listen address, a node binds its own member addresses.
    assert cfg.client_listen == "127.0.0.1:7101"
    assert cfg.raft_listen == "127.0.0.1:7201"
    assert [m.name for m in cfg.peers] == ["n2", "n3"]


def test_yaml_overrides_defaults(tmp_path: Path) -> None:
    """A value in the YAML file beats the built-in default."""
    doc = base_doc(raft={"heartbeat_ms": 30}, log={"format": "console"})
    cfg = config.load(write_yaml(tmp_path, doc), env={})
    assert cfg.raft.heartbeat_ms == 30
    assert cfg.log.format == "console"


def test_env_overrides_yaml(tmp_path: Path) -> None:
    """MCP_SERVER__LISTEN and MCP_RAFT__HEARTBEAT_MS beat the file; values parse as YAML."""
    doc = base_doc(server={"listen": "127.0.0.1:9000"}, raft={"heartbeat_ms": 30})
    env = {"MCP_SERVER__LISTEN": "0.0.0.0:7101", "MCP_RAFT__HEARTBEAT_MS": "20"}
    cfg = config.load(write_yaml(tmp_path, doc), env=env)
    assert cfg.server.listen == "0.0.0.0:7101"
    assert cfg.client_listen == "0.0.0.0:7101"
    assert cfg.raft.heartbeat_ms == 20


def test_env_list_value_is_parsed_as_yaml(tmp_path: Path) -> None:
    """A list-valued key (cluster.members) can be given whole through one env variable."""
    members = "[{name: n1, raft: '10.0.0.1:7201', client: '10.0.0.1:7101'}]"
    cfg = config.load(write_yaml(tmp_path, base_doc()), env={"MCP_CLUSTER__MEMBERS": members})
    assert [(m.name, m.raft, m.client) for m in cfg.cluster.members] == [
        ("n1", "10.0.0.1:7201", "10.0.0.1:7101")
    ]


def test_env_without_file_and_unrelated_variables_are_ignored() -> None:
    """A config can come from env alone; variables without the MCP_ prefix are not read."""
    env = {
        "MCP_NAME": "n2",
        "MCP_DATA_DIR": "/data",
        "MCP_CLUSTER__MEMBERS": json.dumps(MEMBERS),
        "MCP_CLUSTER__SECRET": SECRET,
        "HOME": "/root",
        "MCPX_BOGUS": "1",
    }
    cfg = config.load(None, env=env)
    assert cfg.name == "n2" and cfg.data_dir == Path("/data")
    assert cfg.member.client == "127.0.0.1:7102"


def test_overrides_beat_env(tmp_path: Path) -> None:
    """Flag overrides (dotted paths) beat both the file and the environment."""
    env = {"MCP_SERVER__LISTEN": "0.0.0.0:7101", "MCP_LOG__LEVEL": "debug"}
    overrides = {"server.listen": "127.0.0.1:8000", "name": "n3"}
    cfg = config.load(write_yaml(tmp_path, base_doc()), env=env, overrides=overrides)
    assert cfg.server.listen == "127.0.0.1:8000"
    assert cfg.name == "n3"
    assert cfg.log.level == "debug"


def test_load_reads_os_environ_when_env_is_not_given(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without an explicit env mapping, load() reads the process environment."""
    monkeypatch.setenv("MCP_RAFT__TICK_MS", "7")
    cfg = config.load(write_yaml(tmp_path, base_doc()))
    assert cfg.raft.tick_ms == 7


def test_config_is_frozen(tmp_path: Path) -> None:
    """A loaded config cannot be changed by accident after validation."""
    cfg = config.load(write_yaml(tmp_path, base_doc()), env={})
    with pytest.raises(ValueError):
        cfg.raft.heartbeat_ms = 1


# -- files -----------------------------------------------------------------------------


def test_missing_file_names_the_file(tmp_path: Path) -> None:
    """A config path that does not exist is refused, naming the path."""
    path = tmp_path / "nope.yaml"
    message = load_error(path)
    assert str(path) in message and "no such file" in message


def test_unreadable_file_names_the_file(tmp_path: Path) -> None:
    """A config path that cannot be read (here: a directory) is refused, naming it."""
    path = tmp_path / "dir.yaml"
    path.mkdir()
    message = load_error(path)
    assert str(path) in message and "cannot read" in message


def test_bad_yaml_names_file_and_line(tmp_path: Path) -> None:
    """Broken YAML is refused with file:line of the problem."""
    path = tmp_path / "node.yaml"
    path.write_text("name: n1\ndata_dir: /data\ncluster: members: [\n")
    message = load_error(path)
    assert f"{path}:3:" in message
    assert "bad YAML" in message


def test_bad_yaml_line_number_is_the_offending_line(tmp_path: Path) -> None:
    """The line number points at the bad line, not the first or the last one."""
    path = tmp_path / "node.yaml"
    path.write_text("name: n1\n\n\n\nlog:\n  level: info\n  format: [json\ndata_dir: /x\n")
    message = load_error(path)
    assert message.startswith(f"{path}:8:")


@pytest.mark.parametrize("text", ["- a\n- b\n", "just a string\n", "42\n"])
def test_top_level_must_be_a_mapping(tmp_path: Path, text: str) -> None:
    """A file whose top level is a list or a scalar is refused, naming the file."""
    path = tmp_path / "node.yaml"
    path.write_text(text)
    message = load_error(path)
    assert str(path) in message and "mapping" in message


def test_empty_file_means_no_keys(tmp_path: Path) -> None:
    """An empty file is an empty mapping: the first missing required key is named."""
    path = tmp_path / "node.yaml"
    path.write_text("")
    message = load_error(path)
    assert "required key is missing" in message


# -- keys and values -------------------------------------------------------------------


def test_unknown_top_level_key(tmp_path: Path) -> None:
    """A typo at the top level is refused (no silent defaults), naming the key."""
    message = load_error(write_yaml(tmp_path, base_doc(data_dri="/x")))
    assert "data_dri: unknown key" in message


@pytest.mark.parametrize(
    ("section", "key"),
    [("raft", "heartbeat"), ("server", "port"), ("limits", "value_max"), ("log", "colour")],
)
def test_unknown_nested_key(tmp_path: Path, section: str, key: str) -> None:
    """A typo inside a section is refused with its full dotted path."""
    message = load_error(write_yaml(tmp_path, base_doc(**{section: {key: 1}})))
    assert f"{section}.{key}: unknown key" in message


def test_unknown_key_inside_a_member(tmp_path: Path) -> None:
    """A typo inside cluster.members[i] names the list index."""
    doc = base_doc()
    doc["cluster"]["members"][1]["clinet"] = "127.0.0.1:1"
    message = load_error(write_yaml(tmp_path, doc))
    assert "cluster.members[1].clinet: unknown key" in message


@pytest.mark.parametrize(
    ("doc_extra", "key"),
    [
        ({"raft": {"heartbeat_ms": "fast"}}, "raft.heartbeat_ms"),
        ({"limits": {"value_bytes_max": [1]}}, "limits.value_bytes_max"),
        ({"log": {"level": "loud"}}, "log.level"),
        ({"server": "0.0.0.0:1"}, "server"),
        ({"name": ["n1"]}, "name"),
    ],
)
def test_wrong_type_names_the_key(tmp_path: Path, doc_extra: dict[str, Any], key: str) -> None:
    """A value of the wrong type is refused, naming the key."""
    message = load_error(write_yaml(tmp_path, base_doc(**doc_extra)))
    assert f"{key}: " in message


@pytest.mark.parametrize(
    ("section", "key", "value"),
    [
        ("raft", "heartbeat_ms", 5),
        ("raft", "heartbeat_ms", 5000),
        ("raft", "tick_ms", 0),
        ("limits", "value_bytes_max", 0),
        ("limits", "proposal_timeout_ms", 10),
    ],
)
def test_out_of_range_names_the_key(tmp_path: Path, section: str, key: str, value: int) -> None:
    """A number outside its documented range is refused, naming the key."""
    message = load_error(write_yaml(tmp_path, base_doc(**{section: {key: value}})))
    assert f"{section}.{key}: Input should be" in message


def test_missing_required_key(tmp_path: Path) -> None:
    """A required key that is absent is named."""
    doc = base_doc()
    del doc["data_dir"]
    message = load_error(write_yaml(tmp_path, doc))
    assert "data_dir: required key is missing" in message


def test_name_must_be_a_member(tmp_path: Path) -> None:
    """A node whose name is not in cluster.members is refused, naming both."""
    message = load_error(write_yaml(tmp_path, base_doc(name="n9")))
    assert "'n9'" in message and "cluster.members" in message


@pytest.mark.parametrize("attr", ["name", "raft", "client"])
def test_duplicate_member(tmp_path: Path, attr: str) -> None:
    """Two members sharing a name or an address are refused, naming the duplicate."""
    doc = base_doc()
    doc["cluster"]["members"][2][attr] = doc["cluster"]["members"][0][attr]
    message = load_error(write_yaml(tmp_path, doc))
    assert f"duplicate {attr}" in message
    assert repr(doc["cluster"]["members"][0][attr]) in message


@pytest.mark.parametrize(
    "address", ["localhost", "host:", ":7101", "host:0", "host:65536", "host:http", "h:-1"]
)
def test_bad_host_port(tmp_path: Path, address: str) -> None:
    """Addresses that are not host:port (1..65535) are refused, naming key and value."""
    message = load_error(write_yaml(tmp_path, base_doc(server={"listen": address})))
    assert message.startswith(f"{tmp_path / 'node.yaml'}: server.listen: ")


def test_bad_member_address_names_the_member(tmp_path: Path) -> None:
    """A bad member address points at that member's field."""
    doc = base_doc()
    doc["cluster"]["members"][2]["raft"] = "10.0.0.3"
    message = load_error(write_yaml(tmp_path, doc))
    assert "cluster.members[2].raft" in message and "host:port" in message


@pytest.mark.parametrize("address", ["127.0.0.1:1", "node-1.mcp.svc:65535", "[::1]:7101"])
def test_good_host_port(tmp_path: Path, address: str) -> None:
    """Ordinary host:port forms (name, IPv4, bracketed IPv6) are accepted."""
    cfg = config.load(write_yaml(tmp_path, base_doc(server={"listen": address})), env={})
    assert cfg.client_listen == address


@pytest.mark.parametrize(
    ("raft", "expected"),
    [
        ({"heartbeat_ms": 200, "election_timeout_min_ms": 500}, "3 x heartbeat_ms"),
        (
            {"election_timeout_min_ms": 800, "election_timeout_max_ms": 800},
            "election_timeout_max_ms must be above election_timeout_min_ms",
        ),
        ({"heartbeat_ms": 100, "leader_fallback_ms": 200}, "leader_fallback_ms"),
    ],
)
def test_election_timeout_relations(tmp_path: Path, raft: dict[str, int], expected: str) -> None:
    """Raft timing values that are each in range but inconsistent together are refused."""
    message = load_error(write_yaml(tmp_path, base_doc(raft=raft)))
    assert "raft: " in message and expected in message


def test_history_bytes_must_hold_two_values(tmp_path: Path) -> None:
    """limits.history_bytes_max below 2 x value_bytes_max is refused."""
    doc = base_doc(limits={"value_bytes_max": 8 * 1024 * 1024, "history_bytes_max": 1024 * 1024})
    message = load_error(write_yaml(tmp_path, doc))
    assert "history_bytes_max" in message


def test_several_problems_are_counted_on_one_line(tmp_path: Path) -> None:
    """With more than one problem the first is shown and the rest counted, still one line."""
    doc = base_doc(raft={"heartbeat_ms": "x", "tick_ms": "y"}, bogus=1)
    message = load_error(write_yaml(tmp_path, doc))
    assert "more problems" in message


# -- environment -----------------------------------------------------------------------


def test_unknown_env_var_is_refused(tmp_path: Path) -> None:
    """An MCP_ variable that matches no key is refused (a typo never passes silently)."""
    message = load_error(write_yaml(tmp_path, base_doc()), env={"MCP_RAFT__HEARTBEAT": "20"})
    assert "raft.heartbeat: unknown key" in message


def test_unknown_top_level_env_path_is_refused(tmp_path: Path) -> None:
    """MCP_BOGUS__KEY (a path: ours) is refused just like a top-level typo in the file;
    MCP_BOGUS alone is not ours (tests/unit/test_config_env.py)."""
    message = load_error(write_yaml(tmp_path, base_doc()), env={"MCP_BOGUS__KEY": "1"})
    assert "bogus: unknown key" in message


@pytest.mark.parametrize(
    "env", [{"MCP_BOGUS__KEY": "1"}, {"MCP_RAFT__HEARTBEAT_MS": "fast"}], ids=["unknown", "type"]
)
def test_env_problem_names_the_variable(tmp_path: Path, env: dict[str, str]) -> None:
    """A problem that comes from an MCP_ variable names that variable, not the file."""
    message = load_error(write_yaml(tmp_path, base_doc()), env=env)
    assert next(iter(env)) in message


def test_env_value_that_is_not_yaml_names_the_variable(tmp_path: Path) -> None:
    """An env value that does not parse as YAML names the variable."""
    message = load_error(write_yaml(tmp_path, base_doc()), env={"MCP_SERVER__LISTEN": "[oops"})
    assert message == "MCP_SERVER__LISTEN: value is not valid YAML"


def test_env_wrong_type(tmp_path: Path) -> None:
    """An env value of the wrong type is refused, naming the key."""
    message = load_error(write_yaml(tmp_path, base_doc()), env={"MCP_RAFT__HEARTBEAT_MS": "fast"})
    assert "raft.heartbeat_ms: " in message


def test_env_into_a_scalar_is_refused(tmp_path: Path) -> None:
    """MCP_NAME__X cannot turn the scalar `name` into a section."""
    message = load_error(write_yaml(tmp_path, base_doc()), env={"MCP_NAME__X": "1"})
    assert message == "name: is not a section"


@pytest.mark.parametrize("secret", ["abcdefghijklmnop #qrstuvwxyz", "1234567890123456"])
def test_env_secret_is_taken_verbatim(tmp_path: Path, secret: str) -> None:
    """A secret passed as MCP_CLUSTER__SECRET is used exactly as given."""
    doc = base_doc()
    del doc["cluster"]["secret"]
    cfg = config.load(write_yaml(tmp_path, doc), env={"MCP_CLUSTER__SECRET": secret})
    assert cfg.cluster_secret() == secret


# -- secrets ---------------------------------------------------------------------------


def test_secret_inline(tmp_path: Path) -> None:
    """cluster.secret is returned as given."""
    cfg = config.load(write_yaml(tmp_path, base_doc()), env={})
    assert cfg.cluster_secret() == SECRET


def test_secret_file_is_read_and_stripped(tmp_path: Path) -> None:
    """cluster.secret_file is read (trailing newline dropped), keeping it out of YAML."""
    secret_file = tmp_path / "cluster.secret"
    secret_file.write_text(SECRET + "\n")
    doc = base_doc()
    doc["cluster"] = {"members": MEMBERS, "secret_file": str(secret_file)}
    cfg = config.load(write_yaml(tmp_path, doc), env={})
    assert cfg.cluster_secret() == SECRET


def test_secret_and_secret_file_together_are_refused(tmp_path: Path) -> None:
    """Giving both secret and secret_file is ambiguous and refused."""
    doc = base_doc()
    doc["cluster"]["secret_file"] = str(tmp_path / "cluster.secret")
    message = load_error(write_yaml(tmp_path, doc))
    assert "secret" in message and "secret_file" in message and "not both" in message


def test_missing_secret_is_refused(tmp_path: Path) -> None:
    """A node without any cluster secret refuses to start (Raft traffic must be encrypted)."""
    doc = base_doc()
    del doc["cluster"]["secret"]
    cfg = config.load(write_yaml(tmp_path, doc), env={})
    with pytest.raises(ConfigError, match=r"^cluster\.secret or cluster\.secret_file is required"):
        cfg.cluster_secret()


def test_short_secret_is_refused(tmp_path: Path) -> None:
    """A secret under 16 characters is refused, naming where it came from."""
    doc = base_doc()
    doc["cluster"]["secret"] = "short"
    cfg = config.load(write_yaml(tmp_path, doc), env={})
    with pytest.raises(ConfigError, match=r"^cluster\.secret: must be at least 16 characters$"):
        cfg.cluster_secret()


def test_short_secret_file_is_refused(tmp_path: Path) -> None:
    """A secret file holding under 16 characters (after stripping) is refused, naming it."""
    secret_file = tmp_path / "cluster.secret"
    secret_file.write_text("  short  \n")
    doc = base_doc()
    doc["cluster"] = {"members": MEMBERS, "secret_file": str(secret_file)}
    cfg = config.load(write_yaml(tmp_path, doc), env={})
    with pytest.raises(ConfigError) as info:
        cfg.cluster_secret()
    assert str(secret_file) in str(info.value) and "at least 16" in str(info.value)


@pytest.mark.parametrize("kind", ["missing", "directory"])
def test_unreadable_secret_file(tmp_path: Path, kind: str) -> None:
    """A secret file that cannot be read is refused in one line naming the file."""
    secret_file = tmp_path / "cluster.secret"
    if kind == "directory":
        secret_file.mkdir()
    doc = base_doc()
    doc["cluster"] = {"members": MEMBERS, "secret_file": str(secret_file)}
    cfg = config.load(write_yaml(tmp_path, doc), env={})
    with pytest.raises(ConfigError) as info:
        cfg.cluster_secret()
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"cluster.secret_file ({secret_file}): cannot read")


def test_redacted_hides_the_secret(tmp_path: Path) -> None:
    """The start-up log view of the config never contains the secret."""
    cfg = config.load(write_yaml(tmp_path, base_doc()), env={})
    shown = cfg.redacted()
    assert shown["cluster"]["secret"] == "***"
    assert SECRET not in json.dumps(shown)
    # Everything else is still there for the operator.
    assert shown["name"] == "n1"
    assert shown["raft"]["heartbeat_ms"] == 50
    assert shown["cluster"]["members"][0]["client"] == "127.0.0.1:7101"
    # And the secret is not leaked by the model's own repr either.
    assert SECRET not in repr(cfg) and SECRET not in str(cfg)


def test_redacted_with_secret_file_shows_the_path_only(tmp_path: Path) -> None:
    """With secret_file, the redacted config shows the path, never the file's content."""
    secret_file = tmp_path / "cluster.secret"
    secret_file.write_text(SECRET)
    doc = base_doc()
    doc["cluster"] = {"members": MEMBERS, "secret_file": str(secret_file)}
    cfg = config.load(write_yaml(tmp_path, doc), env={})
    shown = cfg.redacted()
    assert shown["cluster"]["secret_file"] == str(secret_file)
    assert shown["cluster"]["secret"] is None
    assert SECRET not in json.dumps(shown)


def test_model_validate_directly_matches_load(tmp_path: Path) -> None:
    """load() builds exactly the NodeConfig that the same document validates to."""
    doc = base_doc(raft={"heartbeat_ms": 25})
    assert config.load(write_yaml(tmp_path, doc), env={}) == NodeConfig.model_validate(doc)


# -- durability ------------------------------------------------------------------------


def test_durability_defaults_to_fsync_and_accepts_none(tmp_path: Path) -> None:
    cfg = config.load(write_yaml(tmp_path, base_doc()), env={})
    assert cfg.raft.durability == "fsync"
    cfg = config.load(write_yaml(tmp_path, base_doc(raft={"durability": "none"})), env={})
    assert cfg.raft.durability == "none"


def test_bad_durability_is_a_one_line_error(tmp_path: Path) -> None:
    message = load_error(write_yaml(tmp_path, base_doc(raft={"durability": "sometimes"})))
    assert "durability" in message
