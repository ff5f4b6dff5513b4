"""Keras and TensorFlow formats: Lambda layers in configs, risky ops in SavedModel graphs."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterator
from typing import Any

from modelshield.api.v1alpha1.common import Severity
from modelshield.modelartifacts.scanning import callables, findings, pickles, scanners

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


#: A function tf-keras serialized with ``func_dump``: base64 of marshalled bytecode.
_MARSHALLED = re.compile(r"[A-Za-z0-9+/=\n]{16,}")
#: The keys whose values tf-keras hands to ``func_load`` (Lambda's function, output
#: shape and mask).
_FUNCTION_KEYS = ("function", "output_shape", "mask")


def marshalled(value: Any) -> bool:
    """Whether a config value is base64 of a marshalled code object (``func_dump``'s form)."""
    if not isinstance(value, str) or _MARSHALLED.fullmatch(value) is None:
        return False
    try:
        head = base64.b64decode(value[:4])[:1]  # four characters: the first three bytes
    except ValueError:
        return False
    # marshal's code object type ("c"), with or without its reference flag.
    return head in (b"c", b"\xe3")


def marshalled_findings(config: Any, name: str, path: str = "") -> Iterator[findings.Finding]:
    """Marshalled Python bytecode anywhere in a config, whatever class carries it."""
    if isinstance(config, dict):
        for key in _FUNCTION_KEYS:
            value = config.get(key)
            code = value[0] if isinstance(value, list) and value else value
            if marshalled(code) or (key == "function" and config.get("function_type") == "lambda"):
                yield findings.Finding(
                    findings.CRITICAL,
                    name,
                    f"{key} at {path or '$'}",
                    "marshalled Python bytecode in a layer config (runs when loaded)",
                )
        for key, value in config.items():
            yield from marshalled_findings(value, name, f"{path}.{key}")
    elif isinstance(config, list):
        for index, value in enumerate(config):
            yield from marshalled_findings(value, name, f"{path}[{index}]")


def config_findings(config: Any, name: str) -> list[findings.Finding]:
    """Lambda layers, marshalled code and outside references in a parsed Keras config."""
    return [
        *lambda_findings(config, name),
        *marshalled_findings(config, name),
        *reference_findings(config, name),
    ]


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
