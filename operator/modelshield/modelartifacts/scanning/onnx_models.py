"""ONNX models: the protobuf walked along the onnx schema to every tensor's external data.

``onnx.load`` reads a tensor's bytes from the file its ``external_data`` entry names
(``location``, relative to the model). A location that is absolute or climbs out with
``..`` makes the loader read a file outside the model (a key, a token) into the weights.
Each TensorProto is reached through the schema, wherever it sits — initializers, sparse
initializers, node attributes, subgraphs, functions — and its entries are read as the
key/value messages they are, so neither the order of the fields nor the length of a
location changes what is found (a byte pattern missed both).
"""

from __future__ import annotations

from collections.abc import Iterator

from modelshield.modelartifacts.scanning import findings, scanners

#: Nested messages are followed this deep (graphs in attributes in graphs...).
MAX_DEPTH = 32

# Field numbers of onnx.proto3 (message: {field: message it holds}).
_MODEL = {7: "graph", 25: "function"}
_SCHEMA: dict[str, dict[int, str]] = {
    "graph": {1: "node", 5: "tensor", 15: "sparse"},
    "function": {7: "node"},
    "node": {5: "attribute"},
    "attribute": {5: "tensor", 6: "graph", 10: "tensor", 11: "graph", 22: "sparse", 23: "sparse"},
    "sparse": {1: "tensor", 2: "tensor"},
    "tensor": {},
}
_TENSOR_EXTERNAL_DATA, _TENSOR_DATA_LOCATION, _TENSOR_NAME = 13, 14, 8


def _varint(data: scanners.Buffer, position: int, end: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if position >= end or shift > 63:
            raise ValueError(f"bad varint at offset {position}")
        byte = data[position]
        position += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, position


def fields(data: scanners.Buffer, start: int, end: int) -> Iterator[tuple[int, int, int, int]]:
    """(field, wire type, value start, value end) of each field of one message.

    For varints the value is read and (start, end) span its bytes; length-delimited
    values span their payload. Malformed input raises ValueError.
    """
    position = start
    while position < end:
        tag, position = _varint(data, position, end)
        field, wire = tag >> 3, tag & 7
        value_start = position
        if wire == 0:
            _, position = _varint(data, position, end)
        elif wire == 1:
            position += 8
        elif wire == 5:
            position += 4
        elif wire == 2:
            length, value_start = _varint(data, position, end)
            position = value_start + length
        else:
            raise ValueError(f"wire type {wire} at offset {position}")
        if position > end:
            raise ValueError(f"field {field} at offset {value_start} runs past its message")
        yield field, wire, value_start, position


def _text(data: scanners.Buffer, start: int, end: int) -> str:
    return bytes(data[start:end]).decode("utf-8", "replace")


def _tensors(
    data: scanners.Buffer, kind: str, start: int, end: int, depth: int
) -> Iterator[tuple[int, int, int]]:
    """(offset, start, end) of every TensorProto inside a message of this kind."""
    if depth > MAX_DEPTH:
        raise ValueError(f"messages nested deeper than {MAX_DEPTH}")
    children = _SCHEMA[kind]
    for field, wire, value_start, value_end in fields(data, start, end):
        child = children.get(field)
        if child is None or wire != 2:
            continue
        if child == "tensor":
            yield value_start, value_start, value_end
        else:
            yield from _tensors(data, child, value_start, value_end, depth + 1)


def _external_locations(
    data: scanners.Buffer, start: int, end: int
) -> Iterator[tuple[str, str | None]]:
    """(tensor name, location or None) of a tensor stored outside the model file."""
    name, external = "?", False
    locations: list[str] = []
    for field, wire, value_start, value_end in fields(data, start, end):
        if field == _TENSOR_NAME and wire == 2:
            name = _text(data, value_start, value_end)
        elif field == _TENSOR_DATA_LOCATION and wire == 0:
            external = _varint(data, value_start, value_end)[0] == 1
        elif field == _TENSOR_EXTERNAL_DATA and wire == 2:
            entry = {
                entry_field: _text(data, s, e)
                for entry_field, entry_wire, s, e in fields(data, value_start, value_end)
                if entry_wire == 2
            }
            external = True
            if entry.get(1) == "location":
                locations.append(entry.get(2, ""))
    if external and not locations:
        yield name, None
    elif external:
        yield from ((name, location) for location in locations)


def leaves_the_model(location: str) -> bool:
    """Whether an external data location reads outside the model's directory."""
    parts = location.replace("\\", "/").split("/")
    return (
        not location
        or location.startswith(("/", "\\"))
        or (len(location) > 1 and location[1] == ":")
        or ".." in parts
    )


class OnnxScanner:
    """ONNX ModelProto: every tensor's external data location, along the schema."""

    name = "onnx"

    def matches(self, name: str, head: bytes) -> bool:
        """The .onnx file name."""
        return name.lower().endswith(".onnx")

    def scan(
        self, data: scanners.Buffer, name: str, context: scanners.Context
    ) -> list[findings.Finding]:
        """Walk the model; flag external data that is outside the model directory."""
        found = []
        top = list(fields(data, 0, len(data)))
        if not any(field == 7 and wire == 2 for field, wire, _, _ in top):
            found.append(findings.Finding(findings.MEDIUM, name, "", "ONNX model without a graph"))
        for field, wire, start, end in top:
            kind = _MODEL.get(field)
            if kind is None or wire != 2:
                continue
            for offset, tensor_start, tensor_end in _tensors(data, kind, start, end, 0):
                for tensor, location in _external_locations(data, tensor_start, tensor_end):
                    if location is None:
                        found.append(
                            findings.Finding(
                                findings.HIGH,
                                name,
                                f"tensor {tensor!r} at offset {offset}",
                                "external data without a location: it cannot be checked",
                            )
                        )
                    elif leaves_the_model(location):
                        found.append(
                            findings.Finding(
                                findings.HIGH,
                                name,
                                f"tensor {tensor!r} at offset {offset}",
                                f"external data location {location!r} leaves the model directory",
                            )
                        )
        return found
