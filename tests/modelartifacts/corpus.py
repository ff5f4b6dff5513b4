"""A corpus of malicious model files, made by the tests and never loaded.

Each entry is a file and what the scanner must say about it: the minimum severity and a
piece of text its finding carries. The payloads only run ``true`` or similar; they are
never unpickled anyway.
"""

from __future__ import annotations

import io
import os
import pathlib
import pickle
import tarfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass

import joblib  # type: ignore[import-untyped]
import numpy

from modelshield.api.v1alpha1.common import Severity
from tests.support import modelfiles as models
from tests.support import picklecode as op


class _SystemCall:
    """Pickles as a call to os.system (the Pickler only records the reference)."""

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, ("true",))


@dataclass(frozen=True)
class Case:
    """One malicious file and the finding it must produce."""

    name: str
    severity: Severity
    needle: str
    make: Callable[[pathlib.Path], None]


def _write(data: bytes) -> Callable[[pathlib.Path], None]:
    def write(path: pathlib.Path) -> None:
        path.write_bytes(data)

    return write


def _getattr_chain(path: pathlib.Path) -> None:
    # getattr(__import__("os"), "system")("true")
    path.write_bytes(
        op.PROTO2
        + op.global_("builtins", "getattr")
        + op.MARK
        + op.global_("builtins", "__import__")
        + op.MARK
        + op.string("os")
        + op.TUPLE
        + op.REDUCE
        + op.string("system")
        + op.TUPLE
        + op.REDUCE
        + op.MARK
        + op.string("true")
        + op.TUPLE
        + op.REDUCE
        + op.STOP
    )


def _computed_stack_global(path: pathlib.Path) -> None:
    # The module name is the result of a call, so no scanner can read it as a string.
    path.write_bytes(
        op.PROTO4
        + op.global_("builtins", "str")
        + op.MARK
        + op.string("os")
        + op.TUPLE
        + op.REDUCE
        + op.short_string("system")
        + op.STACK_GLOBAL
        + op.MARK
        + op.string("true")
        + op.TUPLE
        + op.REDUCE
        + op.STOP
    )


def _memoized_stack_global(path: pathlib.Path) -> None:
    # Protocol 4 as Pickler writes it: strings memoized, then fetched back for STACK_GLOBAL.
    path.write_bytes(pickle.dumps(_SystemCall(), protocol=4))


def _nested_bytes(path: pathlib.Path) -> None:
    inner = op.call("os", "system", "true")
    path.write_bytes(
        op.PROTO2
        + op.global_("_pickle", "loads")
        + op.MARK
        + op.binbytes(inner)
        + op.TUPLE
        + op.REDUCE
        + op.STOP
    )


def _zip_nested(path: pathlib.Path) -> None:
    inner = io.BytesIO()
    with zipfile.ZipFile(inner, "w") as archive:
        archive.writestr("hidden/payload.pkl", op.call("runpy", "_run_code", "pass", "{}"))
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", op.call("collections", "OrderedDict"))
        archive.writestr("archive/extra.zip", inner.getvalue())


def _torch_zip_payload(path: pathlib.Path) -> None:
    models.torch_style_zip(path)
    with zipfile.ZipFile(path, "a") as archive:
        archive.writestr("archive/data/1", op.call("torch.utils.collect_env", "run", "true"))


def _appended_after_data(path: pathlib.Path) -> None:
    # Legacy PyTorch layout: pickles, raw storage bytes, then a pickle nobody expects.
    benign = pickle.dumps({"magic": 1}, protocol=2)
    path.write_bytes(benign + bytes(range(256)) * 64 + op.call("pip", "main", "install"))


def _joblib_after_array(path: pathlib.Path) -> None:
    joblib.dump({"weights": numpy.ones((64, 64)), "hook": _SystemCall()}, path)


def _joblib_gzip(path: pathlib.Path) -> None:
    joblib.dump({"weights": numpy.ones(8), "hook": _SystemCall()}, path, compress=("gzip", 3))


def _npy_objects(path: pathlib.Path) -> None:
    array = numpy.empty(2, dtype=object)
    array[0] = _SystemCall()
    array[1] = "text"
    with path.open("wb") as handle:
        numpy.save(handle, array, allow_pickle=True)


def _keras_lambda(path: pathlib.Path) -> None:
    config = {
        "class_name": "Sequential",
        "config": {
            "layers": [
                {"class_name": "InputLayer", "config": {"name": "input"}},
                {"class_name": "Lambda", "config": {"name": "evil", "function": {"code": "..."}}},
            ]
        },
    }
    models.keras_v3_file(path, config)


def _hdf5_lambda(path: pathlib.Path) -> None:
    config = {
        "class_name": "Functional",
        "config": {"layers": [{"class_name": "Lambda", "config": {"name": "evil"}}]},
    }
    models.keras_h5_file(path, config)


def _saved_model(path: pathlib.Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    node = b"\x0a\x04node\x12\x06PyFunc"  # NodeDef{name: "node", op: "PyFunc"}
    path.write_bytes(b"\x08\x01" + node)


def _deflated_torch(path: pathlib.Path) -> None:
    # The payload pickle compressed inside the checkpoint: not readable in place.
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("archive/data.pkl", op.call("os", "system", "true"))
        archive.writestr("archive/data/0", bytes(4096))


def _legacy_tar(path: pathlib.Path) -> None:
    with tarfile.open(path, "w") as archive:
        for name, data in (
            ("sys_info", pickle.dumps({"little_endian": True}, protocol=2)),
            ("pickle", op.call("subprocess", "check_output", "true")),
            ("storages", b"\x00" * 128),
        ):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))


CASES: tuple[Case, ...] = (
    Case("os_system.pkl", Severity.CRITICAL, "os.system", _write(op.call("os", "system", "true"))),
    Case("memoized.pkl", Severity.CRITICAL, "posix.system", _memoized_stack_global),
    Case("getattr_chain.pkl", Severity.CRITICAL, "builtins.getattr", _getattr_chain),
    Case("computed_global.pkl", Severity.HIGH, "not a literal string", _computed_stack_global),
    Case(
        "runpy.pkl",
        Severity.CRITICAL,
        "runpy._run_code",
        _write(op.call("runpy", "_run_code", "x")),
    ),
    Case("pip.pkl", Severity.CRITICAL, "pip.main", _write(op.call("pip", "main", "install"))),
    Case(
        "collect_env.pt",
        Severity.CRITICAL,
        "torch.utils.collect_env.run",
        _write(op.call("torch.utils.collect_env", "run", "true")),
    ),
    Case("nested_bytes.pkl", Severity.CRITICAL, "nested pickle", _nested_bytes),
    Case("zip_in_zip.pt", Severity.CRITICAL, "runpy._run_code", _zip_nested),
    Case("torch_payload.pt", Severity.CRITICAL, "collect_env", _torch_zip_payload),
    Case("appended.bin", Severity.CRITICAL, "pip.main", _appended_after_data),
    Case("after_array.joblib", Severity.CRITICAL, "posix.system", _joblib_after_array),
    Case("compressed.joblib", Severity.CRITICAL, "posix.system", _joblib_gzip),
    Case("objects.npy", Severity.CRITICAL, "posix.system", _npy_objects),
    Case("lambda.keras", Severity.CRITICAL, "Lambda", _keras_lambda),
    Case("lambda.h5", Severity.CRITICAL, "Lambda", _hdf5_lambda),
    Case("savedmodel/saved_model.pb", Severity.CRITICAL, "PyFunc", _saved_model),
    Case("legacy.tar", Severity.CRITICAL, "subprocess.check_output", _legacy_tar),
    Case(
        "protocol0_inst.pkl",
        Severity.CRITICAL,
        "INST os.system",
        _write(b"(S'true'\nios\nsystem\n."),
    ),
    Case(
        "deflated.pt",
        Severity.CRITICAL,
        "os.system",
        _deflated_torch,
    ),
    Case(
        "extension.pkl",
        Severity.HIGH,
        "extension registry",
        _write(op.PROTO2 + op.ext1(1) + op.EMPTY_TUPLE + op.REDUCE + op.STOP),
    ),
    Case(
        "template.gguf",
        Severity.CRITICAL,
        "chat template",
        lambda path: models.gguf_file(
            path, "{{ self.__init__.__globals__.__builtins__.__import__('os').popen('id') }}"
        ),
    ),
    Case(
        "traversal.onnx",
        Severity.HIGH,
        "leaves the model directory",
        lambda path: models.onnx_file(path, external_location="../../etc/passwd"),
    ),
    Case("modeling_evil.py", Severity.MEDIUM, "Python code", _write(b"import os\n")),
    Case("blob.weights", Severity.MEDIUM, "unrecognized", _write(bytes(range(256)) * 4)),
    Case("truncated.pkl", Severity.HIGH, "does not parse", _write(b"\x80\x02c")),
)


def build(directory: pathlib.Path) -> pathlib.Path:
    """Write every case under directory."""
    for case in CASES:
        path = directory / case.name
        path.parent.mkdir(parents=True, exist_ok=True)
        case.make(path)
    return directory
