"""The operator records which key verified a model, and admission trusts keys, not names.

Real model_signing signatures: a namespace admin's policy names its own key ``release``
like the cluster baseline's; the operator verifies against both policies' signers (in the
order reconciling.trusted_signers gives), so the attacker's signature verifies with the
attacker's ``release``. The status records that key's fingerprint, and the baseline then
refuses the model while the namespaced policy accepts it (issue 16).
"""

from __future__ import annotations

import pathlib
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from modelshield.api.v1alpha1 import artifacts, policies
from modelshield.engine import compiling, evaluating, facts, keyids
from modelshield.engine.decisions import Code
from modelshield.modelartifacts import modelverifying, reconciling, signing
from tests.support import modelfiles as models
from tests.support import signingkeys as keys
from tests.support import workloadbuilders as b

NOW = b.NOW


def _models(name: str, pem: bytes) -> dict[str, Any]:
    return {"signers": [{"name": name, "publicKey": pem.decode()}], "requireScan": False}


def _baseline(pem: bytes) -> policies.ClusterModelSecurityPolicy:
    return policies.ClusterModelSecurityPolicy.model_validate(
        {
            "metadata": {"name": "baseline"},
            "spec": {
                "namespaceSelector": {},
                "selector": {"matchLabels": b.LABELS},
                "models": _models("release", pem),
            },
        }
    )


def _admitted(
    status: artifacts.ModelArtifactStatus,
    *policy: policies.ModelSecurityPolicy | policies.ClusterModelSecurityPolicy,
) -> list[tuple[str, Code]]:
    artifact = artifacts.ModelArtifact.model_validate(
        {
            "metadata": {"name": b.MODEL, "namespace": b.NAMESPACE, "generation": 1},
            "spec": {"uri": "s3://models/v1/"},
            "status": status.model_dump(by_alias=True, mode="json"),
        }
    )
    source = facts.StaticFacts(
        artifacts={(b.NAMESPACE, b.MODEL): facts.from_model_artifact(artifact)}
    )
    body = b.workload("Deployment", b.pod_spec(b.hardened_container()))
    decision = evaluating.evaluate(body, compiling.compile_policies(policy), {}, source, NOW)
    return [(v.policy.kind, v.code) for v in decision.violations]


def test_a_same_named_namespaced_key_verifies_but_does_not_satisfy_the_baseline(
    tmp_path: pathlib.Path,
) -> None:
    platform = keys.key_pair(tmp_path / "platform", "release")
    attacker = keys.key_pair(tmp_path / "attacker", "release")
    model = models.benign_model(tmp_path / "model")
    signing.sign_with_key(model, attacker.private_path)
    baseline = _baseline(platform.public_pem)
    team = b.policy(models=_models("release", attacker.public_pem))
    signers = reconciling.trusted_signers(
        [baseline.spec.models, team.spec.models],  # type: ignore[list-item]
        {},
        None,
    )

    verdict = reconciling.reconcile(
        artifacts.ModelArtifactSpec(uri="s3://models/v1/"), 1, model, signers, None, now=NOW
    )

    assert verdict.status.signer == "release"
    assert verdict.status.signer_key == keyids.fingerprint(attacker.public_pem)
    assert _admitted(verdict.status, baseline, team) == [
        ("ClusterModelSecurityPolicy", Code.MODEL_SIGNER_UNTRUSTED)
    ]
    assert _admitted(verdict.status, team) == []


def test_the_baselines_own_key_satisfies_it(tmp_path: pathlib.Path) -> None:
    platform = keys.key_pair(tmp_path / "platform", "release")
    model = models.benign_model(tmp_path / "model")
    signing.sign_with_key(model, platform.private_path)
    baseline = _baseline(platform.public_pem)
    signers = reconciling.trusted_signers([baseline.spec.models], {}, None)  # type: ignore[list-item]

    verdict = reconciling.reconcile(
        artifacts.ModelArtifactSpec(uri="s3://models/v1/"), 1, model, signers, None, now=NOW
    )

    assert verdict.status.signer_key == keyids.fingerprint(platform.public_pem)
    assert _admitted(verdict.status, baseline) == []
    # The status the operator wrote before this change (no signerKey) fails closed.
    old = verdict.status.model_copy(update={"signer_key": ""})
    assert _admitted(old, baseline) == [("ClusterModelSecurityPolicy", Code.MODEL_SIGNER_UNTRUSTED)]


def test_a_certificate_chain_is_recorded_by_its_anchors_key(tmp_path: pathlib.Path) -> None:
    material = keys.certificate_material(tmp_path / "pki")
    model = models.benign_model(tmp_path / "model")
    signing.sign_with_certificate(
        model, material.key_path, material.certificate_path, [material.root_path]
    )
    root = x509.load_pem_x509_certificate(material.root_path.read_bytes())
    root_key = root.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)

    result = modelverifying.verify(
        model, [modelverifying.CertificateSigner("pki", material.root_path.read_bytes())]
    )

    assert result.key == keyids.fingerprint(root_key)
    assert result.key.startswith("sha256:")
    assert (result.issuer, result.identity) == ("", "")
