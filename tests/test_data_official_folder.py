"""Export as the official image folder: files, pixels, labels and order as NVIDIA's
ImageFolderDataset (stylegan2-ada-pytorch, training/dataset.py) reads them.

The reader below follows that class's documented behaviour (every file under the folder,
images by Pillow's extensions, sorted by relative path; labels from dataset.json by that path;
grayscale read as [1, H, W]) with Pillow and json only; the expected pixels come from
scikit-image's crops resized here with Pillow, or from the arrays the test wrote.
"""

import json
import os
from pathlib import Path

import numpy as np
import PIL.Image
import pytest
import skimage.data
from skimage.transform import downscale_local_mean

from stylegan_jax.data.dataset_tool import write_dataset
from stylegan_jax.data.inputs import Input, Listing
from stylegan_jax.data.official_folder import write_official_folder
from stylegan_jax.data.shards import DatasetError


def read_official(root: Path):
    """(names, images uint8 [N, C, H, W], labels or None) as ImageFolderDataset sees them."""
    PIL.Image.init()
    files = sorted(
        os.path.relpath(os.path.join(d, f), root) for d, _, fs in os.walk(root) for f in fs
    )
    names = [f for f in files if os.path.splitext(f)[1].lower() in PIL.Image.EXTENSION]
    images, modes = [], set()
    for name in names:
        with PIL.Image.open(root / name) as im:
            modes.add(im.mode)
            x = np.array(im)
        images.append((x[:, :, None] if x.ndim == 2 else x).transpose(2, 0, 1))
    labels = json.loads((root / "dataset.json").read_text())["labels"]
    if labels is not None:
        by_name = dict(labels)
        labels = np.array([by_name[n] for n in names], np.int64)
    return names, np.stack(images), labels, modes


@pytest.fixture(scope="module")
def lfw32():
    """lfw_subset()'s 200 crops as the bundled source makes them: uint8, Pillow bicubic 32."""
    crops = np.rint(np.clip(skimage.data.lfw_subset(), 0, 1) * 255).astype(np.uint8)
    bicubic = PIL.Image.Resampling.BICUBIC
    return np.stack([np.asarray(PIL.Image.fromarray(c).resize((32, 32), bicubic)) for c in crops])


def official_names(n):
    return [f"{i // 1000:05d}/img{i:08d}.png" for i in range(n)]


def test_bundled_faces_without_labels(tmp_path, lfw32):
    info = write_official_folder({"kind": "bundled"}, tmp_path / "faces")
    assert info == {
        "path": str(tmp_path / "faces"),
        "count": 100,
        "resolution": 32,
        "channels": 1,
        "labels": False,
    }
    names, images, labels, modes = read_official(tmp_path / "faces")
    assert names == official_names(100) and modes == {"L"} and labels is None
    assert images.shape == (100, 1, 32, 32)
    np.testing.assert_array_equal(images[:, 0], lfw32[:100])
    assert json.loads((tmp_path / "faces" / "dataset.json").read_text()) == {"labels": None}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["faces"]  # no partial folder left


def test_bundled_with_labels_rgb_and_lower_resolution(tmp_path, lfw32):
    source = {"kind": "bundled", "labels": True, "channels": 3}
    info = write_official_folder(source, tmp_path / "lfw", resolution=16)
    assert info["count"] == 200 and info["labels"] and info["channels"] == 3
    assert info["resolution"] == 16
    names, images, labels, modes = read_official(tmp_path / "lfw")
    assert names == official_names(200) and modes == {"RGB"}
    np.testing.assert_array_equal(labels, np.repeat([0, 1], 100))  # faces, then non-faces
    # 32 -> 16: the exact 2x2 block mean, rounded once, as the training pipeline serves it.
    expected = np.rint(downscale_local_mean(lfw32, (1, 2, 2))).astype(np.uint8)
    np.testing.assert_array_equal(images, np.repeat(expected[:, None], 3, axis=1))


def test_tfrecord_dataset_over_several_folders(tmp_path):
    n = 1003  # folders 00000 and 00001
    originals = np.random.default_rng(0).integers(0, 256, (n, 4, 4, 1), dtype=np.uint8)
    inputs = (
        Input(f"{i}.png", f"mem[{i}]", lambda i=i: originals[i], label=i % 3) for i in range(n)
    )
    write_dataset(
        tmp_path / "shards",
        Listing(inputs, n, [], None, "", num_classes=3),
        resolution=4,
        channels=1,
    )
    info = write_official_folder(
        {"kind": "tfrecord", "path": str(tmp_path / "shards")}, tmp_path / "official"
    )
    assert info["count"] == n and info["labels"] and info["channels"] == 1
    names, images, labels, _ = read_official(tmp_path / "official")
    assert names == official_names(n) and names[1000] == "00001/img00001000.png"
    np.testing.assert_array_equal(images[:, 0], originals[..., 0])
    np.testing.assert_array_equal(labels, np.arange(n) % 3)


def test_refuses_a_destination_that_holds_anything(tmp_path):
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "keep.txt").write_text("mine")
    with pytest.raises(DatasetError, match=f"{busy}: exists and is not empty"):
        write_official_folder({"kind": "bundled"}, busy)
    assert [p.name for p in busy.iterdir()] == ["keep.txt"]
    assert (busy / "keep.txt").read_text() == "mine"
    (tmp_path / "file").write_text("x")
    with pytest.raises(DatasetError, match="file: exists and is not a directory"):
        write_official_folder({"kind": "bundled"}, tmp_path / "file")
    with pytest.raises(DatasetError, match="kind 'tfds' has no random access"):
        write_official_folder({"kind": "tfds", "name": "mnist", "resolution": 32}, tmp_path / "t")
    with pytest.raises(DatasetError, match="resolution 64 exceeds the source's 32"):
        write_official_folder({"kind": "bundled"}, tmp_path / "big", resolution=64)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["busy", "file"]
    (tmp_path / "empty").mkdir()  # an empty directory is fine
    assert write_official_folder({"kind": "bundled"}, tmp_path / "empty")["count"] == 100
