"""The CRD's CIDR and label rules and the Python ones (``api/v1alpha1/syntax.py``) agree, on
the real API server, for every spelling tried: what the server accepts pydantic accepts,
and for IPv4 and labels the other way round too (IPv6 host bits are checked by pydantic
alone, so there the server may accept what pydantic refuses, never the reverse)."""

from __future__ import annotations

from typing import Any

import pydantic
import pytest
from kubernetes import client

from e2e.clients import Cluster
from modelshield.api.v1alpha1 import policies

IPV4 = [
    "10.0.0.0/8",
    "10.1.2.3/8",
    "10.0.0.0/99",
    "10.0.0.0/33",
    "10.0.0.0/08",
    "010.0.0.0/8",
    "10.0.0/8",
    "10.0.0.0",
    "256.0.0.0/8",
    "0.0.0.0/0",
    "0.0.0.1/0",
    "192.168.1.1/24",
    "192.168.1.0/24",
    "255.255.255.255/32",
    "255.255.255.255/31",
    "172.16.0.0/12",
    "172.17.0.0/12",
    " 10.0.0.0/8",
    "10.0.0.0/8 ",
]
IPV6 = [
    "fd00::/8",
    "fd00::1/8",
    "FD00::/8",
    "fd00::/129",
    "::/0",
    "2001:db8::/32",
    "2001:db8::1/128",
]
LABEL_VALUES = ["x", "x y", "", "-x", "x-", "a.b_c-d", "A" * 63, "A" * 64, "fraud/v1", "é"]
LABEL_KEYS = [
    "app",
    "example.com/app",
    "Example.com/app",
    "example.com/",
    "/app",
    "a" * 63,
    "a" * 64,
    "Team Name",
    "-team",
    ("p" * 254) + "/app",
]


def _policy(peer: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "modelshield.dev/v1alpha1",
        "kind": "ModelSecurityPolicy",
        "metadata": {"name": "syntax"},
        "spec": {"selector": {}, "network": {"egress": [{"peers": [peer]}]}},
    }


def _server_accepts(cluster: Cluster, namespace: str, document: dict[str, Any]) -> bool:
    custom = client.CustomObjectsApi(cluster.api_client)
    status = 201
    try:
        custom.create_namespaced_custom_object(
            "modelshield.dev",
            "v1alpha1",
            namespace,
            "modelsecuritypolicies",
            document,
            dry_run="All",
        )
    except client.exceptions.ApiException as error:
        status = error.status
    assert status in (201, 422), status  # refused as invalid, nothing else
    return status == 201


def _pydantic_accepts(document: dict[str, Any]) -> bool:
    try:
        policies.ModelSecurityPolicy.model_validate(document)
    except pydantic.ValidationError:
        return False
    return True


def _verdicts(
    cluster: Cluster, namespace: str, peers: list[dict[str, Any]]
) -> list[tuple[str, bool, bool]]:
    return [
        (
            str(peer),
            _server_accepts(cluster, namespace, _policy(peer)),
            _pydantic_accepts(_policy(peer)),
        )
        for peer in peers
    ]


def test_ipv4_cidrs_and_labels_get_the_same_verdict_from_the_api_server_and_pydantic(
    cluster: Cluster, modelshield_crds: list[dict[str, Any]], namespace: str
) -> None:
    peers: list[dict[str, Any]] = [{"cidr": cidr} for cidr in IPV4]
    peers += [{"podSelector": {"matchLabels": {"app": value}}} for value in LABEL_VALUES]
    peers += [{"podSelector": {"matchLabels": {key: "x"}}} for key in LABEL_KEYS]
    peers += [
        {"podSelector": {"matchExpressions": [{"key": key, "operator": "Exists"}]}}
        for key in LABEL_KEYS
    ]
    peers += [
        {
            "namespaceSelector": {
                "matchExpressions": [{"key": "app", "operator": "In", "values": [value]}]
            }
        }
        for value in LABEL_VALUES
    ]
    verdicts = _verdicts(cluster, namespace, peers)
    disagreements = [(peer, server, ours) for peer, server, ours in verdicts if server != ours]
    assert not disagreements, disagreements
    # Both sides refuse something, and accept something: the comparison can fail.
    assert {ours for _, _, ours in verdicts} == {True, False}


@pytest.mark.parametrize("cidr", IPV6)
def test_ipv6_cidrs_the_api_server_accepts_pydantic_may_refuse_never_the_reverse(
    cidr: str, cluster: Cluster, modelshield_crds: list[dict[str, Any]], namespace: str
) -> None:
    document = _policy({"cidr": cidr})
    if _pydantic_accepts(document):
        assert _server_accepts(cluster, namespace, document), cidr
