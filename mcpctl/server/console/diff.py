"""The config page's line diff between two values of a key, computed here with difflib.

A value that parses as JSON is compared in its indented form (two spaces, as
the page shows it), so a changed field is a changed line. Inputs past
``CONSOLE_DIFF_LINES_MAX`` lines on either side are shown as a whole
replacement instead of being compared (difflib is quadratic at worst).
"""

from __future__ import annotations

import difflib
import json
from typing import Literal

from mcpctl import limits

Op = Literal[" ", "-", "+"]


def display_text(value: bytes) -> str:
    """The value as the page shows it: indented JSON when it is JSON, else its text."""
    text = value.decode("utf-8", "replace")
    try:
        return json.dumps(json.loads(text), indent=2, ensure_ascii=False)
    except ValueError:
        return text


def line_diff(
    a: str, b: str, lines_max: int = limits.CONSOLE_DIFF_LINES_MAX
) -> list[tuple[Op, str]]:
    """Lines kept (" "), removed ("-") and added ("+") from ``a`` to ``b``, in order."""
    old, new = a.split("\n"), b.split("\n")
    if len(old) > lines_max or len(new) > lines_max:
        return [("-", line) for line in old] + [("+", line) for line in new]
    out: list[tuple[Op, str]] = []
    matcher = difflib.SequenceMatcher(None, old, new, autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal":
            out += [(" ", line) for line in old[i1:i2]]
            continue
        out += [("-", line) for line in old[i1:i2]]
        out += [("+", line) for line in new[j1:j2]]
    return out
