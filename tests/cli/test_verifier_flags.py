"""The webhook and the operator build their image verifiers from the same settings.

Issue 17: the verifier was built from flags three times and only the webhook had
``--registry-ca``, so the operator could reach another verdict than admission on the same
image (a registry with a private CA: verified at admission, unreachable in the audit).
"""

from __future__ import annotations

import argparse
import pathlib
import ssl
from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from kubernetes import client

from modelshield.api.v1alpha1 import policies
from modelshield.cli import main, operator, verifierflags
from modelshield.engine import compiling, facts
from modelshield.supplychain.images import imageverifier, verifiersettings
from tests.support import admissionscenarios as scenarios
from tests.support import pki

FLAG_SETS = [
    [],
    ["--registry-ca", "/etc/ca/registry.pem"],
    ["--image-cache-ttl", "30"],
    [
        "--insecure-registry",
        "127.0.0.1:5000",
        "--insecure-registry",
        "localhost:5001",
        "--trust-root",
        "/etc/sigstore/trusted_root.json",
        "--docker-config",
        "/etc/docker/config.json",
        "--registry-ca",
        "/etc/ca/registry.pem",
        "--image-cache-ttl",
        "120",
        "--read-signer-secrets",
        "--read-pull-secrets",
        "--secret-ttl-seconds",
        "9",
    ],
]


def _parse(command: str, flags: list[str]) -> argparse.Namespace:
    return main.build_parser().parse_args([command, *flags])


@pytest.mark.parametrize("flags", FLAG_SETS, ids=["defaults", "ca", "ttl", "every-flag"])
def test_the_same_flags_give_both_processes_equal_settings(flags: list[str]) -> None:
    webhook = verifierflags.settings_from(_parse("webhook", flags))
    operator_ = verifierflags.settings_from(_parse("operator", flags))
    assert webhook == operator_
    if flags:
        assert webhook != verifiersettings.VerifierSettings()


class BuiltError(Exception):
    """Raised by the recording factory: the settings a process built its verifier from."""

    def __init__(self, settings: verifiersettings.VerifierSettings) -> None:
        super().__init__("built")
        self.settings = settings


def test_both_processes_build_their_verifier_with_the_one_factory(
    monkeypatch: pytest.MonkeyPatch, tmp_path: pathlib.Path
) -> None:
    def recording(settings: verifiersettings.VerifierSettings) -> imageverifier.ImageVerifier:
        raise BuiltError(settings)

    monkeypatch.setattr(verifiersettings, "build_verifier", recording)
    flags = FLAG_SETS[-1]
    cert, key = pki.write_serving_pair(pki.Authority.create(), tmp_path, "first")
    with pytest.raises(BuiltError) as webhook:
        main.main(["webhook", f"--cert={cert}", f"--key={key}", "--event-loop=asyncio", *flags])
    with pytest.raises(BuiltError) as operator_:
        operator.build(_parse("operator", flags), client.ApiClient(client.Configuration()))
    assert webhook.value.settings == operator_.value.settings
    assert webhook.value.settings.registry_ca == "/etc/ca/registry.pem"


@pytest.fixture
async def https_registry(
    tmp_path: pathlib.Path,
) -> AsyncIterator[tuple[str, pathlib.Path]]:
    """A registry endpoint over real HTTPS whose certificate a private CA signed.

    It knows no image (every manifest is 404): reaching it is what the flag decides.
    """
    authority = pki.Authority.create("private-registry-ca")
    cert, key = pki.write_serving_pair(authority, tmp_path, "registry")
    ca = tmp_path / "registry-ca.pem"
    ca.write_bytes(authority.pem)

    async def unknown(_: web.Request) -> web.Response:
        return web.json_response(
            {"errors": [{"code": "MANIFEST_UNKNOWN", "message": "manifest unknown"}]}, status=404
        )

    app = web.Application()
    app.router.add_route("*", "/v2/{tail:.*}", unknown)
    runner = web.AppRunner(app)
    await runner.setup()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"127.0.0.1:{port}", ca
    finally:
        await runner.cleanup()


async def _outcome(command: str, flags: list[str], image: str) -> facts.Outcome:
    verifier = verifiersettings.build_verifier(verifierflags.settings_from(_parse(command, flags)))
    policy = policies.ModelSecurityPolicy.model_validate(scenarios.policy(scenarios.ENFORCED))
    requirement = compiling.compile_policy(policy).images
    assert requirement is not None
    try:
        found = await verifier.verify(
            image, requirement.source, requirement.key, deadline_seconds=5
        )
    finally:
        await verifier.close()
    return found.signature.outcome


@pytest.mark.parametrize("command", ["webhook", "operator"])
async def test_a_registry_with_a_private_ca_is_reached_by_both_processes_with_the_flag(
    command: str, https_registry: tuple[str, pathlib.Path]
) -> None:
    host, ca = https_registry
    image = f"{host}/ml/server:v1"
    # Reached: the registry answers that it has no such image.
    assert await _outcome(command, [f"--registry-ca={ca}"], image) is facts.Outcome.NOT_FOUND
    # Without the CA the certificate is refused: not reached at all.
    assert await _outcome(command, [], image) is facts.Outcome.REGISTRY_UNREACHABLE
