"""Everything a runtime can read is verified or refused (issue 21).

model-signing leaves ``.git/``, ``.github/``, ``.gitattributes`` and ``.gitignore`` out of
the manifest by default, so they were neither verified nor scanned; an OCI layer without
a title or with a non-sha256 digest was skipped silently; an empty signed model became
Ready. Each test failed before.
"""

from __future__ import annotations

import datetime
import json
import pathlib
import urllib.request
from collections.abc import Iterator

import pytest

from modelshield.api.v1alpha1 import artifacts
from modelshield.api.v1alpha1.common import ConditionStatus
from modelshield.modelartifacts import fetching, modelverifying, reconciling, signing, transfers
from tests.support import artifactservers as servers
from tests.support import localtools
from tests.support import modelfiles as models
from tests.support import signingkeys as keys

NOW = datetime.datetime(2026, 12, 3, tzinfo=datetime.UTC)


@pytest.mark.parametrize(
    "path",
    [".git/config", ".github/workflows/run.yml", ".gitattributes", ".gitignore", "sub/.git/x"],
)
def test_a_model_holding_a_path_model_signing_ignores_is_refused(
    tmp_path: pathlib.Path, path: str
) -> None:
    pair = keys.key_pair(tmp_path / "keys", "release")
    model = models.benign_model(tmp_path / "model")
    (model / path).parent.mkdir(parents=True, exist_ok=True)
    (model / path).write_text("served by a subPath, never verified\n")
    signing.sign_with_key(model, pair.private_path)

    with pytest.raises(modelverifying.VerificationError) as caught:
        modelverifying.verify(model, [modelverifying.KeySigner("release", pair.public_pem)])

    assert caught.value.reason == modelverifying.UNVERIFIED_PATHS
    assert caught.value.file is not None
    assert path.startswith(caught.value.file)


def test_an_empty_model_is_never_ready(tmp_path: pathlib.Path) -> None:
    model = tmp_path / "model"
    model.mkdir()
    spec = artifacts.ModelArtifactSpec(uri=f"file://{model}")

    verdict = reconciling.reconcile(spec, 1, model, [], None, now=NOW)

    ready = next(c for c in verdict.status.conditions if c.type == "Ready")
    assert ready.status is ConditionStatus.FALSE
    verified = next(c for c in verdict.status.conditions if c.type == "Verified")
    assert verified.reason == modelverifying.EMPTY_MODEL


def test_an_empty_signed_model_is_refused(tmp_path: pathlib.Path) -> None:
    pair = keys.key_pair(tmp_path / "keys", "release")
    model = tmp_path / "model"
    model.mkdir()
    signing.sign_with_key(model, pair.private_path)
    spec = artifacts.ModelArtifactSpec(uri=f"file://{model}")
    signers = [modelverifying.KeySigner("release", pair.public_pem)]

    verdict = reconciling.reconcile(spec, 1, model, signers, None, now=NOW)

    verified = next(c for c in verdict.status.conditions if c.type == "Verified")
    assert (verified.status, verified.reason) == (ConditionStatus.FALSE, modelverifying.EMPTY_MODEL)


def test_an_oci_manifest_digest_of_another_algorithm_is_refused(tmp_path: pathlib.Path) -> None:
    # Already refused by the reference grammar (kept: the layer check below is new).
    with pytest.raises(transfers.FetchError) as caught:
        fetching.fetch(f"oci://127.0.0.1:9/models/fraud@sha512:{'a' * 128}", tmp_path / "f")

    assert caught.value.reason in (transfers.UNSUPPORTED_URI, transfers.NOT_ALLOWED)


@pytest.fixture(scope="module")
def oci_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[localtools.LocalRegistry]:
    binary = localtools.require_tool("MODELSHIELD_REGISTRY")
    started = localtools.LocalRegistry(binary, tmp_path_factory.mktemp("registry")).start()
    yield started
    started.stop()


def _retag_with(host: str, layer: dict[str, object]) -> None:
    """Push the v1 manifest again as v2 with one more layer."""
    base = f"http://{host}/v2/models/fraud/manifests"
    accept = {"Accept": "application/vnd.oci.image.manifest.v1+json"}
    with urllib.request.urlopen(urllib.request.Request(f"{base}/v1", headers=accept)) as response:  # noqa: S310 - loopback registry
        manifest = json.loads(response.read())
    manifest["layers"].append(layer)
    request = urllib.request.Request(  # noqa: S310 - loopback registry
        f"{base}/v2",
        data=json.dumps(manifest).encode(),
        method="PUT",
        headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"},
    )
    with urllib.request.urlopen(request):  # noqa: S310 - loopback registry
        pass


@pytest.mark.integration
def test_an_oci_layer_without_a_title_is_refused(
    oci_registry: localtools.LocalRegistry, tmp_path: pathlib.Path
) -> None:
    model = models.benign_model(tmp_path / "model")
    servers.oci_push_directory(oci_registry.host, "models/fraud", "v1", model)
    data = (model / "model.joblib").read_bytes()
    import hashlib

    untitled = {
        "mediaType": "application/octet-stream",
        "digest": "sha256:" + hashlib.sha256(data).hexdigest(),
        "size": len(data),
    }
    _retag_with(oci_registry.host, untitled)
    settings = transfers.Settings(insecure_registries=frozenset({oci_registry.host}))

    with pytest.raises(transfers.FetchError) as caught:
        fetching.fetch(f"oci://{oci_registry.host}/models/fraud:v2", tmp_path / "f", settings)

    assert caught.value.reason == transfers.NOT_ALLOWED
    assert "title" in caught.value.message


def test_git_paths_are_refused_when_no_policy_names_signers(tmp_path: pathlib.Path) -> None:
    # Without signers the model was ReadyWithoutSignature, and the scanner skips .git.
    model = models.benign_model(tmp_path / "model")
    (model / ".git").mkdir()
    (model / ".git" / "payload.pkl").write_bytes(b"cos\nsystem\n(S'true'\ntR.")
    spec = artifacts.ModelArtifactSpec(uri=f"file://{model}")

    verdict = reconciling.reconcile(spec, 1, model, [], None, now=NOW)

    by_type = {c.type: c for c in verdict.status.conditions}
    assert by_type["Verified"].reason == modelverifying.UNVERIFIED_PATHS
    assert by_type["Ready"].status is ConditionStatus.FALSE
