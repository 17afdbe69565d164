"""``mcpctl render`` without a cluster: the agent config (one-line errors,
limits), what a template sees (strict undefined, defaults, the live fleet as
the fleet decodes it: operator drains, the picker's candidates), the
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
from mcpctl.client import Client, KeyValue
from mcpctl.fleet import keys
from mcpctl.fleet.schema import InstanceInfo, Load, OperatorState, encode
from mcpctl.fleet.select import candidates
from mcpctl.mcp.schema import McpConfig
from mcpctl.render import Agent, Data, RenderConfigError, Status, parse_config
from mcpctl.render.agent import watched_prefixes
from mcpctl.render.config import Template
from mcpctl.render.fleet import decode
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
        (
            "templates: [{src: a, dest: /x, reads: {instances: true, protect_threshold: 2}}]",
            "templates[0].reads.protect_threshold: Input should be less than or equal to 1",
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


def _kv(key: str, value: bytes | InstanceInfo | OperatorState, lease: int = 0) -> KeyValue:
    raw = value if isinstance(value, bytes) else encode(value)
    return KeyValue(key, raw, 1, 1, 1, lease)


def _reg(model: str, ident: str, lease: int = 0, **info: Any) -> KeyValue:
    return _kv(keys.instance_key(model, ident), InstanceInfo(**info), lease)


def _op(model: str, ident: str, **state: Any) -> KeyValue:
    return _kv(keys.operator_key(model, ident), OperatorState(**state))


def test_instances_follow_the_fleet(tmp_path: Path) -> None:
    """``instances``/``serving`` from the fleet's own decoding: the operator's
    drain, disable and weight override win; host and port from the endpoint
    (the scheme's default port); bad values skipped and listed, an unreadable
    operator state taken as a drain."""
    t = _config(
        tmp_path, "{{ instances | tojson }}\n{{ serving | tojson }}", reads={"instances": True}
    )
    kvs = [
        _reg(
            "llama",
            "b",
            0x2A,
            endpoint="https://gpu-2.example",
            weight=2,
            zone="z1",
            tags={"gpu": "a100"},
            version="1.2",
            capacity=8,
            started_at=5.0,
            load=Load(in_flight=3, queue=1, latency_ms=12.5),
        ),
        _reg("llama", "a", endpoint="http://10.0.0.1:8000"),
        _reg("llama", "c", endpoint="http://[fd00::3]:81"),
        _reg("llama", "d", endpoint="http://10.0.0.4:80", weight=5),
        _reg("llama", "e", endpoint="http://10.0.0.5:80"),
        _reg("llama", "f", endpoint="http://10.0.0.6:80"),
        _op("llama", "a", draining=True),
        _op("llama", "c", weight=7),
        _op("llama", "d", enabled=False),
        _kv(keys.operator_key("llama", "e"), b'{"drain": true}'),  # unreadable: a drain
        _kv(keys.operator_key("llama", "gone"), OperatorState(draining=True)),  # no instance
        _kv(keys.instance_key("llama", "bad"), b'{"address": "10.0.0.9:80"}'),
        _kv(keys.instance_key("llama", "notjson"), b"not json"),
        _kv("/mcp/instances/flat", b"{}"),
        _kv("/app/other", b"x"),
    ]
    found, invalid = decode(kvs)
    assert invalid == {
        "/mcp/operator/instances/llama/e": "drain: unknown field (taken as draining)",
        "/mcp/instances/llama/bad": "endpoint: required; address: unknown field",
        "/mcp/instances/llama/notjson": "/mcp/instances/llama/notjson: not JSON",
        "/mcp/instances/flat": "not /mcp/instances/<model>/<id>",
    }
    out = _render(t, Data(instances=found)).splitlines()
    every, serving = json.loads(out[0]), json.loads(out[1])
    assert list(every) == ["llama"]
    assert [i["id"] for i in every["llama"]] == ["a", "b", "c", "d", "e", "f"]
    b = every["llama"][1]
    assert b == {
        "id": "b",
        "model": "llama",
        "key": "/mcp/instances/llama/b",
        "endpoint": "https://gpu-2.example",
        "host": "gpu-2.example",
        "port": 443,
        "address": "gpu-2.example:443",
        "weight": 2,
        "enabled": True,
        "draining": False,
        "available": True,
        "healthy": True,
        "in_flight": 3,
        "queue": 1,
        "latency_ms": 12.5,
        "capacity": 8,
        "zone": "z1",
        "tags": {"gpu": "a100"},
        "version": "1.2",
        "started_at": 5.0,
        "lease": "000000000000002a",
    }
    a, _, c, d, e, f = every["llama"]
    assert (a["host"], a["port"], a["draining"], a["available"]) == ("10.0.0.1", 8000, True, False)
    assert (c["host"], c["address"], c["weight"]) == ("fd00::3", "[fd00::3]:81", 7)
    assert (d["enabled"], d["available"], d["weight"]) == (False, False, 5)
    assert (e["draining"], e["available"]) == (True, False)
    assert f["port"] == 80 and f["lease"] == "0000000000000000"
    assert [i["id"] for i in serving["llama"]] == ["b", "c", "f"]


def test_serving_is_the_pickers_candidates(tmp_path: Path) -> None:
    """``serving`` = ``select.candidates`` with the template's protect threshold:
    unhealthy instances left out, unless fewer than the threshold are healthy."""
    t = _config(tmp_path, "{{ serving | tojson }}", reads={"instances": True})
    sick = Load(healthy=False)
    kvs = [
        _reg("m", "a", endpoint="http://h:1"),
        _reg("m", "b", endpoint="http://h:2", load=sick),
        _reg("m", "z", endpoint="http://h:3", weight=0),
        _reg("n", "a", endpoint="http://h:4", load=sick),
        _reg("n", "b", endpoint="http://h:5", load=sick),
        _reg("o", "a", endpoint="http://h:6"),
        _op("o", "a", draining=True),
    ]
    found, _ = decode(kvs)
    got = json.loads(_render(t, Data(instances=found)))
    assert {m: [i["id"] for i in v] for m, v in got.items()} == {
        "m": ["a"],  # 1 of 2 healthy: at the 0.5 default, healthy only; weight 0 never
        "n": ["a", "b"],  # none healthy: the protect threshold serves all
        "o": [],  # drained: nothing (the template says what to do)
    }
    for model in got:
        pool = candidates([i for i in found if i.model == model], 0.5)
        assert [i["id"] for i in got[model]] == [i.id for i in pool]
    strict = _config(
        tmp_path, "{{ serving | tojson }}", reads={"instances": True, "protect_threshold": 0}
    )
    got = json.loads(_render(strict, Data(instances=found)))
    assert got["n"] == []  # 0: never serve the unhealthy


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
    fleet = _config(tmp_path, "x", reads={"instances": True})
    assert watched_prefixes([a]) == ["/app/", "/other"]
    assert watched_prefixes([a, b]) == ["/app/", "/mcp/", "/other"]
    # A drain writes only the operator key: it must be watched, and re-render.
    # One watch holds both halves of the fleet (no catch-up between two).
    assert watched_prefixes([a, fleet]) == ["/app/", "/mcp/", "/other"]
    assert watched_prefixes([fleet]) == ["/mcp/"]
    for key in (keys.operator_key("m", "i"), keys.instance_key("m", "i")):
        assert [p for p in watched_prefixes([fleet]) if key.startswith(p)]
    assert fleet.reads.covers(keys.operator_key("m", "i"))
    assert fleet.reads.covers(keys.instance_key("m", "i"))
    assert not fleet.reads.covers("/mcp/operator/other")
    assert not fleet.reads.covers("/mcp/models/llama")  # the document: not the fleet
    assert not a.reads.covers(keys.operator_key("m", "i"))


def test_the_mcp_view_is_the_only_watch_of_mcp(tmp_path: Path) -> None:
    """With the typed view in use, fleet and raw /mcp/ reads come from the view's
    copy: one watch of /mcp/, not two (which also shared one cache file, the
    plain watcher saving copies the view would not)."""
    spec = {"src": "t.j2", "dest": str(tmp_path / "out")}
    (tmp_path / "t.j2").write_text("x")
    doc = {
        "templates": [
            {**spec, "reads": {"instances": True, "mcp": True}},
            {**spec, "dest": str(tmp_path / "out2"), "reads": {"keys": ["/app/x", "/mcp/raw"]}},
        ]
    }
    config = parse_config(yaml.safe_dump(doc), tmp_path)
    assert watched_prefixes(config.templates) == ["/app/x", "/mcp/"]
    with Client([f"127.0.0.1:{free_ports(1)[0]}"]) as client:
        agent = Agent(client, config, report=lambda line: None)
        assert [w.prefix for w in agent._watchers] == ["/app/x"]
        assert agent._view is not None and agent._view.watcher.prefix == "/mcp/"


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
    instances, invalid = decode(
        [
            _reg("llama-3-8b", "i-2", endpoint="http://10.0.0.8:8000", weight=2),
            _reg("llama-3-8b", "i-1", endpoint="http://10.0.0.7:8000"),
            _reg("llama-3-8b", "i-3", endpoint="http://10.0.0.9:8000"),
            _op("llama-3-8b", "i-3", draining=True),
            _reg("gpt-4o", "g-1", endpoint="https://10.1.0.1"),
            _op("gpt-4o", "g-1", weight=3),
            _reg("mistral", "m-1", endpoint="http://10.2.0.1:80"),
            _op("mistral", "m-1", enabled=False),
        ]
    )
    assert not invalid
    data = Data(kvs={"/app/gateway/log_level": b"debug"}, instances=instances, mcp=mcp)
    upstreams = _render(nginx, data)
    assert "upstream mcp_llama_3_8b {\n" in upstreams
    assert "    server 10.0.0.7:8000 weight=1;  # i-1\n" in upstreams
    assert "    server 10.0.0.8:8000 weight=2;  # i-2\n" in upstreams
    assert "    # i-3 10.0.0.9:8000 left out: draining\n" in upstreams
    assert "server 10.0.0.9" not in upstreams
    assert "    server 10.1.0.1:443 weight=3;  # g-1\n" in upstreams  # the override
    assert (
        "upstream mcp_mistral {\n    server 127.0.0.1:9 down;  # no instance to serve\n"
        "    # m-1 10.2.0.1:80 left out: disabled\n}\n"
    ) in upstreams
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
