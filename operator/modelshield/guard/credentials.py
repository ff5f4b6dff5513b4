"""The credential a request carries, read from its headers. Pure.

A caller proves who it is with ``Authorization: Bearer <token or API key>`` or
``X-Api-Key: <key>`` (header names in any case, the scheme in any case). A request that
carries more than one credential, or repeats a header, is refused: the guard and the
model server must never read different credentials from one request. Which kind a bearer
value is follows from its form: a Kubernetes token is a JWT (three base64url parts joined
by dots); anything else is an API key.

The values are secrets: ``Credential`` never shows them (``repr`` hides them) and only
their SHA-256 is used as a cache key.
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import re
from collections.abc import Iterable

#: Headers that carry credentials: stripped before the request is forwarded.
CREDENTIAL_HEADERS = frozenset({"authorization", "x-api-key"})
MAX_CREDENTIAL_LENGTH = 16384
_JWT = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+")
_TOKEN68 = re.compile(r"[A-Za-z0-9._~+/-]+=*")


class Kind(enum.Enum):
    """Which authentication method a credential is for."""

    SERVICE_ACCOUNT_TOKEN = "ServiceAccountToken"  # noqa: S105 (a method's name)
    API_KEY = "ApiKey"


@dataclasses.dataclass(frozen=True, slots=True)
class Credential:
    """A credential; its value never appears in ``repr`` or logs."""

    kind: Kind
    value: str = dataclasses.field(repr=False)

    @property
    def digest(self) -> str:
        """SHA-256 of the value: what caches are keyed by and API-key Secrets hold."""
        return hashlib.sha256(self.value.encode()).hexdigest()


@dataclasses.dataclass(frozen=True, slots=True)
class CredentialError:
    """A credential header that cannot be used (401 unless the request is ambiguous: 400)."""

    status: int
    reason: str


def read(headers: Iterable[tuple[str, str]]) -> Credential | CredentialError | None:
    """The request's credential; None when it carries none (anonymous)."""
    found: list[tuple[str, str]] = [
        (name.lower(), value) for name, value in headers if name.lower() in CREDENTIAL_HEADERS
    ]
    if not found:
        return None
    if len(found) > 1:
        names = ", ".join(sorted({name for name, _ in found}))
        return CredentialError(400, f"more than one credential header ({names}); send one")
    name, value = found[0]
    value = value.strip()
    if len(value) > MAX_CREDENTIAL_LENGTH:
        return CredentialError(400, f"the {name} header is too long")
    if name == "x-api-key":
        if not value or not _TOKEN68.fullmatch(value):
            return CredentialError(401, "the X-Api-Key header holds no usable key")
        return Credential(Kind.API_KEY, value)
    scheme, _, secret = value.partition(" ")
    if scheme.lower() != "bearer":
        return CredentialError(401, "only the Bearer scheme is accepted in Authorization")
    secret = secret.strip()
    if not secret or not _TOKEN68.fullmatch(secret):
        return CredentialError(401, "the Bearer credential is empty or malformed")
    kind = Kind.SERVICE_ACCOUNT_TOKEN if _JWT.fullmatch(secret) else Kind.API_KEY
    return Credential(kind, secret)
