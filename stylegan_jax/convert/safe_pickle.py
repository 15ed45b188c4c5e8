"""Guards that make an untrusted pickle safe to hand to `pickle.Unpickler`.

The restricted unpicklers (pickle_reader.py, metrics/torch_weights.py) stop a file from
naming code, but Python's unpickler trusts the rest of its input: it allocates what a
length field claims before reading (BINBYTES8, FRAME) and grows its memo to any index
(LONG_BINPUT), `hash` recurses in C through nested tuples until the process crashes
(a deep tuple used as a dict key), and memo references build cyclic or exponentially
shared graphs that no walk or repr finishes. `scan` checks an opcode stream without
building anything; `check_graph` checks what was built; `Budget` caps what the readers'
own stand-ins allocate (storages, tensor copies) at a small multiple of the file size.
"""

from __future__ import annotations

import contextlib
import copy
import io
import itertools
import mmap
import pickle
import pickletools
import reprlib
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

# Deepest nesting (containers, calls) accepted: official pickles reach ~20; C's tuple hash
# and the readers' recursive walks stay far from the stack's limits below this.
MAX_DEPTH = 100
MAX_DIMS = 32  # torch allows 64 dimensions; network weights use at most 4


class PickleFileError(pickle.UnpicklingError, ValueError):
    """A network or weight file that cannot be read safely (malformed, truncated, hostile)."""


def one_line(text: str, limit: int = 300) -> str:
    """`text` on one line of at most `limit` characters (messages quote file contents)."""
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


_REPR = reprlib.Repr()
_REPR.maxlevel, _REPR.maxstring, _REPR.maxother = 3, 60, 60


def short_repr(value: Any) -> str:
    """A bounded one-line repr of a value read from a file."""
    return one_line(_REPR.repr(value), 120)


def printable(text: Any) -> str:
    """`text` as is when short and printable, else its bounded repr."""
    text = str(text)
    return text if text.isprintable() and len(text) <= 80 else short_repr(text)


# OSErrors that are about the path, not the file's contents: they pass through the readers.
PATH_ERRORS = (FileNotFoundError, PermissionError, IsADirectoryError)


def with_path(error: PickleFileError, path: str | Path) -> PickleFileError:
    """The same error (type and attributes), its message prefixed by the file's path."""
    out = copy.copy(error)
    out.args = (f"{path}: {error}",)
    return out


@contextlib.contextmanager
def mapped(path: str | Path) -> Iterator[mmap.mmap | bytes]:
    """The file's bytes, memory-mapped (read lazily), as a file-like buffer."""
    with open(path, "rb") as f:
        if f.seek(0, 2) == 0:
            yield b""
            return
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
            yield m


# ---------------------------------------------------------------------------------
# Stand-ins a pickle may name. A pickle cannot change them: records refuse BUILD
# (`__setstate__`), classes refuse attribute assignment, functions are wrapped; so one
# file cannot alter how the next one is read.


class Inert:
    """A record built by a reader; a pickle may not BUILD (set the state of) it."""

    def __setstate__(self, state):
        raise PickleFileError(f"the pickle tries to set the state of a {type(self).__name__}")


class FrozenClass(type):
    """Metaclass of the classes a pickle may name: their attributes cannot be assigned."""

    def __setattr__(cls, name, value):
        raise PickleFileError(f"the pickle tries to set {cls.__name__}.{printable(name)}")


class SafeFunction:
    """An allow-listed function as a pickle sees it (no attributes to assign, no BUILD)."""

    __slots__ = ("fn",)

    def __init__(self, fn):
        object.__setattr__(self, "fn", fn)

    def __call__(self, *args):
        return self.fn(*args)

    def __setattr__(self, name, value):
        raise PickleFileError(f"the pickle tries to set an attribute {printable(name)}")

    def __setstate__(self, state):
        raise PickleFileError("the pickle tries to set the state of a function")


# ---------------------------------------------------------------------------------
# The opcode stream

_OPS = {op.code.encode("latin1")[0]: op for op in pickletools.opcodes}
_REFUSED = {"EXT1": "an extension-registry code", "EXT2": "an extension-registry code",
            "EXT4": "an extension-registry code", "NEXT_BUFFER": "an out-of-band buffer",
            "READONLY_BUFFER": "an out-of-band buffer"}
_COUNTED = {pickletools.TAKEN_FROM_ARGUMENT1: "<B", pickletools.TAKEN_FROM_ARGUMENT4: "<i",
            pickletools.TAKEN_FROM_ARGUMENT4U: "<I", pickletools.TAKEN_FROM_ARGUMENT8U: "<Q"}
_MEMO_PUT = {"PUT", "BINPUT", "LONG_BINPUT"}
_MEMO_GET = {"GET", "BINGET", "LONG_BINGET"}
_IN_PLACE = {"APPEND", "APPENDS", "SETITEM", "SETITEMS", "ADDITEMS", "BUILD"}


def scan(data: bytes | mmap.mmap, start: int = 0) -> int:
    """Checks the pickle at `data[start:]` and returns the offset just past its STOP.

    Refuses (PickleFileError naming the byte offset) unknown opcodes, extension codes and
    out-of-band buffers, arguments longer than the bytes left, memo indices beyond the
    opcodes read or never stored, a stack or MARK underflow, and nesting deeper than
    MAX_DEPTH. Nesting is tracked per stack item (a mutable cell shared through the
    memo), which is exact for tuples: the ones whose hash recurses.
    """
    n, pos, ops = len(data), start, 0
    stack: list[list[int]] = []
    marks: list[int] = []
    memo: dict[int, list[int]] = {}

    def fail(message: str) -> PickleFileError:
        return PickleFileError(f"{message} (pickle opcode at byte {at})")

    while True:
        at = pos
        if pos >= n:
            raise fail("the pickle is truncated: it ends without STOP")
        op = _OPS.get(data[pos])
        if op is None:
            raise fail(f"unknown pickle opcode {data[pos]:#04x}")
        name, pos, ops, index = op.name, pos + 1, ops + 1, None
        if name in _REFUSED:
            raise fail(f"{name} refers to {_REFUSED[name]}, which network files never use")
        if op.arg is not None:
            width = op.arg.n
            if width == pickletools.UP_TO_NEWLINE:
                lines = []
                for _ in range(2 if name in ("GLOBAL", "INST") else 1):
                    end = data.find(b"\n", pos)
                    if end < 0:
                        raise fail(f"the pickle is truncated in {name}'s argument")
                    lines.append(data[pos:end])
                    pos = end + 1
                if name in _MEMO_PUT | _MEMO_GET:
                    try:
                        index = int(lines[0])
                    except ValueError:
                        raise fail(f"{name} index {short_repr(lines[0])} is not a number") from None
            elif width >= 0:
                if pos + width > n:
                    raise fail(f"the pickle is truncated in {name}'s argument")
                if name in _MEMO_PUT | _MEMO_GET or name == "FRAME":
                    index = int.from_bytes(data[pos:pos + width], "little")
                pos += width
            else:
                fmt = _COUNTED[width]
                size = struct.calcsize(fmt)
                if pos + size > n:
                    raise fail(f"the pickle is truncated in {name}'s length")
                (length,) = struct.unpack(fmt, data[pos:pos + size])
                pos += size
                if length < 0 or length > n - pos:
                    raise fail(f"{name} claims {length} bytes; {n - pos} are left in the file")
                pos += length
        if name == "FRAME" and index > n - pos:
            raise fail(f"FRAME claims {index} bytes; {n - pos} are left in the file")
        _simulate(name, op, stack, marks, memo, index, ops, fail)
        if name == "STOP":
            if marks or stack:
                raise fail(f"STOP leaves {len(marks)} MARKs and {len(stack)} more objects open")
            return pos


def _simulate(name, op, stack, marks, memo, index, ops, fail) -> None:
    """One opcode's effect on a stack of nesting depths (see `scan`)."""
    bottom = marks[-1] if marks else 0
    if name == "MARK":
        marks.append(len(stack))
    elif name == "POP" and marks and len(stack) == bottom:
        marks.pop()  # as the C unpickler: POP right after MARK drops the mark
    elif name in _MEMO_PUT or name == "MEMOIZE":
        if len(stack) <= bottom:
            raise fail(f"{name} with nothing on the stack")
        index = len(memo) if name == "MEMOIZE" else index
        if index > ops:
            raise fail(f"{name} index {index} is beyond the {ops} opcodes read")
        memo[index] = stack[-1]
    elif name in _MEMO_GET:
        if index not in memo:
            raise fail(f"{name} of memo index {index}, which was never stored")
        stack.append(memo[index])
    elif name == "DUP":
        if len(stack) <= bottom:
            raise fail("DUP with nothing on the stack")
        stack.append(stack[-1])
    elif op.stack_before or op.stack_after:
        before = op.stack_before
        if pickletools.markobject in before:
            if not marks:
                raise fail(f"{name} without a matching MARK")
            items = stack[marks.pop():]
            del stack[len(stack) - len(items):]
            below = before.index(pickletools.markobject)
        else:
            items, below = [], len(before)
        bottom = marks[-1] if marks else 0
        if len(stack) - bottom < below:
            raise fail(f"{name} pops more than the stack holds")
        popped = stack[len(stack) - below:] + items if below else items
        del stack[len(stack) - below:]
        depth = 1 + max((cell[0] for cell in popped), default=-1)
        if name in _IN_PLACE:  # the container keeps its identity (and memo entries)
            target, others = popped[0], popped[1:]
            target[0] = max(target[0], 1 + max((cell[0] for cell in others), default=-1))
            result = target
        else:
            result = [depth]
        if result[0] > MAX_DEPTH:
            raise fail(f"nesting deeper than {MAX_DEPTH} levels")
        if op.stack_after:
            stack.append(result)


# ---------------------------------------------------------------------------------
# What was built


def _children(obj: Any):
    if isinstance(obj, dict):
        return itertools.chain.from_iterable(obj.items())
    if isinstance(obj, list | tuple | set | frozenset):
        return iter(obj)
    if isinstance(obj, np.ndarray):
        return None
    fields = getattr(obj, "__dict__", None)
    if fields is not None and type(obj).__module__.startswith("stylegan_jax."):
        return iter(fields.values())  # the readers' records (networks, storages)
    return None


def check_graph(root: Any, limit: int) -> None:
    """Refuses a loaded object graph that contains itself, nests deeper than MAX_DEPTH, or
    whose tree expansion (shared parts counted once per reference) exceeds `limit`.

    Linear in the graph's size; afterwards recursive walks and reprs of it are bounded.
    """
    done: dict[int, int] = {}
    active: set[int] = set()
    frames = [(root, _children(root), [1])]
    active.add(id(root))
    while frames:
        obj, it, size = frames[-1]
        child = next(it, _END) if it is not None else _END
        if child is _END:
            frames.pop()
            active.discard(id(obj))
            done[id(obj)] = size[0]
            if frames:
                frames[-1][2][0] += size[0]
                if frames[-1][2][0] > limit:
                    raise PickleFileError(f"the pickle's objects expand to more than "
                                          f"{limit} references (shared many times over)")
            continue
        key = id(child)
        if key in active:
            raise PickleFileError("the pickle holds a container that contains itself")
        if key in done:
            size[0] += done[key]
            continue
        children = _children(child)
        if children is None:
            size[0] += 1
            continue
        if len(frames) >= MAX_DEPTH:
            raise PickleFileError(f"the pickle nests objects deeper than {MAX_DEPTH} levels")
        active.add(key)
        frames.append((child, children, [1]))
    if done[id(root)] > limit:
        raise PickleFileError(f"the pickle's objects expand to more than {limit} "
                              "references")


_END = object()


def max_expansion(file_bytes: int) -> int:
    """How many references a file of this size may expand to (official: ~1 per 10 bytes)."""
    return 10**6 + 4 * file_bytes


def plain_value(value: Any, name: str) -> Any:
    """A constructor kwarg read from a file, if it is plain and bounded data: None, a bool,
    a number below 2**20 in size, a short string, or a short list/tuple of those. Else a
    PickleFileError naming `name` (ints beyond that would only size huge arrays)."""
    items = value if isinstance(value, list | tuple) and len(value) <= 64 else (value,)
    for v in items:
        if isinstance(v, np.generic) and v.dtype.kind in "biuf":
            v = v.item()
        ok = (v is None or isinstance(v, bool) or (isinstance(v, str) and len(v) <= 200)
              or (isinstance(v, int | float) and abs(v) <= 2**20))
        if not ok:
            raise PickleFileError(f"{name}={short_repr(value)} is not a plain kwarg value")
    return value


# ---------------------------------------------------------------------------------
# Allocations


class Budget:
    """Bytes the readers may still allocate for one file: 4x its size + 1 MiB.

    Each tensor is held about twice (its storage, its copy); 4x leaves room for views.
    """

    def __init__(self, file_bytes: int):
        self.left = 4 * file_bytes + 2**20

    def take(self, nbytes: int, what: str) -> None:
        if nbytes > self.left:
            raise PickleFileError(f"{what} needs {nbytes} bytes, more than the file could hold "
                                  f"(budget left: {self.left})")
        self.left -= nbytes


def _ints(values: Any, what: str) -> tuple[int, ...]:
    if not isinstance(values, tuple | list) or len(values) > MAX_DIMS or not all(
            isinstance(v, int | np.integer) and 0 <= v < 2**62 for v in values):
        raise PickleFileError(f"{what} must be at most {MAX_DIMS} non-negative integers, "
                              f"got {short_repr(values)}")
    return tuple(int(v) for v in values)


def strided_copy(flat: np.ndarray, offset: Any, size: Any, stride: Any, budget: Budget,
                 what: str = "tensor") -> np.ndarray:
    """A C-contiguous copy of the tensor (offset, size, stride in elements) viewing `flat`.

    Checked before anything is read or allocated: the view stays inside `flat` and its
    copy fits the budget (stride 0 can make a tiny storage claim terabytes).
    """
    (offset,) = _ints((offset,), f"{what} offset")
    size, stride = _ints(size, f"{what} size"), _ints(stride, f"{what} stride")
    if len(stride) != len(size):
        raise PickleFileError(f"{what} has size {size} but stride {stride}")
    numel = 1
    for n in size:
        numel *= n
    if numel == 0:
        return np.zeros(size, flat.dtype)
    last = offset + sum((n - 1) * s for n, s in zip(size, stride, strict=True))
    if last >= flat.size:
        raise PickleFileError(f"{what} of size {size}, stride {stride}, offset {offset} runs "
                              f"past its storage of {flat.size} elements")
    budget.take(numel * flat.itemsize, what)
    view = np.lib.stride_tricks.as_strided(
        flat[offset:], shape=size, strides=tuple(s * flat.itemsize for s in stride))
    return np.array(view, order="C")


def load_at(data: bytes | mmap.mmap, start: int, unpickler) -> tuple[Any, int]:
    """Scans, unpickles (with `unpickler(file)`) and checks the pickle at `data[start:]`.

    Returns the object and the offset just past the pickle.
    """
    end = scan(data, start)
    if isinstance(data, mmap.mmap):
        data.seek(start)
        obj = unpickler(data).load()
    else:
        obj = unpickler(io.BytesIO(data[start:end])).load()
    check_graph(obj, max_expansion(len(data)))
    return obj, end
