"""Small edges a new user met: registry prefixes, digest grammar, CronJob paths."""

from __future__ import annotations

from typing import Any

import pytest

from modelshield.engine import compiling, evaluating, facts
from modelshield.engine.decisions import Code
from tests.support import workloadbuilders as b

DIGEST = "sha256:" + "a" * 64


def _codes(policy_images: dict[str, Any], image: str, kind: str = "Deployment") -> set[Code]:
    policy = b.policy(images=policy_images)
    body = b.workload(kind, b.pod_spec(b.hardened_container(image)), model=None)
    decision = evaluating.evaluate(
        body,
        compiling.compile_policies([policy]),
        {},
        facts.StaticFacts(images={}, artifacts={}),
        b.NOW,
    )
    return {violation.code for violation in decision.violations}


@pytest.mark.parametrize(
    ("entry", "image", "allowed"),
    [
        # A path prefix is a path, not a string prefix: the sibling repository is refused.
        ("registry.example.com/ml", "registry.example.com/ml-evil/server:1.0", False),
        ("registry.example.com/ml", "registry.example.com/ml/server:1.0", True),
        ("registry.example.com/ml", "registry.example.com/ml:1.0", True),
        ("registry.example.com/ml", "registry.example.com/ml@" + DIGEST, True),
        ("registry.example.com/ml", "registry.example.com/ml", True),
        ("registry.example.com/ml", "registry.example.com/ml:evil/server:1.0", False),
        ("registry.example.com/ml/", "registry.example.com/ml-evil/server:1.0", False),
        ("registry.example.com/ml/", "registry.example.com/ml/server:1.0", True),
        # A bare host is a host: another port is another registry.
        ("registry.example.com", "registry.example.com:5000/ml/server:1.0", False),
        ("registry.example.com", "registry.example.com/ml/server:1.0", True),
        ("registry.example.com", "registry.example.com.evil.net/ml/server:1.0", False),
        ("localhost:5000", "localhost:5000/server:1.0", True),
        ("localhost:5000", "localhost:50000/server:1.0", False),
        # Docker Hub images are matched in their full form.
        ("docker.io/library/nginx", "nginx:1.27", True),
        ("docker.io/library/nginx", "nginx-evil:1.27", False),
        # An entry without a dot is no host: the runtime pulls these from Docker Hub.
        ("myregistry/", "myregistry/ml/server:1.0", False),
        ("docker.io/myregistry/", "myregistry/ml/server:1.0", True),
        ("localhost/", "localhost/server:1.0", True),
    ],
)
def test_allowed_registries_are_path_prefixes(entry: str, image: str, allowed: bool) -> None:
    refused = Code.IMAGE_REGISTRY_NOT_ALLOWED in _codes({"allowedRegistries": [entry]}, image)
    assert refused is not allowed


@pytest.mark.parametrize(
    ("image", "pinned"),
    [
        ("registry.example.com/ml/server@" + DIGEST, True),
        ("registry.example.com/ml/server:1.0@" + DIGEST, True),
        ("registry.example.com/ml/server@sha512:" + "b" * 128, True),
        # What the container runtime refuses to pull must not count as pinned.
        ("registry.example.com/ml/server@sha256:abc", False),
        ("registry.example.com/ml/server@sha256:" + "A" * 64, False),
        ("registry.example.com/ml/server@sha256:" + "a" * 65, False),
        ("registry.example.com/ml/server@sha256:" + "g" * 64, False),
        ("registry.example.com/ml/server@md5:" + "a" * 32, False),
        ("registry.example.com/ml/server:1.0", False),
        ("registry.example.com/ml/server:sha256-" + "a" * 64, False),
        ("@" + DIGEST, False),
    ],
)
def test_require_digest_follows_the_runtime_grammar(image: str, pinned: bool) -> None:
    refused = Code.IMAGE_NOT_PINNED in _codes({"requireDigest": True}, image)
    assert refused is not pinned


@pytest.mark.parametrize(
    ("kind", "path"),
    [
        ("CronJob", "spec.jobTemplate.spec.template.metadata.annotations"),
        ("Job", "spec.template.metadata.annotations"),
        ("Deployment", "spec.template.metadata.annotations"),
        ("Pod", "metadata.annotations"),
    ],
)
def test_model_not_declared_points_at_the_kinds_pod_template(kind: str, path: str) -> None:
    policy = b.policy(models={"signers": b.SIGNERS})
    decision = evaluating.evaluate(
        b.workload(kind, model=None),
        compiling.compile_policies([policy]),
        {},
        facts.StaticFacts(images={}, artifacts={}),
        b.NOW,
    )
    (violation,) = [v for v in decision.violations if v.code is Code.MODEL_NOT_DECLARED]
    assert violation.path == path
