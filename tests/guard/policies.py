"""Guard rules built from policy documents, as the tests need them."""

from __future__ import annotations

from typing import Any

from modelshield.api.v1alpha1 import apiprotection, policies
from modelshield.engine import apiprotection as engine_api
from modelshield.engine import decisions


def block(
    api: dict[str, Any],
    *,
    name: str = "model-api",
    kind: str = "ModelSecurityPolicy",
    enforcement: str = "Enforce",
    replicas: int = 1,
) -> engine_api.PolicyApi:
    """One compiled api block from its YAML form."""
    return engine_api.compile_api(
        decisions.PolicyRef(kind, "" if kind.startswith("Cluster") else "ml", name),
        policies.Enforcement(enforcement),
        apiprotection.ApiRequirements.model_validate(api),
        replicas=replicas,
    )


def rules(*blocks: engine_api.PolicyApi) -> engine_api.GuardRules:
    """Guard rules from compiled blocks."""
    return engine_api.combine(blocks)


TOKENS = {"authentication": {"serviceAccountTokens": {"audiences": ["modelshield-guard"]}}}
KEYS = {"authentication": {"apiKeys": {"secretRef": {"name": "model-keys"}}}}
BOTH = {
    "authentication": {
        "serviceAccountTokens": {"audiences": ["modelshield-guard"]},
        "apiKeys": {"secretRef": {"name": "model-keys"}},
    }
}
