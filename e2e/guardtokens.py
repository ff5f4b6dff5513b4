"""Service-account tokens for the guard e2e tests: requested from the real API server, and
calls through a guard with them.
"""

from __future__ import annotations

import json
from typing import Any

from kubernetes import client

from tests.support import modelserver

AUDIENCE = "modelshield-guard"

ROWS = modelserver.sample_rows(2)

PREDICT = json.dumps({"instances": ROWS}).encode()


def request_token(
    core: client.CoreV1Api, namespace: str, name: str, audiences: list[str] | None, **spec: Any
) -> str:
    """A token from the TokenRequest API."""
    body = client.AuthenticationV1TokenRequest(
        spec=client.V1TokenRequestSpec(audiences=audiences or [], expiration_seconds=600, **spec)
    )
    answer = core.create_namespaced_service_account_token(name, namespace, body)
    assert answer.status is not None
    token = answer.status.token
    assert isinstance(token, str)
    return token


async def _predict(guard: str, token: str | None) -> tuple[int, str]:
    import aiohttp

    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{guard}/v1/models/fraud:predict", data=PREDICT, headers=headers) as response,
    ):
        return response.status, await response.text()
