"""No module of ours grows past MODULE_LINES_MAX lines (issue #18: a reader opens a
module and can hold it in their head; a big one is a sign two jobs live together).
Generated code (``mcpctl/_proto``) is exempt."""

from __future__ import annotations

from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "mcpctl"
MODULE_LINES_MAX = 500


def test_no_module_is_over_the_line_limit() -> None:
    sizes = {
        str(p.relative_to(PACKAGE.parent)): len(p.read_text().splitlines())
        for p in PACKAGE.rglob("*.py")
        if "_proto" not in p.parts
    }
    assert sizes, "no modules found"
    assert {name: n for name, n in sizes.items() if n > MODULE_LINES_MAX} == {}
