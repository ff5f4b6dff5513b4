"""The webhook's Secret reader: ``get`` by name over its aiohttp session.

The cache and the source interface are shared with the operator and live in
``modelshield.supplychain.images.secretreading``; their names are kept here so that the
webhook's modules keep importing them from one place.
"""

from __future__ import annotations

import urllib.parse

import aiohttp

from modelshield.supplychain.images import secretreading as shared
from modelshield_webhooks import connections

DEFAULT_TTL_SECONDS = shared.DEFAULT_TTL_SECONDS
ERROR_TTL_SECONDS = shared.ERROR_TTL_SECONDS
IDLE_SECONDS = shared.IDLE_SECONDS
READ_TIMEOUT_SECONDS = shared.READ_TIMEOUT_SECONDS
SecretData = shared.SecretData
SecretReadError = shared.SecretReadError
SecretSource = shared.SecretSource
CachedSecrets = shared.CachedSecrets
pull_secret_names = shared.pull_secret_names


class KubernetesSecrets:
    """``GET /api/v1/namespaces/{namespace}/secrets/{name}`` on the API server."""

    def __init__(self, connection: connections.Connection, session: aiohttp.ClientSession):
        self._connection = connection
        self._session = session

    async def read(self, namespace: str, name: str) -> SecretData | None:
        """One get by name."""
        path = "/api/v1/namespaces/{}/secrets/{}".format(
            urllib.parse.quote(namespace, safe=""), urllib.parse.quote(name, safe="")
        )
        try:
            async with self._session.get(
                self._connection.base_url + path,
                headers=self._connection.headers(),
                ssl=self._connection.ssl_context,
                timeout=aiohttp.ClientTimeout(total=READ_TIMEOUT_SECONDS),
            ) as response:
                if response.status == 404:
                    return None
                if response.status != 200:
                    # The body of an error status names the Secret, never its data.
                    raise SecretReadError(f"get Secret {namespace}/{name}: HTTP {response.status}")
                document = await response.json()
        except (aiohttp.ClientError, TimeoutError) as error:
            raise SecretReadError(
                f"get Secret {namespace}/{name}: {type(error).__name__}"
            ) from error
        data = document.get("data") if isinstance(document, dict) else None
        if not isinstance(data, dict):
            return {}
        return {str(k): str(v) for k, v in data.items() if isinstance(v, str)}
