"""Reads NVIDIA's official network pickles (PyTorch and TensorFlow) without running their code.

An official `.pkl` is a plain pickle of {'G', 'D', 'G_ema', ...}; each network is a
`torch_utils.persistence` object whose pickle carries the *source code* of its class,
and each tensor's storage is a nested legacy `torch.save` blob. Loading it the usual
way executes that source. Here a restricted unpickler resolves only a fixed set of
names to inert stand-ins: networks become `PersistentObject` records (class name,
constructor kwargs, parameters, buffers, children) and tensors become NumPy arrays.
Anything else in the file is refused with the offending `module.name`.

The TensorFlow pickles (ProGAN, StyleGAN v1, StyleGAN2) go through the same unpickler with their
own allow-list (`load_tf_pickle`, below).
"""

from __future__ import annotations

import collections
import io
import pickle
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ml_dtypes
import numpy as np

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


class UnsafePickleError(pickle.UnpicklingError):
    """The pickle asks for something outside the official network format."""

    def __init__(self, message: str, module: str | None = None, name: str | None = None):
        super().__init__(message)
        self.module, self.name = module, name


@dataclass
class PersistentObject:
    """An official persistent class instance, reconstructed without running its code."""

    class_name: str
    state: dict[str, Any]
    module_src: str = ""  # the class's embedded source, kept as text (never run)

    @property
    def init_kwargs(self) -> dict[str, Any]:
        return dict(self.state.get("_init_kwargs") or {})

    def children(self) -> dict[str, Any]:
        return dict(self.state.get("_modules") or {})

    def state_dict(self) -> dict[str, np.ndarray]:
        """Parameters and persistent buffers under their official dotted names."""
        out: dict[str, np.ndarray] = {}
        _collect(self, "", out)
        return out


@dataclass
class _TypedStorage:
    dtype: Any
    data: np.ndarray | None = None
    numel: int = 0


@dataclass
class _StorageType:
    name: str
    dtype: Any = field(default=None)


def _collect(obj: Any, prefix: str, out: dict[str, np.ndarray]) -> None:
    if not isinstance(obj, PersistentObject):
        raise UnsafePickleError(f"{prefix or 'network'} holds a non-network child {type(obj)}")
    state = obj.state
    skip = set(state.get("_non_persistent_buffers_set") or ())
    for name, value in (state.get("_parameters") or {}).items():
        if value is not None:
            out[prefix + name] = np.asarray(value)
    for name, value in (state.get("_buffers") or {}).items():
        if value is not None and name not in skip:
            out[prefix + name] = np.asarray(value)
    for name, child in (state.get("_modules") or {}).items():
        if child is not None:
            _collect(child, f"{prefix}{name}.", out)


def _reconstruct_persistent_obj(meta: dict) -> PersistentObject:
    if not isinstance(meta, dict) or meta.get("type") != "class":
        raise UnsafePickleError("persistent object record is not an official class record")
    state = meta.get("state") or {}
    src = meta.get("module_src")
    return PersistentObject(class_name=str(meta.get("class_name")), state=dict(state),
                            module_src=src if isinstance(src, str) else "")


def _rebuild_tensor(storage, offset, size, stride, *_unused) -> np.ndarray:
    if not isinstance(storage, _TypedStorage) or storage.data is None:
        raise UnsafePickleError("tensor refers to a storage that is not in the file")
    flat = storage.data
    itemsize = flat.dtype.itemsize
    if len(size) == 0:
        return np.array(flat[offset])
    view = np.lib.stride_tricks.as_strided(
        flat[offset:], shape=tuple(size), strides=tuple(s * itemsize for s in stride)
    )
    return np.array(view)


def _rebuild_parameter(data, *_unused) -> np.ndarray:
    return data


def _rebuild_from_type(func, _type, args, _state):
    return func(*args)


def _load_from_bytes(blob: bytes) -> _TypedStorage:
    """Parses one legacy `torch.save` blob holding a single storage."""
    f = io.BytesIO(blob)
    header = [_RestrictedUnpickler(f).load() for _ in range(3)]
    if header[0] != TORCH_LEGACY_MAGIC:
        raise UnsafePickleError("tensor storage is not in torch's legacy format")
    storages: dict[str, _TypedStorage] = {}

    def persistent_load(pid):
        if not isinstance(pid, tuple) or len(pid) < 5 or pid[0] != "storage":
            raise UnsafePickleError(f"unexpected persistent id {pid!r}")
        storage_type, key, numel = pid[1], str(pid[2]), int(pid[4])
        if not isinstance(storage_type, _StorageType):
            raise UnsafePickleError(f"unexpected storage type {storage_type!r}")
        storages.setdefault(key, _TypedStorage(storage_type.dtype, numel=numel))
        return storages[key]

    result = _RestrictedUnpickler(f, persistent_load).load()
    keys = _RestrictedUnpickler(f).load()
    for key in keys:
        storage = storages[str(key)]
        (numel,) = struct.unpack("<q", f.read(8))
        nbytes = numel * np.dtype(storage.dtype).itemsize
        raw = f.read(nbytes)
        if len(raw) != nbytes:
            raise UnsafePickleError("tensor storage is truncated")
        storage.data = np.frombuffer(raw, dtype=storage.dtype).copy()
    return result


def _numpy_scalar(dtype, data=None):
    if isinstance(data, str):  # a Python 2 pickle read with encoding='latin1'
        data = data.encode("latin1")
    return np.frombuffer(data, dtype=dtype)[0] if data is not None else dtype.type(0)


class _EasyDict(dict):
    """Stand-in for dnnlib.EasyDict (a dict with attribute access)."""


def _safe_names() -> dict[tuple[str, str], Any]:
    names: dict[tuple[str, str], Any] = {
        ("torch_utils.persistence", "_reconstruct_persistent_obj"): _reconstruct_persistent_obj,
        ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
        ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
        ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
        ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
        ("torch._tensor", "_rebuild_from_type_v2"): _rebuild_from_type,
        ("torch", "Tensor"): "Tensor",
        ("torch.nn.parameter", "Parameter"): "Parameter",
        ("torch.storage", "_load_from_bytes"): _load_from_bytes,
        ("collections", "OrderedDict"): collections.OrderedDict,
        ("builtins", "set"): set,
        ("builtins", "frozenset"): frozenset,
        ("__builtin__", "set"): set,
        ("dnnlib.util", "EasyDict"): _EasyDict,
        ("numpy", "dtype"): np.dtype,
        ("numpy.core.multiarray", "scalar"): _numpy_scalar,
        ("numpy._core.multiarray", "scalar"): _numpy_scalar,
    }
    for name, dtype in STORAGE_DTYPES.items():
        names[("torch", name)] = _StorageType(name, dtype)
    return names


_SAFE = _safe_names()


class _RestrictedUnpickler(pickle.Unpickler):
    """Resolves only the names of one allow-list (`safe`) to inert stand-ins."""

    def __init__(self, file, storage_loader=None, safe=None, encoding="ASCII"):
        super().__init__(file, encoding=encoding)
        self._storage_loader = storage_loader
        self._safe = _SAFE if safe is None else safe

    def find_class(self, module: str, name: str):
        try:
            return self._safe[(module, name)]
        except KeyError:
            raise UnsafePickleError(
                f"refusing to load {module}.{name}: not part of the official network format "
                "(the pickle may execute code or is not an official StyleGAN network)",
                module, name,
            ) from None

    def persistent_load(self, pid):
        if self._storage_loader is not None:
            return self._storage_loader(pid)
        raise UnsafePickleError(f"unexpected persistent id {pid!r} outside a tensor storage")


def load_official_pickle(path: str | Path) -> dict[str, Any]:
    """Loads an official network pickle; returns its top-level dict of inert records.

    Raises UnsafePickleError for anything outside the expected classes, and
    ValueError when the file holds no official networks.
    """
    path = Path(path)
    try:
        with open(path, "rb") as f:
            data = _RestrictedUnpickler(f).load()
    except UnsafePickleError as e:
        raise UnsafePickleError(f"{path}: {e}") from None
    except (pickle.UnpicklingError, EOFError, ValueError, struct.error) as e:
        raise ValueError(f"{path}: not a readable network pickle ({e})") from None
    if not isinstance(data, dict) or not any(
        isinstance(data.get(k), PersistentObject) for k in ("G", "D", "G_ema")
    ):
        raise ValueError(
            f"{path}: expected a dict with official networks under 'G', 'D', 'G_ema'"
        )
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


class TFNetwork:
    """An official TF `Network`, reconstructed as its pickled state (inert data)."""

    class_name = "Network"

    def __setstate__(self, state):
        if not isinstance(state, dict):
            raise UnsafePickleError(f"{self.class_name} state is a {type(state).__name__}, "
                                    "expected a dict")
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
        """Raises ValueError naming `where` unless the state has the official layout."""
        st = getattr(self, "state", None)
        if st is None:
            raise ValueError(f"{where}: {self.class_name} without a pickled state")
        if st.get("version") not in TF_STATE_VERSIONS:
            raise ValueError(f"{where}: state version {st.get('version')!r}, expected one of "
                             f"{TF_STATE_VERSIONS}")
        for key, kind in (("name", str), ("build_func_name", str), ("static_kwargs", dict),
                          ("variables", list)):
            if not isinstance(st.get(key), kind):
                raise ValueError(f"{where}: state field {key!r} is "
                                 f"{type(st.get(key)).__name__}, expected {kind.__name__}")
        for item in st["variables"]:
            if not (isinstance(item, tuple | list) and len(item) == 2
                    and isinstance(item[0], str)
                    and isinstance(item[1], np.ndarray | np.generic | float)):
                raise ValueError(f"{where}: variables must be (name, array) pairs, "
                                 f"got {str(item)[:80]!r}")
        comps = st.get("components") or {}
        if not isinstance(comps, dict):
            raise ValueError(f"{where}: components is a {type(comps).__name__}, expected a dict")
        for key, comp in comps.items():
            if not isinstance(comp, TFNetwork):
                raise ValueError(f"{where}: component {key!r} is a {type(comp).__name__}, "
                                 "expected a Network")
            comp.validate(f"{where}/{key}")


class _DnnlibNetwork(TFNetwork):
    class_name = "dnnlib.tflib.network.Network"


class _TfutilNetwork(TFNetwork):
    class_name = "tfutil.Network"


def _numpy_reconstruct(subtype, shape, dtype):
    # numpy pickles arrays as _reconstruct(ndarray, (0,), b'b') + ndarray.__setstate__.
    if subtype is not np.ndarray:
        raise UnsafePickleError(f"refusing to reconstruct an array of type {subtype!r}")
    if isinstance(dtype, str):
        dtype = dtype.encode("latin1")
    return np.ndarray.__new__(np.ndarray, shape, np.dtype(dtype))


def _copyreg_reconstructor(cls, base, state):
    # Protocol 0/1 pickles build instances through copyreg._reconstructor.
    if isinstance(cls, type) and issubclass(cls, TFNetwork) and base is object and state is None:
        return cls.__new__(cls)
    if cls is _EasyDict and base is dict:
        return _EasyDict(state or {})
    raise UnsafePickleError(f"refusing to reconstruct {cls!r} from {base!r}")


def _latin1_bytes(text, encoding="latin1"):
    # Protocol 2 writes bytes as _codecs.encode(str, 'latin1') (Python 2 had no bytes).
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise UnsafePickleError(f"refusing _codecs.encode({type(text).__name__}, {encoding!r})")
    return text.encode("latin1")


_TF_SAFE: dict[tuple[str, str], Any] = {
    ("dnnlib.tflib.network", "Network"): _DnnlibNetwork,
    ("tfutil", "Network"): _TfutilNetwork,
    ("dnnlib.util", "EasyDict"): _EasyDict,
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("numpy", "dtype"): np.dtype,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy.core.multiarray", "_reconstruct"): _numpy_reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _numpy_reconstruct,
    ("numpy.core.multiarray", "scalar"): _numpy_scalar,
    ("numpy._core.multiarray", "scalar"): _numpy_scalar,
    ("copyreg", "_reconstructor"): _copyreg_reconstructor,
    ("copy_reg", "_reconstructor"): _copyreg_reconstructor,
    ("_codecs", "encode"): _latin1_bytes,
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
    """The first class or function a pickle names (past copyreg's), building nothing."""
    try:
        with open(path, "rb") as f:
            _SniffingUnpickler(f, encoding="latin1").load()
    except _FirstGlobal as found:
        return found.module, found.name
    except Exception:  # unreadable: let the real loader report it
        return None
    return None


def is_tf_pickle(path: str | Path) -> bool:
    """True when the file is a pickle of NVIDIA's TensorFlow networks."""
    return first_global(path) in TF_NETWORK_CLASSES


def load_tf_pickle(path: str | Path) -> tuple[TFNetwork, TFNetwork, TFNetwork]:
    """Loads an official TF network pickle; returns its (G, D, Gs) as inert records.

    Raises UnsafePickleError for anything outside the expected classes, and ValueError
    when the file is not the official (G, D, Gs) tuple of well-formed network states.
    """
    path = Path(path)
    try:
        with open(path, "rb") as f:
            data = _RestrictedUnpickler(f, safe=_TF_SAFE, encoding="latin1").load()
    except UnsafePickleError as e:
        raise UnsafePickleError(f"{path}: {e}", e.module, e.name) from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, struct.error) as e:
        raise ValueError(f"{path}: not a readable network pickle ({e})") from None
    if not (isinstance(data, tuple) and len(data) == 3
            and all(isinstance(x, TFNetwork) for x in data)):
        got = type(data).__name__ if not isinstance(data, tuple) else (
            f"a tuple of {len(data)}: " + ", ".join(type(x).__name__ for x in data))
        raise ValueError(f"{path}: expected the official (G, D, Gs) tuple of TF networks, "
                         f"got {got}")
    for label, net in zip(("G", "D", "Gs"), data, strict=True):
        net.validate(f"{path}:{label}")
    return data
