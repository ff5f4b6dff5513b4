"""Keras and TensorFlow formats: Lambda layers in configs, risky ops in SavedModel graphs."""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Iterator
from typing import Any

from modelshield.api.v1alpha1.common import Severity
from modelshield.modelartifacts.scanning import callables, findings, pickles, scanners

_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
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


#: Modules a Keras config may name (``{"module": ..., "class_name": ...}``): Keras'
#: own. Keras before 3.9 imported any module a config named (CVE-2025-1550).
_KERAS_MODULES = ("keras", "tf_keras")


def _module_reference(config: dict[str, Any], path: str, name: str) -> findings.Finding | None:
    module, class_name = config.get("module"), config.get("class_name")
    if not isinstance(module, str):
        return None
    shown = f"{module}.{class_name}" if isinstance(class_name, str) else module
    severity, why = callables.classify(module, str(class_name or ""))
    if severity is Severity.CRITICAL:
        return findings.Finding(
            findings.CRITICAL,
            name,
            f"{shown} at {path or '$'}",
            f"Keras config imports {shown} when loaded: {why}",
        )
    if module.split(".")[0] not in _KERAS_MODULES:
        return findings.Finding(
            findings.HIGH,
            name,
            f"{shown} at {path or '$'}",
            "Keras config names a module outside Keras; loading it imports that module "
            "and calls what it names (CVE-2025-1550)",
        )
    return None


def reference_findings(config: Any, name: str, path: str = "") -> Iterator[findings.Finding]:
    """Function and class references in a Keras config outside Keras itself."""
    if isinstance(config, dict):
        reference = _module_reference(config, path, name)
        if reference is not None:
            yield reference
        if config.get("class_name") == "__lambda__":
            yield findings.Finding(
                findings.CRITICAL,
                name,
                f"__lambda__ at {path or '$'}",
                "serialized Python function (bytecode) in a Keras config",
            )
        for key, value in config.items():
            yield from reference_findings(value, name, f"{path}.{key}")
    elif isinstance(config, list):
        for index, value in enumerate(config):
            yield from reference_findings(value, name, f"{path}[{index}]")


def config_findings(config: Any, name: str) -> list[findings.Finding]:
    """Lambda layers and outside references in a parsed Keras config (any JSON document)."""
    return [*lambda_findings(config, name), *reference_findings(config, name)]


#: Where a JSON object may start inside an HDF5 file (the model_config attribute).
_OBJECT_START = re.compile(rb'\{\s*"')
#: A config is parsed from a window this large first, larger ones up to the maximum.
_FIRST_WINDOW = 4096
_MAX_CONFIG = 64 << 20


def embedded_json(data: scanners.Buffer) -> Iterator[tuple[int, Any]]:
    """(offset, document) of every JSON object stored as text in a binary file.

    Parsed with the JSON parser, so escapes (``"\\u004cambda"``) mean what they mean to
    Keras; objects nested in a found one are not reported twice.
    """
    decoder = json.JSONDecoder()
    covered = 0
    for match in _OBJECT_START.finditer(data):
        start = match.start()
        if start < covered:
            continue
        window = _FIRST_WINDOW
        while True:
            text = bytes(data[start : start + window]).decode("utf-8", errors="replace")
            try:
                document, length = decoder.raw_decode(text)
            except ValueError as error:
                truncated = getattr(error, "pos", 0) >= len(text) - 1
                if truncated and window < _MAX_CONFIG and start + window < len(data):
                    window *= 8
                    continue
                break
            covered = start + len(text[:length].encode("utf-8", errors="replace"))
            yield start, document
            break


class Hdf5Scanner:
    """Keras HDF5 files: the model_config attribute is JSON stored in the file."""

    name = "hdf5"

    def matches(self, name: str, head: bytes) -> bool:
        """The HDF5 signature."""
        return head.startswith(_HDF5_MAGIC)

    def scan(
        self, data: scanners.Buffer, name: str, context: scanners.Context
    ) -> list[findings.Finding]:
        """Parse every JSON object stored in the file; judge it as a Keras config."""
        found = []
        for offset, document in embedded_json(data):
            for finding in config_findings(document, name):
                found.append(
                    dataclasses.replace(finding, location=f"offset {offset}: {finding.location}")
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
