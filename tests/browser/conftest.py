"""A real browser for the console tests: Debian's chromium driven by the Python
``playwright`` package (never ``playwright install``: no browser downloads).

Without /usr/bin/chromium the tests skip with the reason, except in CI
(``CI`` set), where a missing browser is a failure: ``make test`` and
``.ci/run`` install it. Screenshots go to ``$CONSOLE_SCREENSHOTS_DIR``
(default ``build/console-screenshots/``, git-ignored).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import ConsoleMessage, Page, sync_playwright

CHROMIUM = Path("/usr/bin/chromium")
# Flags that work on this machine kind (no GPU, no sandbox as root, no network chatter).
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
VIEWPORT = {"width": 1200, "height": 800}
SCREENSHOTS = Path(os.environ.get("CONSOLE_SCREENSHOTS_DIR", "build/console-screenshots"))


def _need_chromium() -> None:
    if CHROMIUM.exists():
        return
    reason = f"{CHROMIUM} is missing (apt-get install chromium; `make test` does it as root)"
    if os.environ.get("CI"):
        pytest.fail(f"CI must run the browser tests: {reason}")
    pytest.skip(reason)


@pytest.fixture
def page(tmp_path: Path) -> Iterator[Page]:
    """A fresh page in a fresh profile; fails the test on any script error."""
    _need_chromium()
    errors: list[str] = []

    def on_console(m: ConsoleMessage) -> None:
        # HTTP errors the page asked for (a 400 from a bad apply) are shown in the
        # page and asserted there; anything else logged as an error fails the test.
        if m.type == "error" and not m.text.startswith("Failed to load resource"):
            errors.append(f"console error: {m.text}")

    with sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            str(tmp_path / "profile"),  # a new, empty --user-data-dir
            executable_path=str(CHROMIUM),
            headless=True,
            args=CHROMIUM_ARGS,
            viewport=VIEWPORT,  # type: ignore[arg-type]
        )
        try:
            pg = context.new_page()
            pg.on("pageerror", lambda e: errors.append(f"page error: {e}"))
            pg.on("console", on_console)
            yield pg
        finally:
            context.close()
    assert not errors, errors


@pytest.fixture
def screenshots() -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    return SCREENSHOTS
