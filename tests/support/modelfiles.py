"""Small but real models, made by the tests: scikit-learn/joblib, PyTorch-style zip, etc."""

from __future__ import annotations

import io
import json
import pathlib
import struct
import zipfile
from typing import Any

import h5py  # type: ignore[import-untyped]
import joblib  # type: ignore[import-untyped]
import numpy
from sklearn.linear_model import LogisticRegression  # type: ignore[import-untyped]

from tests.support import picklecode as op


def sklearn_model(directory: pathlib.Path) -> pathlib.Path:
    """A fitted logistic regression saved with joblib (numpy arrays inside the stream)."""
    directory.mkdir(parents=True, exist_ok=True)
    features = numpy.array([[0.0, 1.0], [1.0, 0.0], [0.5, 0.5], [0.9, 0.2]])
    labels = numpy.array([0, 1, 0, 1])
    model = LogisticRegression().fit(features, labels)
    joblib.dump(model, directory / "model.joblib")
    (directory / "config.json").write_text(json.dumps({"framework": "sklearn", "features": 2}))
    return directory


def torch_style_zip(path: pathlib.Path, values: tuple[float, ...] = (1.0, 2.0, 3.0, 4.0)) -> None:
    """A PyTorch (>= 1.6) checkpoint of one float tensor, written without torch."""
    storage = (
        op.MARK
        + op.string("storage")
        + op.global_("torch", "FloatStorage")
        + op.string("0")
        + op.string("cpu")
        + op.binint(len(values))
        + op.TUPLE
        + op.BINPERSID
    )
    tensor = (
        op.global_("torch._utils", "_rebuild_tensor_v2")
        + op.MARK
        + storage
        + op.binint(0)
        + op.MARK
        + op.binint(len(values))
        + op.TUPLE
        + op.MARK
        + op.binint(1)
        + op.TUPLE
        + op.NEWFALSE
        + op.global_("collections", "OrderedDict")
        + op.EMPTY_TUPLE
        + op.REDUCE
        + op.TUPLE
        + op.REDUCE
    )
    data_pkl = (
        op.PROTO2
        + op.global_("collections", "OrderedDict")
        + op.EMPTY_TUPLE
        + op.REDUCE
        + op.MARK
        + op.string("weight")
        + tensor
        + op.SETITEMS
        + op.STOP
    )
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", data_pkl)
        archive.writestr("archive/byteorder", "little")
        archive.writestr("archive/data/0", struct.pack(f"<{len(values)}f", *values))
        archive.writestr("archive/version", "3\n")
        archive.writestr("archive/.data/serialization_id", "1234567890")


def safetensors_file(path: pathlib.Path) -> None:
    """A safetensors file with two tensors."""
    weight = struct.pack("<4f", 1.0, 2.0, 3.0, 4.0)
    bias = struct.pack("<2f", 0.5, -0.5)
    header = {
        "__metadata__": {"format": "pt"},
        "weight": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]},
        "bias": {"dtype": "F32", "shape": [2], "data_offsets": [16, 24]},
    }
    encoded = json.dumps(header).encode()
    encoded += b" " * (-len(encoded) % 8)
    path.write_bytes(struct.pack("<Q", len(encoded)) + encoded + weight + bias)


def _field(number: int, payload: bytes) -> bytes:
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def onnx_file(path: pathlib.Path, external_location: str | None = None) -> None:
    """An ONNX ModelProto (Identity graph) encoded by hand; optionally external data."""
    node = _field(1, b"x") + _field(2, b"y") + _field(4, b"Identity")
    graph = (
        _field(1, node)
        + _field(2, b"g")
        + _field(11, _field(1, b"x"))
        + _field(12, _field(1, b"y"))
    )
    if external_location is not None:
        entry = _field(1, b"location") + _field(2, external_location.encode())
        tensor = _field(8, b"w") + _field(13, entry)  # TensorProto.name, external_data
        graph += _field(5, tensor)  # GraphProto.initializer
    model = (
        _varint(1 << 3)
        + _varint(8)
        + _field(2, b"modelshield-tests")
        + _field(7, graph)
        + _field(8, _varint(2 << 3) + _varint(13))
    )
    path.write_bytes(model)


def gguf_file(path: pathlib.Path, chat_template: str) -> None:
    """A GGUF v3 file with metadata only (no tensors)."""

    def string(text: str) -> bytes:
        raw = text.encode()
        return struct.pack("<Q", len(raw)) + raw

    entries = [
        string("general.architecture") + struct.pack("<I", 8) + string("llama"),
        string("general.alignment") + struct.pack("<I", 4) + struct.pack("<I", 32),
        string("tokenizer.chat_template") + struct.pack("<I", 8) + string(chat_template),
    ]
    path.write_bytes(b"GGUF" + struct.pack("<IQQ", 3, 0, len(entries)) + b"".join(entries))


def _keras_layer(module: str, class_name: str, config: dict[str, object]) -> dict[str, object]:
    return {"module": module, "class_name": class_name, "config": config, "registered_name": None}


def keras_config(units: int = 2) -> dict[str, object]:
    """A Sequential model config as Keras 2.15 and 3 write it (Dense on a 4-wide input)."""
    dense = {
        "name": "dense",
        "trainable": True,
        "dtype": "float32",
        "units": units,
        "activation": "relu",
        "use_bias": True,
        "kernel_initializer": _keras_layer("keras.initializers", "GlorotUniform", {"seed": None}),
        "bias_initializer": _keras_layer("keras.initializers", "Zeros", {}),
        "kernel_regularizer": None,
        "bias_regularizer": None,
    }
    return {
        "class_name": "Sequential",
        "config": {
            "name": "sequential",
            "layers": [
                _keras_layer(
                    "keras.layers",
                    "InputLayer",
                    {"batch_input_shape": [None, 4], "dtype": "float32", "name": "input"},
                ),
                _keras_layer("keras.layers", "Dense", dense),
            ],
        },
        "keras_version": "2.15.0",
        "backend": "tensorflow",
    }


#: A compile config as Keras 2.15 writes it to training_config.
KERAS_TRAINING_CONFIG = {
    "loss": "mse",
    "metrics": None,
    "loss_weights": None,
    "optimizer_config": _keras_layer(
        "keras.optimizers",
        "Adam",
        {"name": "Adam", "learning_rate": 0.001, "beta_1": 0.9, "beta_2": 0.999, "amsgrad": False},
    ),
}


def keras_h5_file(
    path: pathlib.Path,
    model_config: object | None = None,
    training_config: object = KERAS_TRAINING_CONFIG,
    **options: Any,
) -> None:
    """A Keras HDF5 model (``model.save("x.h5")``'s layout), written with h5py.

    ``model_config`` and ``training_config`` are stored as given when they are strings or
    bytes (a test's exact spelling), else as their JSON; ``options`` go to ``h5py.File``.
    """

    def stored(value: object) -> object:
        return value if isinstance(value, str | bytes | numpy.ndarray) else json.dumps(value)

    with h5py.File(path, "w", **options) as handle:
        handle.attrs["backend"] = "tensorflow"
        handle.attrs["keras_version"] = "2.15.0"
        handle.attrs["model_config"] = stored(
            keras_config() if model_config is None else model_config
        )
        handle.attrs["training_config"] = stored(training_config)
        weights = handle.create_group("model_weights")
        weights.attrs["layer_names"] = numpy.array([b"dense"])
        weights.attrs["backend"] = "tensorflow"
        weights.attrs["keras_version"] = "2.15.0"
        dense = weights.create_group("dense")
        dense.attrs["weight_names"] = numpy.array([b"dense/kernel:0", b"dense/bias:0"])
        rng = numpy.random.default_rng(3)
        dense.create_dataset("dense/kernel:0", data=rng.standard_normal((4, 2), dtype="f4"))
        dense.create_dataset("dense/bias:0", data=numpy.zeros(2, dtype="f4"))


def keras_v3_file(path: pathlib.Path, config: object | None = None) -> None:
    """A Keras 3 ``.keras`` file: a zip of config.json, metadata.json, model.weights.h5."""
    weights = io.BytesIO()
    with h5py.File(weights, "w") as handle:
        variables = handle.create_group("layers/dense/vars")
        rng = numpy.random.default_rng(4)
        variables.create_dataset("0", data=rng.standard_normal((4, 2), dtype="f4"))
        variables.create_dataset("1", data=numpy.zeros(2, dtype="f4"))
        handle.create_group("optimizer/vars")
    metadata = {"keras_version": "3.6.0", "date_saved": "2026-11-25@10:00:00"}
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("metadata.json", json.dumps(metadata))
        archive.writestr("config.json", json.dumps(config or keras_config()))
        archive.writestr("model.weights.h5", weights.getvalue())


def benign_model(directory: pathlib.Path) -> pathlib.Path:
    """A model directory with one file of each benign format."""
    sklearn_model(directory)
    torch_style_zip(directory / "pytorch_model.bin")
    safetensors_file(directory / "model.safetensors")
    onnx_file(directory / "model.onnx")
    gguf_file(directory / "model.gguf", "{% for m in messages %}{{ m.content }}{% endfor %}")
    numpy.save(directory / "embeddings.npy", numpy.arange(12, dtype=numpy.float32).reshape(3, 4))
    (directory / "vocab.txt").write_text("hello\nworld\n")
    (directory / "tokenizer.json").write_text(json.dumps({"model": {"type": "BPE"}}))
    keras_h5_file(directory / "model.h5")
    keras_v3_file(directory / "model.keras")
    return directory
