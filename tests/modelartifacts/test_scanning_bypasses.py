"""Scanner bypasses from issue 21, each a file built from bytes (nothing unpickled or loaded).

Each test failed on the scanner before: a protocol-0 pickle under a non-pickle name whose
first opcode is not a usual one went to the text scanner; only the first of several
pickles in a row was reliably walked; callables not on the lists were Medium (below the
default blocking level); a dotted protocol-4 name was judged by its first component.
"""

from __future__ import annotations

import io
import pathlib

import h5py  # type: ignore[import-untyped]
import pytest

from modelshield.api.v1alpha1.common import Severity
from modelshield.modelartifacts.scanning import callables, catalog, findings
from tests.support import picklecode as op

# A protocol-0 call of os.system('true'): GLOBAL, MARK, STRING, TUPLE, REDUCE, STOP.
_SYSTEM_P0 = b"cos\nsystem\n(S'true'\ntR."


def _scan(tmp_path: pathlib.Path, name: str, data: bytes) -> findings.ScanReport:
    model = tmp_path / "model"
    model.mkdir(parents=True, exist_ok=True)
    (model / name).parent.mkdir(parents=True, exist_ok=True)
    (model / name).write_bytes(data)
    return catalog.scan_directory(model)


def _worst(report: findings.ScanReport) -> Severity | None:
    return report.worst()


@pytest.mark.parametrize(
    ("name", "data"),
    [
        # An INT and a POP first: neither a usual first opcode nor a PROTO.
        ("pytorch_model.bin", b"I0\n0" + _SYSTEM_P0),
        ("pytorch_model.bin", b"N0" + _SYSTEM_P0),
        ("weights.txt", b"S'harmless'\n0" + _SYSTEM_P0),
        # Padding past the 512 bytes a magic check looks at.
        ("model.bin", b"N0" * 400 + _SYSTEM_P0),
        # No STOP: the unpickler has called os.system before it fails.
        ("data.json", b"I1\n0cos\nsystem\n(S'true'\ntR"),
    ],
    ids=["int-first", "none-first", "string-first-text-name", "padded", "no-stop"],
)
def test_a_pickle_is_recognised_by_walking_it(
    tmp_path: pathlib.Path, name: str, data: bytes
) -> None:
    report = _scan(tmp_path, name, data)

    assert report.files[0].format == "pickle"
    assert _worst(report) is Severity.CRITICAL
    assert any("os.system" in f.location for f in report.findings)


def test_text_and_source_that_start_with_opcode_letters_are_not_pickles(
    tmp_path: pathlib.Path,
) -> None:
    for name, text in [
        ("vocab.txt", "hello\nworld\n"),
        ("modeling.py", "import os\nimport sys\n"),
        ("README.md", "I0\nthis is text\n"),
        ("merges.txt", "#version: 0.2\nĠ t\n"),
    ]:
        report = _scan(tmp_path / name, name, text.encode())
        assert report.files[0].format != "pickle", name
        assert not [f for f in report.findings if "imports" in f.reason], name


def _legacy_torch(*followers: bytes) -> bytes:
    # torch.save's legacy format: magic number, protocol, sys info, the object, storage
    # keys, each its own pickle, then raw storage bytes.
    magic = op.PROTO2 + b"\x8a\x0a" + (0x1950A86A20F9469CFC6C).to_bytes(10, "little") + op.STOP
    protocol = op.PROTO2 + b"M\xe9\x03" + op.STOP
    info = op.PROTO2 + op.EMPTY_DICT + op.STOP
    keys = op.PROTO2 + op.EMPTY_LIST + op.STOP
    return magic + protocol + info + b"".join(followers) + keys + b"\x04" + bytes(7) + bytes(16)


@pytest.mark.parametrize(
    "follower",
    [
        _SYSTEM_P0,  # protocol 0, no PROTO opcode: nothing for a PROTO search to find
        b"(cos\nsystem\nS'true'\no.",  # protocol 0 with INST-style OBJ
        b"\x80\x01" + b"cos\nsystem\n(S'true'\ntR.",  # a PROTO 1 no search pattern knows
    ],
    ids=["protocol-0", "obj", "proto-1"],
)
def test_every_pickle_of_a_legacy_torch_file_is_walked(
    tmp_path: pathlib.Path, follower: bytes
) -> None:
    report = _scan(tmp_path, "model.pt", _legacy_torch(follower))

    assert _worst(report) is Severity.CRITICAL
    assert any("os.system" in f.location for f in report.findings)


def test_a_benign_legacy_torch_file_has_no_findings(tmp_path: pathlib.Path) -> None:
    state = (
        op.PROTO2 + op.global_("collections", "OrderedDict") + op.EMPTY_TUPLE + op.REDUCE + op.STOP
    )

    assert _scan(tmp_path, "model.pt", _legacy_torch(state)).findings == []


def _stack_global(module: str, name: str) -> bytes:
    return (
        op.PROTO4
        + op.short_string(module)
        + op.short_string(name)
        + op.STACK_GLOBAL
        + op.short_string("true")
        + op.TUPLE1
        + op.REDUCE
        + op.STOP
    )


@pytest.mark.parametrize(
    ("module", "name"),
    [
        ("logging", "os.system"),
        ("collections", "os.system"),
        ("torch", "serialization.os.system"),
        ("numpy", "testing._private.utils.runstring"),
        ("builtins", "getattr.__self__.exec"),
    ],
)
def test_dotted_names_are_resolved_as_the_unpickler_does(
    tmp_path: pathlib.Path, module: str, name: str
) -> None:
    report = _scan(tmp_path, "model.pkl", _stack_global(module, name))

    assert _worst(report) is Severity.CRITICAL, report.findings


def test_an_unknown_dotted_name_blocks_at_the_default_level() -> None:
    severity, _ = callables.classify("somepackage", "helpers.anything")

    assert severity is not None
    assert severity.rank >= Severity.HIGH.rank


@pytest.mark.parametrize(
    ("module", "name"),
    [
        ("pandas", "read_pickle"),
        ("pandas.io.pickle", "read_pickle"),
        ("torch.storage", "_load_from_bytes"),
        ("torch.utils.cpp_extension", "load_inline"),
        ("mlflow.projects.backend.local", "_run_entry_point"),
        ("numpy.testing._private.utils", "runstring"),
        ("some_unknown_package.gadgets", "anything"),
    ],
)
def test_gadgets_and_unknown_callables_block_at_the_default_level(
    tmp_path: pathlib.Path, module: str, name: str
) -> None:
    report = _scan(tmp_path, "model.pkl", op.call(module, name, "x"))

    worst = _worst(report)
    assert worst is not None
    assert worst.rank >= Severity.HIGH.rank, report.findings


def test_the_allow_list_keeps_benign_references_clean() -> None:
    for module, name in sorted(callables.SAFE):
        assert callables.classify(module, name) == (None, ""), (module, name)


def _npy(descr: str) -> bytes:
    header = f"{{'descr': {descr}, 'fortran_order': False, 'shape': (1,), }}".encode()
    header += b" " * (63 - len(header) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header


@pytest.mark.parametrize(
    "descr", ["'object'", "'|O'", "'O8'", "'object_'", "[('a', '<f4'), ('b', 'object')]"]
)
def test_npy_object_arrays_are_seen_whatever_the_spelling(
    tmp_path: pathlib.Path, descr: str
) -> None:
    report = _scan(tmp_path, "embeddings.npy", _npy(descr) + op.call("os", "system", "true"))

    assert _worst(report) is Severity.CRITICAL, report.findings
    assert any("object array" in f.reason for f in report.findings)


def _hdf5_with(config_text: str) -> bytes:
    # A real HDF5 file (h5py), the config in the model_config attribute as Keras writes it.
    stored = io.BytesIO()
    with h5py.File(stored, "w") as handle:
        handle.attrs["model_config"] = config_text
    return stored.getvalue()


@pytest.mark.parametrize(
    "config_text",
    [
        # A JSON escape: "\u004cambda" is "Lambda" to Keras, not to a byte pattern.
        '{"class_name": "Functional", "config": {"layers": [{"class_name": "\\u004cambda",'
        ' "config": {"name": "evil"}}]}}',
        # A function reference through module/class_name (CVE-2025-1550 class).
        '{"class_name": "Functional", "config": {"layers": [{"module": "os",'
        ' "class_name": "system", "config": {}}]}}',
        '{"module": "keras.models", "class_name": "Model", "config": {"layers": [{"module":'
        ' "subprocess", "class_name": "Popen", "config": {}}]}}',
    ],
    ids=["escaped-lambda", "os-system", "subprocess"],
)
def test_hdf5_keras_configs_are_parsed_as_json(tmp_path: pathlib.Path, config_text: str) -> None:
    report = _scan(tmp_path, "model.h5", _hdf5_with(config_text))

    assert _worst(report) is Severity.CRITICAL, report.findings


@pytest.mark.parametrize(
    ("module", "severity"),
    [("os", Severity.CRITICAL), ("builtins", Severity.CRITICAL), ("mypackage", Severity.HIGH)],
)
def test_keras_configs_refer_only_to_keras(
    tmp_path: pathlib.Path, module: str, severity: Severity
) -> None:
    config = (
        '{"module": "keras", "class_name": "Sequential", "config": {"layers": [{"module": '
        f'"{module}", "class_name": "exec", "config": {{}}, "registered_name": null}}]}}}}'
    )

    report = _scan(tmp_path, "config.json", config.encode())

    assert _worst(report) is severity, report.findings


def test_a_benign_keras_config_has_no_findings(tmp_path: pathlib.Path) -> None:
    config = (
        '{"module": "keras", "class_name": "Sequential", "config": {"layers": [{"module": '
        '"keras.layers", "class_name": "Dense", "config": {"units": 2, "activation": '
        '{"module": "keras.activations", "class_name": "function", "config": "relu", '
        '"registered_name": "function"}, "kernel_initializer": {"module": '
        '"keras.initializers", "class_name": "GlorotUniform", "config": {}}}}]}}'
    )

    assert _scan(tmp_path, "config.json", config.encode()).findings == []
    assert _scan(tmp_path / "h5", "model.h5", _hdf5_with(config)).findings == []


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_real_benign_pickles_stay_clean_now_that_unknown_callables_block(
    tmp_path: pathlib.Path, protocol: int
) -> None:
    # Pickled here (never unpickled): what checkpoints carry besides tensors.
    import argparse
    import collections
    import datetime
    import pickle

    import numpy

    state = collections.OrderedDict(
        weight=numpy.arange(12, dtype=numpy.float32).reshape(3, 4),
        scale=numpy.float64(0.5),
        rng=numpy.random.default_rng(7),
        legacy_rng=numpy.random.RandomState(7),
        args=argparse.Namespace(lr=0.1, layers=[4, 4]),
        saved=datetime.datetime(2026, 12, 3, tzinfo=datetime.UTC),
        dtype=numpy.dtype("float16"),
    )

    report = _scan(tmp_path, "checkpoint.pkl", pickle.dumps(state, protocol=protocol))

    assert report.findings == []


def test_real_scikit_learn_models_have_nothing_blocking(tmp_path: pathlib.Path) -> None:
    import pickle

    import joblib  # type: ignore[import-untyped]
    import numpy
    from sklearn.ensemble import (  # type: ignore[import-untyped]
        GradientBoostingClassifier,
        RandomForestClassifier,
    )
    from sklearn.linear_model import LogisticRegression  # type: ignore[import-untyped]
    from sklearn.pipeline import make_pipeline  # type: ignore[import-untyped]
    from sklearn.preprocessing import OneHotEncoder, StandardScaler  # type: ignore[import-untyped]

    features = numpy.random.default_rng(0).normal(size=(40, 3))
    labels = (features[:, 0] > 0).astype(int)
    forest = make_pipeline(
        StandardScaler(),
        RandomForestClassifier(n_estimators=3, random_state=numpy.random.RandomState(1)),
    ).fit(features, labels)
    encoded = make_pipeline(
        OneHotEncoder(handle_unknown="ignore", dtype=numpy.float64), LogisticRegression()
    ).fit(numpy.array([["a"], ["b"]] * 20), labels)
    boosted = GradientBoostingClassifier(n_estimators=3).fit(features, labels)
    model = tmp_path / "model"
    model.mkdir()
    joblib.dump(forest, model / "forest.joblib")
    joblib.dump(boosted, model / "boosted.joblib", compress=3)
    (model / "encoded.pkl").write_bytes(pickle.dumps(encoded, protocol=5))

    report = catalog.scan_directory(model)

    assert [f for f in report.findings if f.severity.rank >= Severity.HIGH.rank] == []


def test_a_payload_after_many_benign_pickles_in_a_row_is_found(tmp_path: pathlib.Path) -> None:
    from modelshield.modelartifacts.scanning import pickles

    benign = op.PROTO2 + op.EMPTY_DICT + op.STOP
    data = benign * 100 + _SYSTEM_P0

    assert _worst(_scan(tmp_path, "model.pt", data)) is Severity.CRITICAL
    endless = benign * (pickles.MAX_FOLLOWING + 5) + _SYSTEM_P0
    worst = _worst(_scan(tmp_path / "endless", "model.pt", endless))
    assert worst is not None
    assert worst.rank >= Severity.HIGH.rank
