"""Formats that hold no code: safetensors, GGUF and ONNX. Their headers are checked.

These formats cannot run code by design; what can go wrong is a malformed header (a parser
bug is an attack surface), external data paths that leave the model directory (ONNX), and
a GGUF chat template that abuses the Jinja sandbox (CVE-2024-34359 style).
"""

from __future__ import annotations

import json
import re
import struct

from modelshield.modelartifacts.scanning import findings, scanners

_SAFETENSORS_DTYPES = {
    "BOOL": 1,
    "U8": 1,
    "I8": 1,
    "F8_E5M2": 1,
    "F8_E4M3": 1,
    "F8_E8M0": 1,
    "F4": 1,
    "F6_E2M3": 1,
    "F6_E3M2": 1,
    "I16": 2,
    "U16": 2,
    "F16": 2,
    "BF16": 2,
    "I32": 4,
    "U32": 4,
    "F32": 4,
    "I64": 8,
    "U64": 8,
    "F64": 8,
    "C64": 8,
}
MAX_HEADER = 100 << 20


class SafetensorsScanner:
    """safetensors: a JSON header of tensors and byte ranges, then raw data."""

    name = "safetensors"

    def matches(self, name: str, head: bytes) -> bool:
        """The file name, or a plausible header length followed by a JSON object."""
        if name.endswith(".safetensors"):
            return True
        if len(head) < 9:
            return False
        (length,) = struct.unpack("<Q", head[:8])
        return 2 <= length <= MAX_HEADER and head[8:9] == b"{"

    def scan(
        self, data: scanners.Buffer, name: str, context: scanners.Context
    ) -> list[findings.Finding]:
        """Check that every tensor lies inside the data and the ranges tile it."""

        def bad(why: str, where: str = "header") -> list[findings.Finding]:
            return [findings.Finding(findings.MEDIUM, name, where, f"malformed safetensors: {why}")]

        if len(data) < 8:
            return bad("shorter than its length prefix")
        (length,) = struct.unpack("<Q", data[:8])
        if length > MAX_HEADER or 8 + length > len(data):
            return bad(f"header length {length} exceeds the file")
        try:
            header = json.loads(bytes(data[8 : 8 + length]))
        except ValueError as error:
            return bad(f"header is not JSON ({error})")
        if not isinstance(header, dict):
            return bad("header is not an object")
        data_size = len(data) - 8 - length
        ranges = []
        for tensor, entry in header.items():
            if tensor == "__metadata__":
                continue
            if not isinstance(entry, dict):
                return bad(f"entry {tensor!r} is not an object")
            dtype, shape, offsets = (
                entry.get("dtype"),
                entry.get("shape"),
                entry.get("data_offsets"),
            )
            if (
                dtype not in _SAFETENSORS_DTYPES
                or not isinstance(shape, list)
                or not (isinstance(offsets, list) and len(offsets) == 2)
            ):
                return bad(f"tensor {tensor!r} has a bad dtype, shape or offsets")
            begin, end = offsets
            if not 0 <= begin <= end <= data_size:
                return bad(f"tensor {tensor!r} lies outside the data", f"tensor {tensor}")
            ranges.append((begin, end))
        position = 0
        for begin, end in sorted(ranges):
            if begin != position:
                return bad(f"tensor data overlaps or leaves a gap at {begin}")
            position = end
        if position != data_size:
            return bad(f"{data_size - position} bytes after the last tensor")
        return []


_GGUF_SCALARS = {
    0: "<B",
    1: "<b",
    2: "<H",
    3: "<h",
    4: "<I",
    5: "<i",
    6: "<f",
    7: "<?",
    10: "<Q",
    11: "<q",
    12: "<d",
}
# Template constructs that reach Python objects from inside the Jinja sandbox.
_TEMPLATE_ESCAPES = re.compile(
    r"__(class|globals|builtins|subclasses|mro|base|bases|init|import)__|\bos\.(system|popen)|"
    r"\bsubprocess\b|\beval\(|\bexec\(|\bimport_module\b|\bcycler\b|\bjoiner\b|\blipsum\b",
)


class _Reader:
    def __init__(self, data: scanners.Buffer, position: int) -> None:
        self.data = data
        self.position = position

    def take(self, size: int) -> bytes:
        if size < 0 or self.position + size > len(self.data):
            raise ValueError(f"truncated at offset {self.position}")
        chunk = bytes(self.data[self.position : self.position + size])
        self.position += size
        return chunk

    def unpack(self, layout: str) -> int | float | bool:
        value: int | float | bool = struct.unpack(layout, self.take(struct.calcsize(layout)))[0]
        return value

    def string(self) -> str:
        return self.take(int(self.unpack("<Q"))).decode("utf-8", "replace")


class GgufScanner:
    """GGUF (llama.cpp): metadata key/values, among them a Jinja chat template."""

    name = "gguf"

    def matches(self, name: str, head: bytes) -> bool:
        """The GGUF magic."""
        return head.startswith(b"GGUF")

    def scan(
        self, data: scanners.Buffer, name: str, context: scanners.Context
    ) -> list[findings.Finding]:
        """Parse the metadata; flag chat templates that try to leave the sandbox."""
        reader = _Reader(data, 4)
        version = reader.unpack("<I")
        if version not in (2, 3):
            return [
                findings.Finding(
                    findings.MEDIUM, name, "offset 4", f"GGUF version {version} not checked"
                )
            ]
        reader.unpack("<Q")
        count = int(reader.unpack("<Q"))
        if count > 1_000_000:
            return [
                findings.Finding(findings.MEDIUM, name, "offset 16", f"{count} metadata entries")
            ]
        found = []
        for _ in range(count):
            key = reader.string()
            kind = int(reader.unpack("<I"))
            where = reader.position
            value = self._value(reader, kind)
            if "chat_template" in key and isinstance(value, str):
                match = _TEMPLATE_ESCAPES.search(value)
                if match:
                    found.append(
                        findings.Finding(
                            findings.CRITICAL,
                            name,
                            f"metadata {key} at offset {where}",
                            f"chat template reaches Python internals ({match.group(0)!r}): "
                            "server-side template injection",
                        )
                    )
        return found

    def _value(self, reader: _Reader, kind: int) -> object:
        if kind in _GGUF_SCALARS:
            return reader.unpack(_GGUF_SCALARS[kind])
        if kind == 8:
            return reader.string()
        if kind == 9:
            inner = int(reader.unpack("<I"))
            length = int(reader.unpack("<Q"))
            if inner in _GGUF_SCALARS:
                reader.take(length * struct.calcsize(_GGUF_SCALARS[inner]))
            else:
                for _ in range(length):
                    self._value(reader, inner)
            return None
        raise ValueError(f"unknown GGUF value type {kind} at offset {reader.position}")


_ONNX_LOCATION = re.compile(rb"\x0a\x08location\x12(.)", re.DOTALL)


def _varint(data: scanners.Buffer, position: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if position >= len(data) or shift > 63:
            raise ValueError(f"bad varint at offset {position}")
        byte = data[position]
        position += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, position


class OnnxScanner:
    """ONNX ModelProto: the top-level protobuf fields, and external data locations."""

    name = "onnx"

    def matches(self, name: str, head: bytes) -> bool:
        """The .onnx file name."""
        return name.lower().endswith(".onnx")

    def scan(
        self, data: scanners.Buffer, name: str, context: scanners.Context
    ) -> list[findings.Finding]:
        """Walk the top-level fields; flag external data outside the model directory."""
        position, fields = 0, set()
        while position < len(data):
            tag, position = _varint(data, position)
            field, wire = tag >> 3, tag & 7
            if wire == 0:
                _, position = _varint(data, position)
            elif wire == 1:
                position += 8
            elif wire == 5:
                position += 4
            elif wire == 2:
                length, position = _varint(data, position)
                position += length
            else:
                raise ValueError(f"wire type {wire} at offset {position}")
            if position > len(data):
                raise ValueError("a field runs past the end of the file")
            fields.add(field)
        found = []
        if 7 not in fields:
            found.append(findings.Finding(findings.MEDIUM, name, "", "ONNX model without a graph"))
        for match in _ONNX_LOCATION.finditer(data):
            length = match.group(1)[0]
            location = bytes(data[match.end() : match.end() + length]).decode("utf-8", "replace")
            if location.startswith("/") or ".." in location.split("/"):
                found.append(
                    findings.Finding(
                        findings.HIGH,
                        name,
                        f"offset {match.start()}",
                        f"external data location {location!r} leaves the model directory",
                    )
                )
        return found
