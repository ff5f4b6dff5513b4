"""Real local servers for the fetch tests: HTTP(S) over a directory, moto's S3 server, OCI pushes."""

# Every URL opened here is a loopback server that the test itself started.
# ruff: noqa: S310

from __future__ import annotations

import datetime
import functools
import hashlib
import http.server
import ipaddress
import json
import os
import pathlib
import re
import socket
import ssl
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from e2e import toolcache
from modelshield.modelartifacts import buckets
from tests.support import localtools


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


def _self_signed(directory: pathlib.Path) -> tuple[pathlib.Path, pathlib.Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    certificate_path = directory / "server.pem"
    key_path = directory / "server.key"
    certificate_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return certificate_path, key_path


@contextmanager
def file_server(
    root: pathlib.Path, tls_dir: pathlib.Path | None = None
) -> Iterator[tuple[str, pathlib.Path | None]]:
    """Serve root over HTTP (or HTTPS with a fresh certificate); yields (base URL, CA file)."""
    handler = functools.partial(_QuietHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    ca_file = None
    scheme = "http"
    if tls_dir is not None:
        ca_file, key_file = _self_signed(tls_dir)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(ca_file, key_file)
        server.socket = context.wrap_socket(server.socket, server_side=True)
        scheme = "https"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"{scheme}://127.0.0.1:{server.server_address[1]}", ca_file
    finally:
        server.shutdown()
        server.server_close()


def moto_server_binary() -> pathlib.Path:
    """moto's S3-compatible server, from its own venv (it pins python-dateutil < 3)."""
    path = toolcache.tool_path("MODELSHIELD_MOTO_SERVER")
    if path is None:
        raise AssertionError(
            "moto_server is not installed: run e2e/tools/build-tools.sh, which installs it in a "
            "venv of its own (or set MODELSHIELD_MOTO_SERVER)"
        )
    return path


@dataclass(frozen=True)
class S3Server:
    """A moto server that checks Signature Version 4, and the keys of a user it knows."""

    endpoint: str
    access_key: str
    secret_key: str


#: Requests moto serves before it starts checking signatures: the three IAM calls below.
_UNAUTHENTICATED_SETUP_CALLS = 3


def _iam(endpoint: str, **parameters: str) -> str:
    query = urllib.parse.urlencode({**parameters, "Version": "2010-05-08"})
    url = f"{endpoint}/?{query}"
    headers = buckets.sign_request(
        "GET", url, region="us-east-1", access_key="AKIDSETUP", secret_key="setup", service="iam"
    )
    with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=10) as answer:
        return str(answer.read().decode())


@contextmanager
def moto_server(log_dir: pathlib.Path, host: str = "127.0.0.1") -> Iterator[S3Server]:
    """A moto server on a free port that verifies every request's signature.

    ``host``: the address it listens on (loopback; the node tests give the node's address,
    which their pods reach)."""
    port = localtools.free_port()
    log = (log_dir / "moto.log").open("ab")
    environment = dict(os.environ, INITIAL_NO_AUTH_ACTION_COUNT=str(_UNAUTHENTICATED_SETUP_CALLS))
    process = subprocess.Popen(
        [str(moto_server_binary()), "-H", host, "-p", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=environment,
    )
    log.close()
    endpoint = f"http://{host}:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            if process.poll() is not None:
                raise AssertionError(
                    f"moto_server exited: {(log_dir / 'moto.log').read_text()[-2000:]}"
                )
            try:
                with socket.create_connection((host, port), timeout=1):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise AssertionError("moto_server did not start") from None
                time.sleep(0.1)
        policy = json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}],
            }
        )
        _iam(endpoint, Action="CreateUser", UserName="model-puller")
        _iam(
            endpoint,
            Action="PutUserPolicy",
            UserName="model-puller",
            PolicyName="s3",
            PolicyDocument=policy,
        )
        created = _iam(endpoint, Action="CreateAccessKey", UserName="model-puller")
        access_key = re.search(r"<AccessKeyId>([^<]+)</AccessKeyId>", created)
        secret_key = re.search(r"<SecretAccessKey>([^<]+)</SecretAccessKey>", created)
        assert access_key is not None, created
        assert secret_key is not None, created
        yield S3Server(endpoint, access_key.group(1), secret_key.group(1))
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()


def s3_put(server: S3Server, path: str, data: bytes = b"") -> None:
    """PUT a bucket or an object, signed (moto checks signatures after the setup calls)."""
    url = f"{server.endpoint}/{path}"
    headers = buckets.sign_request(
        "PUT",
        url,
        region="us-east-1",
        access_key=server.access_key,
        secret_key=server.secret_key,
        payload_hash="UNSIGNED-PAYLOAD",
    )
    # Without a content type, the server would parse the body as a form and store nothing.
    headers["Content-Type"] = "application/octet-stream"
    request = urllib.request.Request(url, data=data, method="PUT", headers=headers)
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200, response.status


def oci_push_directory(host: str, repository: str, tag: str, model: pathlib.Path) -> str:
    """Push every file of model as one layer each (ORAS layout); returns the manifest digest."""
    base = f"http://{host}/v2/{repository}"

    def upload(data: bytes) -> str:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        start = urllib.request.Request(f"{base}/blobs/uploads/", data=b"", method="POST")
        with urllib.request.urlopen(start, timeout=10) as response:
            location = response.headers["Location"]
        if location.startswith("/"):
            location = f"http://{host}{location}"
        separator = "&" if "?" in location else "?"
        put = urllib.request.Request(
            f"{location}{separator}digest={digest}", data=data, method="PUT"
        )
        with urllib.request.urlopen(put, timeout=30):
            pass
        return digest

    layers = []
    for path in sorted(p for p in model.rglob("*") if p.is_file()):
        data = path.read_bytes()
        layers.append(
            {
                "mediaType": "application/octet-stream",
                "digest": upload(data),
                "size": len(data),
                "annotations": {
                    "org.opencontainers.image.title": path.relative_to(model).as_posix()
                },
            }
        )
    config = b"{}"
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "artifactType": "application/vnd.modelshield.model.v1",
            "config": {
                "mediaType": "application/vnd.oci.empty.v1+json",
                "digest": upload(config),
                "size": len(config),
            },
            "layers": layers,
        }
    ).encode()
    request = urllib.request.Request(
        f"{base}/manifests/{tag}",
        data=manifest,
        method="PUT",
        headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"},
    )
    with urllib.request.urlopen(request, timeout=10):
        pass
    return "sha256:" + hashlib.sha256(manifest).hexdigest()
