"""``modelshield verify-image`` against a real registry and images signed by the real cosign."""

from __future__ import annotations

import asyncio
import datetime
import pathlib
from typing import Any

import pytest
import yaml

from modelshield.cli import main
from modelshield.supplychain.images import registries
from tests.support import localtools

pytestmark = pytest.mark.integration

VULN = "https://cosign.sigstore.dev/attestation/vuln/v1"


def _policy(tmp_path: pathlib.Path, public_pem: str, **images: Any) -> pathlib.Path:
    document = {
        "apiVersion": "modelshield.dev/v1alpha1",
        "kind": "ModelSecurityPolicy",
        "metadata": {"name": "serving", "namespace": "ml"},
        "spec": {
            "selector": {"matchLabels": {"app": "server"}},
            "images": {"signers": [{"name": "release", "publicKey": public_pem}], **images},
        },
    }
    path = tmp_path / "policy.yaml"
    path.write_text(yaml.safe_dump(document))
    return path


def _push(registry: localtools.LocalRegistry, repository: str, content: str) -> str:
    async def push() -> str:
        async with registries.RegistryClient(registry.options()) as client:
            digest = await localtools.push_image(client, registry.host, repository, "v1", content)
        return f"{registry.host}/{repository}@{digest}"

    return asyncio.run(push())


def test_signed_and_scanned_image_passes(
    registry: localtools.LocalRegistry,
    cosign: localtools.Cosign,
    release_key: tuple[pathlib.Path, str],
    tmp_path: pathlib.Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    image = _push(registry, "cli/passing", "cli passing")
    cosign.sign(image, release_key[0])
    finished = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    cosign.attest(image, release_key[0], localtools.vuln_predicate(["LOW"], finished))
    scan = {
        "name": "scan",
        "predicateType": VULN,
        "maxAge": "1d",
        "vulnerabilities": {"blockAtOrAbove": "High"},
    }
    policy = _policy(tmp_path, release_key[1], attestations=[scan])
    code = main.main(
        ["verify-image", image, "--policy", str(policy), "--insecure-registry", registry.host]
    )
    out = capsys.readouterr().out
    assert code == 0, out
    assert out.startswith(f"PASS {image} against ModelSecurityPolicy ml/serving")
    assert "signature:    Verified by release" in out
    assert "0 Critical, 0 High, 0 Medium, 1 Low" in out


def test_unsigned_image_fails_with_the_reason(
    registry: localtools.LocalRegistry,
    release_key: tuple[pathlib.Path, str],
    tmp_path: pathlib.Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    image = _push(registry, "cli/unsigned", "cli unsigned")
    code = main.main(
        [
            "verify-image",
            image,
            "--policy",
            str(_policy(tmp_path, release_key[1])),
            "--insecure-registry",
            registry.host,
        ]
    )
    out = capsys.readouterr().out
    assert code == 1
    assert "signature:    NoSignature" in out
    assert "violation:    ImageUnsigned" in out


def test_unusable_input_exits_2(tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main.main(["verify-image", "nginx", "--policy", str(tmp_path / "missing.yaml")]) == 2
    empty = tmp_path / "empty.yaml"
    empty.write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n")
    assert main.main(["verify-image", "nginx", "--policy", str(empty)]) == 2
    assert "no ModelSecurityPolicy" in capsys.readouterr().err
