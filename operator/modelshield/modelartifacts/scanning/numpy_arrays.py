"""NumPy .npy arrays (and so .npz members): object arrays are pickles in disguise."""

from __future__ import annotations

import ast
import math
import struct
from typing import Any

from modelshield.modelartifacts.scanning import findings, pickles, scanners

_MAGIC = b"\x93NUMPY"


def _has_objects(descr: Any) -> bool:
    """Whether numpy.load reads this descriptor as holding Python objects (a pickle).

    Judged by numpy's own reader of .npy descriptors (``descr_to_dtype``, which ``load``
    uses), so every spelling counts: ``'O'``, ``'|O8'``, ``'object'``, ``'object_'``, a
    field of a structured dtype. A descriptor numpy cannot read is treated as objects.
    """
    # Imported here: numpy only reads dtypes, and `model scan` should start fast.
    from numpy.lib import format as npy_format

    try:
        return bool(npy_format.descr_to_dtype(descr).hasobject)
    except Exception:  # noqa: BLE001 - unreadable: fail closed
        return True


class NpyScanner:
    """The .npy format: a Python-literal header, then raw data or, for objects, a pickle."""

    name = "npy"

    def matches(self, name: str, head: bytes) -> bool:
        """The .npy magic."""
        return head.startswith(_MAGIC)

    def scan(
        self, data: scanners.Buffer, name: str, context: scanners.Context
    ) -> list[findings.Finding]:
        """Check the header; walk the payload of object arrays as a pickle."""
        major = data[6]
        if major == 1:
            (length,) = struct.unpack("<H", data[8:10])
            start = 10
        elif major in (2, 3):
            (length,) = struct.unpack("<I", data[8:12])
            start = 12
        else:
            return [
                findings.Finding(findings.MEDIUM, name, "offset 6", f"unknown .npy version {major}")
            ]
        header_text = bytes(data[start : start + length]).decode("latin-1")
        # literal_eval only builds literals: the header cannot run anything.
        header = ast.literal_eval(header_text)
        if not isinstance(header, dict) or "descr" not in header or "shape" not in header:
            return [findings.Finding(findings.MEDIUM, name, "header", "malformed .npy header")]
        offset = start + length
        if _has_objects(header["descr"]):
            found = [
                findings.Finding(
                    findings.HIGH,
                    name,
                    f"offset {offset}",
                    "NumPy object array: loading it unpickles (allow_pickle=True)",
                )
            ]
            found.extend(pickles.walk_buffer(data[offset:], name, base=offset))
            return found
        # Imported here: numpy only sizes dtypes, and `model scan` should start fast.
        import numpy

        expected = math.prod(header["shape"]) * numpy.dtype(header["descr"]).itemsize
        if len(data) - offset != expected:
            return [
                findings.Finding(
                    findings.MEDIUM,
                    name,
                    f"offset {offset}",
                    f"array data is {len(data) - offset} bytes, the header declares {expected}",
                )
            ]
        return []
