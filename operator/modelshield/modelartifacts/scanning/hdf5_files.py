"""HDF5 files (Keras ``.h5``/``.hdf5``): the attributes a loader reads, read with h5py.

Keras rebuilds a model from the root group's ``model_config`` attribute (and compiles it
from ``training_config``), as h5py hands them over: a string, parsed as JSON. So this
scanner reads attributes the same way, through h5py and libhdf5, and judges them with
the Keras config checks; a config stored in dense attribute storage (a fractal heap),
as a variable-length string, behind a user block or spelled with JSON escapes is what
Keras reads, whatever its bytes look like.

Reading attributes runs no code: datasets (the weights) are never read, links are never
followed (``visititems`` walks hard links only, so an external link to another file is
never opened), and libhdf5 is told not to load filter plugins. libhdf5 is C code reading
hostile input: in the operator a scan runs in a worker process, so a crash there is a
failed check (the artifact turns NotReady), never the operator's.
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
from collections.abc import Iterator
from typing import Any

from modelshield.modelartifacts.scanning import findings, keras_models, pickles, scanners

SIGNATURE = b"\x89HDF\r\n\x1a\n"
#: The attributes Keras parses as JSON (``load_model`` and ``compile`` read them).
KERAS_CONFIGS = ("model_config", "training_config")
#: Groups and datasets looked at; past this the file is not judged whole (a finding).
MAX_OBJECTS = 100_000
#: Attributes looked at, over every object.
MAX_ATTRIBUTES = 200_000
#: Bytes read from attribute values in all; a single fixed-size value larger than this
#: is not read. (A variable-length string lives in the uncompressed global heap, so it is
#: never larger than the file.)
MAX_ATTRIBUTE_BYTES = 256 << 20


def signature_offset(data: scanners.Buffer) -> int | None:
    """Where libhdf5 finds the superblock: at 0, else at 512, 1024, 2048... (after a user block).

    libhdf5 (``H5FD_locate_signature``) looks at each of these offsets, so a file whose
    first bytes are text, a pickle or a zip is still an HDF5 file to h5py and Keras.
    """
    offset = 0
    while offset + len(SIGNATURE) <= len(data):
        if data[offset : offset + len(SIGNATURE)] == SIGNATURE:
            return offset
        offset = 512 if offset == 0 else offset * 2
    return None


def _h5py() -> Any:
    # A filter id libhdf5 does not know makes it search its plugin directories and load a
    # shared library from there: never while reading a model. "::" turns plugin loading
    # off when libhdf5 starts; an emptied search path covers an h5py imported before.
    os.environ["HDF5_PLUGIN_PRELOAD"] = "::"
    # Imported on the first HDF5 file: `model scan` and the webhook never pay for it.
    import h5py  # type: ignore[import-untyped]

    while h5py.h5pl.size():
        h5py.h5pl.remove(0)
    return h5py


@dataclasses.dataclass
class _Budget:
    objects: int = 0
    attributes: int = 0
    bytes_read: int = 0
    exceeded: str = ""


@dataclasses.dataclass(frozen=True)
class Attribute:
    """One attribute as h5py reads it, or why it was not read."""

    owner: str
    name: str
    value: Any = None
    #: Why the value was not read (too large, not a single value, unreadable), or "".
    skipped: str = ""


def _read(h5py: Any, owner: Any, name: str, budget: _Budget) -> Any:
    """The value of one scalar attribute, or raise ValueError saying why it is not read."""
    attribute = h5py.h5a.open(owner.id, name.encode())
    points = attribute.get_space().get_simple_extent_npoints()
    if attribute.shape != ():
        # Keras (and every loader of a config) reads one string; an array is never a
        # config to it, and its elements are not read (a bomb of references otherwise).
        raise ValueError(f"an array of {points} values, not a single value")
    kind = attribute.get_type()
    variable = isinstance(kind, h5py.h5t.TypeStringID) and kind.is_variable_str()
    size = attribute.get_storage_size()
    if not variable and size > MAX_ATTRIBUTE_BYTES - budget.bytes_read:
        raise ValueError(f"{size} bytes, more than is read from one file's attributes")
    value = owner.attrs[name]
    budget.bytes_read += len(value) if isinstance(value, str | bytes) else size
    return value


def attributes(data: scanners.Buffer, budget: _Budget | None = None) -> Iterator[Attribute]:
    """Every attribute of every group and dataset (root first), values as h5py returns them.

    An OSError (not an HDF5 file libhdf5 can open) propagates: the caller fails closed.
    """
    h5py = _h5py()
    budget = budget if budget is not None else _Budget()
    source = io.BytesIO(data) if isinstance(data, bytes) else scanners.MmapFile(data)
    with h5py.File(source, "r") as handle:
        owners: list[tuple[str, Any]] = [("/", handle)]

        def collect(path: str, node: Any) -> bool | None:
            if len(owners) >= MAX_OBJECTS:
                budget.exceeded = f"more than {MAX_OBJECTS} groups and datasets"
                return True  # stops the walk
            owners.append((f"/{path}", node))
            return None

        handle.visititems(collect)
        budget.objects = len(owners)
        for path, owner in owners:
            for name in owner.attrs:
                budget.attributes += 1
                if budget.attributes > MAX_ATTRIBUTES:
                    budget.exceeded = f"more than {MAX_ATTRIBUTES} attributes"
                    return
                if budget.bytes_read >= MAX_ATTRIBUTE_BYTES:
                    budget.exceeded = f"attribute values over {MAX_ATTRIBUTE_BYTES} bytes"
                    return
                try:
                    yield Attribute(path, name, _read(h5py, owner, name, budget))
                except (OSError, ValueError, TypeError) as error:
                    yield Attribute(path, name, skipped=str(error) or type(error).__name__)


def _text(value: Any) -> str | bytes | None:
    """A string attribute as Keras sees it: str, or bytes it would decode; else None."""
    if isinstance(value, str | bytes):
        return value
    if hasattr(value, "dtype") and getattr(value, "shape", None) == () and value.dtype.kind in "SU":
        return value.item()  # type: ignore[no-any-return]
    return None


def _version(value: Any) -> str:
    text = _text(value)
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="replace")
    return text[:64] if isinstance(text, str) else "?"


def _judge(attribute: Attribute, where: str, name: str) -> list[findings.Finding]:
    """Findings for one attribute value: a Keras config, a pickle, or nothing."""
    text = _text(attribute.value)
    required = attribute.owner == "/" and attribute.name in KERAS_CONFIGS
    if attribute.skipped or text is None:
        if not required:
            return []
        why = attribute.skipped or f"a {type(attribute.value).__name__}, not a string"
        return [
            findings.Finding(
                findings.HIGH, name, where, f"Keras config attribute not judged: {why}"
            )
        ]
    raw = text.encode("utf-8", errors="surrogatepass") if isinstance(text, str) else text
    found: list[findings.Finding] = []
    if isinstance(text, bytes) and pickles.probe(text):
        # PyTables unpickles attribute values that are pickles when it reads them.
        found.extend(pickles.walk_buffer(text, f"{name}!{where}"))
    stripped = raw.lstrip()
    if not required and stripped[:1] not in (b"{", b"["):
        return found
    try:
        document = json.loads(raw)
    except ValueError as error:
        if required:
            found.append(
                findings.Finding(
                    findings.HIGH, name, where, f"Keras config attribute is not JSON: {error}"
                )
            )
        return found
    for finding in keras_models.config_findings(document, name):
        found.append(dataclasses.replace(finding, location=f"{where}: {finding.location}"))
    return found


class Hdf5Scanner:
    """HDF5 files: every attribute read with h5py; Keras configs judged, pickles walked."""

    name = "hdf5"

    def matches(self, name: str, head: bytes) -> bool:
        """The HDF5 signature at the start."""
        return head.startswith(SIGNATURE)

    def claims_content(self, data: scanners.Buffer) -> bool:
        """The signature after a user block: h5py opens the file whatever comes first."""
        return signature_offset(data) is not None

    def scan(
        self, data: scanners.Buffer, name: str, context: scanners.Context
    ) -> list[findings.Finding]:
        """Judge the attributes; search the rest of the file for hidden pickles."""
        budget = _Budget()
        read = list(attributes(data, budget))
        root = {a.name: a.value for a in read if a.owner == "/" and not a.skipped}
        version = (
            f" (keras_version {_version(root['keras_version'])})"
            if ("keras_version" in root)
            else ""
        )
        found: list[findings.Finding] = []
        for attribute in read:
            where = f"attribute {attribute.name!r} of {attribute.owner}"
            if attribute.owner == "/" and attribute.name in KERAS_CONFIGS:
                where += version
            found.extend(_judge(attribute, where, name))
        if budget.exceeded:
            found.append(
                findings.Finding(findings.HIGH, name, "", f"not judged whole: {budget.exceeded}")
            )
        # Tensor bytes hold no code for Keras; a pickle hidden among them is still reported
        # (other HDF5 readers, PyTables among them, unpickle what they find).
        found.extend(pickles.walk_buffer(data, name, leading=False))
        return found
