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
import io
import pickle
import struct
import sys
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from stylegan_jax.convert.pickle_reader import STORAGE_DTYPES, TORCH_LEGACY_MAGIC


class UnsafeWeightsError(pickle.UnpicklingError, ValueError):
    """The file asks for something outside a plain tensor state dict."""


@dataclass(frozen=True)
class _StorageType:
    name: str

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(STORAGE_DTYPES[self.name])


@dataclass
class _Storage:
    """One storage of the file: `key` names its bytes; `offset` (elements) for legacy views."""

    key: str
    dtype: np.dtype
    numel: int
    offset: int = 0


@dataclass
class _TensorRef:
    storage: _Storage
    offset: int
    size: tuple[int, ...]
    stride: tuple[int, ...]


def _rebuild_tensor(storage, offset, size, stride, *_unused) -> _TensorRef:
    if not isinstance(storage, _Storage):
        raise UnsafeWeightsError("a tensor refers to something that is not a storage")
    return _TensorRef(storage, int(offset), tuple(int(s) for s in size),
                      tuple(int(s) for s in stride))


def _rebuild_parameter(data, *_unused):
    return data


def _safe_names() -> dict[tuple[str, str], Any]:
    names: dict[tuple[str, str], Any] = {
        ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
        ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
        ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
        ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
        ("collections", "OrderedDict"): collections.OrderedDict,
    }
    for name in STORAGE_DTYPES:
        names[("torch", name)] = _StorageType(name)
    return names


_SAFE = _safe_names()


class _Unpickler(pickle.Unpickler):
    def __init__(self, file: BinaryIO, persistent_load=None):
        super().__init__(file)
        self._persistent = persistent_load

    def find_class(self, module: str, name: str):
        try:
            return _SAFE[(module, name)]
        except KeyError:
            raise UnsafeWeightsError(
                f"refusing to load {module}.{name}: not part of a tensor state dict "
                "(the file may execute code, or is a whole pickled model)"
            ) from None

    def persistent_load(self, pid):
        if self._persistent is None:
            raise UnsafeWeightsError(f"unexpected persistent id {pid!r}")
        return self._persistent(pid)


def _storage_from_pid(pid, legacy: bool) -> _Storage:
    """('storage', type, key, location, numel[, view]) -> a storage record.

    Old legacy files may pickle a view (root key, element offset, numel) of a storage;
    its tensors then count their offset from the view's start.
    """
    if not isinstance(pid, tuple) or len(pid) < 5 or pid[0] != "storage":
        raise UnsafeWeightsError(f"unexpected persistent id {pid!r}")
    storage_type, key, numel = pid[1], str(pid[2]), int(pid[4])
    if not isinstance(storage_type, _StorageType):
        raise UnsafeWeightsError(f"unexpected storage type {storage_type!r}")
    view = pid[5] if legacy and len(pid) > 5 else None
    offset = 0 if view is None else int(view[1])
    return _Storage(key, storage_type.dtype, numel, offset)


def _materialize(ref: _TensorRef, flat: np.ndarray) -> np.ndarray:
    """A C-contiguous copy of the tensor's elements (any strides) from its storage."""
    base = flat[ref.storage.offset + ref.offset:]
    if not ref.size:
        return np.array(base[0])
    needed = 1 + sum((n - 1) * s for n, s in zip(ref.size, ref.stride, strict=True))
    if min(ref.size) > 0 and needed > base.size:
        raise ValueError(f"tensor of size {ref.size} runs past its storage")
    view = np.lib.stride_tricks.as_strided(
        base, shape=ref.size, strides=tuple(s * base.itemsize for s in ref.stride)
    )
    return np.array(view)


def _collect_refs(obj: Any, path: Path) -> dict[str, _TensorRef]:
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]  # some checkpoints wrap the state dict
    if not isinstance(obj, dict):
        raise ValueError(f"{path}: holds a {type(obj).__name__}, expected a state dict")
    refs = {}
    for k, v in obj.items():
        if not isinstance(v, _TensorRef):
            raise ValueError(f"{path}: entry {k!r} is a {type(v).__name__}, not a tensor")
        refs[str(k)] = v
    return refs


def _wanted(refs: dict[str, _TensorRef], keys: Iterable[str] | None, path: Path):
    if keys is None:
        return refs
    keys = list(keys)
    missing = [k for k in keys if k not in refs]
    if missing:
        raise ValueError(f"{path}: no entries {missing[:4]}{' …' if len(missing) > 4 else ''} "
                         f"(it has {len(refs)}, such as {list(refs)[:4]}): a different network's "
                         "weights?")
    return {k: refs[k] for k in keys}


def _load_zip(path: Path, keys) -> dict[str, np.ndarray]:
    with zipfile.ZipFile(path) as zf:
        pkl = [n for n in zf.namelist() if n.endswith("data.pkl") and n.count("/") == 1]
        if len(pkl) != 1:
            raise ValueError(f"{path}: a zip without exactly one <archive>/data.pkl")
        prefix = pkl[0][: -len("data.pkl")]
        byteorder = "little"
        if prefix + "byteorder" in zf.namelist():
            byteorder = zf.read(prefix + "byteorder").decode().strip()
        storages: dict[str, _Storage] = {}

        def persistent_load(pid):
            s = _storage_from_pid(pid, legacy=False)
            return storages.setdefault(s.key, s)

        obj = _Unpickler(io.BytesIO(zf.read(pkl[0])), persistent_load).load()
        refs = _wanted(_collect_refs(obj, path), keys, path)
        flats: dict[str, np.ndarray] = {}
        out = {}
        for name, ref in refs.items():
            key = ref.storage.key
            if key not in flats:
                dtype = ref.storage.dtype.newbyteorder("<" if byteorder == "little" else ">")
                raw = zf.read(f"{prefix}data/{key}")
                flats[key] = np.frombuffer(raw, dtype=dtype).astype(ref.storage.dtype)
            out[name] = _materialize(ref, flats[key])
        return out


def _load_legacy(path: Path, keys) -> dict[str, np.ndarray]:
    with open(path, "rb") as f:
        magic = _Unpickler(f).load()
        if magic != TORCH_LEGACY_MAGIC:
            raise ValueError(f"{path}: neither a zip nor a legacy torch.save file")
        _protocol = _Unpickler(f).load()
        sys_info = _Unpickler(f).load()
        if isinstance(sys_info, dict) and not sys_info.get("little_endian", True):
            raise ValueError(f"{path}: big-endian legacy files are not supported")
        storages: dict[str, _Storage] = {}

        def persistent_load(pid):
            s = _storage_from_pid(pid, legacy=True)
            storages.setdefault(s.key, _Storage(s.key, s.dtype, s.numel))
            return s

        obj = _Unpickler(f, persistent_load).load()
        refs = _wanted(_collect_refs(obj, path), keys, path)
        needed = {r.storage.key for r in refs.values()}
        order = [str(k) for k in _Unpickler(f).load()]
        flats: dict[str, np.ndarray] = {}
        for key in order:  # storages follow in this order: 8-byte count, then raw data
            head = f.read(8)
            if len(head) != 8:
                raise ValueError(f"{path}: truncated before storage {key}")
            (numel,) = struct.unpack("<q", head)
            dtype = storages[key].dtype if key in storages else np.dtype(np.uint8)
            nbytes = numel * dtype.itemsize
            if key in needed:
                raw = f.read(nbytes)
                if len(raw) != nbytes:
                    raise ValueError(f"{path}: storage {key} is truncated")
                flats[key] = np.frombuffer(raw, dtype=dtype.newbyteorder("<")).astype(dtype)
            else:
                f.seek(nbytes, io.SEEK_CUR)
        return {name: _materialize(ref, flats[ref.storage.key]) for name, ref in refs.items()}


def load_state_dict(path: str | Path, keys: Iterable[str] | None = None) -> dict[str, np.ndarray]:
    """name -> NumPy array for a `torch.save`d state dict; only `keys` if given.

    Raises FileNotFoundError, UnsafeWeightsError (a name outside the allowed set), or
    ValueError (not a state dict file), each naming the file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such weight file")
    try:
        if zipfile.is_zipfile(path):
            return _load_zip(path, keys)
        return _load_legacy(path, keys)
    except UnsafeWeightsError as e:
        raise UnsafeWeightsError(f"{path}: {e}") from None
    except (pickle.UnpicklingError, EOFError, struct.error, zipfile.BadZipFile) as e:
        raise ValueError(f"{path}: not a readable torch state dict ({e})") from None


if __name__ == "__main__":  # python -m stylegan_jax.metrics.torch_weights FILE: list entries
    for name, value in load_state_dict(sys.argv[1]).items():
        print(name, value.dtype, list(value.shape))
