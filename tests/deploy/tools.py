"""Locating the offline deployment checkers (installed by `make deploy-tools`).

Under CI (``CI`` set) a missing tool fails the test: `make test` installs both,
so a skip there would hide a broken install step. Elsewhere it skips with the
command that installs it.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def find_tool(name: str, package: str) -> str:
    """The path of console script ``name`` from PyPI package ``package``."""
    beside_python = Path(sys.executable).parent / name
    found = str(beside_python) if beside_python.exists() else shutil.which(name)
    if found:
        return found
    reason = f"{name} not installed (PyPI {package}; `make deploy-tools` installs it)"
    if os.environ.get("CI"):
        pytest.fail(reason)
    pytest.skip(reason)
