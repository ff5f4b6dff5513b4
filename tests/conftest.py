"""Shared test configuration: paths to the repository and its fixtures."""

from __future__ import annotations

import pathlib

import pytest

REPOSITORY = pathlib.Path(__file__).resolve().parent.parent
FIXTURES = REPOSITORY / "tests" / "fixtures"


@pytest.fixture
def repository() -> pathlib.Path:
    """The repository root."""
    return REPOSITORY
