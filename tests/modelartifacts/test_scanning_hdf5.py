"""Keras HDF5 files read through h5py, as Keras reads them (issue 21).

Every file here is a real HDF5 file written by h5py in the test. The scanner before read
HDF5 as bytes and parsed the JSON text it found in them: each case marked "old: missed"
passed it with no finding at the expected severity (a user block before the superblock,
a layer config longer than its text search's window, a JSON escape its bytecode pattern
did not read, a config that cannot be judged, pickles stored in the file, a file libhdf5
cannot open); the others were found before too and stay covered.
"""

from __future__ import annotations

import codecs
import io
import json
import marshal
import pathlib
import pickle
from typing import Any

import h5py  # type: ignore[import-untyped]
import numpy
import pytest

from modelshield.api.v1alpha1.common import Severity
from modelshield.modelartifacts.scanning import catalog, findings, hdf5_files
from tests.support import modelfiles as models
from tests.support import picklecode as op


def _lambda_config(**extra: Any) -> dict[str, Any]:
    lambda_layer = {"class_name": "Lambda", "config": {"name": "evil", "function": "x"}}
    return {
        "class_name": "Functional",
        "config": {**extra, "layers": [{"class_name": "InputLayer", "config": {}}, lambda_layer]},
    }


def _scan(path: pathlib.Path) -> findings.ScanReport:
    return catalog.scan_directory(path.parent)


def _model(tmp_path: pathlib.Path, name: str = "model.h5") -> pathlib.Path:
    directory = tmp_path / "model"
    directory.mkdir(parents=True, exist_ok=True)
    return directory / name


def _blocking(report: findings.ScanReport) -> list[findings.Finding]:
    return [f for f in report.findings if f.severity.rank >= Severity.HIGH.rank]


@pytest.mark.parametrize(
    "userblock",
    [b"a model card in plain text\n" * 18, bytes(512), pickle.dumps({"weights": [1.0]})],
    ids=["text", "zeros", "benign-pickle"],
)
def test_a_config_behind_a_user_block_is_read(tmp_path: pathlib.Path, userblock: bytes) -> None:
    # old: missed. libhdf5 finds the superblock at 512 whatever comes before it; the
    # scanner looked for the signature at offset 0 only and read the file as text.
    path = _model(tmp_path)
    models.keras_h5_file(path, _lambda_config(), userblock_size=512)
    with path.open("r+b") as handle:
        handle.write(userblock[:512])
    assert h5py.File(path, "r").attrs["model_config"]  # still a file h5py (and Keras) reads

    report = _scan(path)

    assert report.worst() is Severity.CRITICAL, report.findings
    assert any("Lambda" in f.reason and "model_config" in f.location for f in report.findings)


def test_a_pickle_with_a_keras_model_behind_it_is_judged_as_both(tmp_path: pathlib.Path) -> None:
    # old: missed (only the pickle was walked). torch.load reads the pickle, Keras the HDF5.
    path = _model(tmp_path, "model.bin")
    models.keras_h5_file(path, _lambda_config(), userblock_size=1024)
    with path.open("r+b") as handle:
        handle.write(op.call("os", "system", "true"))

    report = _scan(path)

    assert "Lambda" in " ".join(f.reason for f in report.findings)
    assert "os.system" in " ".join(f.location for f in report.findings)


def _long_layer(length: int, literal: str | None) -> str:
    """A config whose Lambda layer object is ``length`` characters long, the 4 KiB mark
    (where the text search's first window ended) inside a string, or inside ``literal``."""
    head = '{"class_name": "Lambda", "config": {"name": "evil", "doc": "'
    text = head + "x" * (length - len(head)) + '"}}'
    if literal is not None:
        cut = 4096 - 2 - len('", "flag": ')
        text = text[:cut] + f'", "flag": {literal}, "more": "' + text[cut + len(literal) + 12 :]
        assert text[4094:4098] == literal
    layers = '[{"class_name": "InputLayer", "config": {}}, ' + text + "]"
    document = '{"class_name": "Functional", "config": {"layers": ' + layers + "}}"
    json.loads(document)
    return document


@pytest.mark.parametrize(
    ("length", "literal", "options"),
    [
        (5000, None, {}),
        (5000, "true", {}),
        (5000, "null", {}),
        # Larger than an object header holds (64 KiB): dense attribute storage, a
        # fractal heap.
        (300_000, None, {"libver": "latest"}),
    ],
    ids=["4k-string", "4k-true", "4k-null", "300k-dense"],
)
def test_a_layer_config_is_read_whole_however_long(
    tmp_path: pathlib.Path, length: int, literal: str | None, options: dict[str, Any]
) -> None:
    # old: missed. The text search parsed each object from a 4 KiB window first and took
    # a window that ended inside a string or a `true` for bad JSON, not a short window.
    path = _model(tmp_path)
    models.keras_h5_file(path, _long_layer(length, literal), **options)

    report = _scan(path)

    assert report.worst() is Severity.CRITICAL, report.findings
    assert any("Lambda" in f.reason for f in report.findings)


def test_invalid_utf8_before_the_config_does_not_hide_it(tmp_path: pathlib.Path) -> None:
    # old: missed. The text search skipped what it counted as the first object's length,
    # and counted each invalid byte as three (its replacement character's UTF-8).
    path = _model(tmp_path)
    with h5py.File(path, "w") as handle:
        handle.attrs["notes"] = numpy.bytes_(b'{"n": "' + b"\xff" * 2000 + b'"}')
        handle.attrs["model_config"] = json.dumps(_lambda_config())

    assert _scan(path).worst() is Severity.CRITICAL


def _marshalled() -> str:
    return codecs.encode(marshal.dumps(compile("1", "x", "eval")), "base64").decode("ascii")


def test_marshalled_code_spelled_with_a_json_escape_is_found(tmp_path: pathlib.Path) -> None:
    # old: missed. A byte pattern looked for `"function": ["<base64>`; to the JSON parser
    # (and Keras) "\u0066unction" is "function".
    code = _marshalled().strip().replace("\n", "\\n")
    layer = '{"class_name": "Custom", "config": {"\\u0066unction": ["' + code
    text = '{"class_name": "Functional", "config": {"layers": [' + layer + '", null, null]}}]}}'
    path = _model(tmp_path)
    models.keras_h5_file(path, text)

    report = _scan(path)

    assert report.worst() is Severity.CRITICAL
    assert any("marshalled" in f.reason for f in report.findings)


@pytest.mark.parametrize(
    "model_config",
    [
        "not json at all",
        '{"class_name": "Functional", "config": {"layers": [',
        numpy.array([b'{"class_name": "Functional", ', b'"config": {}}']),
        numpy.int64(7),
    ],
    ids=["text", "cut-json", "array-of-strings", "number"],
)
def test_a_keras_config_that_cannot_be_judged_blocks(
    tmp_path: pathlib.Path, model_config: object
) -> None:
    # old: missed (no JSON found, no finding): what is not judged does not pass.
    path = _model(tmp_path)
    with h5py.File(path, "w") as handle:
        handle.attrs["model_config"] = model_config

    report = _scan(path)

    assert report.worst() is Severity.HIGH, report.findings
    assert any("model_config" in f.location for f in report.findings)


def test_a_file_h5py_cannot_open_blocks(tmp_path: pathlib.Path) -> None:
    # old: missed (read as text, nothing found).
    path = _model(tmp_path)
    path.write_bytes(hdf5_files.SIGNATURE + bytes(64) + b'{"class_name": "Dense"}')

    report = _scan(path)

    assert report.worst() is Severity.HIGH
    assert any("could not be scanned as hdf5" in f.reason for f in report.findings)


def test_a_pickle_in_an_attribute_is_walked(tmp_path: pathlib.Path) -> None:
    # old: missed. PyTables unpickles attribute values that are pickles when it reads them.
    path = _model(tmp_path)
    models.keras_h5_file(path)
    with h5py.File(path, "r+") as handle:
        handle["model_weights"].attrs["TITLE"] = numpy.void(op.call("os", "system", "true"))

    report = _scan(path)

    assert report.worst() is Severity.CRITICAL, report.findings
    assert any("os.system" in f.location for f in report.findings)


def test_a_pickle_in_a_dataset_is_found(tmp_path: pathlib.Path) -> None:
    # old: missed. pandas' HDFStore keeps object columns as pickles in datasets.
    path = _model(tmp_path)
    models.keras_h5_file(path)
    payload = numpy.frombuffer(op.call("subprocess", "check_output", "id"), dtype="u1")
    with h5py.File(path, "r+") as handle:
        handle.create_dataset("table/values", data=payload)

    assert _scan(path).worst() is Severity.CRITICAL


@pytest.mark.parametrize("where", ["root", "group", "dataset"])
@pytest.mark.parametrize(
    "attribute",
    ["model_config", "training_config"],
)
def test_configs_are_judged_wherever_they_are_stored(
    tmp_path: pathlib.Path, where: str, attribute: str
) -> None:
    # Found before too (as text); kept: fixed-length bytes, nested groups, datasets.
    config = {"loss": {"module": "os", "class_name": "system", "config": {}}}
    path = _model(tmp_path)
    models.keras_h5_file(path)
    with h5py.File(path, "r+") as handle:
        owner = {
            "root": handle,
            "group": handle["model_weights"],
            "dataset": handle["model_weights/dense/dense/bias:0"],
        }[where]
        owner.attrs[attribute] = numpy.bytes_(json.dumps(config).encode())

    report = _scan(path)

    assert report.worst() is Severity.CRITICAL, report.findings
    assert any("os.system" in f.location for f in report.findings)


def test_an_external_link_is_never_followed(tmp_path: pathlib.Path) -> None:
    # The file a link points to is not part of the model: it is not opened, and not read.
    outside = tmp_path / "outside.h5"
    models.keras_h5_file(outside, _lambda_config())
    path = _model(tmp_path)
    models.keras_h5_file(path)
    with h5py.File(path, "r+") as handle:
        handle["linked"] = h5py.ExternalLink(str(outside), "/")
        handle["soft"] = h5py.SoftLink("/model_weights")

    assert _scan(path).findings == []


def test_too_many_objects_are_not_judged_whole(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(hdf5_files, "MAX_OBJECTS", 3)
    path = _model(tmp_path)
    models.keras_h5_file(path)

    report = _scan(path)

    assert report.worst() is Severity.HIGH
    assert any("more than 3 groups and datasets" in f.reason for f in report.findings)


def test_an_oversized_fixed_attribute_is_not_read(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(hdf5_files, "MAX_ATTRIBUTE_BYTES", 1000)
    path = _model(tmp_path)
    models.keras_h5_file(path, numpy.bytes_(json.dumps(_lambda_config(pad="x" * 2000))))

    report = _scan(path)

    assert report.worst() is Severity.HIGH, report.findings
    assert any("more than is read" in f.reason for f in report.findings)


def test_benign_keras_files_have_no_findings(tmp_path: pathlib.Path) -> None:
    h5 = _model(tmp_path)
    models.keras_h5_file(h5)
    models.keras_h5_file(h5.with_name("dense.h5"), libver="latest", track_order=True)
    models.keras_v3_file(h5.with_name("model.keras"))
    weights = io.BytesIO()
    with h5py.File(weights, "w") as handle:  # model.save_weights("w.h5"): no config at all
        handle.attrs["layer_names"] = numpy.array([b"dense"])
        handle.create_dataset("dense/kernel:0", data=numpy.ones((64, 64), dtype="f4"))
    h5.with_name("weights.h5").write_bytes(weights.getvalue())

    report = _scan(h5)

    assert report.findings == []
    assert {r.path: r.format for r in report.files} == {
        "dense.h5": "hdf5",
        "model.h5": "hdf5",
        "model.keras": "zip",
        "weights.h5": "hdf5",
    }
    assert _blocking(report) == []


def test_libhdf5_is_left_no_plugin_directory_to_load_filters_from(tmp_path: pathlib.Path) -> None:
    h5py.h5pl.append(str(tmp_path).encode())  # as a plugin path set by the environment would
    path = _model(tmp_path)
    models.keras_h5_file(path)

    assert _scan(path).findings == []
    assert h5py.h5pl.size() == 0


@pytest.mark.parametrize(
    "dtype",
    [h5py.string_dtype("ascii"), h5py.string_dtype("utf-8")],
    ids=["vlen-ascii", "vlen-utf8"],
)
def test_variable_length_configs_of_either_character_set_are_judged(
    tmp_path: pathlib.Path, dtype: Any
) -> None:
    path = _model(tmp_path)
    with h5py.File(path, "w") as handle:
        handle.attrs.create("model_config", json.dumps(_lambda_config()), dtype=dtype)

    assert _scan(path).worst() is Severity.CRITICAL
