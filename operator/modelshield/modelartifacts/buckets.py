"""A minimal S3 client: ListObjectsV2 and GetObject, signed with AWS Signature Version 4.

The standard library suffices for two read-only calls; botocore would bring a large
dependency (and a python-dateutil pin that conflicts with the kubernetes client).
Path-style addressing, so any S3-compatible server works through ``AWS_ENDPOINT_URL``.
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
import pathlib
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Mapping
from typing import BinaryIO
from xml.etree import ElementTree

from modelshield.modelartifacts import streaming, transfers

_EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
_S3_NAMESPACE = "{http://s3.amazonaws.com/doc/2006-03-01/}"


def _quote(text: str, safe: str = "-_.~") -> str:
    return urllib.parse.quote(text, safe=safe)


def sign_request(
    method: str,
    url: str,
    *,
    region: str,
    access_key: str,
    secret_key: str,
    session_token: str | None = None,
    now: datetime.datetime | None = None,
    service: str = "s3",
    payload_hash: str = _EMPTY_SHA256,
) -> dict[str, str]:
    """The headers that authenticate a request with Signature Version 4.

    The default payload hash is that of an empty body (the GETs this client makes);
    ``UNSIGNED-PAYLOAD`` or a body's sha256 hex can be given for other requests.
    """
    moment = now or datetime.datetime.now(datetime.UTC)
    amz_date = moment.strftime("%Y%m%dT%H%M%SZ")
    day = moment.strftime("%Y%m%d")
    split = urllib.parse.urlsplit(url)
    headers = {
        "host": split.netloc,
        "x-amz-content-sha256": payload_hash,
        "x-amz-date": amz_date,
    }
    if session_token:
        headers["x-amz-security-token"] = session_token
    query = sorted(urllib.parse.parse_qsl(split.query, keep_blank_values=True))
    canonical_query = "&".join(f"{_quote(key)}={_quote(value)}" for key, value in query)
    signed_headers = ";".join(sorted(headers))
    canonical_headers = "".join(f"{name}:{headers[name].strip()}\n" for name in sorted(headers))
    canonical_path = _quote(urllib.parse.unquote(split.path) or "/", safe="/-_.~")
    canonical_request = "\n".join(
        [method, canonical_path, canonical_query, canonical_headers, signed_headers, payload_hash]
    )
    scope = f"{day}/{region}/{service}/aws4_request"
    string_to_sign = "\n".join(
        [
            "AWS4-HMAC-SHA256",
            amz_date,
            scope,
            hashlib.sha256(canonical_request.encode()).hexdigest(),
        ]
    )
    key = ("AWS4" + secret_key).encode()
    for part in (day, region, service, "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    signature = hmac.new(key, string_to_sign.encode(), hashlib.sha256).hexdigest()
    headers["authorization"] = (
        f"AWS4-HMAC-SHA256 Credential={access_key}/{scope}, "
        f"SignedHeaders={signed_headers}, Signature={signature}"
    )
    del headers["host"]
    return headers


class Client:
    """Read-only access to one S3 endpoint."""

    def __init__(self, settings: transfers.Settings) -> None:
        self._settings = settings
        self._endpoint = (
            settings.s3_endpoint or f"https://s3.{settings.s3_region}.amazonaws.com"
        ).rstrip("/")

    def _headers(self, url: str) -> Mapping[str, str]:
        settings = self._settings
        if not (settings.s3_access_key and settings.s3_secret_key):
            return {}
        return sign_request(
            "GET",
            url,
            region=settings.s3_region,
            access_key=settings.s3_access_key,
            secret_key=settings.s3_secret_key,
            session_token=settings.s3_session_token,
        )

    def get(self, url: str) -> BinaryIO:
        """GET a signed URL."""
        request = urllib.request.Request(url, headers=dict(self._headers(url)))  # noqa: S310
        try:
            response = streaming.open_url(request, self._settings)
        except urllib.error.HTTPError as error:
            detail = error.read(2048).decode("utf-8", "replace")
            raise transfers.FetchError(
                transfers.FETCH_FAILED, f"S3 GET {url}: HTTP {error.code} {detail}"
            ) from error
        except OSError as error:
            raise transfers.FetchError(transfers.FETCH_FAILED, f"S3 GET {url}: {error}") from error
        return response

    def list_objects(self, bucket: str, prefix: str) -> Iterator[tuple[str, int]]:
        """(key, size) of every object under the prefix, following continuation tokens."""
        token: str | None = None
        while True:
            query = {"list-type": "2", "prefix": prefix}
            if token:
                query["continuation-token"] = token
            url = f"{self._endpoint}/{_quote(bucket)}?{urllib.parse.urlencode(query)}"
            with self.get(url) as response:
                # The document comes from the configured endpoint; expat does not resolve
                # external entities.
                root = ElementTree.fromstring(response.read())  # noqa: S314
            for item in root.iter(f"{_S3_NAMESPACE}Contents"):
                key = item.findtext(f"{_S3_NAMESPACE}Key") or ""
                size = int(item.findtext(f"{_S3_NAMESPACE}Size") or 0)
                yield key, size
            if root.findtext(f"{_S3_NAMESPACE}IsTruncated") != "true":
                return
            token = root.findtext(f"{_S3_NAMESPACE}NextContinuationToken")

    def object_url(self, bucket: str, key: str) -> str:
        """The path-style URL of an object."""
        return f"{self._endpoint}/{_quote(bucket)}/{_quote(key, safe='/-_.~')}"


def fetch_prefix(
    bucket: str,
    prefix: str,
    destination: pathlib.Path,
    settings: transfers.Settings,
    budget: transfers.Budget,
) -> None:
    """Download every object under s3://bucket/prefix, keeping paths relative to it."""
    client = Client(settings)
    directory_prefix = prefix if not prefix or prefix.endswith("/") else prefix + "/"
    found = 0
    for key, _size in client.list_objects(bucket, directory_prefix):
        if key.endswith("/"):
            continue
        relative = streaming.safe_relative(key[len(directory_prefix) :])
        with client.get(client.object_url(bucket, key)) as response:
            streaming.write_stream(streaming.read_chunks(response), destination / relative, budget)
        found += 1
    if not found:
        raise transfers.FetchError(
            transfers.FETCH_FAILED, f"no objects under s3://{bucket}/{directory_prefix}"
        )
