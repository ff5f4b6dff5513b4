"""The policy and the facts that the engine judges the KServe corpus cases with."""

from __future__ import annotations

from typing import Any

from modelshield.api.v1alpha1 import policies
from modelshield.engine import facts
from tests.support import kservecorpus as corpus
from tests.support import workloadbuilders as b

REQUIREMENTS = {
    corpus.MODELS: {"models": {"signers": b.SIGNERS}},
    corpus.IMAGES: {"images": {"signers": b.SIGNERS}},
}


def _facts() -> facts.StaticFacts:
    artifacts = {
        (corpus.NAMESPACE, name): facts.ArtifactFacts(
            namespace=corpus.NAMESPACE,
            name=name,
            uri=uri,
            expected_digest=None,
            current=True,
            verified=True,
            verified_digest="sha256:" + "b" * 64,
            signer="release",
            signer_key=b.RELEASE_KEY_ID,
            scanned=True,
            last_checked=b.NOW,
        )
        for name, uri in corpus.ARTIFACTS.items()
    }
    unsigned = facts.ImageFacts(
        reference=corpus.UNSIGNED_IMAGE,
        digest="sha256:" + "c" * 64,
        signature=facts.SignatureFact(facts.Outcome.NO_SIGNATURE),
    )
    return facts.StaticFacts(
        images={
            corpus.SIGNED_IMAGE: b.verified_image(corpus.SIGNED_IMAGE),
            corpus.UNSIGNED_IMAGE: unsigned,
        },
        artifacts=artifacts,
    )


def _policy(requirement: str, **spec: Any) -> policies.ModelSecurityPolicy:
    return policies.ModelSecurityPolicy.model_validate(
        {
            "metadata": {"name": "p", "namespace": corpus.NAMESPACE},
            "spec": {
                "enforcement": "Enforce",
                "selector": {"matchLabels": corpus.LABELS},
                **REQUIREMENTS[requirement],
                **spec,
            },
        }
    )
