"""Fixtures: the real cosign, as the supply-chain tests use it."""

from __future__ import annotations

import pytest

from tests.support import localtools


@pytest.fixture(scope="session")
def cosign(tmp_path_factory: pytest.TempPathFactory) -> localtools.Cosign:
    """The real cosign binary with a private HOME."""
    binary = localtools.require_tool("MODELSHIELD_COSIGN")
    return localtools.Cosign(binary, tmp_path_factory.mktemp("cosign-home"))
