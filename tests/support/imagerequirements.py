"""Image requirements, and the engine's decision on verified facts with its reason codes."""

from __future__ import annotations

import datetime
from typing import Any

from modelshield.api.v1alpha1 import policies
from modelshield.engine import compiling, decisions, evaluating, facts
from modelshield.engine.decisions import Code

NOW = datetime.datetime.now(datetime.UTC)


def requirement(*signers: tuple[str, str], **extra: Any) -> policies.ImageRequirements:
    """Image requirements trusting these (name, public PEM) signers."""
    return policies.ImageRequirements.model_validate(
        {"signers": [{"name": name, "publicKey": pem} for name, pem in signers], **extra}
    )


def decide(
    image: str, image_facts: facts.ImageFacts, wanted: policies.ImageRequirements
) -> decisions.Decision:
    """The engine's verdict on a pod running image, given the facts."""
    policy = policies.ModelSecurityPolicy.model_validate(
        {
            "metadata": {"name": "images", "namespace": "ml"},
            "spec": {
                "selector": {"matchLabels": {"app": "server"}},
                "images": wanted.model_dump(by_alias=True, exclude_none=True),
            },
        }
    )
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "server", "namespace": "ml", "labels": {"app": "server"}},
        "spec": {"containers": [{"name": "server", "image": image}]},
    }
    source = facts.StaticFacts(images={image: image_facts})
    return evaluating.evaluate(pod, compiling.compile_policies([policy]), {}, source, NOW)


def codes(decision: decisions.Decision) -> set[Code]:
    """The violation codes of a decision."""
    return {violation.code for violation in decision.violations}
