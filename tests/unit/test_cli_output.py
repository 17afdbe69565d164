"""The mcpctl output contract (DESIGN §7, docs/cli.md) and parser behaviour, without a
cluster: a fake Client stands in for the SDK, so every byte printed is checked."""

from __future__ import annotations

import base64
import io
import json
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

import mcpctl.client
import mcpctl.client.core
from mcpctl import errors
from mcpctl._proto.mcp.v1 import cluster_pb2 as cluster
from mcpctl.cli import main as cli_main
from mcpctl.cli.exitcodes import Exit, for_error
from mcpctl.cli.output import printer
from mcpctl.client import (
    DeleteResult,
    GetResult,
    Header,
    KeyValue,
    PutResult,
)

HEADER = Header(cluster_id=11, member_id=22, member_name="n1", revision=7, raft_term=3)
HEADER_JSON = {"cluster_id": 11, "member_id": 22, "member": "n1", "revision": 7, "raft_term": 3}
KV_KEYS = {"key", "value", "create_revision", "mod_revision", "version"}
BINARY = b"\xff\xfe\x00binary"


def kv(key: str, value: bytes, create: int = 2, mod: int = 5, version: int = 3) -> KeyValue:
    return KeyValue(key, value, create, mod, version)


def member(
    name: str, endpoint: str, role: str = "follower", lag_ms: int = 0
) -> cluster.MemberHealth:
    return cluster.MemberHealth(
        member_name=name,
        endpoint=endpoint,
        raft_address=endpoint.replace(":1", ":9"),
        reachable=True,
        role=role,
        term=3,
        commit_index=40,
        applied_index=39,
        entries_behind=1,
        lag_ms=lag_ms,
        last_contact_ms=12,
        revision=7,
    )


def down(name: str, endpoint: str) -> cluster.MemberHealth:
    return cluster.MemberHealth(
        member_name=name,
        endpoint=endpoint,
        reachable=False,
        error="unavailable: failed to connect",
        entries_behind=30,
        lag_ms=2600,
        last_contact_ms=3000,
    )


def cluster_status(
    *rows: cluster.MemberHealth, leader: str = "n1"
) -> cluster.ClusterStatusResponse:
    return cluster.ClusterStatusResponse(leader=leader, members=list(rows))


class FakeClient:
    """Stands in for mcpctl.client.Client: records how it was built and what it was asked."""

    built: list[dict[str, Any]] = []
    calls: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []
    fail_with: errors.McpError | None = None
    get_result = GetResult(HEADER, [kv("/mcp/a", b"alpha")], 1, False)
    put_result = PutResult(HEADER, None)
    delete_result = DeleteResult(HEADER, 1, [])
    status_result = cluster_status(member("n1", "127.0.0.1:1", "leader"))

    def __init__(self, endpoints: Any = None, *, timeout: float = 5.0, **kw: Any) -> None:
        FakeClient.built.append({"endpoints": endpoints, "timeout": timeout, **kw})

    def __enter__(self) -> FakeClient:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def _record(self, name: str, *args: Any, **kw: Any) -> None:
        FakeClient.calls.append((name, args, kw))
        if FakeClient.fail_with is not None:
            raise FakeClient.fail_with

    def get(self, key: str, **kw: Any) -> GetResult:
        self._record("get", key, **kw)
        return FakeClient.get_result

    def put(self, key: str, value: bytes, **kw: Any) -> PutResult:
        self._record("put", key, value, **kw)
        return FakeClient.put_result

    def delete(self, key: str, **kw: Any) -> DeleteResult:
        self._record("delete", key, **kw)
        return FakeClient.delete_result

    def cluster_status(self, **kw: Any) -> cluster.ClusterStatusResponse:
        self._record("cluster_status", **kw)
        return FakeClient.status_result

    def member_list(self, **kw: Any) -> list[cluster.Member]:
        self._record("member_list", **kw)
        return [cluster.Member(name="n1", raft_address="127.0.0.1:2", client_address="127.0.0.1:1")]


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> Iterator[type[FakeClient]]:
    """Every CLI command talks to FakeClient; no MCPCTL_* from the outer environment."""
    monkeypatch.setattr(mcpctl.client, "Client", FakeClient)
    monkeypatch.delenv("MCPCTL_ENDPOINTS", raising=False)
    monkeypatch.delenv("MCPCTL_TIMEOUT", raising=False)
    FakeClient.built = []
    FakeClient.calls = []
    FakeClient.fail_with = None
    yield FakeClient
    FakeClient.fail_with = None


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    try:
        code = cli_main.main(list(argv))
    except SystemExit as e:
        code = int(e.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def one_line(err: str) -> str:
    lines = err.splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got {err!r}"
    return lines[0]


def printed(fmt: str, call: str, *args: Any, **kw: Any) -> str:
    out = io.StringIO()
    getattr(printer(fmt, out), call)(*args, **kw)
    return out.getvalue()


# -- JSON contract -----------------------------------------------------------------------


def test_get_json_exact_shape() -> None:
    """`get -w json` is {"header", "kvs": [{key, value, create/mod_revision, version}], "count"}."""
    res = GetResult(HEADER, [kv("/mcp/a", b"alpha: 1\n"), kv("/mcp/b", b"")], 2, False)
    obj = json.loads(printed("json", "get", res))
    assert obj == {
        "header": HEADER_JSON,
        "kvs": [
            {
                "key": "/mcp/a",
                "value": "alpha: 1\n",
                "create_revision": 2,
                "mod_revision": 5,
                "version": 3,
            },
            {"key": "/mcp/b", "value": "", "create_revision": 2, "mod_revision": 5, "version": 3},
        ],
        "count": 2,
    }


def test_get_json_non_utf8_value_is_base64_and_flagged() -> None:
    """A value that is not UTF-8 is base64 with "value_encoding": "base64"; text is not."""
    res = GetResult(HEADER, [kv("/bin", BINARY), kv("/txt", "héllo ✓".encode())], 2, False)
    items = json.loads(printed("json", "get", res))["kvs"]
    assert set(items[0]) == KV_KEYS | {"value_encoding"}
    assert items[0]["value_encoding"] == "base64"
    assert base64.b64decode(items[0]["value"]) == BINARY
    assert set(items[1]) == KV_KEYS
    assert items[1]["value"] == "héllo ✓"


def test_get_json_is_one_line_and_keeps_unicode() -> None:
    """JSON output is one line per answer with non-ASCII text kept as is (not \\u escapes)."""
    res = GetResult(HEADER, [kv("/ü", "naïve".encode())], 1, False)
    text = printed("json", "get", res)
    assert text.endswith("\n") and text.count("\n") == 1
    assert "naïve" in text and "/ü" in text


def test_get_json_keys_only_and_count_only() -> None:
    """--keys-only drops "value"; --count-only drops "kvs"; "more" appears only when true."""
    res = GetResult(HEADER, [kv("/a", b"1")], 4, True)
    keys_only = json.loads(printed("json", "get", res, keys_only=True))
    assert set(keys_only) == {"header", "kvs", "count", "more"} and keys_only["more"] is True
    assert set(keys_only["kvs"][0]) == KV_KEYS - {"value"}
    count_only = json.loads(printed("json", "get", res, count_only=True))
    assert count_only == {"header": HEADER_JSON, "count": 4, "more": True}


def test_get_json_empty_result() -> None:
    """A get that matches nothing still prints header, an empty kvs list and count 0."""
    obj = json.loads(printed("json", "get", GetResult(HEADER, [], 0, False)))
    assert obj == {"header": HEADER_JSON, "kvs": [], "count": 0}


def test_put_json_exact_shape() -> None:
    """`put -w json` is {"header": {..., "revision"}}, plus "prev_kv" only with --prev-kv."""
    assert json.loads(printed("json", "put", PutResult(HEADER, None))) == {"header": HEADER_JSON}
    with_prev = json.loads(printed("json", "put", PutResult(HEADER, kv("/a", BINARY))))
    assert set(with_prev) == {"header", "prev_kv"}
    assert with_prev["prev_kv"]["value_encoding"] == "base64"
    assert base64.b64decode(with_prev["prev_kv"]["value"]) == BINARY


def test_del_json_exact_shape() -> None:
    """`del -w json` is {"header", "deleted"}, plus "prev_kvs" only when there are some."""
    plain = json.loads(printed("json", "delete", DeleteResult(HEADER, 3, [])))
    assert plain == {"header": HEADER_JSON, "deleted": 3}
    prev = json.loads(printed("json", "delete", DeleteResult(HEADER, 1, [kv("/a", b"x")])))
    assert set(prev) == {"header", "deleted", "prev_kvs"}
    assert prev["prev_kvs"][0]["value"] == "x"


STATUS_MEMBER_KEYS = {
    "id",
    "endpoint",
    "raft_address",
    "role",
    "term",
    "commit_index",
    "applied_index",
    "revision",
    "entries_behind",
    "lag_ms",
    "last_contact_ms",
    "reachable",
    "health",
}


def test_status_json_exact_shape() -> None:
    """`status -w json` (DESIGN §7): every member with role, progress and lag fields;
    an unreachable member keeps the leader's view of its lag and says why."""
    resp = cluster_status(member("n1", "127.0.0.1:1", "leader"), down("n2", "127.0.0.1:2"))
    obj = json.loads(printed("json", "status", resp))
    assert set(obj) == {"leader", "members"} and obj["leader"] == "n1"
    up, gone = obj["members"]
    assert set(up) == STATUS_MEMBER_KEYS
    assert up["id"] == "n1" and up["role"] == "leader" and up["reachable"] is True
    assert up["commit_index"] == 40 and up["applied_index"] == 39
    assert up["entries_behind"] == 1 and up["lag_ms"] == 0 and up["last_contact_ms"] == 12
    assert up["health"] == "healthy"
    assert set(gone) == STATUS_MEMBER_KEYS | {"error"}
    assert gone["reachable"] is False and gone["health"] == "unreachable"
    assert gone["role"] is None and gone["commit_index"] is None
    assert gone["lag_ms"] == 2600 and gone["entries_behind"] == 30


def test_status_unknown_lag_is_null_and_health_names_the_problem() -> None:
    """-1 (unknown without a leader) becomes null; lag over 1 s is "lagging"."""
    unknown = member("n1", "127.0.0.1:1")
    unknown.entries_behind = unknown.lag_ms = unknown.last_contact_ms = -1
    obj = json.loads(printed("json", "status", cluster_status(unknown, leader="")))
    row = obj["members"][0]
    assert obj["leader"] is None and row["health"] == "no leader"
    assert row["entries_behind"] is None and row["lag_ms"] is None
    slow = json.loads(printed("json", "status", cluster_status(member("n2", "e", lag_ms=2500))))
    assert slow["members"][0]["health"] == "lagging"


# -- simple and table ----------------------------------------------------------------------


def test_simple_output() -> None:
    """-w simple: get is key then value per line; put says OK; del prints the count."""
    res = GetResult(HEADER, [kv("/a", b"1"), kv("/b", BINARY)], 2, False)
    b64 = base64.b64encode(BINARY).decode()
    assert printed("simple", "get", res) == f"/a\n1\n/b\n{b64}\n"
    assert printed("simple", "get", res, keys_only=True) == "/a\n/b\n"
    assert printed("simple", "get", res, count_only=True) == "2\n"
    assert printed("simple", "put", PutResult(HEADER, None)) == "OK\n"
    assert printed("simple", "put", PutResult(HEADER, kv("/a", b"old"))) == "OK\n/a\nold\n"
    assert printed("simple", "delete", DeleteResult(HEADER, 2, [])) == "2\n"


def test_table_output_has_columns_and_cells() -> None:
    """-w table renders a header row and every cell (rich, no terminal needed)."""
    res = GetResult(HEADER, [kv("/mcp/models/a", b"gpt", 2, 5, 3)], 1, False)
    text = printed("table", "get", res)
    for cell in ("key", "value", "create_revision", "mod_revision", "version"):
        assert cell in text
    assert "/mcp/models/a" in text and "gpt" in text
    keys_only = printed("table", "get", res, keys_only=True)
    assert "value" not in keys_only and "gpt" not in keys_only
    assert "revision" in printed("table", "put", PutResult(HEADER, None))
    deleted = printed("table", "delete", DeleteResult(HEADER, 4, []))
    assert "deleted" in deleted and "4" in deleted


def test_status_table_marks_unreachable_members() -> None:
    """status as a table: one row per member, '-' cells and "unreachable" for a down one."""
    resp = cluster_status(member("n1", "127.0.0.1:1", "leader"), down("n2", "127.0.0.1:2"))
    text = printed("table", "status", resp)
    for column in ("node", "behind", "lag ms", "last contact ms", "health"):
        assert column in text
    assert "leader" in text and "127.0.0.1:2" in text and "unreachable" in text
    simple = printed("simple", "status", resp).splitlines()
    assert simple[0] == "n1, 127.0.0.1:1, leader, 3, 40, 39, 1, 0, 12, healthy"
    assert simple[1] == "n2, 127.0.0.1:2, -, -, -, -, 30, 2600, 3000, unreachable"


# -- exit codes ----------------------------------------------------------------------------


def test_exit_code_values_are_stable() -> None:
    """Scripts depend on these numbers (docs/cli.md)."""
    assert [(e.name, int(e)) for e in Exit] == [
        ("OK", 0),
        ("FAILED", 1),
        ("USAGE", 2),
        ("UNAVAILABLE", 3),
        ("OUTCOME_UNKNOWN", 4),
        ("NODE_FAILED", 5),
    ]


@pytest.mark.parametrize(
    ("err", "expected"),
    [
        (errors.InvalidArgument("x"), Exit.FAILED),
        (errors.NotFound("x"), Exit.FAILED),
        (errors.CompareFailed("x"), Exit.FAILED),
        (errors.Compacted(1, 5), Exit.FAILED),
        (errors.ResourceExhausted("x"), Exit.FAILED),
        (errors.PermissionDenied("x"), Exit.FAILED),
        (errors.Unauthenticated("x"), Exit.FAILED),
        (errors.Internal("x"), Exit.FAILED),
        (errors.McpError("x"), Exit.FAILED),
        (errors.Unavailable("x"), Exit.UNAVAILABLE),
        (errors.DeadlineExceeded("x"), Exit.UNAVAILABLE),
        (errors.OutcomeUnknown("x"), Exit.OUTCOME_UNKNOWN),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, errors.McpError) else str(v),
)
def test_for_error(err: errors.McpError, expected: Exit) -> None:
    """Each error class maps to its documented exit code; 'maybe applied' is its own code."""
    assert for_error(err) is expected


@pytest.mark.parametrize(
    ("err", "code", "line"),
    [
        (errors.CompareFailed("mod_revision is 4, expected 3"), 1, "compare failed"),
        (errors.Unavailable("no leader"), 3, "unavailable"),
        (errors.OutcomeUnknown("leader lost"), 4, "outcome unknown"),
        (errors.Compacted(2, 9), 1, "compacted"),
    ],
)
def test_error_from_the_cluster_is_one_line_and_its_exit_code(
    fake: type[FakeClient],
    capsys: pytest.CaptureFixture[str],
    err: errors.McpError,
    code: int,
    line: str,
) -> None:
    """An McpError ends as `mcpctl: <kind>: <message>` on stderr and for_error's code."""
    fake.fail_with = err
    got, out, stderr = run_cli(capsys, "put", "/a", "1")
    assert got == code
    assert out == ""
    assert one_line(stderr) == f"mcpctl: {line}: {err.message}"


# -- commands through main() -----------------------------------------------------------------


def test_get_through_main_prints_json(
    fake: type[FakeClient], capsys: pytest.CaptureFixture[str]
) -> None:
    """`mcpctl -w json get KEY --prefix --rev N` passes its flags on and prints the contract."""
    code, out, err = run_cli(capsys, "-w", "json", "get", "/mcp/", "--prefix", "--rev", "4")
    assert (code, err) == (0, "")
    assert json.loads(out)["kvs"][0]["key"] == "/mcp/a"
    name, args, kw = fake.calls[0]
    assert (name, args) == ("get", ("/mcp/",))
    assert kw["prefix"] is True and kw["revision"] == 4 and kw["serializable"] is False


def test_put_through_main(fake: type[FakeClient], capsys: pytest.CaptureFixture[str]) -> None:
    """`mcpctl put KEY VALUE --if-mod-rev N` sends UTF-8 bytes and the expected revision."""
    code, out, _ = run_cli(capsys, "put", "/a", "ü", "--if-mod-rev", "0")
    assert (code, out) == (0, "OK\n")
    name, args, kw = fake.calls[0]
    assert (name, args) == ("put", ("/a", "ü".encode()))
    assert kw["expected_mod_revision"] == 0


def test_del_through_main(fake: type[FakeClient], capsys: pytest.CaptureFixture[str]) -> None:
    """`mcpctl del KEY --prefix` deletes by prefix and prints the count."""
    code, out, _ = run_cli(capsys, "del", "/a/", "--prefix")
    assert (code, out) == (0, "1\n")
    assert fake.calls[0][0] == "delete" and fake.calls[0][2]["prefix"] is True


def test_status_through_main_defaults_to_a_table(
    fake: type[FakeClient], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`mcpctl status` prints a table; exit 3 with one line when no endpoint answers."""
    code, out, _ = run_cli(capsys, "status")
    assert code == 0 and "leader" in out and "lag ms" in out
    assert fake.calls[0][0] == "cluster_status"
    fake.fail_with = errors.Unavailable("no member reachable")
    code, out, err = run_cli(capsys, "-w", "json", "status")
    assert code == int(Exit.UNAVAILABLE) and out == ""
    assert err == "mcpctl: unavailable: no member reachable\n"


# -- parser ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "argv",
    [
        ["get", "/a", "--bogus"],
        ["--bogus", "get", "/a"],
        ["put", "/a", "1", "--if-mod-rev", "x"],
        ["-w", "xml", "get", "/a"],
        ["frobnicate"],
        [],
        ["get"],
        ["--timeout", "0", "get", "/a"],
        ["get", "/a", "--timeout", "-1"],
        ["put", "/a", "1", "-f", "/etc/hostname"],
        ["get", "/a", "--rev", "-1"],
        ["put", "/a", "1", "--if-mod-rev", "-2"],
    ],
)
def test_usage_errors_are_one_line_and_exit_2(
    fake: type[FakeClient], capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    """Bad flags, values or commands: exit 2, one line on stderr, nothing sent."""
    code, out, err = run_cli(capsys, *argv)
    assert code == int(Exit.USAGE)
    assert out == ""
    assert one_line(err).startswith("mcpctl")
    assert fake.calls == []


def test_unknown_flag_through_the_real_entry_point() -> None:
    """`python -m mcpctl get k --bogus`: exit 2, one line naming the flag, no traceback."""
    proc = subprocess.run(
        [sys.executable, "-m", "mcpctl", "get", "/k", "--bogus"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert "--bogus" in one_line(proc.stderr)


def test_help_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    """--help is not an error."""
    code, out, _ = run_cli(capsys, "--help")
    assert code == 0 and "put" in out and "--endpoints" in out


@pytest.mark.parametrize(
    "argv",
    [
        ["--endpoints", "h1:1,h2:2", "--timeout", "2.5", "-w", "json", "get", "/a"],
        ["get", "/a", "--endpoints", "h1:1,h2:2", "--timeout", "2.5", "-w", "json"],
        ["--endpoints", "h1:1,h2:2", "get", "--timeout", "2.5", "/a", "-w", "json"],
    ],
    ids=["before", "after", "mixed"],
)
def test_global_flags_before_or_after_the_command(
    fake: type[FakeClient], capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    """--endpoints, --timeout and -w work before and after the command name."""
    code, out, _ = run_cli(capsys, *argv)
    assert code == 0
    assert [(b["endpoints"], b["timeout"]) for b in fake.built] == [("h1:1,h2:2", 2.5)]
    assert "header" in json.loads(out)


def test_global_flag_after_the_command_wins(
    fake: type[FakeClient], capsys: pytest.CaptureFixture[str]
) -> None:
    """Given twice, the flag nearer the end wins (as in any CLI)."""
    code, _, _ = run_cli(capsys, "--endpoints", "a:1", "get", "/a", "--endpoints", "b:2")
    assert code == 0 and fake.built[0]["endpoints"] == "b:2"


def test_env_supplies_endpoints_and_timeout(
    fake: type[FakeClient], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """MCPCTL_ENDPOINTS and MCPCTL_TIMEOUT apply when the flags are not given."""
    monkeypatch.setenv("MCPCTL_ENDPOINTS", "e1:7101,e2:7102")
    monkeypatch.setenv("MCPCTL_TIMEOUT", "1.5")
    code, _, _ = run_cli(capsys, "get", "/a")
    assert code == 0
    assert [(b["endpoints"], b["timeout"]) for b in fake.built] == [("e1:7101,e2:7102", 1.5)]


def test_flags_beat_env(
    fake: type[FakeClient], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """--endpoints and --timeout override MCPCTL_ENDPOINTS and MCPCTL_TIMEOUT."""
    monkeypatch.setenv("MCPCTL_ENDPOINTS", "e1:7101")
    monkeypatch.setenv("MCPCTL_TIMEOUT", "1.5")
    code, _, _ = run_cli(capsys, "get", "/a", "--endpoints", "f:1", "--timeout", "9")
    assert code == 0
    assert [(b["endpoints"], b["timeout"]) for b in fake.built] == [("f:1", 9.0)]


def test_default_timeout_is_5s(fake: type[FakeClient], capsys: pytest.CaptureFixture[str]) -> None:
    """Without flag or env, a command gets the documented 5 s budget."""
    run_cli(capsys, "get", "/a")
    assert fake.built[0]["timeout"] == 5.0


@pytest.mark.parametrize("raw", ["soon", "-3", "0"])
def test_bad_mcpctl_timeout_env_is_a_usage_error(
    fake: type[FakeClient],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    raw: str,
) -> None:
    """A non-numeric or non-positive MCPCTL_TIMEOUT: exit 2 with one line."""
    monkeypatch.setenv("MCPCTL_TIMEOUT", raw)
    code, _, err = run_cli(capsys, "get", "/a")
    assert code == int(Exit.USAGE)
    line = one_line(err)
    assert "MCPCTL_TIMEOUT" in line or "--timeout" in line
    assert fake.calls == []


def test_empty_endpoints_fall_back_to_the_default_list() -> None:
    """An empty MCPCTL_ENDPOINTS means the documented local default endpoints."""
    assert mcpctl.client.core.endpoints_from_env("") == list(mcpctl.client.core.DEFAULT_ENDPOINTS)
    assert mcpctl.client.core.endpoints_from_env(" a:1 , ,b:2 ") == ["a:1", "b:2"]


def test_token_and_tls_flags_reach_the_client(
    fake: type[FakeClient], capsys: pytest.CaptureFixture[str]
) -> None:
    """--token/--cacert/--cert/--key reach the SDK, and never collide with a command's KEY."""
    code, _, _ = run_cli(
        capsys,
        "--token",
        "t0ken",
        "--cacert",
        "ca.pem",
        "get",
        "/a",
        "--cert",
        "c.pem",
        "--key",
        "k.pem",
    )
    assert code == 0
    built = fake.built[0]
    assert (built["token"], built["cacert"], built["cert"], built["key"]) == (
        "t0ken",
        "ca.pem",
        "c.pem",
        "k.pem",
    )
    assert fake.calls[0][1] == ("/a",)


def test_member_list_is_members_in_etcdctls_spelling(
    fake: type[FakeClient], capsys: pytest.CaptureFixture[str]
) -> None:
    """`mcpctl member list` prints exactly what `mcpctl members` does, in every format."""
    for fmt in ("table", "json", "simple"):
        assert run_cli(capsys, "members", "-w", fmt) == run_cli(capsys, "member", "list", "-w", fmt)
    code, out, _ = run_cli(capsys, "member", "list", "-w", "json")
    assert code == 0 and json.loads(out)["members"][0]["name"] == "n1"
