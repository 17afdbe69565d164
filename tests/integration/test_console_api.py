"""The console's HTTP API on a real 3-node cluster with auth on (docs/console.md):
the same tokens, roles and errors as gRPC, mapped to HTTP statuses with a
one-line JSON body; every size and page bounded; the live status stream."""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from mcpctl import limits
from mcpctl.client import Client
from tests.cluster import Cluster, NodeProc, wait_for
from tests.console_docs import BAD_DOC, GOOD_DOC

pytestmark = pytest.mark.cluster

ADMIN = "console-admin-token-0123456789"
READER = "console-reader-token-0123456789"
MODELS = "console-models-token-0123456789"


def sha(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """Auth on: an admin, a reader, and a writer limited to /mcp/models/."""
    auth = {
        "enabled": True,
        "roles": [
            {"name": "models", "permissions": [{"prefix": "/mcp/models/", "access": "write"}]}
        ],
        "tokens": [
            {"name": "ops", "role": "admin", "sha256": sha(ADMIN)},
            {"name": "dashboard", "role": "readonly", "sha256": sha(READER)},
            {"name": "deployer", "role": "models", "sha256": sha(MODELS)},
        ],
    }
    cluster = Cluster(tmp_path_factory.mktemp("console"), extra_config={"auth": auth}, console=True)
    try:
        for node in cluster.nodes:
            cluster.start(node)

        def ready() -> bool:
            with sdk(cluster) as c:
                c.get("/", prefix=True, count_only=True)
            for node in cluster.nodes:
                try:
                    with http(node, ADMIN) as c:
                        if c.get("/api/whoami").status_code != 200:
                            return False
                except httpx.TransportError:  # the console is not listening yet
                    return False
            return True

        wait_for("the secured console cluster to serve", ready)
        yield cluster
    finally:
        cluster.close()


def sdk(cluster: Cluster) -> Client:
    return Client(cluster.endpoints, timeout=5.0, attempts_max=3, token=ADMIN)


def http(node: NodeProc, token: str | None = None, timeout_s: float = 10.0) -> httpx.Client:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.Client(base_url=node.console_url, headers=headers, timeout=timeout_s)


def one_line_error(resp: httpx.Response, status: int, kind: str | None = None) -> dict[str, Any]:
    """The error contract: the status, a JSON object on one line with error and message."""
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith("application/json")
    assert "\n" not in resp.text
    body: dict[str, Any] = resp.json()
    assert body["message"] and "\n" not in body["message"]
    if kind is not None:
        assert body["error"] == kind, body
    return body


def test_status_from_every_member_lists_all_three(secured: Cluster) -> None:
    """Any member's /api/status has a row per member in the `mcpctl status -w json`
    shape, with exactly one leader, and names the member that answered."""
    for node in secured.nodes:
        with http(node, READER) as c:
            body = c.get("/api/status").json()
        assert body["member"] == node.name
        rows = {m["id"]: m for m in body["members"]}
        assert set(rows) == {"n1", "n2", "n3"}
        assert [m["role"] for m in rows.values()].count("leader") == 1
        for m in rows.values():
            assert m["reachable"] is True
            assert {"term", "commit_index", "applied_index", "entries_behind", "lag_ms"} <= set(m)
            assert m["last_contact_ms"] is not None and m["health"] in ("healthy", "lagging")


def test_auth_is_the_grpc_auth(secured: Cluster) -> None:
    """No token or an unknown one: 401 with WWW-Authenticate; a reader may read and
    dry-run but not write (403), and whoami says so; a role limited to
    /mcp/models/ may not read all of /mcp/ (403); the page itself is public."""
    node = secured.nodes[0]
    with http(node) as anon:
        resp = anon.get("/api/status")
        one_line_error(resp, 401, "unauthenticated")
        assert resp.headers["www-authenticate"].lower().startswith("bearer")
        assert anon.get("/").status_code == 200
        assert anon.get("/static/app.js").status_code == 200
    with http(node, "not-a-real-token-at-all") as bad:
        assert "unknown token" in one_line_error(bad.get("/api/keys?prefix=/"), 401)["message"]
    with http(node, READER) as reader:
        me = reader.get("/api/whoami").json()
        assert me == {
            "identity": "dashboard",
            "role": "readonly",
            "auth": True,
            "member": node.name,
            "can_write_mcp": False,
            "can_drain": False,
        }
        assert reader.post("/api/mcp/apply", json={"document": GOOD_DOC}).status_code == 200
        real = {"document": GOOD_DOC, "dry_run": False, "expected_revision": 1}
        one_line_error(reader.post("/api/mcp/apply", json=real), 403, "permission_denied")
        rollback = {"key": "/mcp/models/gpt-4o", "to_revision": 1, "dry_run": False}
        one_line_error(reader.post("/api/rollback", json=rollback), 403, "permission_denied")
    with http(node, MODELS) as models:
        assert models.get("/api/whoami").json()["can_write_mcp"] is False
        assert models.get("/api/keys?prefix=/mcp/models/").status_code == 200
        one_line_error(models.get("/api/keys?prefix=/mcp/"), 403, "permission_denied")
    with http(node, ADMIN) as admin:
        assert admin.get("/api/whoami").json()["can_write_mcp"] is True


def test_fleet_page_api_lists_instances_and_drains_behind_write(secured: Cluster) -> None:
    """/api/fleet lists a registered instance with its lease TTL (docs/fleet.md);
    a reader's drain is 403, an admin's drains (the operator key is written) and
    undrains (the key is deleted); a bad model name is a one-line 400."""
    from mcpctl.client import Client
    from mcpctl.fleet.registration import Registration

    node = secured.nodes[0]
    with (
        Client(secured.endpoints, token=ADMIN, timeout=10) as c,
        Registration(c, model="fm", endpoint="http://fm1.test:80", instance_id="fm1"),
    ):
        with http(node, READER) as reader:
            got = reader.get("/api/fleet").json()
            (model,) = [m for m in got["models"] if m["model"] == "fm"]
            (row,) = model["instances"]
            assert row["id"] == "fm1" and row["endpoint"] == "http://fm1.test:80"
            assert 0 < row["ttl"] <= 30 and row["draining"] is False
            body = {"model": "fm", "id": "fm1", "draining": True}
            one_line_error(reader.post("/api/fleet/drain", json=body), 403, "permission_denied")
        with http(node, ADMIN) as admin:
            assert admin.post("/api/fleet/drain", json=body).json()["draining"] is True
            assert c.get("/mcp/operator/instances/fm/fm1").kvs
            assert admin.get("/api/fleet").json()["models"][0]["instances"][0]["draining"]
            undrain = {**body, "draining": False}
            assert admin.post("/api/fleet/drain", json=undrain).json()["draining"] is False
            assert not c.get("/mcp/operator/instances/fm/fm1").kvs
            bad = {**body, "model": "bad model"}
            assert (
                "model:" in one_line_error(admin.post("/api/fleet/drain", json=bad), 400)["message"]
            )


def test_keys_values_and_history_pages(secured: Cluster) -> None:
    """Keys by prefix (bounded by limit, `more` past it), a value now and at a past
    revision, and its history newest first with the writer's name."""
    with sdk(secured) as c:
        first = c.put("/hist/a", b'{"v": 1}').revision
        c.put("/hist/a", b'{"v": 2}')
        last = c.put("/hist/b", b"plain").revision
    node = secured.nodes[1]
    with http(node, READER) as reader:
        keys = reader.get("/api/keys", params={"prefix": "/hist/"}).json()
        assert [k["key"] for k in keys["keys"]] == ["/hist/a", "/hist/b"]
        assert keys["more"] is False and keys["revision"] >= last
        page = reader.get("/api/keys", params={"prefix": "/hist/", "limit": 1}).json()
        assert len(page["keys"]) == 1 and page["more"] is True

        now = reader.get("/api/kv", params={"key": "/hist/a"}).json()
        assert now["value"] == '{"v": 2}' and now["version"] == 2
        then = reader.get("/api/kv", params={"key": "/hist/a", "rev": first}).json()
        assert then["value"] == '{"v": 1}' and then["mod_revision"] == first

        hist = reader.get("/api/history", params={"key": "/hist/a"}).json()
        assert [e["version"] for e in hist["entries"]] == [2, 1]
        assert hist["entries"][1]["revision"] == first
        assert {e["identity"] for e in hist["entries"]} == {"ops"}
        assert all(e["type"] == "PUT" and e["value_bytes"] == 8 for e in hist["entries"])
        one = reader.get("/api/history", params={"key": "/hist/a", "limit": 1}).json()
        assert len(one["entries"]) == 1 and one["more"] is True

        diff = reader.get("/api/diff", params={"key": "/hist/a", "a": first, "b": last}).json()
        assert [line for op, line in diff["lines"] if op != " "] == ['  "v": 1', '  "v": 2']
        assert (diff["added"], diff["removed"], diff["a"], diff["b"]) == (1, 1, first, last)
        before = reader.get("/api/diff", params={"key": "/hist/b", "a": first, "b": last}).json()
        assert before["lines"] == [["-", ""], ["+", "plain"]]  # absent at `first`: empty


def test_dry_run_shows_changes_and_path_naming_errors_then_apply(secured: Cluster) -> None:
    """An invalid document: 400 naming the path (models[0].endpoint), never the value.
    A valid one: the dry run lists the changes and writes nothing; a real apply
    needs the revision the dry run showed, and fails with 409 once it is stale.
    The validated view then shows the models; the write is audited as the token's
    identity."""
    node = secured.nodes[2]
    with http(node, ADMIN) as admin:
        bad = one_line_error(admin.post("/api/mcp/apply", json={"document": BAD_DOC}), 400)
        assert bad["error"] == "invalid_argument"
        assert bad["problems"] == ["models[0].endpoint: not an http(s) URL"]
        assert "ftp://" not in json.dumps(bad)

        dry = admin.post("/api/mcp/apply", json={"document": GOOD_DOC}).json()
        assert dry["dry_run"] is True and dry["revision"] == 0
        added = {ch["key"]: ch for ch in dry["changes"]}
        assert {"/mcp/models/gpt-4o", "/mcp/models/llama", "/mcp/routing"} <= set(added)
        gpt = added["/mcp/models/gpt-4o"]
        assert gpt["op"] == "add" and {"path": "weight", "old": None, "new": 3} in gpt["fields"]
        one_line_error(admin.get("/api/mcp"), 404, "not_found")  # nothing written

        no_rev = {"document": GOOD_DOC, "dry_run": False}
        assert (
            "expected_revision"
            in one_line_error(admin.post("/api/mcp/apply", json=no_rev), 400)["message"]
        )
        real = {**no_rev, "expected_revision": dry["read_revision"]}
        done = admin.post("/api/mcp/apply", json=real).json()
        assert done["revision"] > dry["read_revision"]
        assert len(done["changes"]) == len(dry["changes"])
        one_line_error(admin.post("/api/mcp/apply", json=real), 409, "compare_failed")

        view = admin.get("/api/mcp").json()
        assert view["revision"] == done["revision"]
        assert [m["name"] for m in view["config"]["models"]] == ["gpt-4o", "llama"]
        assert view["config"]["routing"]["policy"] == "weighted"
        hist = admin.get("/api/history", params={"key": "/mcp/models/gpt-4o"}).json()
        assert hist["entries"][0]["identity"] == "ops"

        plan = {"key": "/mcp/routing", "to_revision": dry["read_revision"] or 1}
        rolled = admin.post("/api/rollback", json=plan).json()
        assert rolled["dry_run"] is True and rolled["changes"][0]["op"] == "delete"


def test_bad_input_is_400_and_big_bodies_413(secured: Cluster) -> None:
    """Malformed queries and bodies: 400 with one line; a body over
    CONSOLE_BODY_BYTES_MAX: 413 whether it says its length or streams it;
    a JSON body without the JSON content type (a cross-site form): 400;
    unknown paths: 404 JSON; a missing key: 404."""
    with http(secured.nodes[0], ADMIN) as admin:
        for path in (
            "/api/keys?prefix=/&limit=abc",
            f"/api/keys?prefix=/&limit={limits.CONSOLE_KEYS_PAGE_MAX + 1}",
            f"/api/history?key=/a&limit={limits.CONSOLE_HISTORY_PAGE_MAX + 1}",
            "/api/history?key=/a&prefix=maybe",
            "/api/kv",
            "/api/kv?key=/a&rev=-1",
            "/api/diff?key=/a&a=1",
            "/api/diff?key=/a&a=0&b=1",
        ):
            one_line_error(admin.get(path), 400, "invalid_argument")
        one_line_error(admin.get("/api/kv?key=/no/such/key"), 404, "not_found")
        assert one_line_error(admin.get("/api/nothing"), 404)["error"] == "http"

        apply = "/api/mcp/apply"
        for body in (b"{not json", b"[1, 2]", b'{"document": 7}', b'{"dry_run": "yes"}'):
            one_line_error(
                admin.post(apply, content=body, headers={"content-type": "application/json"}),
                400,
            )
        form = admin.post(apply, content=b"{}", headers={"content-type": "text/plain"})
        assert "Content-Type" in one_line_error(form, 400)["message"]

        big = b'{"document": "' + b"x" * limits.CONSOLE_BODY_BYTES_MAX + b'"}'
        one_line_error(
            admin.post(apply, content=big, headers={"content-type": "application/json"}), 413
        )

        def chunks() -> Iterator[bytes]:
            yield big[: len(big) // 2]
            yield big[len(big) // 2 :]

        streamed = admin.post(apply, content=chunks(), headers={"content-type": "application/json"})
        assert "content-length" not in streamed.request.headers
        one_line_error(streamed, 413, "request_too_large")
        # Under the body cap but over the MCP document cap: the document's own 400.
        doc = "#" * (limits.CONSOLE_BODY_BYTES_MAX // 2 + 1)
        assert (
            "over the limit"
            in one_line_error(admin.post(apply, json={"document": doc}), 400)["message"]
        )


def read_events(stream: Iterator[str], count: int, deadline_s: float) -> list[tuple[str, Any]]:
    """The next ``count`` SSE events (name, data) from a line iterator."""
    events: list[tuple[str, Any]] = []
    name, data = "", ""
    end = time.monotonic() + deadline_s
    for line in stream:
        assert time.monotonic() < end, f"only {len(events)} events in {deadline_s} s"
        if line.startswith("event:"):
            name = line[6:].strip()
        elif line.startswith("data:"):
            data += line[5:].strip()
        elif line == "" and data:
            events.append((name, json.loads(data)))
            name, data = "", ""
            if len(events) == count:
                break
    return events


def test_status_stream_updates_twice_a_second_and_is_bounded(secured: Cluster) -> None:
    """/api/events sends `init` (recent samples) and then a `status` snapshot per tick
    (CONSOLE_TICK_S) with every member; at most CONSOLE_STREAMS_MAX streams per
    member (429 beyond), and a stream's slot is free again once it is closed."""
    node = secured.nodes[0]
    with http(node, READER, timeout_s=10.0) as c, c.stream("GET", "/api/events") as resp:
        assert resp.status_code == 200
        assert resp.headers["content-type"].startswith("text/event-stream")
        events = read_events(resp.iter_lines(), 7, deadline_s=15.0)
    assert events[0][0] == "init" and isinstance(events[0][1]["samples"], list)
    statuses = [data for name, data in events[1:] if name == "status"]
    assert len(statuses) == 6
    assert all({m["id"] for m in s["members"]} == {"n1", "n2", "n3"} for s in statuses)
    seqs = [s["seq"] for s in statuses]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    gaps_ms = [b["ts_ms"] - a["ts_ms"] for a, b in itertools.pairwise(statuses)]
    # Snapshots come once per tick (0.5 s); "at least once a second" with room for a busy CI.
    assert max(gaps_ms) < 2000, gaps_ms

    with contextlib.ExitStack() as stack:
        c = stack.enter_context(http(node, READER))
        for _ in range(limits.CONSOLE_STREAMS_MAX):
            resp = stack.enter_context(c.stream("GET", "/api/events"))
            assert resp.status_code == 200
        one_line_error(c.get("/api/events"), 429, "resource_exhausted")

    def slot_free() -> bool:
        with http(node, READER) as again, again.stream("GET", "/api/events") as resp:
            return resp.status_code == 200

    wait_for("closed streams to free their slots", slot_free, timeout_s=10.0)


def test_console_port_in_use_is_a_one_line_startup_error(tmp_path: Path) -> None:
    """console.listen on a port someone holds: the node exits 2 naming the key."""
    import socket
    import subprocess
    import sys

    cluster = Cluster(tmp_path, size=1, console=True)
    node = cluster.nodes[0]
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", node.console_port))
        holder.listen()
        proc = subprocess.run(
            [sys.executable, "-m", "mcpctl", "serve", "--config", str(node.config_path)],
            capture_output=True,
            text=True,
            timeout=30,
        )
    assert proc.returncode == 2
    assert f"console.listen: cannot listen on 127.0.0.1:{node.console_port}" in proc.stderr


def test_rate_limit_is_the_grpc_bucket(tmp_path: Path) -> None:
    """One token bucket per identity, shared by gRPC and the console: once the
    console has used the burst, the console answers 429 with Retry-After and a
    gRPC call with the same token is refused too."""
    from mcpctl.errors import ResourceExhausted

    token = "console-burst-token-0123456789"
    auth = {
        "enabled": True,
        "rate_per_s": 0.2,
        "burst": 3,
        "tokens": [{"name": "burst", "role": "admin", "sha256": sha(token)}],
    }
    cluster = Cluster(tmp_path, size=1, extra_config={"auth": auth}, console=True)
    node = cluster.nodes[0]
    try:
        cluster.start(node)
        with http(node) as anon:

            def up() -> bool:
                # Unauthenticated calls take no token from anyone's bucket.
                try:
                    return anon.get("/api/whoami").status_code == 401
                except httpx.TransportError:
                    return False

            wait_for("the console", up)
        with http(node, token) as c:
            for _ in range(3):
                assert c.get("/api/whoami").status_code == 200
            limited = c.get("/api/keys?prefix=/")
            one_line_error(limited, 429, "resource_exhausted")
            assert int(limited.headers["retry-after"]) >= 1
        with (
            Client([node.endpoint], timeout=5.0, attempts_max=1, token=token) as grpc_client,
            pytest.raises(ResourceExhausted),
        ):
            grpc_client.get("/", prefix=True, count_only=True)
    finally:
        cluster.close()


def test_console_requests_are_in_the_rpc_latency_histogram(secured: Cluster) -> None:
    """Each console call is observed like an RPC, as method console.<name> with its
    status code, in the node's mcp_rpc_duration_seconds."""
    node = secured.nodes[1]
    with http(node, READER) as c:
        assert c.get("/api/keys?prefix=/").status_code == 200
        assert c.get("/api/kv?key=/no/such/key").status_code == 404
    metrics = httpx.get(f"http://127.0.0.1:{node.metrics_port}/metrics", timeout=10).text
    assert 'mcp_rpc_duration_seconds_count{code="OK",method="console.keys"}' in metrics
    assert 'mcp_rpc_duration_seconds_count{code="NOT_FOUND",method="console.kv"}' in metrics


def test_a_keys_lease_and_its_ttl_left_show_in_the_value_view(secured: Cluster) -> None:
    """The key view names the key's lease (hex, as the CLI prints it) and the TTL
    left on the leader's clock, from any member; a past revision shows the lease
    but no TTL (the clock only knows the present); a key without lease has none."""
    with sdk(secured) as c:
        lease = c.grant(30)
        first = c.put("/leased/a", b"x", lease=lease).revision
        c.put("/leased/a", b"y", lease=lease)
        c.put("/plain/b", b"z")
        for node in secured.nodes:
            with http(node, READER) as reader:
                now = reader.get("/api/kv", params={"key": "/leased/a"}).json()
                assert now["lease"] == f"{lease.id:x}"
                assert 0 < now["lease_ttl_s"] <= 30 + 10  # granted TTL, plus at most a grace
                then = reader.get("/api/kv", params={"key": "/leased/a", "rev": first}).json()
                assert then["lease"] == f"{lease.id:x}" and then["lease_ttl_s"] is None
                plain = reader.get("/api/kv", params={"key": "/plain/b"}).json()
                assert plain["lease"] is None and plain["lease_ttl_s"] is None
        lease.revoke()
