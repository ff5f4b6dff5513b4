"""Shared test configuration: the repository root as a fixture (paths: tests/support/paths.py)."""

from __future__ import annotations

import pathlib

import pytest

from tests.support.paths import REPOSITORY


@pytest.fixture
def repository() -> pathlib.Path:
    """The repository root."""
    return REPOSITORY
