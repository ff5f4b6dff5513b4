"""An HTTPS client that trusts the tests' certificate authority, for the servers they start."""

from __future__ import annotations

import io
import json
import ssl
from typing import Any

import aiohttp

from tests.support import pki


class HttpsClient:
    """Posts to the server over HTTPS with keep-alive, trusting the test CA."""

    def __init__(self, session: aiohttp.ClientSession, base_url: str) -> None:
        self.session = session
        self.base_url = base_url

    async def post(
        self, path: str, body: bytes, content_type: str = "application/json"
    ) -> tuple[int, bytes]:
        """Status and raw body."""
        # aiohttp warns about large raw bytes bodies; a stream sends the same bytes.
        data: bytes | io.BytesIO = io.BytesIO(body) if len(body) > 512 * 1024 else body
        async with self.session.post(
            self.base_url + path, data=data, headers={"Content-Type": content_type}
        ) as response:
            return response.status, await response.read()

    async def review(self, path: str, document: dict[str, Any]) -> dict[str, Any]:
        """Post an AdmissionReview and return its response part (asserting HTTP 200)."""
        status, body = await self.post(path, json.dumps(document).encode())
        assert status == 200, body
        answer: dict[str, Any] = json.loads(body)
        assert answer["apiVersion"] == "admission.k8s.io/v1"
        assert answer["kind"] == "AdmissionReview"
        response: dict[str, Any] = answer["response"]
        return response

    async def get(self, path: str) -> tuple[int, str]:
        """Status and text."""
        async with self.session.get(self.base_url + path) as response:
            return response.status, await response.text()


def client_ssl_context(authority: pki.Authority) -> ssl.SSLContext:
    """Trusts only the test CA."""
    return ssl.create_default_context(cadata=authority.pem.decode())
