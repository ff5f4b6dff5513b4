"""Registry credentials and auth challenges: docker config JSON, pull secrets, WWW-Authenticate.

Pure parsing; the registry client does the requests. A pull secret of type
``kubernetes.io/dockerconfigjson`` holds a docker config (``{"auths": {host: ...}}``)
base64-encoded under ``.dockerconfigjson``; the legacy ``kubernetes.io/dockercfg`` holds
the ``auths`` mapping itself under ``.dockercfg``. Both are accepted, decoded or not.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import json
import re
from collections.abc import Iterable, Mapping
from typing import Any


@dataclasses.dataclass(frozen=True)
class Credential:
    """A username and password (or identity token) for one registry."""

    username: str
    password: str

    def basic_header(self) -> str:
        """The value of an ``Authorization: Basic`` header."""
        token = base64.b64encode(f"{self.username}:{self.password}".encode()).decode()
        return f"Basic {token}"

    def __repr__(self) -> str:
        # Never let a password reach a log line through repr().
        return f"Credential(username={self.username!r}, password=<redacted>)"


@dataclasses.dataclass(frozen=True)
class Challenge:
    """A parsed ``WWW-Authenticate`` header: the scheme and its parameters."""

    scheme: str
    parameters: Mapping[str, str]


def _host_of(key: str) -> str:
    """The registry host of an ``auths`` key, which may be a URL (``https://index.docker.io/v1/``)."""
    host = re.sub(r"^[a-z]+://", "", key.strip()).split("/", 1)[0]
    if host in ("index.docker.io", "registry-1.docker.io"):
        return "docker.io"
    return host


def _credential_from_entry(entry: Mapping[str, Any]) -> Credential | None:
    auth = entry.get("auth")
    if isinstance(auth, str) and auth:
        try:
            decoded = base64.b64decode(auth, validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return None
        user, separator, secret = decoded.partition(":")
        return Credential(user, secret) if separator else None
    username, password = entry.get("username"), entry.get("password")
    if isinstance(username, str) and isinstance(password, str):
        return Credential(username, password)
    token = entry.get("identitytoken")
    if isinstance(token, str) and token:
        # Docker's convention for identity tokens: a fixed user name with the token as password.
        return Credential("<token>", token)
    return None


def from_docker_config(config: Mapping[str, Any]) -> dict[str, Credential]:
    """Credentials by registry host from a docker config (``{"auths": {...}}``) or a bare auths map."""
    auths = config.get("auths", config)
    found: dict[str, Credential] = {}
    if not isinstance(auths, Mapping):
        return found
    for key, entry in auths.items():
        if isinstance(key, str) and isinstance(entry, Mapping):
            credential = _credential_from_entry(entry)
            if credential is not None:
                found[_host_of(key)] = credential
    return found


def _decode_json(value: str | bytes) -> Any:
    """JSON from a Secret value, whether the caller already base64-decoded it or not."""
    raw = value.encode() if isinstance(value, str) else value
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        pass
    try:
        return json.loads(base64.b64decode(raw, validate=True))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        return None


def from_pull_secrets(secrets: Iterable[Mapping[str, Any]]) -> dict[str, Credential]:
    """Credentials by host from pull secrets: Secret objects, their ``data`` or docker configs.

    Earlier secrets win, as kubelet tries them in order.
    """
    found: dict[str, Credential] = {}
    for secret in secrets:
        data = secret.get("data", secret)
        if not isinstance(data, Mapping):
            continue
        config: Any = None
        for key in (".dockerconfigjson", ".dockercfg"):
            value = data.get(key)
            if isinstance(value, (str, bytes)):
                config = _decode_json(value)
                break
        if config is None and ("auths" in data):
            config = data
        if isinstance(config, Mapping):
            for host, credential in from_docker_config(config).items():
                found.setdefault(host, credential)
    return found


_CHALLENGE_PARAMETER = re.compile(
    r'([A-Za-z_][A-Za-z0-9_-]*)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]+))'
)


def parse_challenge(header: str) -> Challenge | None:
    """Parse ``Bearer realm="...",service="...",scope="..."`` (or ``Basic realm=...``)."""
    scheme, _, rest = header.strip().partition(" ")
    if not scheme:
        return None
    parameters = {
        match.group(1).lower(): (match.group(2) if match.group(2) is not None else match.group(3))
        for match in _CHALLENGE_PARAMETER.finditer(rest)
    }
    return Challenge(scheme=scheme.lower(), parameters=parameters)
