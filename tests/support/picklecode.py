"""Pickle opcodes written by hand, for files a Pickler would refuse to write (never loaded)."""

from __future__ import annotations

import struct

PROTO2 = b"\x80\x02"
PROTO4 = b"\x80\x04"
MARK = b"("
STOP = b"."
TUPLE = b"t"
TUPLE1 = b"\x85"
TUPLE2 = b"\x86"
EMPTY_TUPLE = b")"
EMPTY_DICT = b"}"
EMPTY_LIST = b"]"
REDUCE = b"R"
BUILD = b"b"
STACK_GLOBAL = b"\x93"
MEMOIZE = b"\x94"
BINPERSID = b"Q"
SETITEMS = b"u"
NEWFALSE = b"\x89"
POP = b"0"


def global_(module: str, name: str) -> bytes:
    """GLOBAL module name (protocol 0-2 style import)."""
    return b"c" + f"{module}\n{name}\n".encode()


def string(text: str) -> bytes:
    """BINUNICODE."""
    raw = text.encode()
    return b"X" + struct.pack("<I", len(raw)) + raw


def short_string(text: str) -> bytes:
    """SHORT_BINUNICODE (protocol 4)."""
    raw = text.encode()
    return b"\x8c" + bytes([len(raw)]) + raw


def binint(value: int) -> bytes:
    """BININT (signed 4 bytes)."""
    return b"J" + struct.pack("<i", value)


def binbytes(data: bytes) -> bytes:
    """BINBYTES (protocol 3)."""
    return b"B" + struct.pack("<I", len(data)) + data


def binput(index: int) -> bytes:
    """BINPUT."""
    return b"q" + bytes([index])


def binget(index: int) -> bytes:
    """BINGET."""
    return b"h" + bytes([index])


def ext1(code: int) -> bytes:
    """EXT1: a callable from the copyreg extension registry."""
    return b"\x82" + bytes([code])


def call(module: str, name: str, *arguments: str) -> bytes:
    """A complete pickle that would call module.name(*arguments) when loaded."""
    return (
        PROTO2
        + global_(module, name)
        + MARK
        + b"".join(string(argument) for argument in arguments)
        + TUPLE
        + REDUCE
        + STOP
    )
