"""Fixtures: a CA, serving certificate files, and the admission server over real HTTPS."""

from __future__ import annotations

import pathlib
from collections.abc import AsyncIterator

import aiohttp
import pytest

from modelshield_webhooks import certificates, contexts, server
from tests.support import admissionscenarios as scenarios
from tests.support import imageverdicts as verdicts
from tests.support import pki
from tests.support.httpsclient import HttpsClient, client_ssl_context


@pytest.fixture(scope="session")
def authority() -> pki.Authority:
    """One CA for the session."""
    return pki.Authority.create()


@pytest.fixture
def serving_files(
    authority: pki.Authority, tmp_path: pathlib.Path
) -> tuple[pathlib.Path, pathlib.Path]:
    """tls.crt and tls.key for localhost/127.0.0.1, CN 'first'."""
    return pki.write_serving_pair(authority, tmp_path, "first")


@pytest.fixture
def verifier() -> verdicts.FixedVerdictVerifierForTests:
    """A verifier with the fixed verdicts of the scenarios."""
    return verdicts.FixedVerdictVerifierForTests()


@pytest.fixture
def context(verifier: verdicts.FixedVerdictVerifierForTests) -> contexts.AdmissionContext:
    """The standard state (Enforce in ml, Audit in ml-audit), at a fixed time."""
    return contexts.AdmissionContext(
        state=scenarios.standard_state(),
        verifier=verifier,
        verify_deadline_seconds=1.0,
        clock=lambda: scenarios.NOW,
    )


@pytest.fixture
async def running(
    context: contexts.AdmissionContext,
    serving_files: tuple[pathlib.Path, pathlib.Path],
) -> AsyncIterator[server.RunningServer]:
    """The server on a free loopback port, certificate files polled every 0.05 s."""
    certificate = certificates.ReloadingCertificate(*serving_files)
    started = await server.start(
        context,
        certificate,
        host="127.0.0.1",
        port=0,
        max_body_bytes=1024 * 1024,
        certificate_poll_seconds=0.05,
    )
    try:
        yield started
    finally:
        await started.stop()


@pytest.fixture
async def client(
    running: server.RunningServer, authority: pki.Authority
) -> AsyncIterator[HttpsClient]:
    """An HTTPS client of the running server."""
    connector = aiohttp.TCPConnector(ssl=client_ssl_context(authority))
    async with aiohttp.ClientSession(connector=connector) as session:
        yield HttpsClient(session, f"https://127.0.0.1:{running.port}")
