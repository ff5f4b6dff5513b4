"""The inference guard's ClusterRole: create TokenReviews, nothing else."""

from __future__ import annotations

import pytest

from tests.support import chartrendering as rendering


@pytest.mark.parametrize("name", sorted(rendering.COMBINATIONS))
def test_the_guard_may_only_create_token_reviews(name: str) -> None:
    role = rendering.one(
        rendering.rendered(name), "ClusterRole", f"{rendering.RELEASE}-inference-guard"
    )
    assert role["rules"] == [
        {"apiGroups": ["authentication.k8s.io"], "resources": ["tokenreviews"], "verbs": ["create"]}
    ]
