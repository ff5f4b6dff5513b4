"""Every valid policy fixture parses; every invalid one fails with the error it names."""

from __future__ import annotations

import pathlib

import pytest

from modelshield.cli import manifests
from tests.support.paths import FIXTURES

VALID = sorted((FIXTURES / "policies" / "valid").glob("*.yaml"))
INVALID = sorted((FIXTURES / "policies" / "invalid").glob("*.yaml"))


def expected_error(path: pathlib.Path) -> str:
    """The `# expect-error:` line every invalid fixture carries."""
    for line in path.read_text().splitlines():
        if line.startswith("# expect-error:"):
            return line.removeprefix("# expect-error:").strip()
    raise AssertionError(f"{path} has no '# expect-error:' line")


@pytest.mark.parametrize("path", VALID, ids=[p.stem for p in VALID])
def test_valid_fixture_parses(path: pathlib.Path) -> None:
    documents = manifests.read_documents([path])
    assert documents
    for document in documents:
        assert manifests.is_modelshield_kind(document)
        manifests.parse_custom_resource(document)


@pytest.mark.parametrize("path", INVALID, ids=[p.stem for p in INVALID])
def test_invalid_fixture_fails_with_its_error(path: pathlib.Path) -> None:
    (document,) = manifests.read_documents([path])
    with pytest.raises(manifests.ManifestError) as raised:
        manifests.parse_custom_resource(document)
    assert expected_error(path) in str(raised.value)
    assert str(path) in str(raised.value), "the message must name the file"


def test_there_are_fixtures_to_walk() -> None:
    assert len(VALID) >= 5
    assert len(INVALID) >= 10
