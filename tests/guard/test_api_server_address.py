"""Where the guard sends TokenReviews by default: the address kubelet gives every pod, as
client-go's in-cluster configuration does, so a cluster without DNS (the local node)
works; a DNS name there made every ServiceAccount token wait on a failing lookup, then 503."""

from __future__ import annotations

import pytest

from modelshield.guard import config


def test_the_in_cluster_address_comes_from_kubelets_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.0.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "6443")
    assert config.ApiServerSettings().url == "https://10.0.0.1:6443"
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "fd00:10::1")
    assert config.ApiServerSettings().url == "https://[fd00:10::1]:6443"
    monkeypatch.delenv("KUBERNETES_SERVICE_PORT")
    assert config.ApiServerSettings().url == "https://[fd00:10::1]:443"


def test_outside_a_pod_the_services_name_and_a_configured_url_wins(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    assert config.ApiServerSettings().url == "https://kubernetes.default.svc"
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.0.0.1")
    given = config.ApiServerSettings.model_validate({"url": "https://api.example:6443"})
    assert given.url == "https://api.example:6443"
