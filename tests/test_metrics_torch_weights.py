"""The torch-free `.pth` reader: files written by real torch, a zip written here, bad files."""

from __future__ import annotations

import collections
import io
import pickle
import sys
import types
import zipfile

import numpy as np
import pytest
from official_fixtures import DATA

from stylegan_jax.metrics.torch_weights import UnsafeWeightsError, load_state_dict

TORCH_FILES = DATA / "torch_state_dict"


@pytest.mark.parametrize("name", ["tiny_zip.pth", "tiny_legacy.pth"])
def test_reads_files_written_by_torch(name):
    """Both torch.save formats (see tests/data/torch_state_dict/make_fixture.py)."""
    sd = load_state_dict(TORCH_FILES / name)
    with np.load(TORCH_FILES / "expected.npz") as expected:
        assert list(sd) == list(expected.files)  # order kept
        for k in expected.files:
            assert sd[k].dtype == expected[k].dtype, k
            np.testing.assert_array_equal(sd[k], expected[k], err_msg=k)


@pytest.mark.parametrize("name", ["tiny_zip.pth", "tiny_legacy.pth"])
def test_reads_only_requested_entries(name):
    sd = load_state_dict(TORCH_FILES / name, keys=["t_view", "half"])
    assert list(sd) == ["t_view", "half"]
    with np.load(TORCH_FILES / "expected.npz") as expected:
        np.testing.assert_array_equal(sd["t_view"], expected["t_view"])
    with pytest.raises(ValueError, match="no entries"):
        load_state_dict(TORCH_FILES / name, keys=["features.0.weight"])


# --- a zip-format state dict written without torch -------------------------------------
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


def test_reads_zip_layout_written_without_torch(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    tensors = {"conv.weight": rng.standard_normal((4, 3, 2, 2)),
               "fc.weight": rng.standard_normal((5, 3)), "scalar": np.float32(2.5)}
    path = write_zip_state_dict(tmp_path / "w.pth", tensors, monkeypatch, transpose={"fc.weight"})
    monkeypatch.delitem(sys.modules, "torch")  # the reader must not need it
    sd = load_state_dict(path)
    assert list(sd) == list(tensors)
    for k, v in tensors.items():
        np.testing.assert_array_equal(sd[k], np.asarray(v, np.float32), err_msg=k)


def test_refuses_code_and_other_objects(tmp_path):
    evil = tmp_path / "evil.pth"
    with zipfile.ZipFile(evil, "w") as zf:
        zf.writestr("archive/data.pkl", b"cos\nsystem\n(S'true'\ntR.")
    with pytest.raises(UnsafeWeightsError, match=r"evil.pth.*os\.system"):
        load_state_dict(evil)
    not_sd = tmp_path / "list.pth"
    with zipfile.ZipFile(not_sd, "w") as zf:
        zf.writestr("archive/data.pkl", pickle.dumps([1, 2], protocol=2))
    with pytest.raises(ValueError, match="list.pth.*expected a state dict"):
        load_state_dict(not_sd)
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"\x00" * 64)
    with pytest.raises(ValueError, match="garbage.pth"):
        load_state_dict(garbage)
    with pytest.raises(FileNotFoundError, match="missing.pth"):
        load_state_dict(tmp_path / "missing.pth")
