"""A symbolic model of the pickle machine's stack: literal values only, nothing is called.

The walker needs a few values that a pickle computes: the module and name strings of a
STACK_GLOBAL (often memoized first), and the state of a joblib NumpyArrayWrapper (shape,
dtype), after which joblib writes the array's raw bytes into the middle of the stream.
Imports become ``Symbol``s and calls ``Call``s; they are recorded, never performed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Symbol:
    """A callable a pickle imports (GLOBAL, STACK_GLOBAL, INST)."""

    module: str
    name: str


@dataclass
class Call:
    """A call a pickle would make (REDUCE, NEWOBJ, OBJ, INST), with the state BUILD sets."""

    callable: Any
    arguments: Any
    state: Any = None


@dataclass(frozen=True)
class Opaque:
    """A value the model does not follow (persistent ids, buffers, extension codes)."""

    what: str


class _Mark:
    pass


MARK = _Mark()

_LITERALS = {
    "INT",
    "BININT",
    "BININT1",
    "BININT2",
    "LONG",
    "LONG1",
    "LONG4",
    "FLOAT",
    "BINFLOAT",
    "STRING",
    "BINSTRING",
    "SHORT_BINSTRING",
    "UNICODE",
    "SHORT_BINUNICODE",
    "BINUNICODE",
    "BINUNICODE8",
    "BINBYTES",
    "SHORT_BINBYTES",
    "BINBYTES8",
    "BYTEARRAY8",
    "NONE",
    "NEWTRUE",
    "NEWFALSE",
}
_CONSTANTS = {"NONE": None, "NEWTRUE": True, "NEWFALSE": False}


@dataclass
class Machine:
    """Follows the stack and memo of one pickle stream.

    ``step`` returns what the walker needs to know about the opcode: the Symbol a
    (STACK_)GLOBAL imported (None when its operands were not literal strings), or the
    Call that a BUILD just completed.
    """

    stack: list[Any] = field(default_factory=list)
    memo: dict[int, Any] = field(default_factory=dict)
    broken: bool = False

    def _pop(self) -> Any:
        return self.stack.pop() if self.stack else Opaque("underflow")

    def _pop_mark(self) -> list[Any]:
        items: list[Any] = []
        while self.stack:
            item = self.stack.pop()
            if item is MARK:
                items.reverse()
                return items
            items.append(item)
        self.broken = True
        items.reverse()
        return items

    def _top(self) -> Any:
        return self.stack[-1] if self.stack else Opaque("empty")

    def step(self, name: str, argument: Any) -> Any:
        """Apply one opcode; return the imported Symbol or completed Call when relevant."""
        stack = self.stack
        if name in _LITERALS:
            stack.append(_CONSTANTS.get(name, argument) if name in _CONSTANTS else argument)
        elif name == "MARK":
            stack.append(MARK)
        elif name == "EMPTY_TUPLE":
            stack.append(())
        elif name in ("EMPTY_LIST", "EMPTY_SET"):
            stack.append([])
        elif name == "EMPTY_DICT":
            stack.append({})
        elif name in ("TUPLE", "FROZENSET"):
            stack.append(tuple(self._pop_mark()))
        elif name in ("TUPLE1", "TUPLE2", "TUPLE3"):
            count = int(name[-1])
            items = [self._pop() for _ in range(count)]
            stack.append(tuple(reversed(items)))
        elif name == "LIST":
            stack.append(self._pop_mark())
        elif name == "APPEND":
            value = self._pop()
            if isinstance(self._top(), list):
                self._top().append(value)
        elif name in ("APPENDS", "ADDITEMS"):
            values = self._pop_mark()
            if isinstance(self._top(), list):
                self._top().extend(values)
        elif name == "DICT":
            items = self._pop_mark()
            stack.append(_pairs(items))
        elif name == "SETITEM":
            value, key = self._pop(), self._pop()
            if isinstance(self._top(), dict) and _hashable(key):
                self._top()[key] = value
        elif name == "SETITEMS":
            items = self._pop_mark()
            if isinstance(self._top(), dict):
                self._top().update(_pairs(items))
        elif name in ("PUT", "BINPUT", "LONG_BINPUT"):
            self.memo[int(argument)] = self._top()
        elif name == "MEMOIZE":
            self.memo[len(self.memo)] = self._top()
        elif name in ("GET", "BINGET", "LONG_BINGET"):
            stack.append(self.memo.get(int(argument), Opaque("memo")))
        elif name in ("GLOBAL", "INST"):
            module, _, attribute = str(argument).partition(" ")
            symbol = Symbol(module, attribute)
            if name == "INST":
                stack.append(Call(symbol, tuple(self._pop_mark())))
            else:
                stack.append(symbol)
            return symbol
        elif name == "STACK_GLOBAL":
            attribute, module = self._pop(), self._pop()
            if isinstance(module, str) and isinstance(attribute, str):
                symbol = Symbol(module, attribute)
                stack.append(symbol)
                return symbol
            stack.append(Opaque("computed global"))
            return None
        elif name == "REDUCE":
            arguments, function = self._pop(), self._pop()
            stack.append(Call(function, arguments))
        elif name == "NEWOBJ":
            arguments, cls = self._pop(), self._pop()
            stack.append(Call(cls, arguments))
        elif name == "NEWOBJ_EX":
            keywords, arguments, cls = self._pop(), self._pop(), self._pop()
            stack.append(Call(cls, (arguments, keywords)))
        elif name == "OBJ":
            items = self._pop_mark()
            stack.append(Call(items[0] if items else Opaque("none"), tuple(items[1:])))
        elif name == "BUILD":
            state = self._pop()
            target = self._top()
            if isinstance(target, Call):
                target.state = state
                return target
        elif name == "POP":
            self._pop()
        elif name == "POP_MARK":
            self._pop_mark()
        elif name == "DUP":
            stack.append(self._top())
        elif name == "PERSID":
            stack.append(Opaque("persistent id"))
        elif name == "BINPERSID":
            self._pop()
            stack.append(Opaque("persistent id"))
        elif name in ("EXT1", "EXT2", "EXT4"):
            stack.append(Opaque(f"extension {argument}"))
        elif name in ("NEXT_BUFFER",):
            stack.append(Opaque("buffer"))
        # PROTO, FRAME, STOP, READONLY_BUFFER: no stack effect that matters here.
        return None

    def replace_top(self, value: Any) -> None:
        """Put a value in place of the top (joblib replaces the wrapper by the array)."""
        if self.stack:
            self.stack[-1] = value


def _hashable(value: Any) -> bool:
    try:
        hash(value)
    except TypeError:
        return False
    return True


def _pairs(items: list[Any]) -> dict[Any, Any]:
    return {
        key: value for key, value in zip(items[::2], items[1::2], strict=False) if _hashable(key)
    }
