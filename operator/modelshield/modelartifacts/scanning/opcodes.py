"""A symbolic model of the pickle machine's stack: literal values only, nothing is called.

The walker needs a few values that a pickle computes: the module and name strings of a
STACK_GLOBAL (often memoized first), and the state of a joblib NumpyArrayWrapper (shape,
dtype), after which joblib writes the array's raw bytes into the middle of the stream.
Imports become ``Symbol``s and calls ``Call``s; they are recorded, never performed.
"""

from __future__ import annotations

from collections.abc import Callable
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

#: Containers keep at most this many items: the walker needs small ones only (a joblib
#: wrapper's state, a dtype's arguments), and a model's big dicts would cost memory.
MAX_ITEMS = 256

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

    def __post_init__(self) -> None:
        # One bound method per opcode name: the walker calls step once per opcode.
        self._dispatch: dict[str, Callable[[Any], Any]] = {
            "MARK": self._mark,
            "EMPTY_TUPLE": self._empty_tuple,
            "EMPTY_LIST": self._empty_list,
            "EMPTY_SET": self._empty_list,
            "EMPTY_DICT": self._empty_dict,
            "TUPLE": self._tuple,
            "FROZENSET": self._tuple,
            "TUPLE1": self._tuple_n,
            "TUPLE2": self._tuple_n,
            "TUPLE3": self._tuple_n,
            "LIST": self._list,
            "APPEND": self._append,
            "APPENDS": self._appends,
            "ADDITEMS": self._appends,
            "DICT": self._dict,
            "SETITEM": self._setitem,
            "SETITEMS": self._setitems,
            "PUT": self._put,
            "BINPUT": self._put,
            "LONG_BINPUT": self._put,
            "MEMOIZE": self._memoize,
            "GET": self._get,
            "BINGET": self._get,
            "LONG_BINGET": self._get,
            "GLOBAL": self._global,
            "INST": self._inst,
            "STACK_GLOBAL": self._stack_global,
            "REDUCE": self._reduce,
            "NEWOBJ": self._reduce,
            "NEWOBJ_EX": self._newobj_ex,
            "OBJ": self._obj,
            "BUILD": self._build,
            "POP": self._pop_discard,
            "POP_MARK": self._pop_mark_discard,
            "DUP": self._dup,
            "PERSID": self._persid,
            "BINPERSID": self._binpersid,
            "EXT1": self._extension,
            "EXT2": self._extension,
            "EXT4": self._extension,
            "NEXT_BUFFER": self._buffer,
        }
        self._arity = 0

    def step(self, name: str, argument: Any) -> Any:
        """Apply one opcode; return the imported Symbol or completed Call when relevant."""
        if name in _LITERALS:
            self.stack.append(_CONSTANTS.get(name, argument))
            return None
        handler = self._dispatch.get(name)
        if handler is None:
            # PROTO, FRAME, STOP, READONLY_BUFFER: no stack effect that matters here.
            return None
        if name.startswith("TUPLE") and name != "TUPLE":
            self._arity = int(name[-1])
        return handler(argument)

    def _mark(self, _: Any) -> None:
        self.stack.append(MARK)

    def _empty_tuple(self, _: Any) -> None:
        self.stack.append(())

    def _empty_list(self, _: Any) -> None:
        self.stack.append([])

    def _empty_dict(self, _: Any) -> None:
        self.stack.append({})

    def _tuple(self, _: Any) -> None:
        self.stack.append(tuple(self._pop_mark()))

    def _tuple_n(self, _: Any) -> None:
        items = [self._pop() for _ in range(self._arity)]
        self.stack.append(tuple(reversed(items)))

    def _list(self, _: Any) -> None:
        self.stack.append(self._pop_mark())

    def _append(self, _: Any) -> None:
        value = self._pop()
        top = self._top()
        if isinstance(top, list) and len(top) < MAX_ITEMS:
            top.append(value)

    def _appends(self, _: Any) -> None:
        values = self._pop_mark()
        top = self._top()
        if isinstance(top, list) and len(top) < MAX_ITEMS:
            top.extend(values[: MAX_ITEMS - len(top)])

    def _dict(self, _: Any) -> None:
        self.stack.append(_pairs(self._pop_mark()))

    def _setitem(self, _: Any) -> None:
        value, key = self._pop(), self._pop()
        top = self._top()
        if isinstance(top, dict) and len(top) < MAX_ITEMS and _hashable(key):
            top[key] = value

    def _setitems(self, _: Any) -> None:
        items = self._pop_mark()
        top = self._top()
        if isinstance(top, dict) and len(top) < MAX_ITEMS:
            top.update(_pairs(items[: 2 * (MAX_ITEMS - len(top))]))

    def _put(self, argument: Any) -> None:
        self.memo[int(argument)] = _memorable(self._top())

    def _memoize(self, _: Any) -> None:
        self.memo[len(self.memo)] = _memorable(self._top())

    def _get(self, argument: Any) -> None:
        self.stack.append(self.memo.get(int(argument), Opaque("memo")))

    def _global(self, argument: Any) -> Symbol:
        module, _, attribute = str(argument).partition(" ")
        symbol = Symbol(module, attribute)
        self.stack.append(symbol)
        return symbol

    def _inst(self, argument: Any) -> Symbol:
        module, _, attribute = str(argument).partition(" ")
        symbol = Symbol(module, attribute)
        self.stack.append(Call(symbol, tuple(self._pop_mark())))
        return symbol

    def _stack_global(self, _: Any) -> Symbol | None:
        attribute, module = self._pop(), self._pop()
        if isinstance(module, str) and isinstance(attribute, str):
            symbol = Symbol(module, attribute)
            self.stack.append(symbol)
            return symbol
        self.stack.append(Opaque("computed global"))
        return None

    def _reduce(self, _: Any) -> None:
        arguments, function = self._pop(), self._pop()
        self.stack.append(Call(function, arguments))

    def _newobj_ex(self, _: Any) -> None:
        keywords, arguments, cls = self._pop(), self._pop(), self._pop()
        self.stack.append(Call(cls, (arguments, keywords)))

    def _obj(self, _: Any) -> None:
        items = self._pop_mark()
        self.stack.append(Call(items[0] if items else Opaque("none"), tuple(items[1:])))

    def _build(self, _: Any) -> Call | None:
        state = self._pop()
        target = self._top()
        if isinstance(target, Call):
            target.state = state
            return target
        return None

    def _pop_discard(self, _: Any) -> None:
        self._pop()

    def _pop_mark_discard(self, _: Any) -> None:
        self._pop_mark()

    def _dup(self, _: Any) -> None:
        self.stack.append(self._top())

    def _persid(self, _: Any) -> None:
        self.stack.append(Opaque("persistent id"))

    def _binpersid(self, _: Any) -> None:
        self._pop()
        self.stack.append(Opaque("persistent id"))

    def _extension(self, argument: Any) -> None:
        self.stack.append(Opaque(f"extension {argument}"))

    def _buffer(self, _: Any) -> None:
        self.stack.append(Opaque("buffer"))

    def replace_top(self, value: Any) -> None:
        """Put a value in place of the top (joblib replaces the wrapper by the array)."""
        if self.stack:
            self.stack[-1] = value


_CONTAINER = Opaque("container")


def _memorable(value: Any) -> Any:
    """What the memo keeps: lists and dicts are not kept (a model has millions of them)."""
    return _CONTAINER if isinstance(value, list | dict) else value


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
