"""Reads NVIDIA's official network pickles (PyTorch and TensorFlow) without running their code.

An official `.pkl` is a plain pickle of {'G', 'D', 'G_ema', ...}; each network is a
`torch_utils.persistence` object whose pickle carries the *source code* of its class,
and each tensor's storage is a nested legacy `torch.save` blob. Loading it the usual
way executes that source. Here a restricted unpickler resolves only a fixed set of
names to inert stand-ins: networks become `PersistentObject` records (class name,
constructor kwargs, parameters, buffers, children) and tensors become NumPy arrays.
Anything else in the file is refused with the offending `module.name`.

Hostile files are met before and after unpickling (safe_pickle.py): the opcode stream is
scanned first (no length, memo index or nesting beyond what the file holds), the stand-ins
cannot be altered by BUILD, tensors and arrays are checked against their storage and a
budget of the file's size before any copy, and the built graph may not loop or blow up.
Every refusal is a PickleFileError (a ValueError) on one line naming the file.

The TensorFlow pickles (ProGAN, StyleGAN v1, StyleGAN2) go through the same unpickler with their
own allow-list (`load_tf_pickle`, below).
"""

from __future__ import annotations

import collections
import pickle
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ml_dtypes
import numpy as np

from stylegan_jax.convert.safe_pickle import (
    PATH_ERRORS,
    Budget,
    FrozenClass,
    Inert,
    PickleFileError,
    SafeFunction,
    load_at,
    mapped,
    one_line,
    printable,
    short_repr,
    strided_copy,
    with_path,
)

# torch.save's legacy-format magic number and storage classes (shared with metrics weights).
TORCH_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
STORAGE_DTYPES = {
    "FloatStorage": np.float32,
    "DoubleStorage": np.float64,
    "HalfStorage": np.float16,
    "BFloat16Storage": ml_dtypes.bfloat16,
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "ShortStorage": np.int16,
    "CharStorage": np.int8,
    "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
}


class UnsafePickleError(PickleFileError):
    """The pickle asks for something outside the official network format."""

    def __init__(self, message: str, module: str | None = None, name: str | None = None):
        super().__init__(message)
        self.module, self.name = module, name


@dataclass
class PersistentObject(Inert):
    """An official persistent class instance, reconstructed without running its code."""

    class_name: str
    state: dict[str, Any]
    module_src: str = ""  # the class's embedded source, kept as text (never run)

    @property
    def init_kwargs(self) -> dict[str, Any]:
        kwargs = self.state.get("_init_kwargs") or {}
        if not isinstance(kwargs, dict):
            raise PickleFileError(f"{self.class_name}'s _init_kwargs is a "
                                  f"{type(kwargs).__name__}, expected a dict")
        return dict(kwargs)

    def children(self) -> dict[str, Any]:
        return dict(self.state.get("_modules") or {})

    def state_dict(self) -> dict[str, np.ndarray]:
        """Parameters and persistent buffers under their official dotted names."""
        out: dict[str, np.ndarray] = {}
        _collect(self, "", out)
        return out


@dataclass
class _TypedStorage(Inert):
    dtype: Any
    data: np.ndarray | None = None
    numel: int = 0


@dataclass(frozen=True)
class _StorageType(Inert):
    name: str
    dtype: Any = field(default=None)


def _collect(obj: Any, prefix: str, out: dict[str, np.ndarray]) -> None:
    if not isinstance(obj, PersistentObject):
        raise UnsafePickleError(f"{prefix or 'network'} holds a non-network child "
                                f"{type(obj).__name__}")
    state = obj.state
    skip = state.get("_non_persistent_buffers_set") or ()
    for kind in ("_parameters", "_modules", "_buffers"):
        if not isinstance(state.get(kind) or {}, dict):
            raise UnsafePickleError(f"{prefix or 'network'}{kind} is a "
                                    f"{type(state.get(kind)).__name__}, expected a dict")
    if not isinstance(skip, set | frozenset | list | tuple):
        raise UnsafePickleError(f"{prefix or 'network'} _non_persistent_buffers_set is a "
                                f"{type(skip).__name__}")
    tensors = [(n, v) for n, v in (state.get("_parameters") or {}).items()]
    tensors += [(n, v) for n, v in (state.get("_buffers") or {}).items() if n not in skip]
    for name, value in tensors:
        if value is None:
            continue
        if not isinstance(name, str) or not isinstance(value, np.ndarray):
            raise UnsafePickleError(f"{prefix}{printable(name)} is a {type(value).__name__}, "
                                    "expected a tensor")
        out[prefix + name] = value
    for name, child in (state.get("_modules") or {}).items():
        if child is not None:
            _collect(child, f"{prefix}{printable(name)}.", out)


def _reconstruct_persistent_obj(meta: dict) -> PersistentObject:
    if not isinstance(meta, dict) or meta.get("type") != "class":
        raise UnsafePickleError("persistent object record is not an official class record")
    state, name, src = meta.get("state") or {}, meta.get("class_name"), meta.get("module_src")
    if not isinstance(state, dict) or not isinstance(name, str):
        raise UnsafePickleError("persistent object record lacks a class name or a state dict")
    return PersistentObject(class_name=name, state=dict(state),
                            module_src=src if isinstance(src, str) else "")


def _rebuild_tensor(budget: Budget, storage, offset, size, stride, *_unused) -> np.ndarray:
    if not isinstance(storage, _TypedStorage) or storage.data is None:
        raise UnsafePickleError("tensor refers to a storage that is not in the file")
    return strided_copy(storage.data, offset, size, stride, budget)


def _rebuild_parameter(data, *_unused) -> np.ndarray:
    return data


def _rebuild_from_type(func, _type, args, _state):
    if not isinstance(func, SafeFunction) or not isinstance(args, tuple):
        raise UnsafePickleError("_rebuild_from_type_v2 without a rebuild function and arguments")
    return func(*args)


def _storage_names() -> dict[tuple[str, str], Any]:
    return {("torch", name): _StorageType(name, dtype) for name, dtype in STORAGE_DTYPES.items()}


_STORAGE_NAMES = _storage_names()


def _load_from_bytes(budget: Budget, blob: bytes) -> _TypedStorage:
    """Parses one legacy `torch.save` blob holding a single storage."""
    if not isinstance(blob, bytes):
        raise UnsafePickleError(f"tensor storage is a {type(blob).__name__}, expected bytes")
    storages: dict[str, _TypedStorage] = {}

    def persistent_load(pid):
        if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage"
                and isinstance(pid[1], _StorageType) and isinstance(pid[4], int)
                and 0 <= pid[4] < 2**62):
            raise UnsafePickleError(f"unexpected persistent id {short_repr(pid)}")
        key = str(pid[2])
        return storages.setdefault(key, _TypedStorage(pid[1].dtype, numel=pid[4]))

    def unpickler(f, persistent=None):
        return _RestrictedUnpickler(f, persistent, safe=_STORAGE_NAMES)

    pos, header = 0, []
    for _ in range(3):
        value, pos = load_at(blob, pos, unpickler)
        header.append(value)
    if header[0] != TORCH_LEGACY_MAGIC:
        raise UnsafePickleError("tensor storage is not in torch's legacy format")
    result, pos = load_at(blob, pos, lambda f: unpickler(f, persistent_load))
    keys, pos = load_at(blob, pos, unpickler)
    if not isinstance(keys, list):
        raise UnsafePickleError(f"tensor storage keys are a {type(keys).__name__}, expected a list")
    for key in keys:
        storage = storages.get(str(key))
        if storage is None or storage.data is not None:
            raise UnsafePickleError(f"tensor storage lists key {short_repr(key)}, which no "
                                    "tensor uses (or twice)")
        if pos + 8 > len(blob):
            raise UnsafePickleError("tensor storage is truncated")
        (numel,) = struct.unpack("<q", blob[pos:pos + 8])
        nbytes = numel * np.dtype(storage.dtype).itemsize
        if numel != storage.numel or nbytes > len(blob) - pos - 8:
            raise UnsafePickleError(f"tensor storage of {storage.numel} elements holds {numel} "
                                    f"({len(blob) - pos - 8} bytes left)")
        budget.take(nbytes, "tensor storage")
        storage.data = np.frombuffer(blob, storage.dtype, numel, pos + 8).copy()
        pos += 8 + nbytes
    if not isinstance(result, _TypedStorage) or result.data is None:
        raise UnsafePickleError("tensor storage blob holds no storage data")
    return result


class _DTypeSpec(Inert):
    """numpy.dtype as a pickle names it: only plain numeric types, rebuilt from their code.

    A real np.dtype would accept any BUILD state, including flags that make a float
    type claim to hold Python objects (numpy then fails inside).
    """

    def __init__(self, spec: Any, align: Any = False, copy: Any = True):
        if isinstance(spec, bytes):
            spec = spec.decode("latin1")
        dtype = np.dtype(spec) if isinstance(spec, str) and len(spec) <= 16 else None
        if dtype is None or dtype.kind not in "biufc" or dtype.fields or dtype.subdtype:
            raise UnsafePickleError(f"refusing numpy dtype {short_repr(spec)} (only numeric "
                                    "types)")
        self.dtype = np.dtype(dtype.str)

    def __setstate__(self, state):
        if not (isinstance(state, tuple) and len(state) in (8, 9) and state[0] in (3, 4)
                and state[1] in ("<", ">", "|", "=")
                and state[2:8] == (None, None, None, -1, -1, 0) and state[8:] in ((), (None,))):
            raise UnsafePickleError(f"refusing numpy dtype state {short_repr(state)}")
        if state[1] in "<>":
            self.dtype = self.dtype.newbyteorder(state[1])


def _numpy_scalar(dtype, data=None):
    if not isinstance(dtype, _DTypeSpec):
        raise UnsafePickleError(f"numpy scalar of dtype {short_repr(dtype)}")
    if isinstance(data, str):  # a Python 2 pickle read with encoding='latin1'
        data = data.encode("latin1")
    if data is None:
        return dtype.dtype.type(0)
    if not isinstance(data, bytes) or len(data) != dtype.dtype.itemsize:
        raise UnsafePickleError(f"numpy {dtype.dtype} scalar from {short_repr(data)}")
    return np.frombuffer(data, dtype.dtype)[0]


class _EasyDict(dict, metaclass=FrozenClass):
    """Stand-in for dnnlib.EasyDict (a dict with attribute access)."""


def _safe_names(budget: Budget) -> dict[tuple[str, str], Any]:
    rebuild_tensor = SafeFunction(lambda *a: _rebuild_tensor(budget, *a))
    names: dict[tuple[str, str], Any] = {
        ("torch_utils.persistence", "_reconstruct_persistent_obj"):
            SafeFunction(_reconstruct_persistent_obj),
        ("torch._utils", "_rebuild_tensor_v2"): rebuild_tensor,
        ("torch._utils", "_rebuild_tensor"): rebuild_tensor,
        ("torch._utils", "_rebuild_parameter"): SafeFunction(_rebuild_parameter),
        ("torch._utils", "_rebuild_parameter_with_state"): SafeFunction(_rebuild_parameter),
        ("torch._tensor", "_rebuild_from_type_v2"): SafeFunction(_rebuild_from_type),
        ("torch", "Tensor"): "Tensor",
        ("torch.nn.parameter", "Parameter"): "Parameter",
        ("torch.storage", "_load_from_bytes"): SafeFunction(lambda b: _load_from_bytes(budget, b)),
        ("collections", "OrderedDict"): collections.OrderedDict,
        ("builtins", "set"): set,
        ("builtins", "frozenset"): frozenset,
        ("__builtin__", "set"): set,
        ("dnnlib.util", "EasyDict"): _EasyDict,
        ("numpy", "dtype"): SafeFunction(_DTypeSpec),
        ("numpy.core.multiarray", "scalar"): SafeFunction(_numpy_scalar),
        ("numpy._core.multiarray", "scalar"): SafeFunction(_numpy_scalar),
    }
    names.update(_STORAGE_NAMES)
    return names


class _RestrictedUnpickler(pickle.Unpickler):
    """Resolves only the names of one allow-list (`safe`) to inert stand-ins."""

    def __init__(self, file, storage_loader=None, safe=None, encoding="ASCII"):
        super().__init__(file, encoding=encoding)
        self._storage_loader = storage_loader
        self._safe = safe

    def find_class(self, module: str, name: str):
        try:
            return self._safe[(module, name)]
        except (KeyError, TypeError):
            raise UnsafePickleError(
                f"refusing to load {printable(module)}.{printable(name)}: not part of the "
                "official network format (the pickle may execute code or is not an official "
                "StyleGAN network)", module, name,
            ) from None

    def persistent_load(self, pid):
        if self._storage_loader is not None:
            return self._storage_loader(pid)
        raise UnsafePickleError(f"unexpected persistent id {short_repr(pid)} outside a tensor "
                                "storage")


def _load_checked(path: Path, safe_names, encoding: str = "ASCII") -> Any:
    """Unpickles the whole file after `scan`, with a budget; checks the built graph.

    Every failure is a PickleFileError (UnsafePickleError for a refused name) that names
    the file and fits on one line.
    """
    try:
        with mapped(path) as data:
            budget = Budget(len(data))
            obj, end = load_at(data, 0, lambda f: _RestrictedUnpickler(
                f, safe=safe_names(budget), encoding=encoding))
            if end != len(data):
                raise PickleFileError(f"{len(data) - end} bytes follow the pickle's end")
            return obj
    except UnsafePickleError as e:
        raise with_path(e, path) from None
    except PickleFileError as e:
        raise PickleFileError(f"{path}: not a readable network pickle ({e})") from None
    except PATH_ERRORS:
        raise
    except Exception as e:  # noqa: BLE001 (anything else a hostile file provokes)
        raise PickleFileError(f"{path}: not a readable network pickle "
                              f"({type(e).__name__}: {one_line(e)})") from None


def load_official_pickle(path: str | Path) -> dict[str, Any]:
    """Loads an official network pickle; returns its top-level dict of inert records.

    Raises UnsafePickleError for anything outside the expected classes, and
    PickleFileError (a ValueError) when the file holds no official networks.
    """
    path = Path(path)
    data = _load_checked(path, _safe_names)
    if not isinstance(data, dict) or not any(
        isinstance(data.get(k), PersistentObject) for k in ("G", "D", "G_ema")
    ):
        raise PickleFileError(
            f"{path}: expected a dict with official networks under 'G', 'D', 'G_ema'"
        )
    for key in ("G", "D", "G_ema"):
        record = data.get(key)
        if record is not None and not isinstance(record, PersistentObject):
            raise PickleFileError(f"{path}: '{key}' is a {type(record).__name__}, expected a "
                                  "network")
        if record is not None:
            try:
                record.state_dict(), record.init_kwargs
            except PickleFileError as e:
                raise with_path(e, f"{path}:{key}") from None
    return data


# ---------------------------------------------------------------------------------
# NVIDIA's TensorFlow pickles (ProGAN, StyleGAN v1, StyleGAN2, StyleGAN2-ADA): a (G, D, Gs)
# tuple of `dnnlib.tflib.network.Network` objects (or `tfutil.Network` from the original
# ProGAN code), each pickled as its `__getstate__` dict: version, name, static_kwargs,
# components (sub-networks, version >= 3), build_module_src, build_func_name and
# variables [(name, array)]. Loading it normally executes build_module_src; here the
# state is kept as data and the source is never run.

TF_NETWORK_CLASSES = (("dnnlib.tflib.network", "Network"), ("tfutil", "Network"))
# 2: ProGAN's tfutil; 3: StyleGAN; 4: StyleGAN2; 5: StyleGAN2-ADA (adds input/output
# names and shapes, which are not needed here).
TF_STATE_VERSIONS = (2, 3, 4, 5)


class TFNetwork(metaclass=FrozenClass):
    """An official TF `Network`, reconstructed as its pickled state (inert data)."""

    class_name = "Network"

    def __setstate__(self, state):
        if not isinstance(state, dict) or hasattr(self, "state"):
            raise UnsafePickleError(f"{self.class_name} state is a {type(state).__name__} "
                                    "(or set twice), expected a dict")
        self.state = dict(state)

    @property
    def name(self) -> str:
        return self.state["name"]

    @property
    def build_func_name(self) -> str:
        return self.state["build_func_name"]

    @property
    def static_kwargs(self) -> dict[str, Any]:
        return dict(self.state["static_kwargs"])

    @property
    def components(self) -> dict[str, TFNetwork]:
        return dict(self.state.get("components") or {})

    @property
    def is_legacy(self) -> bool:
        """True for the original ProGAN code's `tfutil.Network`."""
        return self.class_name == "tfutil.Network"

    def variables(self) -> dict[str, np.ndarray]:
        """All variables by official name, sub-networks' as `<component name>/<name>`."""
        out = {name: np.asarray(value) for name, value in self.state["variables"]}
        for comp in self.components.values():
            out.update({f"{comp.name}/{k}": v for k, v in comp.variables().items()})
        return out

    def validate(self, where: str) -> None:
        """Raises PickleFileError naming `where` unless the state has the official layout."""
        st = getattr(self, "state", None)
        if st is None:
            raise PickleFileError(f"{where}: {self.class_name} without a pickled state")
        if st.get("version") not in TF_STATE_VERSIONS:
            raise PickleFileError(f"{where}: state version {short_repr(st.get('version'))}, "
                                  f"expected one of {TF_STATE_VERSIONS}")
        for key, kind in (("name", str), ("build_func_name", str), ("static_kwargs", dict),
                          ("variables", list)):
            if not isinstance(st.get(key), kind):
                raise PickleFileError(f"{where}: state field {key!r} is "
                                      f"{type(st.get(key)).__name__}, expected {kind.__name__}")
        for item in st["variables"]:
            if not (isinstance(item, tuple | list) and len(item) == 2
                    and isinstance(item[0], str)
                    and isinstance(item[1], np.ndarray | np.generic | float)):
                raise PickleFileError(f"{where}: variables must be (name, array) pairs, "
                                      f"got {short_repr(item)}")
        comps = st.get("components") or {}
        if not isinstance(comps, dict):
            raise PickleFileError(f"{where}: components is a {type(comps).__name__}, "
                                  "expected a dict")
        for key, comp in comps.items():
            if not isinstance(comp, TFNetwork):
                raise PickleFileError(f"{where}: component {printable(key)!r} is a "
                                      f"{type(comp).__name__}, expected a Network")
            comp.validate(f"{where}/{printable(key)}")


class _DnnlibNetwork(TFNetwork):
    class_name = "dnnlib.tflib.network.Network"


class _TfutilNetwork(TFNetwork):
    class_name = "tfutil.Network"


class _SafeArray(np.ndarray):
    """An array numpy's pickle builds (`_reconstruct`, then BUILD with its raw bytes).

    Its state is checked first: a numeric dtype, a shape whose bytes are exactly the raw
    data's (so nothing is allocated that the file does not hold), within the budget.
    """

    def __setstate__(self, state):
        if isinstance(state, tuple) and len(state) == 4:
            state = (1, *state)  # numpy < 1.? wrote no version
        if not (isinstance(state, tuple) and len(state) == 5 and isinstance(state[2], _DTypeSpec)
                and isinstance(state[3], int) and isinstance(state[4], bytes | str)):
            raise UnsafePickleError(f"refusing numpy array state {short_repr(state)}")
        shape = _array_shape(state[1])
        dtype, raw = state[2].dtype, state[4]
        if isinstance(raw, str):  # a Python 2 pickle read with encoding='latin1'
            raw = raw.encode("latin1")
        nbytes = dtype.itemsize
        for n in shape:
            nbytes *= n
        if nbytes != len(raw):
            raise UnsafePickleError(f"numpy array of shape {shape} {dtype} needs {nbytes} bytes, "
                                    f"the file holds {len(raw)}")
        self._budget.take(nbytes, "numpy array")
        super().__setstate__((1, shape, dtype, bool(state[3]), raw))


def _array_shape(shape: Any) -> tuple[int, ...]:
    if not isinstance(shape, tuple) or len(shape) > 32 or not all(
            isinstance(n, int) and 0 <= n < 2**62 for n in shape):
        raise UnsafePickleError(f"numpy array shape {short_repr(shape)}")
    return shape


_NDARRAY = "numpy.ndarray"  # what the name resolves to: only _reconstruct's first argument


def _numpy_reconstruct(budget: Budget, subtype, shape, dtype):
    # numpy pickles arrays as _reconstruct(ndarray, (0,), b'b') + ndarray.__setstate__.
    if isinstance(dtype, str):
        dtype = dtype.encode("latin1")
    if subtype is not _NDARRAY or shape != (0,) or dtype != b"b":
        raise UnsafePickleError(f"refusing numpy _reconstruct{short_repr((subtype, shape, dtype))}")
    array = np.ndarray.__new__(_SafeArray, (0,), np.uint8)
    array._budget = budget
    return array


def _copyreg_reconstructor(cls, base, state):
    # Protocol 0/1 pickles build instances through copyreg._reconstructor.
    if isinstance(cls, type) and issubclass(cls, TFNetwork) and base is object and state is None:
        return cls.__new__(cls)
    if cls is _EasyDict and base is dict and isinstance(state, dict | None):
        return _EasyDict(state or {})
    raise UnsafePickleError(f"refusing to reconstruct {short_repr(cls)} from {short_repr(base)}")


def _latin1_bytes(text, encoding="latin1"):
    # Protocol 2 writes bytes as _codecs.encode(str, 'latin1') (Python 2 had no bytes).
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise UnsafePickleError(f"refusing _codecs.encode({type(text).__name__}, "
                                f"{short_repr(encoding)})")
    return text.encode("latin1")


def _tf_safe_names(budget: Budget) -> dict[tuple[str, str], Any]:
    reconstruct = SafeFunction(lambda *a: _numpy_reconstruct(budget, *a))
    return {
        ("dnnlib.tflib.network", "Network"): _DnnlibNetwork,
        ("tfutil", "Network"): _TfutilNetwork,
        ("dnnlib.util", "EasyDict"): _EasyDict,
        ("collections", "OrderedDict"): collections.OrderedDict,
        ("builtins", "set"): set,
        ("builtins", "frozenset"): frozenset,
        ("numpy", "dtype"): SafeFunction(_DTypeSpec),
        ("numpy", "ndarray"): _NDARRAY,
        ("numpy.core.multiarray", "_reconstruct"): reconstruct,
        ("numpy._core.multiarray", "_reconstruct"): reconstruct,
        ("numpy.core.multiarray", "scalar"): SafeFunction(_numpy_scalar),
        ("numpy._core.multiarray", "scalar"): SafeFunction(_numpy_scalar),
        ("copyreg", "_reconstructor"): SafeFunction(_copyreg_reconstructor),
        ("copy_reg", "_reconstructor"): SafeFunction(_copyreg_reconstructor),
        ("_codecs", "encode"): SafeFunction(_latin1_bytes),
        ("builtins", "object"): object,  # only as _reconstructor's base class
        ("__builtin__", "object"): object,
    }


def _inert(*_args):
    return None


class _FirstGlobal(Exception):
    def __init__(self, module: str, name: str):
        self.module, self.name = module, name


class _SniffingUnpickler(pickle.Unpickler):
    _PASS = {("copy_reg", "_reconstructor"), ("copyreg", "_reconstructor")}

    def find_class(self, module: str, name: str):
        if (module, name) in self._PASS:  # protocol 0/1: the class comes as its argument
            return _inert
        raise _FirstGlobal(module, name)

    def persistent_load(self, pid):
        raise _FirstGlobal("<persistent id>", "")


def first_global(path: str | Path) -> tuple[str, str] | None:
    """The first class or function a pickle names (past copyreg's), building nothing.

    The stream is scanned first (as for loading): a hostile file cannot make even this
    allocate or recurse.
    """
    try:
        with mapped(path) as data:
            load_at(data, 0, lambda f: _SniffingUnpickler(f, encoding="latin1"))
    except _FirstGlobal as found:
        return found.module, found.name
    except Exception:  # noqa: BLE001 (unreadable: the real loader reports it)
        return None
    return None


def is_tf_pickle(path: str | Path) -> bool:
    """True when the file is a pickle of NVIDIA's TensorFlow networks."""
    return first_global(path) in TF_NETWORK_CLASSES


def load_tf_pickle(path: str | Path) -> tuple[TFNetwork, TFNetwork, TFNetwork]:
    """Loads an official TF network pickle; returns its (G, D, Gs) as inert records.

    Raises UnsafePickleError for anything outside the expected classes, and
    PickleFileError (a ValueError) when the file is not the official (G, D, Gs) tuple of
    well-formed network states.
    """
    path = Path(path)
    data = _load_checked(path, _tf_safe_names, encoding="latin1")
    if not (isinstance(data, tuple) and len(data) == 3
            and all(isinstance(x, TFNetwork) for x in data)):
        got = type(data).__name__ if not isinstance(data, tuple) else (
            f"a tuple of {len(data)}: " + ", ".join(type(x).__name__ for x in data[:8]))
        raise PickleFileError(f"{path}: expected the official (G, D, Gs) tuple of TF networks, "
                              f"got {got}")
    for label, net in zip(("G", "D", "Gs"), data, strict=True):
        net.validate(f"{path}:{label}")
    return data
