"""How the server reaches the Kubernetes API: base URL, TLS and a bearer token.

The ``kubernetes`` package reads the kubeconfig or the in-cluster service account (and
refreshes projected tokens); the requests themselves go through aiohttp, so that list
and watch run on the server's own event loop.
"""

from __future__ import annotations

import dataclasses
import ssl
from typing import Any

from kubernetes import client, config


class ConfigurationError(Exception):
    """No usable kubeconfig or in-cluster service account."""


@dataclasses.dataclass
class Connection:
    """Where the API server is and how to authenticate to it."""

    base_url: str
    ssl_context: ssl.SSLContext
    configuration: Any = None

    def headers(self) -> dict[str, str]:
        """Request headers, with a fresh token when the configuration rotates them."""
        headers = {"Accept": "application/json"}
        configuration = self.configuration
        if configuration is None:
            return headers
        # Refreshes expiring tokens (the configuration's refresh hook) and adds the prefix.
        token = configuration.get_api_key_with_prefix("BearerToken", alias="authorization")
        if token:
            headers["Authorization"] = token
        return headers


def _ssl_context(configuration: Any) -> ssl.SSLContext:
    if configuration.verify_ssl:
        context = ssl.create_default_context(cafile=configuration.ssl_ca_cert or None)
    else:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if configuration.cert_file:
        context.load_cert_chain(configuration.cert_file, configuration.key_file)
    return context


def connect(kubeconfig: str | None) -> Connection:
    """From a kubeconfig file, else the in-cluster service account, else ~/.kube/config."""
    configuration = client.Configuration()
    try:
        if kubeconfig:
            config.load_kube_config(  # type: ignore[no-untyped-call]
                config_file=kubeconfig, client_configuration=configuration
            )
        else:
            try:
                config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
            except config.ConfigException:
                config.load_kube_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
    except (config.ConfigException, OSError, TypeError, ValueError) as error:
        raise ConfigurationError(str(error) or type(error).__name__) from error
    return Connection(
        base_url=str(configuration.host).rstrip("/"),
        ssl_context=_ssl_context(configuration),
        configuration=configuration,
    )
