"""Formats that hold no code: safetensors and GGUF. Their headers are checked.

These formats cannot run code by design; what can go wrong is a malformed header (a parser
bug is an attack surface) and a GGUF chat template that abuses the Jinja sandbox
(CVE-2024-34359 style; judged by ``templates``). ONNX is in ``onnx_models``.
"""

from __future__ import annotations

import json
import struct

from modelshield.modelartifacts.scanning import findings, scanners, templates

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
                location = f"metadata {key} at offset {where}"
                found.extend(templates.template_findings(value, name, location))
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
