"""Reads PyTorch `.pth` state dicts (zip and legacy `torch.save` formats) without torch.

The released metric weights (pytorch-fid's `pt_inception-2015-12-05-*.pth`,
torchvision's `vgg16-*.pth`, LPIPS's `vgg.pth`) are `torch.save`d state dicts: a
pickle of an `OrderedDict` of tensors whose storages live outside the pickle, either
as `<archive>/data/<key>` members of a zip (torch >= 1.6) or appended after the
pickles (the legacy format). As in `stylegan_jax.convert.pickle_reader`, a restricted
unpickler resolves only a fixed set of names to inert stand-ins, so a file cannot run
code; anything else is refused with the offending `module.name`. Tensors are read
lazily, so `keys=` loads part of a large file (VGG16's unused classifier) cheaply.
"""

from __future__ import annotations

import collections
import pickle
import struct
import sys
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from stylegan_jax.convert.pickle_reader import (
    STORAGE_DTYPES,
    TORCH_LEGACY_MAGIC,
    UnsafePickleError,
)
from stylegan_jax.convert.safe_pickle import (
    PATH_ERRORS,
    Budget,
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


class UnsafeWeightsError(UnsafePickleError):
    """The file asks for something outside a plain tensor state dict."""


class _MissingEntries(ValueError):
    """A readable file that lacks requested entries (not a file problem)."""


@dataclass(frozen=True)
class _StorageType(Inert):
    name: str

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(STORAGE_DTYPES[self.name])


@dataclass
class _Storage(Inert):
    """One storage of the file: `key` names its bytes; `offset` (elements) for legacy views."""

    key: str
    dtype: np.dtype
    numel: int
    offset: int = 0


@dataclass
class _TensorRef(Inert):
    storage: _Storage
    offset: Any
    size: Any
    stride: Any


def _rebuild_tensor(storage, offset, size, stride, *_unused) -> _TensorRef:
    if not isinstance(storage, _Storage):
        raise UnsafeWeightsError("a tensor refers to something that is not a storage")
    return _TensorRef(storage, offset, size, stride)  # checked when read (strided_copy)


def _rebuild_parameter(data, *_unused):
    return data


def _safe_names() -> dict[tuple[str, str], Any]:
    names: dict[tuple[str, str], Any] = {
        ("torch._utils", "_rebuild_tensor_v2"): SafeFunction(_rebuild_tensor),
        ("torch._utils", "_rebuild_tensor"): SafeFunction(_rebuild_tensor),
        ("torch._utils", "_rebuild_parameter"): SafeFunction(_rebuild_parameter),
        ("torch._utils", "_rebuild_parameter_with_state"): SafeFunction(_rebuild_parameter),
        ("collections", "OrderedDict"): collections.OrderedDict,
    }
    for name in STORAGE_DTYPES:
        names[("torch", name)] = _StorageType(name)
    return names


_SAFE = _safe_names()


class _Unpickler(pickle.Unpickler):
    def __init__(self, file, persistent_load=None):
        super().__init__(file)
        self._persistent = persistent_load

    def find_class(self, module: str, name: str):
        try:
            return _SAFE[(module, name)]
        except (KeyError, TypeError):
            pass
        what = f"{printable(module)}.{printable(name)}"
        if module == "torch" and str(name).endswith("Storage"):
            raise UnsafeWeightsError(f"unknown storage type {what} (known: "
                                     f"{', '.join(STORAGE_DTYPES)})", module, name)
        raise UnsafeWeightsError(
            f"refusing to load {what}: not part of a tensor state dict "
            "(the file may execute code, or is a whole pickled model)", module, name)

    def persistent_load(self, pid):
        if self._persistent is None:
            raise UnsafeWeightsError(f"unexpected persistent id {short_repr(pid)}")
        return self._persistent(pid)


def _count(value: Any, what: str) -> int:
    if not isinstance(value, int) or not 0 <= value < 2**62:
        raise PickleFileError(f"{what} is {short_repr(value)}, expected a count")
    return value


def _storage_from_pid(pid, legacy: bool) -> _Storage:
    """('storage', type, key, location, numel[, view]) -> a storage record.

    Old legacy files may pickle a view (root key, element offset, numel) of a storage;
    its tensors then count their offset from the view's start.
    """
    if not isinstance(pid, tuple) or len(pid) < 5 or pid[0] != "storage":
        raise UnsafeWeightsError(f"unexpected persistent id {short_repr(pid)}")
    storage_type, key = pid[1], pid[2]
    if not isinstance(storage_type, _StorageType):
        raise UnsafeWeightsError(f"unexpected storage type {short_repr(storage_type)}")
    if not isinstance(key, str | int):
        raise PickleFileError(f"storage key {short_repr(key)} is not a name")
    numel = _count(pid[4], f"storage {printable(key)} size")
    view = pid[5] if legacy and len(pid) > 5 else None
    if view is not None and not (isinstance(view, tuple) and len(view) == 3):
        raise PickleFileError(f"storage view {short_repr(view)} is not (key, offset, size)")
    offset = 0 if view is None else _count(view[1], f"storage {printable(key)} view offset")
    return _Storage(str(key), storage_type.dtype, numel, offset)


def _materialize(ref: _TensorRef, flat: np.ndarray, budget: Budget, name: str) -> np.ndarray:
    """A C-contiguous copy of the tensor's elements (any strides) from its storage."""
    offset = _count(ref.offset, f"tensor {printable(name)} offset") + ref.storage.offset
    return strided_copy(flat, offset, ref.size, ref.stride, budget, f"tensor {printable(name)}")


def _collect_refs(obj: Any) -> dict[str, _TensorRef]:
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]  # some checkpoints wrap the state dict
    if not isinstance(obj, dict):
        raise PickleFileError(f"holds a {type(obj).__name__}, expected a state dict")
    refs = {}
    for k, v in obj.items():
        if not isinstance(v, _TensorRef):
            raise PickleFileError(f"entry {short_repr(k)} is a {type(v).__name__}, not a tensor")
        refs[str(k)] = v
    return refs


def _wanted(refs: dict[str, _TensorRef], keys: Iterable[str] | None, path: Path):
    if keys is None:
        return refs
    keys = list(keys)
    missing = [k for k in keys if k not in refs]
    if missing:
        raise _MissingEntries(
            f"{path}: no entries {missing[:4]}{' …' if len(missing) > 4 else ''} (it has "
            f"{len(refs)}, such as {list(refs)[:4]}): a different network's weights?")
    return {k: refs[k] for k in keys}


def _read_member(zf: zipfile.ZipFile, name: str, size: int | None, budget: Budget,
                 what: str) -> bytes:
    """The member's bytes, its declared size checked (against `size`, the budget, the
    compression ratio of a zip bomb) before anything is decompressed."""
    try:
        info = zf.getinfo(name)
    except KeyError:
        raise PickleFileError(
            f"{what} is missing from the zip (no member {printable(name)})") from None
    if size is not None and info.file_size != size:
        raise PickleFileError(f"{what} needs {size} bytes; its zip member holds {info.file_size}")
    if (info.compress_type != zipfile.ZIP_STORED
            and info.file_size > 100 * info.compress_size + 2**20):
        raise PickleFileError(f"{what} inflates {info.compress_size} bytes to {info.file_size} "
                              "(a zip bomb?)")
    budget.take(info.file_size, what)
    with zf.open(info) as f:
        raw = f.read(info.file_size)
    if len(raw) != info.file_size:
        raise PickleFileError(f"{what} is truncated")
    return raw


def _load_zip(path: Path, keys, budget: Budget) -> dict[str, np.ndarray]:
    with zipfile.ZipFile(path) as zf:
        names = zf.namelist()
        pkl = [n for n in names if n.endswith("data.pkl") and n.count("/") == 1]
        if len(pkl) != 1:
            raise PickleFileError("a zip without exactly one <archive>/data.pkl")
        prefix = pkl[0][: -len("data.pkl")]
        byteorder = "little"
        if prefix + "byteorder" in names:
            raw = _read_member(zf, prefix + "byteorder", None, budget, "byteorder")
            byteorder = raw.decode("latin1").strip()
            if byteorder not in ("little", "big"):
                raise PickleFileError(f"byteorder is {short_repr(byteorder)}, expected 'little' "
                                      "or 'big'")
        storages: dict[str, _Storage] = {}

        def persistent_load(pid):
            s = _storage_from_pid(pid, legacy=False)
            return storages.setdefault(s.key, s)

        data = _read_member(zf, pkl[0], None, budget, "data.pkl")
        obj, end = load_at(data, 0, lambda f: _Unpickler(f, persistent_load))
        refs = _wanted(_collect_refs(obj), keys, path)
        flats: dict[str, np.ndarray] = {}
        out = {}
        for name, ref in refs.items():
            s = ref.storage
            if s.key not in flats:
                dtype = s.dtype.newbyteorder("<" if byteorder == "little" else ">")
                raw = _read_member(zf, f"{prefix}data/{s.key}", s.numel * dtype.itemsize,
                                   budget, f"storage {printable(s.key)}")
                flats[s.key] = np.frombuffer(raw, dtype=dtype).astype(s.dtype, copy=False)
            out[name] = _materialize(ref, flats[s.key], budget, name)
        return out


def _load_legacy(path: Path, keys, budget: Budget) -> dict[str, np.ndarray]:
    with mapped(path) as data:
        magic, pos = load_at(data, 0, _Unpickler)
        if magic != TORCH_LEGACY_MAGIC:
            raise PickleFileError("neither a zip nor a legacy torch.save file")
        _protocol, pos = load_at(data, pos, _Unpickler)
        sys_info, pos = load_at(data, pos, _Unpickler)
        if not isinstance(sys_info, dict) or sys_info.get("little_endian") is not True:
            raise PickleFileError(f"system info {short_repr(sys_info)}: only little-endian "
                                  "legacy files are supported")
        storages: dict[str, _Storage] = {}

        def persistent_load(pid):
            s = _storage_from_pid(pid, legacy=True)
            storages.setdefault(s.key, _Storage(s.key, s.dtype, s.numel))
            return s

        obj, pos = load_at(data, pos, lambda f: _Unpickler(f, persistent_load))
        refs = _wanted(_collect_refs(obj), keys, path)
        needed = {r.storage.key for r in refs.values()}
        order, pos = load_at(data, pos, _Unpickler)
        if not isinstance(order, list):
            raise PickleFileError(f"storage keys are a {type(order).__name__}, expected a list")
        flats: dict[str, np.ndarray] = {}
        for key in map(str, order):  # storages follow in this order: 8-byte count, then data
            storage = storages.get(key)
            if storage is None:
                raise PickleFileError(f"storage {printable(key)} is listed but no tensor uses it")
            if pos + 8 > len(data):
                raise PickleFileError(f"truncated before storage {printable(key)}")
            (numel,) = struct.unpack_from("<q", data, pos)
            nbytes = numel * storage.dtype.itemsize
            if numel != storage.numel or nbytes > len(data) - pos - 8:
                raise PickleFileError(f"storage {printable(key)} of {storage.numel} elements "
                                      f"holds {numel} ({len(data) - pos - 8} bytes left)")
            if key in needed:
                budget.take(nbytes, f"storage {printable(key)}")
                flat = np.frombuffer(data, storage.dtype.newbyteorder("<"), numel, pos + 8)
                flats[key] = flat.astype(storage.dtype)  # a copy: the file is unmapped after
                del flat
            pos += 8 + nbytes
        absent = sorted(needed - set(flats))
        if absent:
            raise PickleFileError(f"storage {printable(absent[0])} is not in the file")
        return {name: _materialize(ref, flats[ref.storage.key], budget, name)
                for name, ref in refs.items()}


def load_state_dict(path: str | Path, keys: Iterable[str] | None = None) -> dict[str, np.ndarray]:
    """name -> NumPy array for a `torch.save`d state dict; only `keys` if given.

    Raises FileNotFoundError, UnsafeWeightsError (a name outside the allowed set),
    PickleFileError (not a readable state dict; a ValueError, like everything else a
    malformed or hostile file provokes) or ValueError (no `keys` entries), each naming
    the file on one line.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such weight file")
    budget = Budget(path.stat().st_size)
    try:
        if zipfile.is_zipfile(path):
            return _load_zip(path, keys, budget)
        return _load_legacy(path, keys, budget)
    except _MissingEntries:
        raise
    except UnsafePickleError as e:
        raise with_path(e, path) from None
    except PickleFileError as e:
        raise PickleFileError(f"{path}: not a readable torch state dict ({e})") from None
    except PATH_ERRORS:
        raise
    except Exception as e:  # noqa: BLE001 (anything else a hostile file provokes)
        raise PickleFileError(f"{path}: not a readable torch state dict "
                              f"({type(e).__name__}: {one_line(e)})") from None


if __name__ == "__main__":  # python -m stylegan_jax.metrics.torch_weights FILE: list entries
    for name, value in load_state_dict(sys.argv[1]).items():
        print(name, value.dtype, list(value.shape))
