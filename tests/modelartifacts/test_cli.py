"""``modelshield model sign|verify|scan`` run through the real entry point."""

from __future__ import annotations

import json
import pathlib
import tempfile

import pytest
import yaml

from modelshield.cli import main
from tests.modelartifacts import corpus
from tests.support import modelfiles as models
from tests.support import signingkeys as keys


@pytest.fixture
def pair(tmp_path: pathlib.Path) -> keys.KeyPair:
    return keys.key_pair(tmp_path / "keys", "release")


@pytest.fixture
def model(tmp_path: pathlib.Path) -> pathlib.Path:
    return models.benign_model(tmp_path / "model")


def _pub(pair: keys.KeyPair) -> str:
    return str(pair.private_path.with_suffix(".pub"))


def test_sign_then_verify_with_key(
    model: pathlib.Path, pair: keys.KeyPair, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main.main(["model", "sign", str(model), "--key", str(pair.private_path)]) == 0
    digest = capsys.readouterr().out.split()[2].rstrip(":")

    assert main.main(["model", "verify", str(model), "--key", _pub(pair), "--digest", digest]) == 0
    assert f"verified {model}: {digest}" in capsys.readouterr().out


def test_verify_failure_names_the_file_and_exits_1(
    model: pathlib.Path, pair: keys.KeyPair, capsys: pytest.CaptureFixture[str]
) -> None:
    main.main(["model", "sign", str(model), "--key", str(pair.private_path)])
    (model / "model.onnx").write_bytes(b"\x08\x09")

    assert main.main(["model", "verify", str(model), "--key", _pub(pair)]) == 1
    assert "model.onnx" in capsys.readouterr().err


def test_verify_with_a_policy_file(
    tmp_path: pathlib.Path, model: pathlib.Path, pair: keys.KeyPair
) -> None:
    main.main(["model", "sign", str(model), "--key", str(pair.private_path)])
    policy = {
        "apiVersion": "modelshield.dev/v1alpha1",
        "kind": "ModelSecurityPolicy",
        "metadata": {"name": "fraud", "namespace": "ml"},
        "spec": {
            "selector": {"matchLabels": {"app": "fraud"}},
            "models": {"signers": [{"name": "release", "publicKey": pair.public_pem.decode()}]},
        },
    }
    path = tmp_path / "policy.yaml"
    path.write_text(yaml.safe_dump(policy))

    assert main.main(["model", "verify", str(model), "--policy", str(path)]) == 0


def test_verify_unreadable_input_exits_2(tmp_path: pathlib.Path, pair: keys.KeyPair) -> None:
    assert main.main(["model", "verify", str(tmp_path / "none"), "--key", _pub(pair)]) == 2


def test_progress_bar_reaches_100_percent(
    model: pathlib.Path, pair: keys.KeyPair, capsys: pytest.CaptureFixture[str]
) -> None:
    main.main(["model", "sign", str(model), "--key", str(pair.private_path), "--progress"])

    assert "100.0%" in capsys.readouterr().err


def test_scan_clean_model_exits_0(model: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main.main(["model", "scan", str(model), "--output", "json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["worst"] == "Low"
    assert report["bytesScanned"] == sum(p.stat().st_size for p in model.iterdir())


def test_scan_fail_on_threshold(model: pathlib.Path) -> None:
    assert main.main(["model", "scan", str(model), "--fail-on", "low"]) == 1


def test_scan_corpus_exits_1_with_sarif(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    directory = corpus.build(tmp_path / "corpus")

    assert main.main(["model", "scan", str(directory), "--output", "sarif"]) == 1
    document = json.loads(capsys.readouterr().out)
    results = document["runs"][0]["results"]
    assert document["version"] == "2.1.0"
    assert results[0]["level"] == "error"
    assert {r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] for r in results} >= {
        "os_system.pkl",
        "lambda.keras",
    }


def test_scan_table(model: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    main.main(["model", "scan", str(model)])

    out = capsys.readouterr().out
    assert "safetensors" in out
    assert "LOW" in out


def test_scan_missing_input_exits_2(tmp_path: pathlib.Path) -> None:
    assert main.main(["model", "scan", str(tmp_path / "nothing")]) == 2
    (tmp_path / "empty").mkdir()
    assert main.main(["model", "scan", str(tmp_path / "empty")]) == 2


def test_scan_bad_threshold_exits_2(model: pathlib.Path) -> None:
    assert main.main(["model", "scan", str(model), "--fail-on", "severe"]) == 2


def test_verify_writes_no_temporary_file(
    model: pathlib.Path, pair: keys.KeyPair, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The startup init container has a read-only root file system.
    main.main(["model", "sign", str(model), "--key", str(pair.private_path)])

    def refuse(*_: object, **__: object) -> None:
        raise AssertionError("verification tried to create a temporary directory")

    monkeypatch.setattr(tempfile, "TemporaryDirectory", refuse)
    monkeypatch.setattr(tempfile, "mkdtemp", refuse)
    monkeypatch.setattr(tempfile, "NamedTemporaryFile", refuse)

    assert main.main(["model", "verify", str(model), "--key", _pub(pair)]) == 0
