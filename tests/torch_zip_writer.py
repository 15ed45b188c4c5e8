"""Writes torch's zip state-dict layout without torch (for the reader's and the CLI's tests).

`torch.save` pickles an OrderedDict whose tensors reduce to
`torch._utils._rebuild_tensor_v2(storage, offset, size, stride, ...)` with storages as
persistent ids `('storage', torch.FloatStorage, key, location, numel)`, and stores each
storage's bytes as `<archive>/data/<key>`. Stand-in modules named like torch's make
pickle write exactly those global names.
"""

from __future__ import annotations

import collections
import io
import pickle
import sys
import types
import zipfile

import numpy as np


class _Storage:
    def __init__(self, key, numel):
        self.key, self.numel = key, numel


class _Tensor:
    def __init__(self, storage, offset, size, stride):
        self.args = (storage, offset, size, stride, False, collections.OrderedDict())

    def __reduce__(self):
        return sys.modules["torch._utils"]._rebuild_tensor_v2, self.args


def _fake_torch(monkeypatch):
    """Modules named like torch's so that pickle writes torch's global names."""
    torch = types.ModuleType("torch")
    utils = types.ModuleType("torch._utils")

    def _rebuild_tensor_v2(*args):
        raise AssertionError("never called while writing")

    _rebuild_tensor_v2.__module__ = "torch._utils"
    _rebuild_tensor_v2.__qualname__ = "_rebuild_tensor_v2"
    utils._rebuild_tensor_v2 = _rebuild_tensor_v2
    float_storage = type("FloatStorage", (), {"__module__": "torch"})
    torch.FloatStorage = float_storage
    monkeypatch.setitem(sys.modules, "torch", torch)
    monkeypatch.setitem(sys.modules, "torch._utils", utils)
    return float_storage


def write_zip_state_dict(path, tensors: dict[str, np.ndarray], monkeypatch, transpose=()):
    """torch's zip layout: <name>/data.pkl (tensors by persistent id) + <name>/data/<key>.

    Tensors named in `transpose` are stored as the transposed view of a contiguous storage.
    """
    float_storage = _fake_torch(monkeypatch)
    storages, payload = {}, collections.OrderedDict()
    for i, (name, value) in enumerate(tensors.items()):
        value = np.asarray(value, np.float32)
        key = str(i)
        if name in transpose:
            data = np.ascontiguousarray(value.T)
            stride = (1, value.shape[0])
        else:
            data = np.ascontiguousarray(value)
            stride = tuple(int(np.prod(value.shape[d + 1:])) for d in range(value.ndim))
        storages[key] = data.tobytes()
        payload[name] = _Tensor(_Storage(key, data.size), 0, value.shape, stride)

    class Pickler(pickle.Pickler):
        def persistent_id(self, obj):
            if isinstance(obj, _Storage):
                return ("storage", float_storage, obj.key, "cpu", obj.numel)
            return None

    buf = io.BytesIO()
    Pickler(buf, protocol=2).dump(payload)
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("archive/data.pkl", buf.getvalue())
        zf.writestr("archive/byteorder", "little")
        zf.writestr("archive/version", "3\n")
        for key, raw in storages.items():
            zf.writestr(f"archive/data/{key}", raw)
    return path
