"""Fixtures: a real OCI registry on a free loopback port and the real cosign with generated keys."""

from __future__ import annotations

import pathlib
from collections.abc import Iterator

import pytest

from tests.support import localtools


@pytest.fixture(scope="session")
def registry_binary() -> pathlib.Path:
    """go-containerregistry's registry, from the test tool cache."""
    return localtools.require_tool("MODELSHIELD_REGISTRY")


@pytest.fixture(scope="session")
def cosign(tmp_path_factory: pytest.TempPathFactory) -> localtools.Cosign:
    """The real cosign binary with a private HOME."""
    binary = localtools.require_tool("MODELSHIELD_COSIGN")
    return localtools.Cosign(binary, tmp_path_factory.mktemp("cosign-home"))


@pytest.fixture(scope="session")
def registry(
    registry_binary: pathlib.Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[localtools.LocalRegistry]:
    """One registry for the session; tests use their own repositories in it."""
    started = localtools.LocalRegistry(registry_binary, tmp_path_factory.mktemp("registry")).start()
    yield started
    started.stop()


@pytest.fixture
def own_registry(
    registry_binary: pathlib.Path, tmp_path: pathlib.Path
) -> Iterator[localtools.LocalRegistry]:
    """A registry for one test, which that test may stop."""
    started = localtools.LocalRegistry(registry_binary, tmp_path).start()
    yield started
    started.stop()


@pytest.fixture(scope="session")
def release_key(cosign: localtools.Cosign) -> tuple[pathlib.Path, str]:
    """The trusted signing key: (cosign private key path, public PEM)."""
    return cosign.generate_key_pair("release")


@pytest.fixture(scope="session")
def next_key(cosign: localtools.Cosign) -> tuple[pathlib.Path, str]:
    """The key a rotation moves to."""
    return cosign.generate_key_pair("next")


@pytest.fixture(scope="session")
def stranger_key(cosign: localtools.Cosign) -> tuple[pathlib.Path, str]:
    """A key nobody trusts."""
    return cosign.generate_key_pair("stranger")
