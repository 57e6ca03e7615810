"""Shared fixtures: a loaded registry (built-ins and installed plugins)."""

from __future__ import annotations

import pytest

from zgbench import plugins


@pytest.fixture(scope="session")
def registry():
    return plugins.load()
