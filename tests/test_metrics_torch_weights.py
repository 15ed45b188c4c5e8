"""The torch-free `.pth` reader: files written by real torch, a zip written here, bad files."""

from __future__ import annotations

import pickle
import sys
import zipfile

import numpy as np
import pytest
from official_fixtures import DATA
from torch_zip_writer import write_zip_state_dict

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
