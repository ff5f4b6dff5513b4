"""The webhook's Secret reader: ``get`` by name over its aiohttp session (a ``SecretSource``).

The cache in front of it, and what verification does with the values, are the facts
layer's (``modelshield.supplychain.images.secretreading`` and ``gathering``).
"""

from __future__ import annotations

import urllib.parse

import aiohttp

from modelshield.supplychain.images import secretreading
from modelshield_webhooks import connections


class KubernetesSecrets(secretreading.SecretSource):
    """``GET /api/v1/namespaces/{namespace}/secrets/{name}`` on the API server."""

    def __init__(self, connection: connections.Connection, session: aiohttp.ClientSession):
        self._connection = connection
        self._session = session

    async def read(self, namespace: str, name: str) -> secretreading.SecretData | None:
        """One get by name."""
        path = "/api/v1/namespaces/{}/secrets/{}".format(
            urllib.parse.quote(namespace, safe=""), urllib.parse.quote(name, safe="")
        )
        try:
            async with self._session.get(
                self._connection.base_url + path,
                headers=self._connection.headers(),
                ssl=self._connection.ssl_context,
                timeout=aiohttp.ClientTimeout(total=secretreading.READ_TIMEOUT_SECONDS),
            ) as response:
                if response.status == 404:
                    return None
                if response.status != 200:
                    # The body of an error status names the Secret, never its data.
                    raise secretreading.SecretReadError(
                        f"get Secret {namespace}/{name}: HTTP {response.status}"
                    )
                document = await response.json()
        except (aiohttp.ClientError, TimeoutError) as error:
            raise secretreading.SecretReadError(
                f"get Secret {namespace}/{name}: {type(error).__name__}"
            ) from error
        return secretreading.data_of(document) if isinstance(document, dict) else {}
