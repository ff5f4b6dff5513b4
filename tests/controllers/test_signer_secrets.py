"""Model and builder signers' Secrets: one reader for the ModelArtifact check and the key ConfigMap.

Both operator sides read ``secretRef`` keys through ``secretreading.key_values`` over
``kubesecrets.KubeSecrets``. The API server is stood in for by ``SecretsKubeForTests`` (a
dict behind ``Kube.get``, counting reads); the real GET of both sides runs in
e2e/test_model_artifacts.py and e2e/test_model_keys.py.
"""

from __future__ import annotations

import base64
import logging
import pathlib
from collections.abc import Mapping
from typing import Any

import pytest

from modelshield.api.v1alpha1 import policies
from modelshield.controllers import (
    artifactchecks,
    caches,
    kubesecrets,
    modelkeypublishing,
    writing,
)
from modelshield.controllers import artifacts as artifact_controller
from modelshield.controllers.builders import modelkeys
from modelshield.supplychain.images import secretreading

PEM = (
    b"-----BEGIN PUBLIC KEY-----\n"
    b"MCowBQYDK2VwAyEAGb9ECWmEzf6FQbrBZ9w7lshQhqowtrbLDFw4rXAxZuE=\n"
    b"-----END PUBLIC KEY-----\n"
)
#: What a 403 body could echo; it must never reach a log line.
ECHOED = "c2VjcmV0LWRhdGE="


class SecretsKubeForTests:
    """A ``writing.Kube`` holding Secrets in a dict; ``forbidden`` names answer 403 with data."""

    def __init__(
        self, secrets: Mapping[str, Mapping[str, str]], forbidden: frozenset[str] = frozenset()
    ) -> None:
        self.secrets = secrets
        self.forbidden = forbidden
        self.reads: list[tuple[str, str, str]] = []

    async def get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        self.reads.append((kind, namespace, name))
        if name in self.forbidden:
            error = writing.ApiException(status=403, reason="Forbidden")
            error.body = f'{{"data": {{"release.pub": "{ECHOED}"}}}}'
            raise error
        data = self.secrets.get(name)
        return None if data is None else {"metadata": {"name": name}, "data": dict(data)}


def _b64(value: bytes) -> str:
    return base64.b64encode(value).decode()


def _ref_signer(name: str, secret: str, key: str) -> dict[str, Any]:
    return {"name": name, "secretRef": {"name": secret, "key": key}}


def _requirements(
    *signers: dict[str, Any], builders: tuple[dict[str, Any], ...] = ()
) -> policies.ModelRequirements:
    models: dict[str, Any] = {"signers": list(signers)}
    if builders:
        models["provenance"] = {"trustedBuilders": list(builders)}
    return policies.ModelRequirements.model_validate(models)


async def test_key_values_reads_each_secret_once_and_leaves_out_what_it_cannot_have(
    caplog: pytest.LogCaptureFixture,
) -> None:
    kube = SecretsKubeForTests(
        {"keys": {"a.pub": _b64(PEM), "b.pub": _b64(b"other"), "bad.pub": "not base64!"}},
        forbidden=frozenset({"locked"}),
    )
    refs = [
        ("keys", "a.pub"),
        ("keys", "b.pub"),
        ("keys", "bad.pub"),
        ("keys", "absent.pub"),
        ("missing", "a.pub"),
        ("locked", "release.pub"),
        ("locked", "other.pub"),
    ]
    with caplog.at_level(logging.DEBUG):
        found = await secretreading.key_values(kubesecrets.KubeSecrets(kube), "ml", refs)  # type: ignore[arg-type]
    assert found == {("keys", "a.pub"): PEM, ("keys", "b.pub"): b"other"}
    assert kube.reads == [
        ("Secret", "ml", "keys"),
        ("Secret", "ml", "missing"),
        ("Secret", "ml", "locked"),
    ]
    assert "ml/locked: HTTP 403" in caplog.text
    assert ECHOED not in caplog.text


def _reconciler(
    tmp_path: pathlib.Path, kube: SecretsKubeForTests
) -> artifact_controller.Reconciler:
    settings = artifactchecks.Settings(work_dir=tmp_path / "work", max_concurrent=1)
    return artifact_controller.Reconciler(settings, kube=kube)


async def test_the_artifact_check_reads_signer_and_builder_keys_through_the_one_reader(
    tmp_path: pathlib.Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Before: one read per signer (the same Secret twice), a value that was not base64
    # failed the whole check, and a read error was logged with the API server's body.
    kube = SecretsKubeForTests(
        {"keys": {"release.pub": _b64(PEM), "broken.pub": "%%%", "builder.pub": _b64(b"b")}},
        forbidden=frozenset({"locked"}),
    )
    requirements = [
        _requirements(
            _ref_signer("release", "keys", "release.pub"),
            _ref_signer("broken", "keys", "broken.pub"),
            _ref_signer("locked", "locked", "release.pub"),
            builders=(_ref_signer("ci", "keys", "builder.pub"),),
        )
    ]
    reconciler = _reconciler(tmp_path, kube)
    with caplog.at_level(logging.DEBUG):
        found = await reconciler.secret_keys("ml", requirements)
    assert found == {("keys", "release.pub"): PEM, ("keys", "builder.pub"): b"b"}
    assert kube.reads == [("Secret", "ml", "keys"), ("Secret", "ml", "locked")]
    assert ECHOED not in caplog.text


async def test_the_artifact_check_reads_nothing_without_secret_refs(
    tmp_path: pathlib.Path,
) -> None:
    kube = SecretsKubeForTests({})
    inline = {"name": "inline", "publicKey": PEM.decode()}
    assert await _reconciler(tmp_path, kube).secret_keys("ml", [_requirements(inline)]) == {}
    assert kube.reads == []


class ConfigMapKubeForTests(SecretsKubeForTests):
    """Secrets as above, and the model-keys ConfigMap written to a dict."""

    def __init__(self, secrets: Mapping[str, Mapping[str, str]]) -> None:
        super().__init__(secrets, forbidden=frozenset({"locked"}))
        self.created: list[dict[str, Any]] = []

    async def get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        if kind == "ConfigMap":
            return None
        return await super().get(kind, namespace, name)

    async def create(self, body: dict[str, Any]) -> dict[str, Any]:
        self.created.append(body)
        return body

    async def event(self, *args: Any, **kwargs: Any) -> None:
        return None


async def test_the_key_configmap_reads_signer_keys_through_the_one_reader(
    caplog: pytest.LogCaptureFixture,
) -> None:
    kube = ConfigMapKubeForTests({"keys": {"release.pub": _b64(PEM)}})
    models = {
        "signers": [
            _ref_signer("release", "keys", "release.pub"),
            _ref_signer("second", "keys", "release.pub"),
            _ref_signer("locked", "locked", "release.pub"),
        ]
    }
    world = caches.World()
    world.put_policy(
        {
            "apiVersion": "modelshield.dev/v1alpha1",
            "kind": "ModelSecurityPolicy",
            "metadata": {"name": "p", "namespace": "ml", "uid": "p1"},
            "spec": {"enforcement": "Enforce", "selector": {}, "models": models},
        }
    )
    view = modelkeypublishing.View(
        artifacts={"ml": [modelkeys.Artifact(name="fraud", uid="u1", signer="release")]},
        world=world,
    )
    publisher = modelkeypublishing.Publisher(lambda: kube, resync_seconds=60)
    with caplog.at_level(logging.DEBUG):
        await publisher.publish("ml", view)
    [configmap] = kube.created
    assert [value.encode() for value in configmap["data"].values()] == [PEM]
    assert [read for read in kube.reads if read[0] == "Secret"] == [
        ("Secret", "ml", "keys"),
        ("Secret", "ml", "locked"),
    ]
    assert ECHOED not in caplog.text
