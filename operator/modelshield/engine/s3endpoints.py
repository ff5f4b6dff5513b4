"""The S3 server that ModelArtifacts are fetched from, as one value both processes compare.

The operator fetches ``s3://`` ModelArtifacts from one endpoint (``--s3-endpoint``); a
pod whose storage initializer downloads from that same server loads what was verified,
one that downloads from any other does not: the same bucket and key on another server
is another model. Two spellings name the same server when boto3 (what KServe's storage
initializer runs) sends the same requests for them: the same scheme, host and port, an
empty path or '/' (botocore's ``_urljoin`` treats them alike), nothing else. What boto3
or the operator's fetch might read differently is not an endpoint here: userinfo, a
path, a query or fragment, spaces or control characters (``urlsplit`` drops tabs and
newlines), non-ASCII or percent-encoded hosts, numeric hosts that are not plain IP
addresses (``0x7f.1``, ``2130706433``), a zone id.

Pure: no I/O, no resolving of names.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
import urllib.parse

DEFAULT_PORTS = {"http": 80, "https": 443}
#: Printable ASCII without the space: urlsplit silently drops tabs and newlines.
_PRINTABLE = re.compile(r"[!-~]+")
_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_HOST_NAME = re.compile(rf"{_LABEL}(?:\.{_LABEL})*")
_PORT = re.compile(r"[0-9]{1,5}")
#: A name with fewer dots is first looked up under the pod's own namespace (the
#: resolver's search list, ndots 5): 'minio' there is the workload namespace's Service
#: 'minio', 'minio.storage' an endpoint 'minio' of its headless Service 'storage'. The
#: operator resolves it in its own namespace: the same name, another server.
MIN_DOTS = 2


class EndpointError(ValueError):
    """The text is not an S3 endpoint boto3 and the operator read alike (why)."""


def canonical(text: str) -> str:
    """``scheme://host[:port]``, lower case, the default port left out.

    Raises EndpointError saying why the text is not such an endpoint; the message never
    repeats the text (it may hold credentials).
    """
    if not _PRINTABLE.fullmatch(text):
        raise EndpointError("has spaces, control or non-ASCII characters")
    if "?" in text or "#" in text:
        raise EndpointError("has a query or fragment")
    parts = urllib.parse.urlsplit(text)
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS or not text[len(scheme) :].startswith("://"):
        raise EndpointError("is not an http:// or https:// URL")
    if parts.path not in ("", "/"):
        raise EndpointError("has a path (boto3 would put it before every bucket)")
    if "@" in parts.netloc:
        raise EndpointError("has userinfo (credentials do not belong in the endpoint)")
    host, port = _split_authority(parts.netloc)
    if port is None or port == DEFAULT_PORTS[scheme]:
        return f"{scheme}://{host}"
    return f"{scheme}://{host}:{port}"


def _split_authority(authority: str) -> tuple[str, int | None]:
    if authority.startswith("["):
        inside, bracket, rest = authority[1:].partition("]")
        if "%" in inside:
            raise EndpointError("has an IPv6 zone id (it names an interface of one machine)")
        try:
            address = ipaddress.IPv6Address(inside)
        except ValueError:
            raise EndpointError("has a bracketed host that is not an IPv6 address") from None
        if not bracket or (rest and not rest.startswith(":")):
            raise EndpointError("has a malformed IPv6 host")
        return f"[{address.compressed}]", _port(rest[1:] if rest else None)
    host, colon, port_text = authority.rpartition(":")
    if not colon:
        host, port_text = authority, ""
    return _host(host.lower()), _port(port_text if colon else None)


def _port(text: str | None) -> int | None:
    if text is None:
        return None
    if not _PORT.fullmatch(text) or not 0 < int(text) < 65536:
        raise EndpointError("has a port that is not a number from 1 to 65535")
    return int(text)


def _host(host: str) -> str:
    if not host:
        raise EndpointError("has no host")
    if host.rsplit(".", 1)[-1].isdigit():
        # Resolvers read 0x7f.1, 127.1 and 2130706433 as addresses; only the dotted
        # quad without leading zeros means the same everywhere.
        try:
            return str(ipaddress.IPv4Address(host))
        except ValueError:
            raise EndpointError("has a numeric host that is not an IPv4 address") from None
    if not _HOST_NAME.fullmatch(host):
        raise EndpointError(
            "has a host that is not a DNS name of letters, digits and '-' (no trailing dot)"
        )
    return host


def setting_problem(text: str) -> str | None:
    """Why ``text`` cannot be the configured endpoint, or None.

    On top of ``canonical``: its host must mean one server from every namespace, so a
    name needs ``MIN_DOTS`` dots (a Service by its full name, e.g.
    ``minio.storage.svc.cluster.local``), or be an IP address.
    """
    try:
        endpoint = canonical(text)
    except EndpointError as error:
        return str(error)
    host = urllib.parse.urlsplit(endpoint).hostname or ""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        if host.count(".") < MIN_DOTS:
            return (
                f"host {host!r} is looked up in each pod's namespace first (resolver search "
                "list), so it names another server there than at the operator; use the full "
                "name (e.g. <service>.<namespace>.svc.cluster.local) or an IP address"
            )
    return None


@dataclasses.dataclass(frozen=True)
class ModelStore:
    """Where ModelArtifacts are fetched from; ``s3_endpoint`` canonical, None: AWS S3."""

    s3_endpoint: str | None = None

    @classmethod
    def configured(cls, text: str | None) -> ModelStore:
        """The store of a ``--s3-endpoint`` value (None or empty: not set).

        Raises EndpointError when ``setting_problem`` finds one.
        """
        if not text:
            return cls()
        problem = setting_problem(text)
        if problem is not None:
            raise EndpointError(problem)
        return cls(canonical(text))

    def serves(self, written: str) -> bool:
        """Whether a storage initializer told ``written`` downloads from this store
        (``""``: it is told no endpoint, and boto3 goes to AWS S3)."""
        if not written:
            return self.s3_endpoint is None
        if self.s3_endpoint is None:
            return False
        try:
            return canonical(written) == self.s3_endpoint
        except EndpointError:
            return False

    def describe(self) -> str:
        """The store as messages name it."""
        if self.s3_endpoint is None:
            return "AWS S3 (no --s3-endpoint is configured)"
        return f"{self.s3_endpoint!r} (--s3-endpoint)"


DEFAULT = ModelStore()
