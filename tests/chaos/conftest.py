from __future__ import annotations

import pytest

from tests.chaos import netns


@pytest.fixture(scope="session")
def netns_ok() -> None:
    """Skip (with the reason) where network namespaces cannot be made."""
    reason = netns.unavailable_reason()
    if reason is not None:
        pytest.skip(f"partition scenarios need network namespaces: {reason}")
