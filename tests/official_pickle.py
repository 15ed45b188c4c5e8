"""Writes files in the format of NVIDIA's network pickles, without torch (a test helper).

An independent writer of the format the reader parses: each network is a
`torch_utils.persistence._reconstruct_persistent_obj(meta)` record whose state holds
`_parameters` / `_buffers` / `_modules` / `_init_kwargs`, each tensor is
`torch._utils._rebuild_tensor_v2(torch.storage._load_from_bytes(blob), ...)` and each
blob is a legacy `torch.save` of one storage (magic, protocol, sys info, a pickle with a
persistent id, the storage keys, then numel as int64 and the raw bytes).
"""

from __future__ import annotations

import collections
import io
import pickle
import struct

import numpy as np

_DTYPE_STORAGE = {np.dtype(np.float32): "FloatStorage", np.dtype(np.int64): "LongStorage",
                  np.dtype(np.float16): "HalfStorage"}


class Global:
    """A stand-in pickled as the global `module.name`."""

    def __init__(self, module: str, name: str):
        self.module, self.name = module, name


class Call:
    """Pickled as a call of `func` (a Global) with `args`."""

    def __init__(self, func: Global, *args):
        self.func, self.args = func, args


class Record:
    """A persistent network module: its class name, kwargs, tensors and children."""

    def __init__(self, class_name: str, init_kwargs: dict | None = None, module_src: str = ""):
        self.class_name = class_name
        self.init_kwargs = init_kwargs or {}
        self.module_src = module_src or f"class {class_name}: pass\n"
        self.parameters: dict[str, np.ndarray] = collections.OrderedDict()
        self.buffers: dict[str, np.ndarray] = collections.OrderedDict()
        self.modules: dict[str, Record] = collections.OrderedDict()

    def child(self, name: str) -> Record:
        if name not in self.modules:
            self.modules[name] = Record("Module")
        return self.modules[name]


def records_from_state_dict(class_name: str, init_kwargs: dict, state: dict) -> Record:
    """Builds the module tree of an official network from its flat state dict."""
    root = Record(class_name, init_kwargs)
    for name, value in state.items():
        *path, leaf = name.split(".")
        node = root
        for part in path:
            node = node.child(part)
        is_buffer = leaf in ("w_avg", "noise_const", "resample_filter")
        (node.buffers if is_buffer else node.parameters)[leaf] = np.asarray(value)
    return root


class _Pickler(pickle._Pickler):
    """Pure-Python pickler that writes our stand-ins as the official globals and calls."""

    def __init__(self, file, protocol=3):
        super().__init__(file, protocol)
        self.dispatch = dict(self.dispatch)
        self.storages: list[np.ndarray] = []

    def save(self, obj, save_persistent_id=True):
        if save_persistent_id and self.persistent_id(obj) is not None:
            return super().save(obj, save_persistent_id)
        if isinstance(obj, Global):
            self.write(pickle.GLOBAL + f"{obj.module}\n{obj.name}\n".encode())
            return
        if isinstance(obj, Call):
            self.save(obj.func)
            self.save(tuple(obj.args))
            self.write(pickle.REDUCE)
            return
        if isinstance(obj, Record):
            return self.save(_record_call(obj))
        if isinstance(obj, np.ndarray):
            return self.save(_tensor_call(obj))
        return super().save(obj, save_persistent_id)


def _record_call(r: Record) -> Call:
    state = {
        "training": True,
        "_parameters": collections.OrderedDict(r.parameters),
        "_buffers": collections.OrderedDict(r.buffers),
        "_non_persistent_buffers_set": set(),
        "_modules": collections.OrderedDict(r.modules),
        "_init_args": (),
        "_init_kwargs": dict(r.init_kwargs),
        "_orig_class_name": r.class_name,
    }
    meta = dict(type="class", version=6, module_src=r.module_src, class_name=r.class_name,
                state=state)
    return Call(Global("torch_utils.persistence", "_reconstruct_persistent_obj"), meta)


def _tensor_call(a: np.ndarray) -> Call:
    a = np.require(a, requirements='C')  # (ascontiguousarray would make 0-d arrays 1-d)
    strides = tuple(s // a.itemsize for s in a.strides)
    storage = Call(Global("torch.storage", "_load_from_bytes"), legacy_storage_blob(a))
    return Call(Global("torch._utils", "_rebuild_tensor_v2"), storage, 0, tuple(a.shape),
                strides, False, collections.OrderedDict())


def legacy_storage_blob(a: np.ndarray) -> bytes:
    """A legacy torch.save of one storage holding `a`'s elements."""
    f = io.BytesIO()
    for header in (0x1950A86A20F9469CFC6C, 1001,
                   dict(protocol_version=1001, little_endian=True,
                        type_sizes=dict(short=2, int=4, long=4))):
        pickle.dump(header, f, protocol=2)

    class StoragePickler(_Pickler):
        def persistent_id(self, obj):
            if obj is a:
                storage_type = Global("torch", _DTYPE_STORAGE[a.dtype])
                return ("storage", storage_type, "0", "cpu", a.size, None)
            return None

        def save_pers(self, pid):
            self.save(pid, save_persistent_id=False)
            self.write(pickle.BINPERSID)

    p = StoragePickler(f, protocol=3)
    p.dump(a)
    pickle.dump(["0"], f, protocol=2)
    f.write(struct.pack("<q", a.size))
    f.write(a.tobytes())
    return f.getvalue()


def dump(obj, path) -> None:
    """Pickles `obj` (dicts of Records, Globals, Calls, arrays, plain data) to `path`."""
    with open(path, "wb") as f:
        _Pickler(f).dump(obj)
