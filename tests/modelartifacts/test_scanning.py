"""The scanner against real benign models and a corpus of malicious files (never loaded)."""

from __future__ import annotations

import json
import mmap
import os
import pathlib
import pickle
import zipfile

import joblib  # type: ignore[import-untyped]
import numpy
import pytest

from modelshield.api.v1alpha1.common import Severity
from modelshield.modelartifacts.scanning import (
    callables,
    catalog,
    findings,
    pickleregions,
    pickles,
)
from tests.modelartifacts import corpus
from tests.support import modelfiles as models
from tests.support import picklecode as op


@pytest.fixture(scope="module")
def malicious(tmp_path_factory: pytest.TempPathFactory) -> findings.ScanReport:
    return catalog.scan_directory(corpus.build(tmp_path_factory.mktemp("corpus")))


def test_benign_models_have_no_blocking_finding(tmp_path: pathlib.Path) -> None:
    report = catalog.scan_directory(models.benign_model(tmp_path / "model"))

    assert [f for f in report.findings if f.severity.rank >= Severity.MEDIUM.rank] == []
    formats = {record.path: record.format for record in report.files}
    assert formats == {
        "config.json": "json",
        "embeddings.npy": "npy",
        "model.gguf": "gguf",
        "model.h5": "hdf5",
        "model.joblib": "pickle",
        "model.keras": "zip",
        "model.onnx": "onnx",
        "model.safetensors": "safetensors",
        "pytorch_model.bin": "zip",
        "tokenizer.json": "json",
        "vocab.txt": "text",
    }
    assert report.bytes_scanned == sum(p.stat().st_size for p in (tmp_path / "model").iterdir())


def test_sklearn_estimator_is_reported_low_as_a_library_import(tmp_path: pathlib.Path) -> None:
    report = catalog.scan_directory(models.sklearn_model(tmp_path / "sk"))

    assert {f.severity for f in report.findings} == {Severity.LOW}
    assert any("LogisticRegression" in f.location for f in report.findings)


@pytest.mark.parametrize("case", corpus.CASES, ids=lambda case: case.name)
def test_malicious_file_is_found(malicious: findings.ScanReport, case: corpus.Case) -> None:
    found = [f for f in malicious.findings if f.file.split("!")[0] == case.name]

    assert found, f"nothing found in {case.name}"
    assert found[0].severity.rank >= case.severity.rank
    assert any(case.needle in f"{f.location} {f.reason}" for f in found), found


def test_every_file_of_the_corpus_has_a_record(malicious: findings.ScanReport) -> None:
    assert sorted(r.path for r in malicious.files) == sorted(c.name for c in corpus.CASES)


def test_findings_are_most_severe_first(malicious: findings.ScanReport) -> None:
    ranks = [f.severity.rank for f in malicious.findings]

    assert ranks == sorted(ranks, reverse=True)


def test_api_findings_are_bounded(malicious: findings.ScanReport) -> None:
    listed, truncated = findings.to_api(malicious.findings, limit=5)

    assert len(listed) == 5
    assert truncated
    assert listed[0].severity == Severity.CRITICAL


def test_symlink_is_a_finding_not_followed(tmp_path: pathlib.Path) -> None:
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "weights.pkl").symlink_to("/etc/passwd")

    report = catalog.scan_directory(tmp_path / "m")

    assert report.findings[0].severity == Severity.HIGH
    assert "symbolic link" in report.findings[0].reason


def test_pickle_inside_tensor_data_is_found() -> None:
    # A benign stream, then random-looking bytes with a PROTO lookalike, then a payload.
    data = (
        pickle.dumps([1, 2, 3], protocol=2)
        + b"\x80\x02\xff\xfe" * 100
        + op.call("os", "system", "x")
    )

    found = pickles.walk_buffer(data, "f.bin")

    assert [f.location for f in found] == [
        f"offset {len(data) - len(op.call('os', 'system', 'x')) + 2}: GLOBAL os.system"
    ]


def test_random_bytes_with_proto_lookalikes_give_no_findings() -> None:
    noise = bytes((i * 7919 + 13) % 256 for i in range(200_000)).replace(b"\n", b"\x80\x02")

    assert pickles.walk_buffer(noise, "noise.bin", leading=False) == []


def test_zip_member_path_traversal(tmp_path: pathlib.Path) -> None:
    with zipfile.ZipFile(tmp_path / "evil.zip", "w") as archive:
        archive.writestr("../../outside.json", json.dumps({}))

    report = catalog.scan_directory(tmp_path / "evil.zip")

    assert "escapes" in report.findings[0].reason


def test_parse_severity() -> None:
    assert findings.parse_severity("high") == Severity.HIGH
    with pytest.raises(ValueError, match="not one of"):
        findings.parse_severity("severe")


def test_random_tensor_bytes_in_a_checkpoint_give_no_findings(tmp_path: pathlib.Path) -> None:
    noise = numpy.random.default_rng(3).standard_normal(8 << 20, dtype=numpy.float32).tobytes()
    models.torch_style_zip(tmp_path / "model.pt")
    with zipfile.ZipFile(tmp_path / "model.pt", "a") as archive:
        archive.writestr("archive/data/1", noise)

    assert catalog.scan_directory(tmp_path / "model.pt").findings == []


def test_pickle_hidden_in_joblib_array_bytes_is_found(tmp_path: pathlib.Path) -> None:
    payload = numpy.frombuffer(op.call("os", "system", "true"), dtype=numpy.uint8)
    joblib.dump({"weights": numpy.zeros(1000), "blob": payload}, tmp_path / "m.joblib")

    found = catalog.scan_directory(tmp_path / "m.joblib").findings

    assert [f.severity for f in found] == [Severity.CRITICAL]
    assert "os.system" in found[0].location


def test_savedmodel_variables_are_tensor_data(tmp_path: pathlib.Path) -> None:
    model = tmp_path / "saved"
    (model / "variables").mkdir(parents=True)
    (model / "saved_model.pb").write_bytes(b"\x08\x01\x0a\x04node\x12\x05MatMul")
    (model / "variables" / "variables.index").write_bytes(bytes(range(256)) * 8)
    (model / "variables" / "variables.data-00000-of-00001").write_bytes(
        bytes(1024) + op.call("os", "system", "x")
    )

    report = catalog.scan_directory(model)

    assert {r.path: r.format for r in report.files}["variables/variables.index"] == (
        "tensorflow-variables"
    )
    assert [f.file for f in report.findings] == ["variables/variables.data-00000-of-00001"]


def test_fifo_is_a_finding_and_never_opened(tmp_path: pathlib.Path) -> None:
    (tmp_path / "m").mkdir()
    os.mkfifo(tmp_path / "m" / "weights.bin")

    report = catalog.scan_directory(tmp_path / "m")

    assert [(f.file, f.severity) for f in report.findings] == [("weights.bin", Severity.HIGH)]


@pytest.mark.parametrize("offset", [4096 - 2, 4096 - 1, 4096, 3 * 4096 - 1])
def test_pickle_start_straddling_search_chunks_is_found(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch, offset: int
) -> None:
    monkeypatch.setattr(pickleregions, "SEARCH_CHUNK", 4096)
    payload = op.call("os", "system", "x")
    path = tmp_path / "tensors.bin"
    path.write_bytes(bytes(offset) + payload + bytes(5000))

    with path.open("rb") as handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as data:
        found = pickles.walk_buffer(data, "tensors.bin", leading=False)

    assert [f.location for f in found] == [f"offset {offset + 2}: GLOBAL os.system"]


def test_picklescan_denylist_raises_what_the_own_lists_miss() -> None:
    # Not in modelshield's own lists (Medium: unknown), on picklescan's maintained one.
    severity, reason = callables.classify("torch.utils.bottleneck.__main__", "run_cprofile")

    assert severity == Severity.CRITICAL
    assert "picklescan" in reason
    assert callables.classify("collections", "OrderedDict") == (None, "")
