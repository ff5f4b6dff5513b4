"""``--s3-endpoint``: one S3 server for the operator's fetch and admission's judgement.

Issue 19: the operator fetched s3:// ModelArtifacts from its AWS_ENDPOINT_URL, a setting
admission did not know, so every KServe pod downloading from MinIO was refused (and one
downloading from AWS S3, where the operator had not looked, admitted). Both processes
now read one flag into one ``s3endpoints.ModelStore``.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import pathlib
from collections.abc import Iterator

import pytest

from modelshield.cli import main, modelstoreflags
from modelshield.controllers import artifactchecks
from modelshield.engine import s3endpoints
from modelshield.modelartifacts import fetching
from tests.support import artifactservers as servers


def _parse(command: str, *flags: str) -> argparse.Namespace:
    return main.build_parser().parse_args([command, *flags])


@pytest.mark.parametrize(
    "flags",
    [
        [],
        ["--s3-endpoint", "http://minio.storage.svc.cluster.local:9000"],
        ["--s3-endpoint=HTTPS://S3.Example.com:443/"],
        ["--s3-endpoint", "http://10.0.0.7:9000"],
    ],
    ids=["unset", "service", "spelled-differently", "address"],
)
def test_the_same_flags_give_both_processes_the_same_store(flags: list[str]) -> None:
    webhook = modelstoreflags.store_from(_parse("webhook", *flags))
    operator = _parse("operator", *flags)
    assert modelstoreflags.store_from(operator) == webhook
    # The operator fetches from exactly the endpoint admission compares with.
    fetch = artifactchecks.Settings.from_environment({}, operator).fetch
    assert fetch.s3_endpoint == webhook.s3_endpoint
    if flags:
        assert webhook != s3endpoints.DEFAULT


def test_the_store_is_in_the_form_admission_compares() -> None:
    store = modelstoreflags.store_from(
        _parse("webhook", "--s3-endpoint=HTTPS://S3.Example.com:443/")
    )
    assert store.s3_endpoint == "https://s3.example.com"


@pytest.mark.parametrize(
    ("value", "said"),
    [
        ("http://minio:9000", "looked up in each pod's namespace"),
        ("http://minio.storage:9000", "looked up in each pod's namespace"),
        ("http://user:secret@minio.storage.svc:9000", "userinfo"),
        ("http://minio.storage.svc:9000/bucket", "has a path"),
        ("s3://minio.storage.svc", "not an http:// or https:// URL"),
        ("minio.storage.svc:9000", "not an http:// or https:// URL"),
        ("http://0x7f.0.0.1:9000", "numeric host"),
    ],
)
@pytest.mark.parametrize("command", ["webhook", "operator"])
def test_an_unusable_endpoint_stops_either_process(command: str, value: str, said: str) -> None:
    arguments = _parse(command, f"--s3-endpoint={value}")
    if command == "webhook":
        arguments.cert, arguments.key = "/nonexistent/tls.crt", "/nonexistent/tls.key"
    errors = io.StringIO()
    with contextlib.redirect_stderr(errors):
        assert arguments.handler(arguments) == 2
    assert "error: --s3-endpoint " in errors.getvalue()
    assert said in errors.getvalue()
    assert "secret" not in errors.getvalue()


def test_the_operator_refuses_an_environment_naming_another_server(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """AWS_ENDPOINT_URL was the operator's setting before the flag: a leftover one that
    names another server means the installation meant something else."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://other.storage.svc:9000")
    arguments = _parse("operator", "--s3-endpoint=http://minio.storage.svc:9000")
    errors = io.StringIO()
    with contextlib.redirect_stderr(errors):
        assert arguments.handler(arguments) == 2
    assert "AWS_ENDPOINT_URL names another S3 server than --s3-endpoint" in errors.getvalue()


def test_the_operator_refuses_an_environment_endpoint_without_the_flag(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Without the flag admission judges downloads as AWS S3's, while the environment
    would have the operator verify models on another server: a pod naming no endpoint
    would then load the same bucket and key from AWS, unverified."""
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", "http://minio.storage.svc:9000")
    arguments = _parse("operator")
    errors = io.StringIO()
    with contextlib.redirect_stderr(errors):
        assert arguments.handler(arguments) == 2
    assert "AWS_ENDPOINT_URL_S3 names an S3 server but --s3-endpoint is not set" in (
        errors.getvalue()
    )


def test_no_endpoint_anywhere_is_no_conflict() -> None:
    store = s3endpoints.ModelStore.configured(None)
    environ = {"AWS_ENDPOINT_URL": "", "AWS_REGION": "eu-west-1"}
    assert modelstoreflags.environment_conflict(store, environ) is None


def test_an_environment_naming_the_same_server_is_no_conflict() -> None:
    store = s3endpoints.ModelStore.configured("http://minio.storage.svc:9000")
    environ = {"AWS_ENDPOINT_URL": "HTTP://minio.storage.svc:9000/", "AWS_ENDPOINT_URL_S3": ""}
    assert modelstoreflags.environment_conflict(store, environ) is None


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[servers.S3Server]:
    with servers.moto_server(tmp_path_factory.mktemp("moto")) as server:
        yield server


@pytest.mark.integration
def test_the_operator_fetches_from_the_flags_endpoint(
    s3: servers.S3Server, tmp_path: pathlib.Path
) -> None:
    """A real S3 server (moto): the fetch goes where the flag says, written with a
    trailing slash and an upper-case scheme, not where the environment would have."""
    servers.s3_put(s3, "flagged")
    servers.s3_put(s3, "flagged/m/weights.bin", b"the verified weights")
    arguments = _parse("operator", f"--s3-endpoint={s3.endpoint.replace('http://', 'HTTP://')}/")
    environ = {"AWS_ACCESS_KEY_ID": s3.access_key, "AWS_SECRET_ACCESS_KEY": s3.secret_key}
    settings = artifactchecks.Settings.from_environment(environ, arguments).fetch
    fetched = fetching.fetch("s3://flagged/m/", tmp_path / "fetched", settings)
    assert (fetched.directory / "weights.bin").read_bytes() == b"the verified weights"
