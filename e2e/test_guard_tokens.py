"""The inference guard's TokenReviews against the real kube-apiserver.

ServiceAccount tokens are issued by the API server's TokenRequest API; an expired token
is the issuer's own token re-signed with the cluster's service-account key and an ``exp``
in the past (TokenRequest refuses lifetimes under 10 minutes); a forged one is the same
claims signed by another key. The guard authenticates to the API server as its own
ServiceAccount, allowed exactly ``create tokenreviews`` (what the chart grants).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import pathlib
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from kubernetes import client

from e2e.clients import Cluster
from e2e.guardtokens import AUDIENCE, _predict, request_token
from modelshield.guard import config, server
from tests.support import guardstack, modelserver

TOKEN_REVIEW_RULE = {
    "api_groups": ["authentication.k8s.io"],
    "resources": ["tokenreviews"],
    "verbs": ["create"],
}


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def resign(token: str, key: ec.EllipticCurvePrivateKey, **claims: Any) -> str:
    """The token with some claims changed, signed (ES256) by ``key``."""
    header, payload, _ = token.split(".")
    body = {**json.loads(_unb64(payload)), **claims}
    signing_input = f"{header}.{_b64(json.dumps(body).encode())}"
    r, s = decode_dss_signature(key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256())))
    return f"{signing_input}.{_b64(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"


@pytest.fixture
def accounts(cluster: Cluster, namespace: str) -> Iterator[client.CoreV1Api]:
    """ServiceAccounts: the guard (allowed to create TokenReviews), a scorer, an intruder."""
    core = client.CoreV1Api(cluster.api_client)
    rbac = client.RbacAuthorizationV1Api(cluster.api_client)
    for name in ("guard", "scorer", "intruder", "unprivileged-guard"):
        core.create_namespaced_service_account(
            namespace, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name=name))
        )
    role = f"{namespace}-guard-tokenreviews"
    rbac.create_cluster_role(
        client.V1ClusterRole(
            metadata=client.V1ObjectMeta(name=role),
            rules=[client.V1PolicyRule(**TOKEN_REVIEW_RULE)],
        )
    )
    rbac.create_cluster_role_binding(
        client.V1ClusterRoleBinding(
            metadata=client.V1ObjectMeta(name=role),
            role_ref=client.V1RoleRef(
                api_group="rbac.authorization.k8s.io", kind="ClusterRole", name=role
            ),
            subjects=[
                client.RbacV1Subject(kind="ServiceAccount", name="guard", namespace=namespace)
            ],
        )
    )
    yield core
    rbac.delete_cluster_role_binding(role)
    rbac.delete_cluster_role(role)


@contextlib.asynccontextmanager
async def _guard(
    cluster: Cluster,
    core: client.CoreV1Api,
    namespace: str,
    tmp_path: pathlib.Path,
    *,
    guard_account: str = "guard",
    cache_ttl: str = "60s",
) -> AsyncIterator[tuple[str, modelserver.ModelServer]]:
    url, ca_path = cluster.api_server(tmp_path / "api-server")
    ca_file = str(ca_path)
    token_file = tmp_path / "guard-token"
    token_file.write_text(request_token(core, namespace, guard_account, None))
    api = {
        "authentication": {
            "serviceAccountTokens": {"audiences": [AUDIENCE], "cacheTTL": cache_ttl}
        },
        "authorization": {
            "allow": [{"serviceAccounts": [f"{namespace}/scorer"], "models": ["fraud"]}]
        },
    }
    settings = config.GuardConfig.model_validate(
        {
            "upstream": "http://127.0.0.1:1",
            "apiServer": {"url": url, "caFile": ca_file, "tokenFile": str(token_file)},
            "policies": [
                {
                    "kind": "ModelSecurityPolicy",
                    "namespace": namespace,
                    "name": "api",
                    "enforcement": "Enforce",
                    "api": api,
                }
            ],
        }
    )
    model = modelserver.ModelServer(modelserver.train())
    async with modelserver.serving(model.app()) as upstream:
        settings = settings.model_copy(update={"upstream": upstream})
        async with guardstack.serving_guard(server.pipeline_from_config(settings)) as guard:
            yield guard, model


async def test_tokens_reviewed_by_the_real_api_server(
    cluster: Cluster, accounts: client.CoreV1Api, namespace: str, tmp_path: pathlib.Path
) -> None:
    core = accounts
    scorer = request_token(core, namespace, "scorer", [AUDIENCE])
    async with _guard(cluster, core, namespace, tmp_path) as (guard, model):
        status, body = await _predict(guard, scorer)
        assert status == 200, body
        assert len(json.loads(body)["predictions"]) == 2
        assert (await _predict(guard, None))[0] == 401
        wrong_audience = request_token(core, namespace, "scorer", ["some-other-service"])
        status, body = await _predict(guard, wrong_audience)
        assert status == 401, body
        api_server_audience = request_token(core, namespace, "scorer", None)
        assert (await _predict(guard, api_server_audience))[0] == 401
        intruder = request_token(core, namespace, "intruder", [AUDIENCE])
        status, body = await _predict(guard, intruder)
        assert status == 403, body
        assert f"serviceaccount:{namespace}/intruder may not Predict" in body
        assert len(model.seen) == 1


async def test_expired_and_forged_tokens_are_refused(
    cluster: Cluster, accounts: client.CoreV1Api, namespace: str, tmp_path: pathlib.Path
) -> None:
    if not cluster.started_locally:
        pytest.skip("needs the local control plane's service-account signing key")
    signing_key = serialization.load_pem_private_key(
        (cluster.kubeconfig_path.parent / "pki" / "service-account.key").read_bytes(), None
    )
    assert isinstance(signing_key, ec.EllipticCurvePrivateKey)
    scorer = request_token(accounts, namespace, "scorer", [AUDIENCE])
    now = int(time.time())
    # The control: re-signed with the issuer's key and a later exp, it is still accepted,
    # so the refusals below come from what was changed and not from re-signing itself.
    still_valid = resign(scorer, signing_key, exp=now + 300)
    expired = resign(scorer, signing_key, iat=now - 7200, nbf=now - 7200, exp=now - 3600)
    forged = resign(scorer, ec.generate_private_key(ec.SECP256R1()))
    async with _guard(cluster, accounts, namespace, tmp_path) as (guard, model):
        assert (await _predict(guard, still_valid))[0] == 200
        for token in (expired, forged):
            status, body = await _predict(guard, token)
            assert status == 401, body
            assert "not accepted by the API server" in body
        assert len(model.seen) == 1


async def test_a_revoked_token_is_refused_once_the_cache_ttl_passes(
    cluster: Cluster, accounts: client.CoreV1Api, namespace: str, tmp_path: pathlib.Path
) -> None:
    secret = accounts.create_namespaced_secret(
        namespace, client.V1Secret(metadata=client.V1ObjectMeta(name="binding"))
    )
    assert secret.metadata is not None
    bound = request_token(
        accounts,
        namespace,
        "scorer",
        [AUDIENCE],
        bound_object_ref=client.V1BoundObjectReference(
            api_version="v1", kind="Secret", name="binding", uid=secret.metadata.uid
        ),
    )
    async with _guard(cluster, accounts, namespace, tmp_path, cache_ttl="2s") as (guard, _):
        assert (await _predict(guard, bound))[0] == 200
        accounts.delete_namespaced_secret("binding", namespace)
        # The guard keeps the verdict 2 s; the API server caches token verdicts for 10 s
        # of its own. Past both, the revoked token must be refused.
        deadline = time.monotonic() + 30
        status, body = await _predict(guard, bound)
        while status == 200 and time.monotonic() < deadline:
            await asyncio.sleep(1)
            status, body = await _predict(guard, bound)
        assert status == 401, body


async def test_a_guard_without_tokenreview_rights_refuses_with_503(
    cluster: Cluster, accounts: client.CoreV1Api, namespace: str, tmp_path: pathlib.Path
) -> None:
    scorer = request_token(accounts, namespace, "scorer", [AUDIENCE])
    async with _guard(
        cluster, accounts, namespace, tmp_path, guard_account="unprivileged-guard"
    ) as (guard, model):
        status, body = await _predict(guard, scorer)
        assert status == 503, body
        assert model.seen == []
