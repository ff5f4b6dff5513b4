"""Converging owned objects: a refused write is not a revert, a revert loop is reported."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any, cast

import pytest

from modelshield.controllers import caches, converging, writing
from modelshield.controllers.builders import ownership

KEY = ("NetworkPolicy", "ml", "ms-netpol-deploy-fraud")


def _stamped(rule: str) -> dict[str, Any]:
    manifest = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": KEY[2], "namespace": "ml"},
        "spec": {"podSelector": {}, "policyTypes": ["Ingress"], "ingress": [{"rule": rule}]},
    }
    workload = ownership.ObjectRef("apps/v1", "Deployment", "fraud", "uid-fraud", "ml")
    return ownership.stamp(manifest, ownership.Governance(workload, (), "network-policy"))


class ApiServerStandInForTests:
    """Stands in for the API server's replace (no server here): refuses or stores."""

    def __init__(self, refuse: bool) -> None:
        self.refuse = refuse
        self.replaced = 0

    async def replace(self, body: Mapping[str, Any], resource_version: str) -> dict[str, Any]:
        if self.refuse:
            raise writing.ApiException(status=422, reason="Unprocessable Entity")
        self.replaced += 1
        return {**body, "metadata": {**body["metadata"], "resourceVersion": str(self.replaced)}}


def _converger(refuse: bool) -> tuple[converging.Converger, ApiServerStandInForTests]:
    server = ApiServerStandInForTests(refuse)
    world = caches.World()
    return converging.Converger(cast(writing.Kube, server), world), server


def test_refused_writes_never_count_as_reverts() -> None:
    converger, _ = _converger(refuse=True)
    for _ in range(converging.MAX_REVERTS_IN_WINDOW * 3):
        converger.world.put_child(_stamped("deny-all"))
        with pytest.raises(writing.ApiException):
            asyncio.run(converger.converge(KEY, _stamped("planned")))
    assert converger.reverts.get(KEY, []) == []


def test_someone_who_keeps_changing_it_back_is_reported_not_fought() -> None:
    converger, server = _converger(refuse=False)
    for _ in range(converging.MAX_REVERTS_IN_WINDOW):
        converger.world.put_child(_stamped("edited by hand"))
        assert asyncio.run(converger.converge(KEY, _stamped("planned"))) is not None
    converger.world.put_child(_stamped("edited by hand"))
    with pytest.raises(converging.RevertLoopError):
        asyncio.run(converger.converge(KEY, _stamped("planned")))
    assert server.replaced == converging.MAX_REVERTS_IN_WINDOW
