"""The S3 server a KServe storage initializer downloads from, against ``--s3-endpoint``.

Issue 19: with no setting shared by the operator and admission, every pod whose storage
initializer was told an S3 endpoint was refused, the one the operator verifies from
included (MinIO...), and one told none (AWS S3) was admitted even when the operator
verified the model on another server. Now the endpoint written is admitted exactly when
it is the configured one, compared as boto3 uses it (scheme, host, port).
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from modelshield.engine import compiling, decisions, evaluating, s3endpoints
from modelshield.engine.decisions import Code
from tests.support import kservecorpus as corpus
from tests.support import workloadbuilders as b
from tests.support.kservecorpusjudging import _facts, _policy

MINIO = "http://minio.storage.svc.cluster.local:9000"
STORE = s3endpoints.ModelStore.configured(MINIO)


def _evaluate(body: dict[str, Any], store: s3endpoints.ModelStore) -> decisions.Decision:
    policy_set = compiling.compile_policies([_policy(corpus.MODELS)])
    return evaluating.evaluate(body, policy_set, {}, _facts(), b.NOW, store=store)


def _env(name: str, value: str) -> dict[str, Any]:
    return {"name": name, "value": value}


def _kserve_credentials(endpoint: str) -> list[dict[str, Any]]:
    """What KServe's pod mutator writes for a ServiceAccount's S3 Secret
    (pkg/credentials/s3: BuildSecretEnvs, BuildS3EnvVars)."""
    secret = {"secretKeyRef": {"name": "s3-creds", "key": "AWS_ACCESS_KEY_ID"}}
    return [
        {"name": "AWS_ACCESS_KEY_ID", "valueFrom": secret},
        {"name": "AWS_SECRET_ACCESS_KEY", "valueFrom": secret},
        _env("S3_USE_HTTPS", "0"),
        _env("S3_ENDPOINT", endpoint.split("://", 1)[1]),
        _env("AWS_ENDPOINT_URL", endpoint),
    ]


def _pod(env: list[dict[str, Any]] | None) -> dict[str, Any]:
    return corpus.pod(init_args=[corpus.VERIFIED_URI, "/mnt/models"], init_env=env)


ADMITTED = {
    "kserve-credentials": _kserve_credentials(MINIO),
    "path-style-said-explicitly": [
        _env("AWS_ENDPOINT_URL", MINIO),
        _env("S3_USER_VIRTUAL_BUCKET", "false"),
        _env("S3_USE_ACCELERATE", "false"),
    ],
    "upper-case-and-trailing-slash": [_env("AWS_ENDPOINT_URL", MINIO.upper() + "/")],
    "both-endpoint-variables": [
        _env("AWS_ENDPOINT_URL", MINIO),
        _env("AWS_ENDPOINT_URL_S3", MINIO),
    ],
    "storage-override-naming-it": [
        _env("AWS_ENDPOINT_URL", MINIO),
        _env("STORAGE_OVERRIDE_CONFIG", json.dumps({"type": "s3", "endpoint_url": MINIO})),
    ],
}


@pytest.mark.parametrize("name", sorted(ADMITTED))
def test_the_configured_endpoint_is_admitted(name: str) -> None:
    decision = _evaluate(_pod(ADMITTED[name]), STORE)
    assert decision.allowed, decision.message()
    assert decision.governed_by


def test_a_default_port_is_the_same_server() -> None:
    store = s3endpoints.ModelStore.configured("https://s3.eu.example.com")
    body = _pod([_env("AWS_ENDPOINT_URL", "https://S3.eu.example.com:443")])
    assert _evaluate(body, store).allowed


#: What sends the storage initializer elsewhere, and the path it is refused at.
REFUSED = {
    "other-host": ([_env("AWS_ENDPOINT_URL", "http://evil.storage.svc.cluster.local:9000")], 0),
    "other-port": ([_env("AWS_ENDPOINT_URL", "http://minio.storage.svc.cluster.local:9001")], 0),
    "other-scheme": ([_env("AWS_ENDPOINT_URL", "https://minio.storage.svc.cluster.local:9000")], 0),
    "default-port-of-the-scheme": (
        [_env("AWS_ENDPOINT_URL", "http://minio.storage.svc.cluster.local")],
        0,
    ),
    "userinfo-host-confusion": (
        [_env("AWS_ENDPOINT_URL", "http://minio.storage.svc.cluster.local:9000@evil.example")],
        0,
    ),
    "a-path": ([_env("AWS_ENDPOINT_URL", MINIO + "/evil")], 0),
    "a-query": ([_env("AWS_ENDPOINT_URL", MINIO + "?x=1")], 0),
    "trailing-dot": ([_env("AWS_ENDPOINT_URL", "http://minio.storage.svc.cluster.local.:9000")], 0),
    # urlsplit drops the tab: read loosely, this would be the configured server.
    "a-tab": ([_env("AWS_ENDPOINT_URL", "http://minio.storage.svc.cluster\t.local:9000")], 0),
    "percent-encoded-host": (
        [_env("AWS_ENDPOINT_URL", "http://%6Dinio.storage.svc.cluster.local:9000")],
        0,
    ),
    "a-variable": ([_env("AWS_ENDPOINT_URL", "http://$(HOST):9000")], 0),
    "the-kubelet-keeps-the-last": (
        [_env("AWS_ENDPOINT_URL", MINIO), _env("AWS_ENDPOINT_URL", "http://evil.example.com")],
        1,
    ),
    "the-s3-variable-elsewhere": (
        [_env("AWS_ENDPOINT_URL", MINIO), _env("AWS_ENDPOINT_URL_S3", "http://evil.example.com")],
        1,
    ),
    "override-elsewhere": (
        [
            _env("AWS_ENDPOINT_URL", MINIO),
            _env(
                "STORAGE_OVERRIDE_CONFIG",
                json.dumps({"type": "s3", "endpoint_url": "http://evil.example.com"}),
            ),
        ],
        1,
    ),
    "from-a-secret": (
        [{"name": "AWS_ENDPOINT_URL", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}],
        0,
    ),
    "aws-config-file": ([_env("AWS_ENDPOINT_URL", MINIO), _env("AWS_CONFIG_FILE", "/x")], 1),
    # <bucket>.<host>: another host than the configured one.
    "virtual-hosted-bucket": (
        [_env("AWS_ENDPOINT_URL", MINIO), _env("S3_USER_VIRTUAL_BUCKET", "True")],
        1,
    ),
    "accelerate-endpoint": (
        [_env("AWS_ENDPOINT_URL", MINIO), _env("S3_USE_ACCELERATE", "true")],
        1,
    ),
}


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_any_other_server_is_refused_at_its_path(name: str) -> None:
    env, index = REFUSED[name]
    decision = _evaluate(_pod(env), STORE)
    field = "valueFrom" if "valueFrom" in env[index] else "value"
    path = f"spec.initContainers[0].env[{index}].{field}"
    assert (Code.MODEL_SOURCE_UNVERIFIABLE, path) in {
        (v.code, v.path) for v in decision.violations
    }, decision.message()


def test_the_message_names_the_configured_server() -> None:
    body = _pod([_env("AWS_ENDPOINT_URL", "http://evil.storage.svc.cluster.local:9000")])
    (violation,) = _evaluate(body, STORE).violations
    assert "downloads s3:// models from 'http://evil.storage.svc.cluster.local:9000'" in (
        violation.message
    )
    assert f"not the S3 endpoint ModelArtifacts are fetched from, {MINIO!r}" in violation.message


@pytest.mark.parametrize(
    "env",
    [
        None,
        [_env("AWS_DEFAULT_REGION", "eu-west-1")],
        # The kubelet keeps the last entry of a name, and an empty one is unset.
        [_env("AWS_ENDPOINT_URL", MINIO), _env("AWS_ENDPOINT_URL", "")],
        # kserve_storage copies endpoint_url only from a document of type s3.
        [_env("STORAGE_OVERRIDE_CONFIG", json.dumps({"type": "gcs", "endpoint_url": MINIO}))],
    ],
    ids=["no-env", "region-only", "emptied", "json-of-another-type"],
)
def test_no_endpoint_is_aws_s3_not_the_configured_server(env: list[dict[str, Any]] | None) -> None:
    decision = _evaluate(_pod(env), STORE)
    paths = {
        v.path: v.message for v in decision.violations if v.code is Code.MODEL_SOURCE_UNVERIFIABLE
    }
    assert "spec.initContainers[0].env" in paths, decision.message()
    assert "boto3 downloads s3:// models from AWS S3" in paths["spec.initContainers[0].env"]


def test_a_non_s3_model_needs_no_endpoint() -> None:
    body = corpus.pod(init_args=["pvc://models/v1/", "/mnt/models"])
    paths = {v.path for v in _evaluate(body, STORE).violations}
    assert "spec.initContainers[0].env" not in paths


def test_without_the_setting_every_named_server_is_refused_and_none_is_aws() -> None:
    """The default (no --s3-endpoint): the operator fetches from AWS S3."""
    named = _evaluate(_pod(_kserve_credentials(MINIO)), s3endpoints.DEFAULT)
    assert [(v.code, v.path) for v in named.violations] == [
        (Code.MODEL_SOURCE_UNVERIFIABLE, "spec.initContainers[0].env[4].value")
    ]
    assert "while the operator fetches ModelArtifacts from AWS S3" in named.violations[0].message
    assert _evaluate(_pod(None), s3endpoints.DEFAULT).allowed


@pytest.mark.parametrize(
    ("written", "canonical"),
    [
        ("http://MinIO.a.b:80/", "http://minio.a.b"),
        ("https://s3.a.b:443", "https://s3.a.b"),
        ("http://[0:0::1]:9000", "http://[::1]:9000"),
        ("http://10.0.0.7:09000", "http://10.0.0.7:9000"),
    ],
)
def test_spellings_of_one_server(written: str, canonical: str) -> None:
    assert s3endpoints.canonical(written) == canonical


@pytest.mark.parametrize(
    "written",
    [
        "http://127.1:9000",
        "http://2130706433:9000",
        "http://127.000.000.001:9000",
        "http://[fe80::1%25eth0]:9000",
        "http://x.y.z:0",
        "http://x.y.z:65536",
        "http://x.y.z:",
        "http://x.y.z:+80",
        "http://bücher.y.z",
        "http://x.y.z#f",
        "ftp://x.y.z",
        "",
    ],
)
def test_what_is_not_one_server_everywhere(written: str) -> None:
    with pytest.raises(s3endpoints.EndpointError):
        s3endpoints.canonical(written)
