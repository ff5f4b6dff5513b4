"""The static pickle opcode walker: every byte of a file, with ``pickletools.genops`` only.

A model file may hold several pickles and raw tensor bytes between them (legacy PyTorch,
joblib). After each pickle the walker searches the rest of the file for the next pickle
start (a PROTO opcode), so a pickle hidden after the data is found too. Candidates found
that way are parsed in a bounded window first, so random tensor bytes that merely look
like a pickle start never make the walker read gigabytes.
"""

from __future__ import annotations

import io
import math
import mmap
import pickletools
import re
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from modelshield.modelartifacts.scanning import callables, findings, opcodes, pickleregions

#: The walker gives up on pickles after this many opcodes (a finding, not a silent pass).
MAX_OPCODES = 50_000_000
#: Window in which a candidate pickle inside data is parsed before trusting it.
CANDIDATE_WINDOW = 1 << 20
#: How deep pickles nested inside byte strings are followed.
MAX_NESTING = 4

_PROTO = b"\x80"
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
_BYTES_OPS = {"BINBYTES", "SHORT_BINBYTES", "BINBYTES8", "BYTEARRAY8"}
_EXTENSION_OPS = {"EXT1", "EXT2", "EXT4"}
#: Opcodes the walker looks at itself; every other one only feeds the stack model.
_SPECIAL = (
    {"GLOBAL", "INST", "STACK_GLOBAL", "PROTO", "BUILD", "STOP"} | _BYTES_OPS | _EXTENSION_OPS
)


@dataclass
class _Stream:
    """What one pickle stream showed."""

    start: int
    end: int = 0
    complete: bool = False
    error: str = ""
    opcodes: int = 0
    found: list[findings.Finding] = field(default_factory=list)
    plausible: bool = True
    #: Imports the walk met (literal names, computed ones, extension codes).
    imports: int = 0
    #: Raw array bytes inside the stream (joblib), as (start, end) positions in the buffer.
    data_regions: list[tuple[int, int]] = field(default_factory=list)


def _looks_like_name(text: str) -> bool:
    return bool(_IDENTIFIER.match(text))


def _walk_one(stream: BinaryIO, file: str, base: int, depth: int, *, candidate: bool) -> _Stream:
    result = _Stream(start=base + stream.tell())
    machine = opcodes.Machine()
    try:
        while True:
            wrapper = _walk_until_array(stream, file, base, depth, machine, result, candidate)
            if wrapper is None:
                break
            # joblib wrote the array's bytes right here, inside the pickle stream.
            _skip_joblib_array(stream, file, base, depth, wrapper, result)
            machine.replace_top(opcodes.Opaque("array"))
    except Exception as error:  # noqa: BLE001 - genops raises ValueError, struct.error, ...
        result.error = str(error) or type(error).__name__
    result.end = base + stream.tell()
    return result


def _walk_until_array(
    stream: BinaryIO,
    file: str,
    base: int,
    depth: int,
    machine: opcodes.Machine,
    result: _Stream,
    candidate: bool,
) -> opcodes.Call | None:
    """Walk opcodes to STOP (returns None) or to a joblib array wrapper's BUILD."""
    step = machine.step
    count = result.opcodes
    try:
        for count, (opcode, argument, position) in enumerate(
            pickletools.genops(stream), result.opcodes + 1
        ):
            name = opcode.name
            if name not in _SPECIAL:
                # Most opcodes only feed the stack model (kept lean: it runs per opcode).
                step(name, argument)
                continue
            if count > MAX_OPCODES:
                raise ValueError(f"more than {MAX_OPCODES} opcodes")
            outcome = _special(
                name, argument, base + (position or 0), file, depth, machine, result, candidate
            )
            if outcome is not None:
                return outcome
    finally:
        result.opcodes = count
    return None


def _special(
    name: str,
    argument: Any,
    where: int,
    file: str,
    depth: int,
    machine: opcodes.Machine,
    result: _Stream,
    candidate: bool,
) -> opcodes.Call | None:
    """Handle one import, BUILD, PROTO, STOP or byte string; a joblib wrapper's BUILD returns."""
    if name in _BYTES_OPS:
        _nested(argument, file, where, depth, result)
        if len(argument) > _LARGE_LITERAL:
            # Tensor bytes pickled inline: the model keeps only that they were there.
            machine.step(name, b"")
            return None
    outcome = machine.step(name, argument)
    if name in ("GLOBAL", "INST", "STACK_GLOBAL") or name in _EXTENSION_OPS:
        result.imports += 1
    if name in ("GLOBAL", "INST", "STACK_GLOBAL"):
        if isinstance(outcome, opcodes.Symbol):
            if candidate and not (
                _looks_like_name(outcome.module) and _looks_like_name(outcome.name)
            ):
                result.plausible = False
                raise ValueError("not a pickle: a global that is not a name")
            _record_global(result, file, where, name, outcome.module, outcome.name)
        elif candidate:
            # Inside tensor bytes only literal imports count: noise computes nothing.
            result.plausible = False
            raise ValueError("not a pickle: a computed global")
        else:
            result.found.append(
                findings.Finding(
                    findings.HIGH,
                    file,
                    f"offset {where}: STACK_GLOBAL",
                    "imports a callable whose module or name is not a literal string "
                    "(a known scanner bypass)",
                )
            )
    elif name in _EXTENSION_OPS:
        if candidate:
            result.plausible = False
            raise ValueError("not a pickle: an extension code")
        result.found.append(
            findings.Finding(
                findings.HIGH,
                file,
                f"offset {where}: {name}",
                "imports a callable through the copyreg extension registry",
            )
        )
    elif name == "PROTO" and isinstance(argument, int) and argument > 5 and not candidate:
        result.found.append(
            findings.Finding(
                findings.MEDIUM, file, f"offset {where}", f"unknown pickle protocol {argument}"
            )
        )
    elif name == "BUILD" and isinstance(outcome, opcodes.Call) and outcome.callable == _JOBLIB:
        return outcome
    elif name == "STOP":
        result.complete = True
    return None


def _nested(argument: Any, file: str, where: int, depth: int, result: _Stream) -> None:
    """Walk a byte string that is itself a pickle (loaded by a nested pickle.loads)."""
    if depth >= MAX_NESTING or not isinstance(argument, bytes | bytearray):
        return
    if argument[:1] == _PROTO and argument[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        for inner in walk_buffer(bytes(argument), file, base=where, depth=depth + 1):
            result.found.append(
                findings.Finding(
                    inner.severity,
                    file,
                    inner.location,
                    f"nested pickle inside a byte string: {inner.reason}",
                )
            )


_JOBLIB = opcodes.Symbol("joblib.numpy_pickle", "NumpyArrayWrapper")
_LARGE_LITERAL = 4096


def _skip_joblib_array(
    stream: BinaryIO, file: str, base: int, depth: int, wrapper: opcodes.Call, result: _Stream
) -> None:
    state = wrapper.state if isinstance(wrapper.state, dict) else {}
    shape, dtype = state.get("shape"), state.get("dtype")
    if not isinstance(shape, tuple) or not all(isinstance(n, int) and n >= 0 for n in shape):
        raise ValueError("joblib array wrapper without a literal shape")
    descr = dtype.arguments[0] if isinstance(dtype, opcodes.Call) and dtype.arguments else None
    if not isinstance(descr, str):
        raise ValueError("joblib array wrapper without a literal dtype")
    if descr.lstrip("<>|=").startswith("O"):
        # Object arrays: joblib pickles them (protocol 2) into the stream.
        where = stream.tell()
        nested = _walk_one(stream, file, base, depth + 1, candidate=False)
        result.found.append(
            findings.Finding(
                findings.MEDIUM, file, f"offset {base + where}", "joblib object array (pickled)"
            )
        )
        result.found.extend(nested.found)
        if not nested.complete:
            raise ValueError(f"object array pickle does not parse: {nested.error}")
        return
    # Imported here: numpy only sizes dtypes, and `model scan` should start fast.
    import numpy

    itemsize = numpy.dtype(descr).itemsize
    dtype_state = dtype.state if isinstance(dtype, opcodes.Call) else None
    if isinstance(dtype_state, tuple) and len(dtype_state) > 5 and isinstance(dtype_state[5], int):
        itemsize = dtype_state[5] if dtype_state[5] > 0 else itemsize
    if state.get("numpy_array_alignment_bytes") is not None:
        padding = stream.read(1)
        if not padding:
            raise ValueError("truncated joblib array")
        stream.seek(padding[0], io.SEEK_CUR)
    size = math.prod(shape) * itemsize
    position = stream.tell()
    stream.seek(size, io.SEEK_CUR)
    if stream.tell() != position + size:
        raise ValueError("joblib array runs past the end of the file")
    result.data_regions.append((position, position + size))


def _record_global(
    result: _Stream, file: str, where: int, opcode: str, module: str, attribute: str
) -> None:
    severity, reason = callables.classify(module, attribute)
    if severity is not None:
        result.found.append(
            findings.Finding(
                severity, file, f"offset {where}: {opcode} {module}.{attribute}", reason
            )
        )


def walk(stream: BinaryIO, file: str, *, base: int = 0, depth: int = 0) -> list[findings.Finding]:
    """Findings for a stream that starts with a pickle (and may hold more, and data)."""
    data = stream.read()
    return walk_buffer(data, file, base=base, depth=depth)


def walk_buffer(
    data: mmap.mmap | bytes,
    file: str,
    *,
    base: int = 0,
    depth: int = 0,
    leading: bool = True,
    start: int = 0,
    end: int | None = None,
) -> list[findings.Finding]:
    """Findings for a buffer (a file's mmap, or bytes) holding pickles and raw data.

    Only ``data[start:end]`` is read (an archive member stored in place); offsets are
    reported from ``start``, plus ``base``. With ``leading`` the region must start with a
    pickle: one that does not parse is a finding. Every later pickle start is tried too.
    """
    found: list[findings.Finding] = []
    end = len(data) if end is None else end
    origin = base - start
    position = start
    if leading:
        first = _walk_one(
            pickleregions.reader(data, start, end), file, origin, depth, candidate=False
        )
        found.extend(first.found)
        if not first.complete:
            found.append(
                findings.Finding(
                    findings.HIGH if first.opcodes <= 1 else findings.MEDIUM,
                    file,
                    f"offset {first.end}",
                    f"pickle stream does not parse ({first.error}); the rest was searched for pickles",
                )
            )
        position = max(first.end - origin, start + 1)
        if first.complete:
            # The loader reads pickle after pickle (legacy PyTorch writes five in a row;
            # nothing stops an attacker from a sixth, of any protocol): walk each one that
            # starts where the previous one stopped.
            position = _walk_following(data, file, origin, depth, position, end, found)
        if isinstance(data, mmap.mmap) and start == 0:
            # The walked pages are page cache: drop them from this process's resident set.
            data.madvise(mmap.MADV_DONTNEED, 0, min(position, len(data)))
        # Array bytes that joblib reads raw are still searched for hidden pickles.
        for region_start, region_end in first.data_regions:
            found.extend(_search(data, file, origin, depth, region_start, region_end))
    found.extend(_search(data, file, origin, depth, position, end))
    return found


#: How many pickles in a row are walked after the first one (legacy PyTorch has five; a
#: loader reading pickle after pickle may read more). More is a finding, not a pass.
MAX_FOLLOWING = 10_000


def _walk_following(
    data: mmap.mmap | bytes,
    file: str,
    origin: int,
    depth: int,
    position: int,
    end: int,
    found: list[findings.Finding],
) -> int:
    """Walk the pickles that follow one another from position; returns where they stop."""
    for walked in range(MAX_FOLLOWING + 1):
        if position >= end:
            break
        if walked == MAX_FOLLOWING:
            found.append(
                findings.Finding(
                    findings.HIGH,
                    file,
                    f"offset {position + origin}",
                    f"more than {MAX_FOLLOWING} pickles in a row: the rest was not walked",
                )
            )
            break
        following = _walk_one(
            pickleregions.reader(data, position, end), file, origin, depth, candidate=False
        )
        if following.complete:
            found.extend(following.found)
            position = max(following.end - origin, position + 1)
            continue
        if following.imports and following.opcodes > 2:
            # Broken after importing something: pickle.load would already have run it.
            found.extend(following.found)
        break
    return position


def probe(data: mmap.mmap | bytes) -> bool:
    """Whether the start of data is a pickle as the unpickler reads it (any protocol).

    Not the first byte, not the file name: the walk itself. A stream that parses through
    to STOP, or that reaches an import before it breaks (the unpickler would already have
    imported and perhaps called it), is a pickle; text and other formats break within a
    few bytes. Only literal imports with names a module can have count, so source code
    that happens to start with an opcode letter (``import os``: INST "mport os") does not.
    """
    window = min(len(data), CANDIDATE_WINDOW)
    walked = _walk_one(pickleregions.reader(data, 0, window), "", 0, 0, candidate=True)
    if not walked.plausible:
        # A computed import or an extension code: the candidate rules reject those as
        # noise inside tensor bytes, but at the very start of a file they are a pickle.
        # A literal import of a name no module can have imports nothing: not a pickle.
        return walked.opcodes > 1 and "global that is not a name" not in walked.error
    if walked.complete:
        return walked.opcodes > 1
    return walked.imports > 0 or (window < len(data) and walked.end >= window - 16)


def _search(
    data: mmap.mmap | bytes, file: str, origin: int, depth: int, position: int, end: int
) -> list[findings.Finding]:
    """Findings of the pickles that start somewhere in data[position:end]."""
    found: list[findings.Finding] = []
    for candidate in pickleregions.candidates(data, position, end):
        if candidate < position:
            continue
        limit = min(end, candidate + CANDIDATE_WINDOW)
        window = _walk_one(
            pickleregions.reader(data, candidate, limit), file, origin, depth, candidate=True
        )
        if not window.plausible:
            continue
        if window.complete:
            found.extend(window.found)
            position = window.end - origin
            continue
        if window.opcodes > 8 and limit < end and window.end - origin >= limit - 16:
            # Still parsing at the window's end: a real, large pickle. Parse it whole.
            whole = _walk_one(
                pickleregions.reader(data, candidate, end), file, origin, depth, candidate=True
            )
            if whole.plausible:
                found.extend(whole.found)
                if whole.complete:
                    position = whole.end - origin
                continue
        if window.found:
            # Broken after importing something: pickle.load would already have run it.
            found.extend(window.found)
    return found


def looks_like_pickle(head: bytes) -> bool:
    """Whether the first bytes start a pickle of protocol 2 or later (or a protocol 0/1 one)."""
    if head[:1] == _PROTO:
        return head[1:2] != b"" and head[1] <= 5
    # Protocol 0/1 pickles start with a MARK, a container or a GLOBAL opcode.
    return head[:1] in (b"(", b"]", b"}", b"c", b")") and head[1:2] not in (b"", b" ")


#: File names that are pickles whatever their first bytes (a bad one is then a finding).
PICKLE_SUFFIXES = (".pkl", ".pickle", ".pt", ".pth", ".joblib", ".ckpt", ".dill", ".sav")


class PickleScanner:
    """Pickles, legacy PyTorch files and joblib files: opcodes, never unpickled."""

    name = "pickle"

    def matches(self, name: str, head: bytes) -> bool:
        """Pickle magic, or a pickle file name (``scanners.scan_buffer`` also probes)."""
        return looks_like_pickle(head) or name.lower().endswith(PICKLE_SUFFIXES)

    def scan(self, data: mmap.mmap | bytes, name: str, context: object) -> list[findings.Finding]:
        """Walk every pickle in the buffer."""
        return walk_buffer(data, name)
