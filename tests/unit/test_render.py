"""``mcpctl render`` without a cluster: the agent config (one-line errors,
limits), what a template sees (strict undefined, defaults, instances), the
install rules on real files and commands (identical -> untouched, failed
check -> old file kept, .bak, perms), the debounce on a manual clock, and the
examples in deploy/examples/render/ (they must render).

The cluster side (changes, failover, cache, the SIGHUP reload) is in
tests/integration/test_render.py.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from mcpctl import limits
from mcpctl.client import Client
from mcpctl.mcp.schema import McpConfig
from mcpctl.render import Agent, Data, RenderConfigError, Status, parse_config
from mcpctl.render.agent import watched_prefixes
from mcpctl.render.config import Template
from mcpctl.render.install import install
from mcpctl.render.template import RenderError, compile_template, environment, render
from tests.cluster import free_ports

EXAMPLES = Path(__file__).resolve().parents[2] / "deploy" / "examples"


def _config(tmp: Path, source: str, **spec: Any) -> Template:
    (tmp / "t.j2").write_text(source)
    doc = {"templates": [{"src": "t.j2", "dest": str(tmp / "out"), **spec}]}
    return parse_config(yaml.safe_dump(doc), tmp).templates[0]


def _render(t: Template, data: Data) -> str:
    return render(compile_template(environment(), t), t, data).decode()


@pytest.mark.parametrize(
    ("doc", "error"),
    [
        ("templates: []", "templates: List should have at least 1 item"),
        ("[1]", "the agent config must be a mapping"),
        ("templates: [", "not YAML"),
        ("templats: []", "templates: Field required; templats: Extra inputs are not permitted"),
        (
            "templates: [{src: a, dest: rel, reads: {mcp: true}}]",
            "templates[0].dest: rel is not an absolute path",
        ),
        ("templates: [{src: a, dest: /x, reads: {}}]", "templates[0].reads: reads nothing"),
        (
            "templates: [{src: a, dest: /x, perms: '0999', reads: {mcp: true}}]",
            "templates[0].perms: '0999' is not an octal mode",
        ),
        (
            "templates: [{src: a, dest: /x, reads: {mcp: true}, wait: {min: 5, max: 1}}]",
            "templates[0].wait: max (1.0) is below min (5.0)",
        ),
        (
            "templates: [{src: a, dest: /x, reads: {mcp: true}, wait: {min: 99999}}]",
            "templates[0].wait.min: Input should be less than or equal to 3600",
        ),
        (
            "templates: [{src: a, dest: /x, reads: {mcp: true}},"
            " {src: b, dest: /x, reads: {mcp: true}}]",
            "config: two templates write /x",
        ),
    ],
)
def test_config_errors_are_one_line(doc: str, error: str) -> None:
    with pytest.raises(RenderConfigError) as e:
        parse_config(doc, Path("/"))
    assert "\n" not in str(e.value)
    assert error in str(e.value), str(e.value)


def test_config_limits() -> None:
    many = [{"src": "a", "dest": f"/x{i}", "reads": {"mcp": True}} for i in range(65)]
    with pytest.raises(RenderConfigError, match="at most 64 items"):
        parse_config(yaml.safe_dump({"templates": many}), Path("/"))
    keys = [f"/k{i}" for i in range(limits.RENDER_READS_MAX + 1)]
    doc = {"templates": [{"src": "a", "dest": "/x", "reads": {"keys": keys}}]}
    with pytest.raises(RenderConfigError, match="65 keys and prefixes; at most 64"):
        parse_config(yaml.safe_dump(doc), Path("/"))


def test_perms_and_paths(tmp_path: Path) -> None:
    t = _config(tmp_path, "x", perms="0640", reads={"keys": ["/a"]})
    assert t.perms == 0o640 and t.src == tmp_path / "t.j2"
    # Unquoted YAML 0640 is already octal (YAML 1.1).
    doc = "templates: [{src: a, dest: /x, perms: 0640, reads: {keys: [/a]}}]"
    assert parse_config(doc, tmp_path).templates[0].perms == 0o640


def test_missing_key_fails_unless_defaulted(tmp_path: Path) -> None:
    reads = {"keys": ["/a", "/b"], "prefixes": ["/p/"]}
    data = Data(kvs={"/a": b"1", "/p/x": b"2", "/p/y": b"3", "/q": b"hidden"})
    ok = (
        "{{ key('/a') }} {{ key('/b', 'dflt') }} {{ keys['/b'] | default('d2') }}"
        " {{ prefix('/p/') }}"
    )
    assert _render(_config(tmp_path, ok, reads=reads), data) == (
        "1 dflt d2 {'/p/x': '2', '/p/y': '3'}"
    )
    for source, why in [
        ("{{ key('/b') }}", "key /b is missing (give a default"),
        ("{{ keys['/b'] }}", "undefined: 'dict object' has no attribute '/b'"),
        ("{{ key('/q') }}", "key /q is not in this template's reads"),
        ("{{ prefix('/other/') }}", "prefix /other/ is not within"),
        ("{{ nothing }}", "undefined: 'nothing' is undefined"),
        ("{{ mcp.models }}", "'mcp' is undefined (no valid MCP config yet)"),
        ("{{ '{' | fromjson }}", "fromjson: not JSON"),
        ("{{ ''.__class__.__mro__ }}", "SecurityError"),
    ]:
        with pytest.raises(RenderError) as e:
            _render(_config(tmp_path, source, reads=dict(reads, mcp=True)), data)
        assert why in str(e.value), (source, str(e.value))


def test_output_size_limit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(limits, "RENDER_OUTPUT_BYTES_MAX", 10)
    t = _config(tmp_path, "{{ key('/a') }}", reads={"keys": ["/a"]})
    with pytest.raises(RenderError, match="rendered 11 bytes, over RENDER_OUTPUT_BYTES_MAX"):
        _render(t, Data(kvs={"/a": b"x" * 11}))


def test_instances_group_by_model_and_skip_bad_ones(tmp_path: Path) -> None:
    t = _config(tmp_path, "{{ instances | tojson }}", reads={"instances": True})
    raw = {
        "/mcp/instances/llama/b": b'{"address": "10.0.0.2:80"}',
        "/mcp/instances/llama/a": b'{"address": "10.0.0.1:80"}',
        "/mcp/instances/llama/bad": b"not json",
        "/mcp/instances/llama/list": b"[1]",
        "/mcp/instances/flat": b"{}",
    }
    got = json.loads(_render(t, Data(instances=raw)))
    assert [i["id"] for i in got["llama"]] == ["a", "b"]
    assert got["llama"][0] == {
        "address": "10.0.0.1:80",
        "id": "a",
        "model": "llama",
        "key": "/mcp/instances/llama/a",
    }
    assert list(got) == ["llama"]


def test_install_rules(tmp_path: Path) -> None:
    log = tmp_path / "reloads"
    t = _config(
        tmp_path,
        "x",
        reads={"keys": ["/a"]},
        perms="0600",
        backup=True,
        check_cmd="grep -q good {src}",
        reload_cmd=f"echo r >> {log}",
    )
    assert install(t, b"good 1\n").status is Status.INSTALLED
    assert t.dest.read_bytes() == b"good 1\n" and t.dest.stat().st_mode & 0o777 == 0o600
    inode = t.dest.stat().st_ino
    assert install(t, b"good 1\n").status is Status.UNCHANGED
    assert t.dest.stat().st_ino == inode  # not rewritten
    failed = install(t, b"bad\n")
    assert failed.status is Status.CHECK_FAILED
    assert (
        f"`grep -q good {tmp_path}/.out." in failed.detail
        and "exited 1; keeping the file in place" in (failed.detail)
    )
    assert t.dest.read_bytes() == b"good 1\n"
    dry = install(t, b"good 2\n", dry_run=True)
    assert dry.status is Status.WOULD_CHANGE and "-good 1\n+good 2\n" in dry.detail
    assert t.dest.read_bytes() == b"good 1\n"
    assert install(t, b"good 2\n").status is Status.INSTALLED
    assert t.dest.with_name("out.bak").read_bytes() == b"good 1\n"
    assert log.read_text() == "r\nr\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "out.bak", "reloads", "t.j2"]
    # A grandchild holding the output pipe is killed with the shell, not waited for.
    slow = t.model_copy(update={"check_cmd": "sleep 30; true", "command_timeout_s": 0.2})
    started = time.monotonic()
    assert "did not finish within 0.2 s" in install(slow, b"good 3\n").detail
    assert time.monotonic() - started < 20
    broken_reload = t.model_copy(update={"reload_cmd": "echo nope >&2; exit 3"})
    out = install(broken_reload, b"good 4\n")
    assert out.status is Status.RELOAD_FAILED and out.detail.endswith("exited 3: nope")


def test_watched_prefixes_cover_every_read(tmp_path: Path) -> None:
    a = _config(tmp_path, "x", reads={"keys": ["/app/x", "/other"], "prefixes": ["/app/"]})
    b = _config(tmp_path, "x", reads={"instances": True, "prefixes": ["/mcp/"]})
    assert watched_prefixes([a]) == ["/app/", "/other"]
    assert watched_prefixes([a, b]) == ["/app/", "/mcp/", "/other"]


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_debounce_min_and_max(tmp_path: Path) -> None:
    t = _config(tmp_path, "x", reads={"keys": ["/a"]}, wait={"min": 1, "max": 3})
    config = parse_config(
        yaml.safe_dump({"templates": [dict(t.model_dump(mode="json"), src=str(t.src))]}), tmp_path
    )
    clock = Clock()
    with Client([f"127.0.0.1:{free_ports(1)[0]}"]) as client:
        agent = Agent(client, config, report=lambda line: None, clock=clock)
        assert agent._due()[0] == [0]  # due at start
        assert agent._due()[0] == []
        agent._mark([0])  # a burst: a change every 0.5 s
        for _ in range(10):
            clock.now += 0.5
            due, _, _ = agent._due()
            if due:
                break
            agent._mark([0])
        # Quiet for less than min each time, so only max (3 s after the first) fires.
        assert due == [0] and clock.now == 103.0
        agent._mark([0])
        clock.now += 0.9
        due, next_s, _ = agent._due()
        assert due == [] and next_s == pytest.approx(0.1)
        clock.now += 0.1
        assert agent._due()[0] == [0]  # quiet for min


def test_examples_render(tmp_path: Path) -> None:
    config = parse_config((EXAMPLES / "render" / "agent.yaml").read_text(), EXAMPLES / "render")
    nginx, node = config.templates
    doc = yaml.safe_load((EXAMPLES / "mcp_config.yaml").read_text())
    mcp = McpConfig.model_validate(doc)
    instances = {
        "/mcp/instances/llama-3-8b/i-2": b'{"address": "10.0.0.8:8000", "weight": 2}',
        "/mcp/instances/llama-3-8b/i-1": b'{"address": "10.0.0.7:8000"}',
        "/mcp/instances/llama-3-8b/i-3": b'{"address": "10.0.0.9:8000", "drain": true}',
        "/mcp/instances/gpt-4o/g-1": b'{"address": "10.1.0.1:443", "drain": false}',
    }
    data = Data(kvs={"/app/gateway/log_level": b"debug"}, instances=instances, mcp=mcp)
    upstreams = _render(nginx, data)
    assert "upstream mcp_llama_3_8b {\n" in upstreams
    assert "    server 10.0.0.7:8000 weight=1;  # i-1\n" in upstreams
    assert "    server 10.0.0.8:8000 weight=2;  # i-2\n" in upstreams
    assert "10.0.0.9" not in upstreams  # draining
    assert "    server 10.1.0.1:443 weight=1;  # g-1\n" in upstreams
    assert "\n\n\n" not in upstreams
    gateway = json.loads(_render(node, data))
    assert gateway["log_level"] == "debug"
    assert [m["name"] for m in gateway["models"]] == [m.name for m in mcp.models]
    assert len(mcp.models) == len(doc["models"])
    assert gateway["listen"] == {"host": "0.0.0.0", "port": 8080}
    no_log_level = json.loads(_render(node, Data(instances=instances, mcp=mcp)))
    assert no_log_level["log_level"] == "info"


def test_cli_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A bad agent config: one line, exit 2; a template that does not compile:
    exit 2 with file and line; no member and no cache: exit 3."""
    from mcpctl.cli import main as cli_main
    from mcpctl.cli.exitcodes import Exit

    dead = f"127.0.0.1:{free_ports(1)[0]}"
    agent = tmp_path / "agent.yaml"
    agent.write_text("templates: [{src: t.j2, dest: rel, reads: {keys: [/a]}}]")
    assert cli_main.main(["--endpoints", dead, "render", "-c", str(agent), "--once"]) == 2
    err = capsys.readouterr().err
    assert err == f"mcpctl render: {agent}: templates[0].dest: rel is not an absolute path\n"

    (tmp_path / "t.j2").write_text("ok\n{% for %}\n")
    agent.write_text(f"templates: [{{src: t.j2, dest: {tmp_path}/out, reads: {{keys: [/a]}}}}]")
    assert cli_main.main(["--endpoints", dead, "render", "-c", str(agent)]) == Exit.USAGE
    assert capsys.readouterr().err.startswith(f"mcpctl render: {tmp_path}/t.j2:2: ")

    (tmp_path / "t.j2").write_text("{{ key('/a') }}\n")
    code = cli_main.main(["--endpoints", dead, "render", "-c", str(agent), "--once"])
    assert code == Exit.UNAVAILABLE
    assert "mcpctl: unavailable: " in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
