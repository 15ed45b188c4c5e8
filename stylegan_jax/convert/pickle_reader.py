"""Reads NVIDIA's official network pickles (stylegan2-ada-pytorch / stylegan3) without torch.

An official `.pkl` is a plain pickle of {'G', 'D', 'G_ema', ...}; each network is a
`torch_utils.persistence` object whose pickle carries the *source code* of its class,
and each tensor's storage is a nested legacy `torch.save` blob. Loading it the usual
way executes that source. Here a restricted unpickler resolves only a fixed set of
names to inert stand-ins: networks become `PersistentObject` records (class name,
constructor kwargs, parameters, buffers, children) and tensors become NumPy arrays.
Anything else in the file is refused with the offending `module.name`.
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

_TORCH_MAGIC = 0x1950A86A20F9469CFC6C
_STORAGE_DTYPES = {
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


@dataclass
class PersistentObject:
    """An official persistent class instance, reconstructed without running its code."""

    class_name: str
    state: dict[str, Any]

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
    return PersistentObject(class_name=str(meta.get("class_name")), state=dict(state))


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
    if header[0] != _TORCH_MAGIC:
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
    for name, dtype in _STORAGE_DTYPES.items():
        names[("torch", name)] = _StorageType(name, dtype)
    return names


_SAFE = _safe_names()


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, file, storage_loader=None):
        super().__init__(file)
        self._storage_loader = storage_loader

    def find_class(self, module: str, name: str):
        try:
            return _SAFE[(module, name)]
        except KeyError:
            raise UnsafePickleError(
                f"refusing to load {module}.{name}: not part of the official network format "
                "(the pickle may execute code or is not an official StyleGAN network)"
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
