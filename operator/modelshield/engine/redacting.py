"""Credentials out of text that goes to status, Events and logs.

A ModelArtifact's URI may carry credentials (``https://user:token@host/...``, a
pre-signed ``?X-Amz-Signature=...``): the fetch works with them, but a status or an
Event is readable by anyone who may read the artifact, so every message the reconciler
writes, and every violation the engine words about a model or dataset URI, passes
through ``redact`` first. Pure text: it lives in the engine, the lowest layer using it.
"""

from __future__ import annotations

import re

REDACTED = "REDACTED"

# scheme://user[:password]@ -> scheme://REDACTED@
_USERINFO = re.compile(r"(?P<scheme>\b[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<userinfo>[^/@\s?#]+)@")
# Query parameters that are credentials by name (pre-signed URLs, SAS tokens, API keys).
_SECRET_PARAMETER = re.compile(
    r"(?P<name>[?&;](?:x-amz-(?:signature|credential|security-token)|signature|sig|token|"
    r"access_token|api_key|apikey|key|password|secret|x-goog-signature|x-goog-credential)=)"
    r"(?P<value>[^&#\s'\"]*)",
    re.IGNORECASE,
)


def redact(text: str) -> str:
    """Text with URI user information and credential query parameters replaced."""
    text = _USERINFO.sub(lambda m: f"{m['scheme']}{REDACTED}@", text)
    return _SECRET_PARAMETER.sub(lambda m: f"{m['name']}{REDACTED}", text)


def has_credentials(uri: str) -> bool:
    """Whether a URI carries credentials that ``redact`` would hide."""
    return redact(uri) != uri
