"""The console in a real browser (chromium) against a real 3-node cluster with
the console on (auth off, as `mcpctl dev` runs it). Assertions read what the
page shows: the DOM attributes the card and chart code maintain, not pixels;
screenshots are saved as artifacts."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest
from playwright.sync_api import Page

from mcpctl.errors import McpError
from tests.cluster import Cluster, NodeProc, running_cluster
from tests.console_docs import BAD_DOC, GOOD_DOC

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

T = TypeVar("T")
# Generous deadlines for a busy 2-core machine; the page usually takes far less.
SHOWN_WITHIN_S = 10.0


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with running_cluster(tmp_path_factory.mktemp("browser"), console=True) as c:
        yield c


def until(what: str, check: Callable[[], T | None], timeout_s: float = SHOWN_WITHIN_S) -> T:
    """Poll ``check`` (reads the page) until it is truthy; fail naming ``what``."""
    deadline = time.monotonic() + timeout_s
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"the page did not show {what} within {timeout_s} s")
        time.sleep(0.1)


def attr(page: Page, selector: str, name: str) -> str | None:
    loc = page.locator(selector)
    return loc.first.get_attribute(name) if loc.count() else None


def number(value: str | None) -> float | None:
    try:
        return float(value) if value else None
    except ValueError:
        return None


class Writer:
    """Puts in the background (through the members that are not paused), so a
    paused follower falls behind: lag only grows while there is something to lack."""

    def __init__(self, cluster: Cluster, through: list[NodeProc]) -> None:
        self._cluster = cluster
        self._through = through
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with self._cluster.client(*self._through, timeout=5.0) as c:
            for i in range(5000):
                if self._stop.is_set():
                    return
                with contextlib.suppress(McpError):  # a write may fail during the pause
                    c.put(f"/load/{i % 10}", str(i))
                self._stop.wait(0.05)

    def __enter__(self) -> Writer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)


def test_cluster_page_shows_a_paused_follower_lagging_then_recovering(
    cluster: Cluster, page: Page, screenshots: Path
) -> None:
    """Three cards, updated from the stream more than once a second. A follower
    stopped with SIGSTOP while writes go on: within a couple of seconds its card
    says unreachable, and its lag rises on the chart past 1.5 s; after SIGCONT
    the card is healthy again and the chart's last point for it is 0, while the
    chart still holds the peak."""
    leader = cluster.leader()
    paused = next(n for n in cluster.nodes if n is not leader)
    others = [n for n in cluster.nodes if n is not paused]
    page.goto(leader.console_url + "/")

    until("three healthy cards", lambda: page.locator('.card[data-health="healthy"]').count() == 3)
    assert sorted(page.locator(".card").evaluate_all("cs => cs.map(c => c.dataset.node)")) == [
        "n1",
        "n2",
        "n3",
    ]
    assert attr(page, f'.card[data-node="{leader.name}"]', "data-role") == "leader"
    first = number(attr(page, "#chart", "data-updates")) or 0
    started = time.monotonic()
    until(
        "three more stream updates",
        lambda: (number(attr(page, "#chart", "data-updates")) or 0) >= first + 3,
    )
    assert time.monotonic() - started < 3 * 1.0 + 1.0  # at least about one a second

    card = f'.card[data-node="{paused.name}"]'
    line = f'#chart path[data-node="{paused.name}"]'
    with Writer(cluster, others):
        cluster.pause(paused)
        paused_at = time.monotonic()
        try:
            until(
                "the paused follower as unreachable",
                lambda: attr(page, card, "data-reachable") == "false",
            )
            seen_down_s = time.monotonic() - paused_at
            until(
                "the paused follower's lag above 1.5 s on the chart",
                lambda: (number(attr(page, line, "data-max-lag-ms")) or 0) >= 1500,
            )
            assert (number(attr(page, card, "data-lag-ms")) or 0) >= 1500
            assert attr(page, card, "data-health") == "unreachable"
            for n in others:
                assert attr(page, f'.card[data-node="{n.name}"]', "data-reachable") == "true"
            page.screenshot(path=str(screenshots / "cluster-paused-follower.png"))
        finally:
            cluster.resume(paused)
    assert seen_down_s < 5.0, f"unreachable shown after {seen_down_s:.1f} s"

    until("the follower healthy again", lambda: attr(page, card, "data-health") == "healthy")
    until("its lag back to 0 on the chart", lambda: attr(page, line, "data-last-lag-ms") == "0")
    assert (number(attr(page, line, "data-max-lag-ms")) or 0) >= 1500  # the peak stays on the chart
    page.screenshot(path=str(screenshots / "cluster.png"))


def test_config_page_applies_with_confirm_shows_history_diff_and_validation_errors(
    cluster: Cluster, page: Page, screenshots: Path
) -> None:
    """Paste YAML, dry run (the changes are listed), confirm: the config is applied
    and the validated view shows its models. A put made with the SDK appears in
    the key's history with a diff between the two revisions. An invalid document
    shows the path-naming error, and nothing is written."""
    node = cluster.nodes[0]
    page.goto(node.console_url + "/#config")
    until("the key list", lambda: page.locator("#keys").get_attribute("data-revision") is not None)

    page.fill("#apply-doc", GOOD_DOC)
    page.click("#apply-dry")
    until("the dry run's changes", lambda: page.locator("#apply-result").is_visible())
    assert int(attr(page, "#apply-summary", "data-changes") or 0) >= 5
    assert page.locator('.change[data-key="/mcp/models/gpt-4o"][data-op="add"]').count() == 1
    page.click("#apply-real")
    until("the confirm step", lambda: page.locator("#apply-confirm").is_visible())
    page.click("#apply-confirm")
    applied = until("the applied revision", lambda: attr(page, "#apply-summary", "data-revision"))
    until(
        "the models in the validated view",
        lambda: page.locator("#models-table tr[data-model]").count() == 2,
    )

    with cluster.client() as c:
        put = c.put(
            "/mcp/models/gpt-4o", b'{"endpoint": "https://api.example.com/v2", "weight": 5}'
        )
    page.click("#prefix-form button")
    key = 'li[data-key="/mcp/models/gpt-4o"]'
    until("the model key in the list", lambda: page.locator(key).count() == 1)
    page.click(key)
    until(
        "the put in the key's history",
        lambda: attr(page, "#history", "data-revisions") == f"{put.revision},{applied}",
    )
    until(
        "the diff between the two revisions",
        lambda: attr(page, "#diff", "data-b") == str(put.revision),
    )
    assert attr(page, "#diff", "data-a") == applied
    assert int(attr(page, "#diff", "data-added") or 0) >= 2  # endpoint and weight
    added = "".join(page.locator("#diff .add").all_inner_texts())
    assert "https://api.example.com/v2" in added and '"weight": 5' in added
    assert page.locator("#key-value .tok-key").count() >= 2  # highlighted JSON
    page.screenshot(path=str(screenshots / "config.png"), full_page=True)

    page.fill("#apply-doc", BAD_DOC)
    page.click("#apply-dry")
    until("the validation error", lambda: page.locator("#apply-error").is_visible())
    assert attr(page, "#apply-error", "data-status") == "400"
    assert page.locator("#apply-error li").all_inner_texts() == [
        "models[0].endpoint: not an http(s) URL"
    ]
    assert "ftp://" not in page.locator("#apply-error").inner_text()
    page.screenshot(path=str(screenshots / "config-invalid-apply.png"), full_page=True)
    with cluster.client() as c:
        kv = c.get("/mcp/models/gpt-4o").first
    assert kv is not None and kv.mod_revision == put.revision  # the bad apply wrote nothing


def test_the_page_asks_for_a_token_keeps_it_in_the_tab_and_hides_writes_for_readers(
    tmp_path: Path, page: Page, screenshots: Path
) -> None:
    """With auth on, the page asks for a token; an unknown one is refused in the form;
    a reader's is kept in sessionStorage (a reload does not ask again), the live
    stream works with it, and the write buttons are not shown."""
    import hashlib

    from mcpctl.client import Client
    from tests.cluster import wait_for

    reader = "browser-reader-token-0123456789"
    auth = {
        "enabled": True,
        "tokens": [
            {
                "name": "dashboard",
                "role": "readonly",
                "sha256": hashlib.sha256(reader.encode()).hexdigest(),
            }
        ],
    }
    (tmp_path / "secured").mkdir()
    cluster = Cluster(tmp_path / "secured", size=1, extra_config={"auth": auth}, console=True)
    node = cluster.nodes[0]
    try:
        cluster.start(node)

        def serving() -> bool:
            with Client([node.endpoint], timeout=1.0, attempts_max=1, token=reader) as c:
                c.get("/", prefix=True, count_only=True)
            return True

        wait_for("the secured node", serving)
        page.goto(node.console_url + "/")
        until("the token form", lambda: page.locator("#login").is_visible())
        page.fill("#token", "not-the-right-token-at-all")
        page.click("#login-form button")
        until("the refusal", lambda: "unknown token" in page.locator("#login-error").inner_text())

        page.fill("#token", reader)
        page.click("#login-form button")
        until("the form gone", lambda: not page.locator("#login").is_visible())
        assert page.locator("#whoami").inner_text().startswith("dashboard (readonly)")
        until(
            "the member's card from the stream",
            lambda: page.locator('.card[data-node="n1"]').count() == 1,
        )
        assert page.evaluate("() => sessionStorage.getItem('mcp-console-token')") == reader
        assert page.locator("body").get_attribute("data-can-write") == "0"

        page.goto(node.console_url + "/#config")
        until("the read-only note", lambda: page.locator("#apply-ro").is_visible())
        assert not page.locator("#apply-real").is_visible()
        assert not page.locator("#login").is_visible()  # kept across the reload
        page.screenshot(path=str(screenshots / "config-read-only.png"))
    finally:
        cluster.close()
