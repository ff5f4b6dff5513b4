"""Fetch limits and confinement (issue 21): file count, deadline, file:// and pvc:// roots.

Every test here failed before: there was no file-count limit, no overall deadline (a server
trickling a byte at a time held a worker for as long as it liked), file:// read anything
the operator could, and pvc:// resolved ``..`` and claims of other namespaces.
"""

from __future__ import annotations

import contextlib
import dataclasses
import http.server
import io
import pathlib
import socket
import tarfile
import threading
import time
import urllib.request
from collections.abc import Iterator

import pytest

from modelshield.modelartifacts import buckets, fetching, streaming, transfers
from tests.support import artifactservers as servers
from tests.support import modelfiles as models


def _tar(path: pathlib.Path, members: dict[str, bytes]) -> None:
    with tarfile.open(path, "w") as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))


@pytest.mark.integration
def test_archive_with_more_files_than_the_limit_is_refused(tmp_path: pathlib.Path) -> None:
    served = tmp_path / "served"
    served.mkdir()
    _tar(served / "many.tar", {f"f{i}.txt": b"x" for i in range(50)})
    settings = transfers.Settings(max_files=20)

    with servers.file_server(served) as (base, _), pytest.raises(transfers.FetchError) as caught:
        fetching.fetch(f"{base}/many.tar", tmp_path / "out" / "fetched", settings)

    assert caught.value.reason == transfers.TOO_MANY_FILES
    assert not (tmp_path / "out" / "fetched").exists()


@pytest.mark.integration
def test_archive_with_x_and_x_slash_y_is_a_fetch_error(tmp_path: pathlib.Path) -> None:
    served = tmp_path / "served"
    served.mkdir()
    _tar(served / "clash.tar", {"x": b"a file", "x/y": b"under the file"})

    with servers.file_server(served) as (base, _), pytest.raises(transfers.FetchError) as caught:
        fetching.fetch(f"{base}/clash.tar", tmp_path / "out" / "fetched")

    assert caught.value.reason == transfers.FETCH_FAILED


@pytest.mark.integration
def test_archive_naming_one_file_twice_is_refused(tmp_path: pathlib.Path) -> None:
    served = tmp_path / "served"
    served.mkdir()
    with tarfile.open(served / "twice.tar", "w") as archive:
        for data in (b"checked first", b"served later"):
            info = tarfile.TarInfo("weights.bin")
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))

    with servers.file_server(served) as (base, _), pytest.raises(transfers.FetchError):
        fetching.fetch(f"{base}/twice.tar", tmp_path / "out" / "fetched")


@pytest.fixture
def trickling_server() -> Iterator[str]:
    """A loopback HTTP server that sends a header, then one byte every 0.2 s, for 30 s."""
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                connection, _ = listener.accept()
            except TimeoutError:
                continue
            with connection:
                connection.recv(65536)
                connection.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\n")
                ends = time.monotonic() + 30
                while not stop.is_set() and time.monotonic() < ends:
                    try:
                        connection.sendall(b"x")
                    except OSError:
                        break
                    time.sleep(0.2)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stop.set()
        thread.join(timeout=5)
        listener.close()


@pytest.mark.integration
def test_a_trickling_server_is_stopped_at_the_overall_deadline(
    trickling_server: str, tmp_path: pathlib.Path
) -> None:
    # Each read gets a byte within the 3 s timeout: only an overall deadline ends this.
    settings = transfers.Settings(timeout_seconds=3.0, deadline_seconds=2.0)
    started = time.monotonic()

    with pytest.raises(transfers.FetchError) as caught:
        fetching.fetch(f"{trickling_server}/model.bin", tmp_path / "fetched", settings)

    assert caught.value.reason == transfers.DEADLINE_EXCEEDED
    assert time.monotonic() - started < 6.0


def test_settings_from_the_environment() -> None:
    settings = transfers.Settings.from_environment(
        {
            "MODELSHIELD_ARTIFACT_MAX_BYTES": "1000",
            "MODELSHIELD_ARTIFACT_MAX_FILES": "7",
            "MODELSHIELD_ARTIFACT_DEADLINE_SECONDS": "12.5",
            "MODELSHIELD_FILE_ROOTS": "/models:/data/models",
        }
    )

    assert (settings.max_bytes, settings.max_files, settings.deadline_seconds) == (1000, 7, 12.5)
    assert settings.file_roots == (pathlib.Path("/models"), pathlib.Path("/data/models"))


def test_defaults_are_sized_for_real_models() -> None:
    settings = transfers.Settings()

    assert settings.max_bytes == 256 << 30  # a 70B model in 16-bit weights is ~140 GB
    assert settings.max_files == 10_000
    assert settings.deadline_seconds == 3600.0
    assert settings.file_roots == ()


def test_file_uri_is_refused_without_configured_roots(tmp_path: pathlib.Path) -> None:
    model = models.benign_model(tmp_path / "model")

    with pytest.raises(transfers.FetchError) as caught:
        fetching.fetch(f"file://{model}", tmp_path / "unused")

    assert caught.value.reason == transfers.NOT_ALLOWED


@pytest.mark.parametrize(
    "uri",
    [
        "file:///etc",
        "file:///proc/self/",
        "file://{root}/../elsewhere",
        "file://{root}/models/%2e%2e/%2e%2e/elsewhere",
        "file://{root}/escape-link",
        "file://otherhost{root}/models/model",
    ],
)
def test_file_uri_outside_the_roots_is_refused(uri: str, tmp_path: pathlib.Path) -> None:
    root = tmp_path / "root"
    models.benign_model(root / "models" / "model")
    (tmp_path / "elsewhere").mkdir()
    (root / "escape-link").symlink_to(tmp_path / "elsewhere")
    settings = transfers.Settings(file_roots=(root,))

    with pytest.raises(transfers.FetchError) as caught:
        fetching.fetch(uri.format(root=root), tmp_path / "unused", settings)

    assert caught.value.reason == transfers.NOT_ALLOWED


def test_file_uri_under_a_root_is_allowed(tmp_path: pathlib.Path) -> None:
    model = models.benign_model(tmp_path / "root" / "models" / "model")
    settings = transfers.Settings(file_roots=(tmp_path / "root",))

    assert fetching.fetch(f"file://{model}", tmp_path / "unused", settings).directory == model


@pytest.mark.parametrize(
    "uri",
    [
        "pvc://../other-tenant/claim/model",
        "pvc://claim/../../other-tenant/claim/model",
        "pvc://claim/%2e%2e/%2e%2e/other-tenant/claim/model",
        "pvc://Claim_With_Bad_Name/model",
        "pvc://claim/link-out",
    ],
)
def test_pvc_uri_is_confined_to_the_artifacts_namespace(uri: str, tmp_path: pathlib.Path) -> None:
    models.benign_model(tmp_path / "ml-team" / "claim" / "model")
    models.benign_model(tmp_path / "other-tenant" / "claim" / "model")
    (tmp_path / "ml-team" / "claim" / "link-out").symlink_to(tmp_path / "other-tenant" / "claim")
    settings = transfers.Settings(pvc_root=tmp_path)

    with pytest.raises(transfers.FetchError) as caught:
        fetching.fetch(uri, tmp_path / "unused", settings, "ml-team")

    assert caught.value.reason == transfers.NOT_ALLOWED


def test_pvc_uri_reads_the_claim_in_the_artifacts_namespace(tmp_path: pathlib.Path) -> None:
    mine = models.benign_model(tmp_path / "ml-team" / "claim" / "model")
    models.benign_model(tmp_path / "other-tenant" / "claim" / "model")
    settings = transfers.Settings(pvc_root=tmp_path)

    fetched = fetching.fetch("pvc://claim/model", tmp_path / "unused", settings, "ml-team")

    assert fetched.directory == mine
    with pytest.raises(transfers.FetchError):
        fetching.fetch("pvc://claim/model", tmp_path / "unused", settings, "")


def test_signature_uri_is_confined_like_the_model(tmp_path: pathlib.Path) -> None:
    (tmp_path / "secret.key").write_text("not a signature")
    settings = transfers.Settings(file_roots=(tmp_path / "models",), pvc_root=tmp_path / "pvc")

    for uri in (f"file://{tmp_path}/secret.key", "pvc://../secret.key"):
        with pytest.raises(transfers.FetchError):
            fetching.fetch_file(uri, tmp_path / "sig", settings, "ml-team")


class _Recorder(http.server.BaseHTTPRequestHandler):
    """Answers every GET: a redirect (when the server has one) or the headers it received."""

    redirect_to: str | None = None
    received: list[dict[str, str]] = []

    def do_GET(self) -> None:
        self.received.append(dict(self.headers.items()))
        if self.redirect_to is not None:
            self.send_response(302)
            self.send_header("Location", f"{self.redirect_to}{self.path}")
            self.end_headers()
            return
        body = b"payload"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@contextlib.contextmanager
def _server(redirect_to: str | None) -> Iterator[tuple[str, list[dict[str, str]]]]:
    received: list[dict[str, str]] = []
    handler = type("Handler", (_Recorder,), {"redirect_to": redirect_to, "received": received})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", received
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.integration
def test_s3_credentials_never_follow_a_redirect_to_another_origin() -> None:
    settings = transfers.Settings(
        s3_access_key="AKIDEXAMPLE",
        s3_secret_key="wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
        s3_session_token="session-token",
    )
    with _server(None) as (elsewhere, seen_elsewhere), _server(elsewhere) as (endpoint, seen):
        settings = dataclasses.replace(settings, s3_endpoint=endpoint)
        client = buckets.Client(settings)
        with client.get(client.object_url("models", "fraud/model.bin")) as response:
            assert response.read() == b"payload"

    assert "Authorization" in seen[0]
    assert seen_elsewhere, "the redirect was not followed"
    lowered = {name.lower() for name in seen_elsewhere[0]}
    assert not lowered & {"authorization", "x-amz-security-token"}, seen_elsewhere[0]


@pytest.mark.integration
def test_a_same_origin_redirect_keeps_the_credentials() -> None:
    with _server(None) as (target, seen):
        request = urllib.request.Request(  # noqa: S310 - loopback test server
            f"{target}/x", headers={"Authorization": "Bearer t"}
        )
        with streaming.open_url(request, transfers.Settings()) as response:
            assert response.read() == b"payload"

    assert seen[0]["Authorization"] == "Bearer t"


@pytest.mark.integration
def test_a_tar_ending_with_a_zip_member_is_unpacked_as_the_tar(tmp_path: pathlib.Path) -> None:
    # zipfile.is_zipfile finds the end record of the last member (a PyTorch zip
    # checkpoint), so the tar was unpacked as that zip's members, the rest silently lost.
    model = models.benign_model(tmp_path / "model")
    served = tmp_path / "served"
    served.mkdir()
    names = sorted(p.name for p in model.iterdir())
    with tarfile.open(served / "model.tar", "w") as archive:
        for name in [n for n in names if n != "pytorch_model.bin"] + ["pytorch_model.bin"]:
            archive.add(model / name, arcname=name)

    with servers.file_server(served) as (base, _):
        fetched = fetching.fetch(f"{base}/model.tar", tmp_path / "out" / "fetched")

    assert sorted(p.name for p in fetched.directory.iterdir()) == names
