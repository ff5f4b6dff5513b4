"""Fetching from real local sources: a directory, HTTP(S), moto's S3 server, an OCI registry."""

from __future__ import annotations

import datetime
import io
import pathlib
import tarfile
from collections.abc import Iterator

import pytest

from modelshield.modelartifacts import (
    buckets,
    fetching,
    modelverifying,
    ociartifacts,
    signing,
    transfers,
)
from tests.support import artifactservers as servers
from tests.support import localtools
from tests.support import modelfiles as models
from tests.support import signingkeys as keys


def _files(directory: pathlib.Path) -> dict[str, bytes]:
    return {
        p.relative_to(directory).as_posix(): p.read_bytes()
        for p in sorted(directory.rglob("*"))
        if p.is_file()
    }


@pytest.fixture
def model(tmp_path: pathlib.Path) -> pathlib.Path:
    directory = models.benign_model(tmp_path / "source" / "model")
    (directory / "nested").mkdir()
    (directory / "nested" / "notes.txt").write_text("nested file\n")
    return directory


def test_file_uri_is_used_in_place(model: pathlib.Path, tmp_path: pathlib.Path) -> None:
    settings = transfers.Settings(file_roots=(tmp_path / "source",))

    fetched = fetching.fetch(f"file://{model}", tmp_path / "unused", settings)

    assert fetched.directory == model
    assert not fetched.copied
    assert not (tmp_path / "unused").exists()


def test_pvc_uri_resolves_under_the_mount_root(model: pathlib.Path, tmp_path: pathlib.Path) -> None:
    # Claims are mounted at PVC_ROOT/<namespace>/<claim>: the artifact's namespace only.
    settings = transfers.Settings(pvc_root=tmp_path.parent)

    fetched = fetching.fetch("pvc://source/model", tmp_path / "unused", settings, tmp_path.name)

    assert fetched.directory == model


def test_missing_local_directory(tmp_path: pathlib.Path) -> None:
    with pytest.raises(transfers.FetchError, match="not a directory"):
        fetching.fetch(
            f"file://{tmp_path}/nothing", tmp_path / "d", transfers.Settings(file_roots=(tmp_path,))
        )


@pytest.mark.integration
def test_http_directory_listed_by_its_signed_manifest(
    model: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    pair = keys.key_pair(tmp_path / "keys", "k")
    signing.sign_with_key(model, pair.private_path)
    (model / "unsigned-extra.bin").write_bytes(b"not part of the model")

    with servers.file_server(model.parent) as (base, _):
        fetched = fetching.fetch(f"{base}/model/", tmp_path / "fetched")

    expected = _files(model)
    del expected["unsigned-extra.bin"]
    assert _files(fetched.directory) == expected
    assert modelverifying.verify(
        fetched.directory, [modelverifying.KeySigner("k", pair.public_pem)]
    )


@pytest.mark.integration
def test_https_archive_is_unpacked(model: pathlib.Path, tmp_path: pathlib.Path) -> None:
    archive_dir = tmp_path / "served"
    archive_dir.mkdir()
    with tarfile.open(archive_dir / "model.tar.gz", "w:gz") as archive:
        for path in sorted(model.rglob("*")):
            if path.is_file():
                archive.add(path, arcname=path.relative_to(model).as_posix())

    with servers.file_server(archive_dir, tls_dir=tmp_path) as (base, ca_file):
        settings = transfers.Settings(ca_file=ca_file)
        fetched = fetching.fetch(f"{base}/model.tar.gz", tmp_path / "fetched", settings)

    assert _files(fetched.directory) == _files(model)


@pytest.mark.integration
def test_https_with_an_untrusted_certificate_fails(
    model: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    with (
        servers.file_server(model, tls_dir=tmp_path) as (base, _),
        pytest.raises(transfers.FetchError, match="CERTIFICATE_VERIFY_FAILED"),
    ):
        fetching.fetch(f"{base}/vocab.txt", tmp_path / "fetched")
    assert not (tmp_path / "fetched").exists()


@pytest.mark.integration
def test_archive_with_traversal_is_refused(tmp_path: pathlib.Path) -> None:
    served = tmp_path / "served"
    served.mkdir()
    with tarfile.open(served / "evil.tar", "w") as archive:
        info = tarfile.TarInfo("../escape.txt")
        info.size = 3
        archive.addfile(info, io.BytesIO(b"bad"))

    with (
        servers.file_server(served) as (base, _),
        pytest.raises(transfers.FetchError, match="leaves"),
    ):
        fetching.fetch(f"{base}/evil.tar", tmp_path / "out" / "fetched")
    assert not (tmp_path / "out" / "escape.txt").exists()


@pytest.mark.integration
def test_size_limit_stops_the_download(model: pathlib.Path, tmp_path: pathlib.Path) -> None:
    with (
        servers.file_server(model) as (base, _),
        pytest.raises(transfers.FetchError) as caught,
    ):
        fetching.fetch(f"{base}/model.joblib", tmp_path / "f", transfers.Settings(max_bytes=100))
    assert caught.value.reason == transfers.TOO_LARGE


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[servers.S3Server]:
    with servers.moto_server(tmp_path_factory.mktemp("moto")) as server:
        yield server


def _s3_settings(server: servers.S3Server, secret: str | None = None) -> transfers.Settings:
    return transfers.Settings(
        s3_endpoint=server.endpoint,
        s3_access_key=server.access_key,
        s3_secret_key=secret or server.secret_key,
    )


@pytest.mark.integration
def test_s3_prefix_is_fetched_from_a_real_s3_server(
    s3: servers.S3Server, model: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    servers.s3_put(s3, "models")
    for name, data in _files(model).items():
        servers.s3_put(s3, f"models/fraud/v1/{name}", data)
    servers.s3_put(s3, "models/fraud/v10/other.txt", b"another version")

    fetched = fetching.fetch("s3://models/fraud/v1", tmp_path / "fetched", _s3_settings(s3))

    assert _files(fetched.directory) == _files(model)


@pytest.mark.integration
def test_s3_server_refuses_a_wrong_signature(s3: servers.S3Server, tmp_path: pathlib.Path) -> None:
    servers.s3_put(s3, "private")
    servers.s3_put(s3, "private/m/weights.bin", b"secret weights")
    settings = _s3_settings(s3, secret="not-the-secret")

    with pytest.raises(transfers.FetchError, match="SignatureDoesNotMatch"):
        fetching.fetch("s3://private/m", tmp_path / "f", settings)


@pytest.mark.integration
def test_s3_missing_prefix(s3: servers.S3Server, tmp_path: pathlib.Path) -> None:
    servers.s3_put(s3, "empty")

    with pytest.raises(transfers.FetchError, match="no objects"):
        fetching.fetch("s3://empty/nothing", tmp_path / "f", _s3_settings(s3))


def test_sigv4_matches_the_published_list_objects_example() -> None:
    # The "GET Bucket (List Objects)" example of the Signature Version 4 documentation.
    headers = buckets.sign_request(
        "GET",
        "https://examplebucket.s3.amazonaws.com/?max-keys=2&prefix=J",
        region="us-east-1",
        access_key="AKIAIOSFODNN7EXAMPLE",
        secret_key="wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        now=datetime.datetime(2013, 5, 24, tzinfo=datetime.UTC),
    )

    assert headers["authorization"].endswith(
        "Signature=34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7"
    )


@pytest.fixture(scope="module")
def oci_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[localtools.LocalRegistry]:
    binary = localtools.require_tool("MODELSHIELD_REGISTRY")
    started = localtools.LocalRegistry(binary, tmp_path_factory.mktemp("registry")).start()
    yield started
    started.stop()


@pytest.mark.integration
def test_oci_artifact_by_tag_and_digest(
    oci_registry: localtools.LocalRegistry, model: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    digest = servers.oci_push_directory(oci_registry.host, "models/fraud", "v1", model)
    settings = transfers.Settings(insecure_registries=frozenset({oci_registry.host}))

    by_tag = fetching.fetch(f"oci://{oci_registry.host}/models/fraud:v1", tmp_path / "t", settings)
    by_digest = fetching.fetch(
        f"oci://{oci_registry.host}/models/fraud@{digest}", tmp_path / "d", settings
    )

    assert _files(by_tag.directory) == _files(model) == _files(by_digest.directory)


@pytest.mark.integration
def test_oci_unknown_tag(oci_registry: localtools.LocalRegistry, tmp_path: pathlib.Path) -> None:
    settings = transfers.Settings(insecure_registries=frozenset({oci_registry.host}))

    with pytest.raises(transfers.FetchError, match="HTTP 404"):
        fetching.fetch(f"oci://{oci_registry.host}/models/none:v9", tmp_path / "f", settings)


def test_oci_reference_parsing() -> None:
    assert ociartifacts.parse_reference("r.example:5000/a/b:v1") == ("r.example:5000", "a/b", "v1")
    assert ociartifacts.parse_reference("r.example/a")[2] == "latest"
    with pytest.raises(transfers.FetchError):
        ociartifacts.parse_reference("no-repository")
