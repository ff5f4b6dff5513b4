"""The provenance file fetched over HTTP and from an OCI registry (real local servers)."""

from __future__ import annotations

import pathlib
from collections.abc import Iterator

import pytest

from modelshield.modelartifacts import transfers
from modelshield.provenance import checking, envelopes
from tests.support import artifactservers as servers
from tests.support import localtools
from tests.support import signedprovenance as helpers
from tests.support import signingkeys as keys


@pytest.fixture
def attested(tmp_path: pathlib.Path) -> tuple[pathlib.Path, pathlib.Path, keys.KeyPair, str]:
    release = keys.key_pair(tmp_path / "keys", "release")
    pipeline = keys.key_pair(tmp_path / "keys", "pipeline")
    model = helpers.signed_model(tmp_path / "served" / "fraud-v1", release)
    path = helpers.attest(model, pipeline, {})
    return model, path, pipeline, helpers.digest_of(model)


@pytest.fixture(scope="module")
def oci_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[localtools.LocalRegistry]:
    binary = localtools.require_tool("MODELSHIELD_REGISTRY")
    started = localtools.LocalRegistry(binary, tmp_path_factory.mktemp("registry")).start()
    yield started
    started.stop()


def _request(pipeline: keys.KeyPair, uri: str) -> checking.Request:
    return checking.Request(
        uri=uri, builders=(envelopes.TrustedKey("pipeline", pipeline.public_pem),)
    )


@pytest.mark.integration
def test_provenance_over_http(
    attested: tuple[pathlib.Path, pathlib.Path, keys.KeyPair, str], tmp_path: pathlib.Path
) -> None:
    _, path, pipeline, digest = attested
    with servers.file_server(path.parent) as (base, _):
        uri = f"{base}/{path.name}"
        data = checking.fetch(uri, tmp_path / "scratch", transfers.Settings(), "")
        with pytest.raises(transfers.FetchError):
            checking.fetch(
                f"{base}/absent.intoto.jsonl", tmp_path / "other", transfers.Settings(), ""
            )

    assert checking.judge(data, _request(pipeline, uri), digest).reason == checking.VERIFIED


@pytest.mark.integration
def test_provenance_as_a_one_file_oci_artifact(
    attested: tuple[pathlib.Path, pathlib.Path, keys.KeyPair, str],
    oci_registry: localtools.LocalRegistry,
    tmp_path: pathlib.Path,
) -> None:
    _, path, pipeline, digest = attested
    holder = tmp_path / "holder"
    holder.mkdir()
    (holder / "provenance.intoto.jsonl").write_bytes(path.read_bytes())
    servers.oci_push_directory(oci_registry.host, "models/fraud-provenance", "v1", holder)
    (holder / "second").write_text("x")
    servers.oci_push_directory(oci_registry.host, "models/fraud-provenance", "two", holder)
    settings = transfers.Settings(insecure_registries=frozenset({oci_registry.host}))
    uri = f"oci://{oci_registry.host}/models/fraud-provenance:v1"

    data = checking.fetch(uri, tmp_path / "scratch", settings, "")
    with pytest.raises(OSError, match="not one provenance file"):
        checking.fetch(uri.replace(":v1", ":two"), tmp_path / "scratch2", settings, "")

    assert checking.judge(data, _request(pipeline, uri), digest).reason == checking.VERIFIED
