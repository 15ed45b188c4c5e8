"""Training beyond the square: tiny StyleGAN2 runs on a 32x16 RGBA labelled dataset (with
ADA) and a 16x32 grayscale one train, resume exactly, and generate at their shape.

References: the dataset the test writes (class alpha values, transparent bands), a run
without interruption for the resumed one, and the ADA pipe (held to NVIDIA's on
rectangles and RGBA in test_augment_shapes.py) for the augmented-reals grid.
"""

from __future__ import annotations

import jax
import numpy as np
import pytest
from PIL import Image
from train_fixtures import tiny_config

from stylegan_jax import augment, cli
from stylegan_jax.store.load import load_networks
from stylegan_jax.train import loop
from stylegan_jax.train.config import apply_override

pytestmark = pytest.mark.slow
RNG = np.random.default_rng(5)
ALPHA = {"cats": 100, "dogs": 200}  # each class's opacity


def _dataset(tmp, size: str, channels: int) -> str:
    """Mixed-aspect images in class folders: RGBA with each class's opacity (channels 4),
    else grayscale without labels."""
    src = tmp / f"src{size}"
    for name, alpha in ALPHA.items():
        (src / name).mkdir(parents=True)
        for i, (h, w) in enumerate([(40, 40), (30, 90), (90, 30), (20, 40)]):
            px = RNG.integers(0, 256, (h, w, 4), dtype=np.uint8)
            px[..., 3] = alpha
            image = Image.fromarray(px, "RGBA")
            (image if channels == 4 else image.convert("L")).save(src / name / f"{i}.png")
    dest = tmp / f"ds{size}"
    assert cli.main(["dataset", "--source", str(src), "--dest", str(dest), "--resolution",
                     size, "--channels", str(channels), "--transform", "pad-to-ratio",
                     "--labels", "folders" if channels == 4 else "none",
                     "--no-progress"]) == 0
    return str(dest)


def _config(dataset: str, size: str, channels: int, labels: bool, ada: bool):
    config = tiny_config()
    config.data.source = "tfrecord"
    config.data.path = dataset
    config.data.channels = channels
    config.data.use_labels = labels
    apply_override(config, f"data.resolution={size}")
    if ada:
        config.train.aug = "fixed"
        config.train.aug_p = 0.6
        config.train.augpipe = "bgc"
    return config


@pytest.fixture(scope="module")
def wide(tmp_path_factory):
    """32x16 RGBA, two classes, ADA at p = 0.6: a straight run of 4 iterations, and one
    stopped at 2 and resumed to 4."""
    tmp = tmp_path_factory.mktemp("wide")
    data = _dataset(tmp, "32x16", 4)
    config = _config(data, "32x16", 4, labels=True, ada=True)
    loop.train(config, tmp / "straight", stop_at_step=4)
    loop.train(config, tmp / "resumed", stop_at_step=2)
    loop.train(config, tmp / "resumed", stop_at_step=4)
    return tmp, config


def test_a_rectangular_rgba_run_resumes_exactly(wide):
    tmp, _ = wide
    a, b = load_networks(tmp / "straight"), load_networks(tmp / "resumed")
    for name in ("G", "G_ema", "D"):
        for x, y in zip(jax.tree_util.tree_leaves(a[name].variables),
                        jax.tree_util.tree_leaves(b[name].variables), strict=True):
            np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_its_grids_are_rgba_rectangles_with_named_rows(wide):
    tmp, _ = wide
    fakes = Image.open(tmp / "straight" / "samples" / "fakes000000.png")
    assert fakes.mode == "RGBA"
    grid = np.asarray(fakes)
    assert grid.shape[0] == 2 * 16 and (grid.shape[1] - 2 * 32) > 8  # 2 rows, strip + 2 cols
    reals = np.asarray(Image.open(tmp / "straight" / "samples" / "reals.png"))
    cells = reals[:, -64:].reshape(2, 16, 2, 32, 4).transpose(0, 2, 1, 3, 4)
    for row, alpha in enumerate(ALPHA.values()):  # row k: class k, its alpha kept
        a = cells[row, ..., 3]  # (Lanczos blends it only at the transparent bands' edges)
        other = sum(ALPHA.values()) - alpha
        assert (a == alpha).mean() > 0.1 and (a == other).mean() == 0 and (a == 0).any()


def test_augmented_reals_keep_alpha_and_aspect(wide):
    tmp, config = wide
    seen = np.asarray(Image.open(tmp / "straight" / "samples" / "augmented000000.png"))
    assert seen.shape == (2 * 16, 2 * 32, 4)  # 2 x 2 cells of 32 x 16, alpha kept
    reals = np.asarray(Image.open(tmp / "straight" / "samples" / "reals.png"))
    assert not np.array_equal(seen[..., 3], np.full_like(seen[..., 3], 255))
    # The grid is the pipe on the first reals at the run's p (the final snapshot at 64 img).
    from stylegan_jax.train.inputs import first_images

    first = first_images(config, dict(kind="tfrecord", path=config.data.path), 4)
    x = first.astype(np.float32) / 127.5 - 1
    want = augment.augment(x, 0.6, augment.named_pipe("bgc"),
                           jax.random.PRNGKey(64))
    want = np.clip(np.rint((np.asarray(want) + 1) * 127.5), 0, 255).astype(np.uint8)
    cells = seen.reshape(2, 16, 2, 32, 4).transpose(0, 2, 1, 3, 4).reshape(4, 16, 32, 4)
    np.testing.assert_array_equal(cells, want)
    assert reals.shape[-1] == 4


def test_generate_makes_its_shape_with_alpha(wide, tmp_path):
    tmp, _ = wide
    assert cli.main(["generate", "--network", str(tmp / "straight"), "--seeds", "0-1",
                     "--class", "dogs", "--outdir", str(tmp_path)]) == 0
    img = Image.open(tmp_path / "seed0000.png")
    assert (img.mode, img.size) == ("RGBA", (32, 16))


def test_a_tall_grayscale_run_trains_and_generates(tmp_path):
    data = _dataset(tmp_path, "16x32", 1)
    config = _config(data, "16x32", 1, labels=False, ada=False)
    lines: list[str] = []
    loop.train(config, tmp_path / "run", stop_at_step=2, log=lines.append)
    assert any("Training stylegan2 16x32x1" in line for line in lines)
    assert cli.main(["generate", "--network", str(tmp_path / "run"), "--seeds", "3",
                     "--outdir", str(tmp_path / "img")]) == 0
    img = Image.open(tmp_path / "img" / "seed0003.png")
    assert (img.mode, img.size) == ("L", (16, 32))
