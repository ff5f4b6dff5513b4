"""Keras and TensorFlow formats: Lambda layers in configs, risky ops in SavedModel graphs."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

from modelshield.modelartifacts.scanning import findings, pickles, scanners

_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
_LAMBDA = re.compile(rb'"class_name"\s*:\s*"(Lambda|TFOpLambda)"')
_MARSHALLED_FUNCTION = re.compile(rb'"function"\s*:\s*\[?\s*"[A-Za-z0-9+/=\\n]{16,}')
# Ops that read or write files or call back into Python (as ModelScan's list, plus PyFunc).
RISKY_OPS = (
    b"ReadFile",
    b"WriteFile",
    b"MatchingFiles",
    b"PyFunc",
    b"PyFuncStateless",
    b"EagerPyFunc",
    b"PrintV2",
    b"ImmutableConst",
    b"LoadLibrary",
)
# In a GraphDef, NodeDef.op is field 2 (tag 0x12), a length-prefixed string.
_OP_FIELD = re.compile(b"\x12(.)(" + b"|".join(RISKY_OPS) + b")(?![A-Za-z0-9_])", re.DOTALL)


def lambda_layers(config: Any, path: str = "") -> Iterator[tuple[str, str]]:
    """(JSON path, layer name) of every Lambda layer in a Keras model config."""
    if isinstance(config, dict):
        if config.get("class_name") in ("Lambda", "TFOpLambda"):
            layer = config.get("config", {})
            yield path, str(layer.get("name", "?")) if isinstance(layer, dict) else "?"
        for key, value in config.items():
            yield from lambda_layers(value, f"{path}.{key}")
    elif isinstance(config, list):
        for index, value in enumerate(config):
            yield from lambda_layers(value, f"{path}[{index}]")


def lambda_findings(config: Any, name: str) -> list[findings.Finding]:
    """A Critical finding per Lambda layer (its Python code runs when the model loads)."""
    return [
        findings.Finding(
            findings.CRITICAL,
            name,
            f"layer {layer} at {path or '$'}",
            "Keras Lambda layer: its Python function runs when the model is loaded",
        )
        for path, layer in lambda_layers(config)
    ]


class Hdf5Scanner:
    """Keras HDF5 files: the model_config attribute is JSON stored in the file."""

    name = "hdf5"

    def matches(self, name: str, head: bytes) -> bool:
        """The HDF5 signature."""
        return head.startswith(_HDF5_MAGIC)

    def scan(
        self, data: scanners.Buffer, name: str, context: scanners.Context
    ) -> list[findings.Finding]:
        """Search the whole file for Lambda layer declarations and marshalled functions."""
        found = []
        for match in _LAMBDA.finditer(data):
            found.append(
                findings.Finding(
                    findings.CRITICAL,
                    name,
                    f"offset {match.start()}",
                    "Keras Lambda layer in the model config: its code runs when the model loads",
                )
            )
        for match in _MARSHALLED_FUNCTION.finditer(data):
            found.append(
                findings.Finding(
                    findings.CRITICAL,
                    name,
                    f"offset {match.start()}",
                    "marshalled Python bytecode in a layer config",
                )
            )
        return found


class SavedModelScanner:
    """TensorFlow SavedModel and frozen graph protobufs: ops with file or Python access."""

    name = "tensorflow-graph"

    def matches(self, name: str, head: bytes) -> bool:
        """saved_model.pb, or any .pb/.pbtxt graph file."""
        return name.rsplit("/", 1)[-1].rsplit("!", 1)[-1] in (
            "saved_model.pb",
            "saved_model.pbtxt",
        ) or (name.endswith((".pb", ".pbtxt")))

    def scan(
        self, data: scanners.Buffer, name: str, context: scanners.Context
    ) -> list[findings.Finding]:
        """Find NodeDef ops from the risky list."""
        found = []
        seen: set[bytes] = set()
        for match in _OP_FIELD.finditer(data):
            length, op = match.group(1)[0], match.group(2)
            if length != len(op) or op in seen:
                continue
            seen.add(op)
            found.append(
                findings.Finding(
                    findings.HIGH
                    if op not in (b"PyFunc", b"PyFuncStateless", b"EagerPyFunc")
                    else findings.CRITICAL,
                    name,
                    f"op {op.decode()} at offset {match.start()}",
                    "TensorFlow op with file system or Python access",
                )
            )
        for op in (b'op: "' + op + b'"' for op in RISKY_OPS):
            if op in data and op not in seen:
                seen.add(op)
                found.append(
                    findings.Finding(
                        findings.HIGH, name, op.decode(), "TensorFlow op with file or Python access"
                    )
                )
        return found


def parse_json(data: scanners.Buffer) -> Any:
    """Parse a JSON document (no code can run)."""
    return json.loads(bytes(data))


_VARIABLES = re.compile(r"(^|/|!)[^/!]*\.(data-[0-9]{5}-of-[0-9]{5}|index)$")


class TensorflowVariablesScanner:
    """TensorFlow checkpoint shards (``variables.data-00000-of-00001``, ``.index``): raw tensors."""

    name = "tensorflow-variables"

    def matches(self, name: str, head: bytes) -> bool:
        """Checkpoint shard and index names."""
        return bool(_VARIABLES.search(name))

    def scan(
        self, data: scanners.Buffer, name: str, context: scanners.Context
    ) -> list[findings.Finding]:
        """Tensor bytes hold no code; they are still searched for hidden pickles."""
        return pickles.walk_buffer(data, name, leading=False)
