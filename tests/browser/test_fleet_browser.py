"""The console's Fleet page in a real browser (chromium) against a real 3-node
cluster (docs/fleet.md): a demo instance process killed -9 disappears from the
page within TTL + grace; draining an instance from the page (with its confirm
step) makes a real InstancePicker stop choosing it."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest
from playwright.sync_api import Page

from mcpctl.fleet.picker import InstancePicker
from mcpctl.fleet.registration import Registration
from mcpctl.server.lessor import lease_grace_s
from tests.cluster import Cluster, running_cluster, wait_for

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

T = TypeVar("T")
GRACE_S = lease_grace_s(2.0, 1.0)
TTL_S = 3
# The page polls once a second; a busy 2-core machine adds its share.
PAGE_SLACK_S = 2.0
SHOWN_WITHIN_S = 15.0
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with running_cluster(tmp_path_factory.mktemp("fleet-browser"), console=True) as c:
        yield c


def until(what: str, check: Callable[[], T | None], timeout_s: float = SHOWN_WITHIN_S) -> T:
    deadline = time.monotonic() + timeout_s
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"the page did not show {what} within {timeout_s} s")
        time.sleep(0.1)


def row(page: Page, ident: str) -> str:
    return f'#fleet-models tr[data-model="m"][data-id="{ident}"]'


def test_fleet_page_live_rows_kill_and_drain(
    cluster: Cluster, page: Page, screenshots: Path, tmp_path: Path
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MCPCTL_", "MCP_"))}
    env["MCPCTL_ENDPOINTS"] = ",".join(cluster.endpoints)
    log = (tmp_path / "k1.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "mcpctl.demo.instance", "--model", "m", "--port", "0",
         "--id", "k1", "--ttl", str(TTL_S)],
        stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT,
    )  # fmt: skip
    try:
        with cluster.client() as client:
            regs = [
                Registration(client, model="m", endpoint=f"http://{n}.test:80", instance_id=n)
                for n in ("a", "b")
            ]
            for reg in regs:
                reg.start()
            with InstancePicker(client, "m") as picker:
                wait_for("k1 registered", lambda: len(picker.instances()) == 3, timeout_s=60)
                page.goto(cluster.nodes[0].console_url + "/#fleet")
                until("three rows", lambda: page.locator("#fleet-models tr[data-id]").count() == 3)
                page.screenshot(path=str(screenshots / "fleet.png"))

                proc.kill()
                proc.wait()
                killed_at = time.monotonic()
                until(
                    "k1's row gone",
                    lambda: page.locator(row(page, "k1")).count() == 0,
                    timeout_s=TTL_S + GRACE_S + 15,
                )
                assert time.monotonic() - killed_at <= TTL_S + GRACE_S + PAGE_SLACK_S

                until("the drain button", lambda: page.locator(row(page, "a") + " button").count())
                page.click(row(page, "a") + " button")
                until("the confirm step", lambda: page.locator("#fleet-confirm").is_visible())
                assert "Drain m/a?" in (page.locator("#fleet-confirm-text").text_content() or "")
                page.click("#fleet-confirm")
                until(
                    "a drained",
                    lambda: page.locator(row(page, "a")).get_attribute("data-draining") == "1",
                )
                wait_for(
                    "the picker sees the drain",
                    lambda: (
                        picker.pick_target()
                        and all(i.operator.draining for i in picker.instances() if i.id == "a")
                    ),
                )
                assert {picker.pick() for _ in range(300)} == {"http://b.test:80"}
                page.screenshot(path=str(screenshots / "fleet-drained.png"))
            for reg in regs:
                reg.close()
    finally:
        proc.kill()
        proc.wait()
        log.close()
