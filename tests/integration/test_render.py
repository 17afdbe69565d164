"""``mcpctl render`` on a real 3-node cluster, through the real CLI, feeding a
real process that re-reads its file on SIGHUP (tests/render_reader.py).

- the agent follows changes through a leader kill -9 and the member's restart;
- a burst of 100 changes costs a bounded number of reloads (wait: min/max);
- a failing check_cmd leaves the file in place (and no reload), a .bak is kept;
- --dry-run prints the diff and changes nothing (file, mtime, no command run);
- an identical render writes nothing;
- with every member stopped, --once renders from the last-good cache;
- a txn across two watched prefixes is never rendered half-applied;
- the deploy/examples templates on live data (SDK registrations; a drain by
  `mcpctl drain`, through the operator key, re-renders), and a daemon cold
  start.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from mcpctl.fleet import keys
from mcpctl.fleet.schema import InstanceInfo, encode
from tests.cluster import Cluster, wait_for

pytestmark = pytest.mark.cluster

WAIT_S = 60.0  # generous: the machine is shared with other test runs
WAIT_MIN_S, WAIT_MAX_S = 0.3, 1.5
BURST_GAP_S = 0.03

TEMPLATE = """\
# rendered at revision {{ revision }}
value={{ key('/app/value') }}
{% for k, v in prefix('/app/extra/').items() -%}
extra {{ k }}={{ v }}
{% endfor -%}
port={{ key('/app/port', '8080') }}
"""


def _agent(tmp: Path, **template: Any) -> Path:
    (tmp / "app.conf.j2").write_text(TEMPLATE)
    spec: dict[str, Any] = {
        "src": "app.conf.j2",
        "dest": str(tmp / "out" / "app.conf"),
        "perms": "0640",
        "reads": {"keys": ["/app/value", "/app/port"], "prefixes": ["/app/extra/"]},
        "wait": {"min": WAIT_MIN_S, "max": WAIT_MAX_S},
    }
    spec.update(template)
    path = tmp / "agent.yaml"
    path.write_text(yaml.safe_dump({"cache_dir": str(tmp / "cache"), "templates": [spec]}))
    return path


def _cli(cluster: Cluster, *args: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "mcpctl",
        "--endpoints",
        ",".join(cluster.endpoints),
        "render",
        *args,
    ]


def _once(cluster: Cluster, agent: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        _cli(cluster, "-c", str(agent), "--once", *extra),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


class Reader:
    """The SIGHUP-reloading test service, and what it loaded."""

    def __init__(self, tmp: Path, conf: Path) -> None:
        self.pidfile = tmp / "reader.pid"
        self.log = tmp / "reader.log"
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.render_reader",
                str(conf),
                str(self.pidfile),
                str(self.log),
            ]
        )
        wait_for("the reader to start", lambda: self.pidfile.exists() or None, WAIT_S)

    def loads(self) -> list[str]:
        if not self.log.exists():
            return []
        return [json.loads(line)["content"] for line in self.log.read_text().splitlines()]

    def wait_content(self, needle: str) -> int:
        """Wait until the latest load has ``needle``; the number of loads then."""

        def seen() -> int | None:
            loads = self.loads()
            return len(loads) if loads and needle in loads[-1] else None

        return wait_for(f"the reader to load {needle!r}", seen, WAIT_S)

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


@pytest.fixture
def daemon_log(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path / "agent.log"


def test_follows_changes_through_failover_with_bounded_reloads(
    cluster: Cluster, tmp_path: Path, daemon_log: Path
) -> None:
    conf = tmp_path / "out" / "app.conf"
    reader = Reader(tmp_path, conf)
    agent = _agent(tmp_path, reload_cmd=f"kill -HUP $(cat {reader.pidfile})")
    with cluster.client() as c:
        c.put("/app/value", "v0")
        c.put("/app/extra/a", "1")
    with open(daemon_log, "w") as log:
        proc = subprocess.Popen(
            _cli(cluster, "-c", str(agent)), stdout=log, stderr=subprocess.STDOUT
        )
    try:
        reader.wait_content("value=v0")
        assert "extra /app/extra/a=1" in conf.read_text() and "port=8080" in conf.read_text()
        assert conf.stat().st_mode & 0o777 == 0o640

        leader = cluster.leader()
        cluster.kill(leader)
        with cluster.client() as c:
            c.put("/app/value", "after-failover")
        reader.wait_content("value=after-failover")
        cluster.start(leader)
        cluster.wait_ready()

        before = len(reader.loads())
        done_at: list[float] = []
        with cluster.client() as c:
            for i in range(100):
                c.put("/app/value", f"burst-{i}")
                done_at.append(time.monotonic())
                # Paced to span several wait.max periods, each gap far below wait.min:
                # without the debounce each change would be its own reload.
                time.sleep(BURST_GAP_S)
        burst_s = done_at[-1] - done_at[0]
        after = reader.wait_content("value=burst-99")
        reloads = after - before
        # At most one reload per wait.max of burst, one per quiet gap of wait.min
        # (a loaded machine may stall a put that long), one for the end, + slack.
        slow_gaps = sum(b - a >= WAIT_MIN_S for a, b in itertools.pairwise(done_at))
        bound = math.ceil(burst_s / WAIT_MAX_S) + slow_gaps + 3
        print(
            f"100 changes in {burst_s:.2f} s ({slow_gaps} gaps >= wait.min) -> "
            f"{reloads} reloads (bound {bound})"
        )
        assert 1 <= reloads <= bound, (reloads, bound, burst_s)
        assert not [p.name for p in conf.parent.iterdir() if p.name != "app.conf"]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0, daemon_log.read_text()
        assert "installed" in daemon_log.read_text()

        # Every member down: --once renders from the last-good cache.
        for node in cluster.nodes:
            cluster.stop(node)
        conf.unlink()
        done = _once(cluster, agent)
        assert done.returncode == 0, done.stderr
        assert "rendering from the last-good cache" in done.stderr
        reader.wait_content("value=burst-99")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        reader.close()


def test_failing_check_keeps_the_last_good_file(cluster: Cluster, tmp_path: Path) -> None:
    conf = tmp_path / "out" / "app.conf"
    reloaded = tmp_path / "reloaded"
    agent = _agent(
        tmp_path,
        check_cmd="grep -q '^value=ok' {src}",
        reload_cmd=f"echo reload >> {reloaded}",
        backup=True,
    )
    with cluster.client() as c:
        c.put("/app/value", "ok-1")
        first = _once(cluster, agent)
        assert first.returncode == 0, first.stderr
        assert "installed" in first.stderr and "value=ok-1" in conf.read_text()
        assert reloaded.read_text() == "reload\n"

        again = _once(cluster, agent)  # identical: nothing written, no reload
        assert again.returncode == 0 and "unchanged" in again.stderr, again.stderr
        assert reloaded.read_text() == "reload\n"

        c.put("/app/value", "broken")
        bad = _once(cluster, agent)
        assert bad.returncode == 1
        assert "check failed: `grep -q '^value=ok'" in bad.stderr
        assert "exited 1; keeping the file in place" in bad.stderr
        assert "value=ok-1" in conf.read_text()
        assert reloaded.read_text() == "reload\n"
        assert sorted(p.name for p in conf.parent.iterdir()) == ["app.conf"]

        c.put("/app/value", "ok-2")
        good = _once(cluster, agent)
        assert good.returncode == 0, good.stderr
        assert "value=ok-2" in conf.read_text()
        assert "value=ok-1" in (conf.parent / "app.conf.bak").read_text()
        assert reloaded.read_text() == "reload\nreload\n"


def test_dry_run_changes_nothing(cluster: Cluster, tmp_path: Path) -> None:
    conf = tmp_path / "out" / "app.conf"
    conf.parent.mkdir()
    conf.write_text("value=old\n")
    os.utime(conf, ns=(1_000_000_000, 1_000_000_000))
    ran = tmp_path / "ran"
    agent = _agent(tmp_path, check_cmd=f"touch {ran}", reload_cmd=f"touch {ran}")
    with cluster.client() as c:
        c.put("/app/value", "new")
    done = subprocess.run(
        _cli(cluster, "-c", str(agent), "--dry-run"),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "-value=old\n" in done.stdout and "+value=new\n" in done.stdout
    assert f"+++ {conf}" in done.stdout
    assert "would change" in done.stderr
    assert conf.read_text() == "value=old\n"
    assert conf.stat().st_mtime_ns == 1_000_000_000
    assert sorted(p.name for p in conf.parent.iterdir()) == ["app.conf"]
    assert not ran.exists()


def test_missing_key_fails_loudly(cluster: Cluster, tmp_path: Path) -> None:
    agent = _agent(tmp_path)  # /app/value is never written in this cluster
    done = _once(cluster, agent)
    assert done.returncode == 1
    assert "render failed: key /app/value is missing" in done.stderr
    assert not (tmp_path / "out" / "app.conf").exists()


def _examples_agent(tmp: Path) -> tuple[Path, Path, Path]:
    """deploy/examples/render/agent.yaml with its files in ``tmp`` and no
    commands (nginx and node are not on the test machine)."""
    examples = Path(__file__).resolve().parents[2] / "deploy" / "examples" / "render"
    doc = yaml.safe_load((examples / "agent.yaml").read_text())
    doc["cache_dir"] = str(tmp / "cache")
    nginx, node = doc["templates"]
    for spec, name in ((nginx, "upstreams.conf"), (node, "gateway.json")):
        spec.update(src=str(examples / spec["src"]), dest=str(tmp / name), wait={"min": 0.2})
        spec.pop("check_cmd")
        spec.pop("reload_cmd")
    path = tmp / "agent.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path, tmp / "upstreams.conf", tmp / "gateway.json"


def _info(endpoint: str) -> bytes:
    """A registration as the fleet encodes it (with no lease: it must outlive
    the cluster being stopped here)."""
    return encode(InstanceInfo(endpoint=endpoint))


def _mcpctl(cluster: Cluster, *args: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "mcpctl", "--endpoints", ",".join(cluster.endpoints), *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr


def test_the_fleet_example_follows_registrations_and_drains(
    cluster: Cluster, tmp_path: Path, daemon_log: Path
) -> None:
    """Two instances registered by the SDK (leases, load reports); the nginx
    example as a daemon. `mcpctl drain` (the operator key only) takes one out
    of the upstream, `undrain` puts it back, an unhealthy report takes it
    out, and a closed registration leaves the file. A value that is not a
    registration is skipped with a warning."""
    from mcpctl.fleet.registration import Registration

    agent, upstreams, _ = _examples_agent(tmp_path)
    doc = yaml.safe_load(agent.read_text())
    doc["templates"] = doc["templates"][:1]  # the nginx one: no MCP document needed
    agent.write_text(yaml.safe_dump(doc))
    model = "llama-3-8b"
    a_line = "    server 127.0.0.1:8101 weight=2;  # a\n"
    b_line = "    server 127.0.0.1:8102 weight=1;  # b\n"

    def upstream_has(*wanted: str, absent: tuple[str, ...] = ()) -> bool | None:
        text = upstreams.read_text() if upstreams.exists() else ""
        return (all(w in text for w in wanted) and not any(x in text for x in absent)) or None

    with cluster.client() as c:
        a = Registration(
            c, model=model, endpoint="http://127.0.0.1:8101", weight=2, instance_id="a"
        )
        b = Registration(c, model=model, endpoint="http://127.0.0.1:8102", instance_id="b")
        with a, open(daemon_log, "w") as log:
            b.start()
            proc = subprocess.Popen(
                _cli(cluster, "-c", str(agent)), stdout=log, stderr=subprocess.STDOUT
            )
            try:
                wait_for("both instances", lambda: upstream_has(a_line, b_line), WAIT_S)
                # Not a registration (the schema the examples once guessed): skipped,
                # said once, never a crash.
                c.put(keys.instance_key(model, "junk"), json.dumps({"address": "10.0.0.9:80"}))
                wait_for(
                    "the bad value reported",
                    lambda: (
                        f"{keys.instance_key(model, 'junk')} skipped: endpoint: required;"
                        " address: unknown field"
                        in daemon_log.read_text()
                        or None
                    ),
                    WAIT_S,
                )
                _mcpctl(cluster, "drain", model, "b")
                wait_for(
                    "the drained instance left out",
                    lambda: upstream_has(
                        a_line, "    # b 127.0.0.1:8102 left out: draining\n", absent=(b_line,)
                    ),
                    WAIT_S,
                )
                _mcpctl(cluster, "undrain", model, "b")
                wait_for(
                    "the undrained instance back", lambda: upstream_has(a_line, b_line), WAIT_S
                )
                b.report(healthy=False)
                wait_for(
                    "the unhealthy instance left out",
                    lambda: upstream_has(a_line, "left out: unhealthy", absent=(b_line,)),
                    WAIT_S,
                )
                b.close()
                wait_for(
                    "the closed registration gone",
                    lambda: upstream_has(a_line, absent=("# b",)),
                    WAIT_S,
                )
            finally:
                b.close()
                proc.send_signal(signal.SIGTERM)
                code = proc.wait(30)
    assert code == 0, daemon_log.read_text()
    assert daemon_log.read_text().count("junk skipped") == 1  # once, not per render


def test_fleet_and_mcp_examples_from_a_cold_start(
    cluster: Cluster, tmp_path: Path, daemon_log: Path
) -> None:
    """The examples on live data; then the agent starts with every member down
    (from the cache), and converges once they are back."""
    from mcpctl.client.mcp import McpClient

    agent, upstreams, gateway = _examples_agent(tmp_path)
    document = (Path(__file__).resolve().parents[2] / "deploy/examples/mcp_config.yaml").read_text()
    with cluster.client() as c:
        McpClient(c).apply(document)
        c.put(keys.instance_key("llama-3-8b", "i-1"), _info("http://10.0.0.7:8000"))
    done = _once(cluster, agent)
    assert done.returncode == 0, done.stderr
    assert "server 10.0.0.7:8000 weight=1;  # i-1" in upstreams.read_text()
    assert "llama-3-8b" in [m["name"] for m in json.loads(gateway.read_text())["models"]]

    for node in cluster.nodes:
        cluster.stop(node)
    with open(daemon_log, "w") as log:
        proc = subprocess.Popen(
            _cli(cluster, "-c", str(agent)), stdout=log, stderr=subprocess.STDOUT
        )
    try:
        wait_for(
            "the agent to start from the cache",
            lambda: "rendering from the last-good cache" in daemon_log.read_text() or None,
            WAIT_S,
        )
        cluster.start_all()
        with cluster.client() as c:
            c.put(keys.instance_key("llama-3-8b", "i-2"), _info("http://10.0.0.8:8000"))
        wait_for(
            "the new instance in the nginx file",
            lambda: "10.0.0.8:8000" in upstreams.read_text() or None,
            WAIT_S,
        )
        assert "10.0.0.7:8000" in upstreams.read_text()
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(30)
    assert code == 0, daemon_log.read_text()


def test_a_txn_across_two_watched_prefixes_is_rendered_whole(
    cluster: Cluster, tmp_path: Path, daemon_log: Path
) -> None:
    """Two watches (/app/value and /app/extra/); each txn writes the same
    number to both. Every installed file must show one number, never two."""
    from mcpctl.client import put_op

    conf = tmp_path / "out" / "app.conf"
    history = tmp_path / "history"
    agent = _agent(
        tmp_path,
        reload_cmd=f"cat {conf} >> {history}; echo --- >> {history}",
        wait={"min": 0, "max": 0},  # render on every change: no debounce to hide a half txn
    )
    with cluster.client() as c:
        c.txn(success=[put_op("/app/value", "0"), put_op("/app/extra/n", "0")])
        with open(daemon_log, "w") as log:
            proc = subprocess.Popen(
                _cli(cluster, "-c", str(agent)), stdout=log, stderr=subprocess.STDOUT
            )
        try:
            wait_for("the first render", lambda: history.exists() or None, WAIT_S)
            for i in range(1, 30):
                c.txn(success=[put_op("/app/value", str(i)), put_op("/app/extra/n", str(i))])
            wait_for(
                "the last txn rendered",
                lambda: "value=29\n" in history.read_text() or None,
                WAIT_S,
            )
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(30)
    for snapshot in history.read_text().split("---\n")[:-1]:
        lines = dict(line.split("=", 1) for line in snapshot.splitlines() if "=" in line)
        assert lines["value"] == lines["extra /app/extra/n"], snapshot
