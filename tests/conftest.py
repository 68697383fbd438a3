"""Shared fixtures: each test gets its own match id."""

from __future__ import annotations

import uuid

import pytest


@pytest.fixture
def match_id(request: pytest.FixtureRequest) -> str:
    """A match id no other test uses, readable in logs."""
    stem = request.node.name.replace("test_", "")[:40]
    safe = "".join(c if c.isalnum() or c in "_-" else "-" for c in stem)
    return f"{safe}-{uuid.uuid4().hex[:8]}"
