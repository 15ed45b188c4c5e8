"""Labels people can read: class names from sub-folders or dataset.json, kept in the
manifest, printed at the start of a run, one class per grid row (named), stored with the
checkpoints and converted networks, and `generate --class NAME`.

References: the images the test writes (dark and light classes tell rows apart), and
`generate --class INDEX` for the names.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from train_fixtures import tiny_config

from stylegan_jax import cli
from stylegan_jax.data import dataset_tool
from stylegan_jax.data.shards import DatasetError, read_manifest
from stylegan_jax.train import inputs, loop
from stylegan_jax.train.config import ConfigError

RES = 16
SHADES = {"dark": 30, "light": 220}  # each class's pixel value (plus a little noise)


def write_classes(root: Path, per_class: int = 4, loose: bool = False) -> Path:
    rng = np.random.default_rng(0)
    for name, shade in SHADES.items():
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            px = np.clip(shade + rng.integers(-10, 11, (RES, RES)), 0, 255).astype(np.uint8)
            Image.fromarray(px, "L").save(root / name / f"{i}.png")
    if loose:
        Image.fromarray(np.zeros((RES, RES), np.uint8), "L").save(root / "top.png")
    return root


def make_dataset(tmp: Path, *extra: str) -> Path:
    src = write_classes(tmp / "src")
    dest = tmp / "ds"
    assert cli.main(["dataset", "--source", str(src), "--dest", str(dest), "--resolution",
                     str(RES), "--channels", "1", "--no-progress", *extra]) == 0
    return dest


def test_folder_classes_reach_the_manifest(tmp_path, capsys):
    dest = make_dataset(tmp_path, "--labels", "folders")
    manifest = read_manifest(dest)
    assert manifest["class_names"] == ["dark", "light"] and manifest["num_classes"] == 2
    assert manifest["labels"] == [0] * 4 + [1] * 4  # sorted paths: dark/* then light/*
    assert "classes: 0 dark (4 images), 1 light (4 images)" in capsys.readouterr().out


def test_images_outside_class_folders_are_named(tmp_path, capsys):
    src = write_classes(tmp_path / "src", loose=True)
    assert cli.main(["dataset", "--source", str(src), "--dest", str(tmp_path / "ds"),
                     "--resolution", str(RES), "--labels", "folders", "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert "lie at the top" in err and "top.png" in err
    assert not (tmp_path / "ds").exists()


def test_dataset_json_class_names(tmp_path):
    src = write_classes(tmp_path / "src")
    labels = [[f"{n}/{i}.png", k] for k, n in enumerate(SHADES) for i in range(4)]
    (src / "dataset.json").write_text(json.dumps({"labels": labels,
                                                  "class_names": ["night", "day"]}))
    dataset_tool.build_dataset(str(src), str(tmp_path / "ds"), RES, channels=1)
    manifest = read_manifest(tmp_path / "ds")
    assert manifest["class_names"] == ["night", "day"]
    assert manifest["labels"] == [k for k in range(2) for _ in range(4)]


@pytest.mark.parametrize("names, match", [
    (["only"], r"labels\[4\] has class 1, but class_names names 1 classes"),
    (["a", "a"], "repeats a name"),
    ("ab", "'class_names' is 'ab'; expected a list of non-empty strings"),
])
def test_bad_class_names_are_named(tmp_path, names, match):
    src = write_classes(tmp_path / "src")
    labels = [[f"{n}/{i}.png", k] for k, n in enumerate(SHADES) for i in range(4)]
    (src / "dataset.json").write_text(json.dumps({"labels": labels, "class_names": names}))
    with pytest.raises(DatasetError, match=match):
        dataset_tool.build_dataset(str(src), str(tmp_path / "ds"), RES, channels=1)


def test_a_damaged_class_name_list_is_refused(tmp_path):
    dest = make_dataset(tmp_path, "--labels", "folders")
    manifest = json.loads((dest / "manifest.json").read_text())
    manifest["class_names"] = ["dark"]
    (dest / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(DatasetError, match="'class_names' must list 2 names"):
        read_manifest(dest)


def _config(dataset: Path, use_labels: bool, ignore: bool = False):
    config = tiny_config()
    config.data.source = "tfrecord"
    config.data.path = str(dataset)
    config.data.use_labels = use_labels
    config.data.ignore_labels = ignore
    config.data.xflip = False
    return config


@pytest.fixture(scope="module")
def conditional_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("labels")
    dataset = make_dataset(tmp, "--labels", "folders")
    lines: list[str] = []
    loop.train(_config(dataset, True), tmp / "run", stop_at_step=2, log=lines.append)
    return tmp, dataset, tmp / "run", lines


def test_labelled_data_trained_unconditionally_is_refused(conditional_run, tmp_path):
    _, dataset, _, _ = conditional_run
    with pytest.raises(ConfigError, match=r"the data is labelled \(2 classes: dark, light\) "
                       r"but config.data.use_labels=False.*ignore_labels=True"):
        loop.train(_config(dataset, False), tmp_path / "run", stop_at_step=1)
    assert not (tmp_path / "run" / "checkpoints").exists() or not any(
        (tmp_path / "run" / "checkpoints").iterdir())


def test_ignoring_labels_is_said_at_start(conditional_run):
    _, dataset, _, _ = conditional_run
    config = _config(dataset, False, ignore=True)
    _, labels = inputs.open_source(config)
    assert (labels.c_dim, labels.class_names, labels.kind) == (0, (), None)
    assert inputs.label_summary(config, labels).startswith("Labels: IGNORED")


def test_the_run_prints_its_label_set(conditional_run):
    *_, lines = conditional_run
    assert "Labels: 2 classes: 0 dark (4 images), 1 light (4 images)" in lines


def _cells(grid: np.ndarray, rows: int, cols: int) -> tuple[np.ndarray, np.ndarray]:
    """(the name strip, [rows, cols, RES, RES]) of a grid with a strip on the left."""
    strip = grid.shape[1] - cols * RES
    cells = grid[:, strip:].reshape(rows, RES, cols, RES).transpose(0, 2, 1, 3)
    return grid[:, :strip], cells


def test_reals_grid_has_one_named_class_per_row(conditional_run):
    _, _, run, _ = conditional_run
    grid = np.asarray(Image.open(run / "samples" / "reals.png"))
    strip, cells = _cells(grid, 2, 2)  # grid_seeds = 4: 2 x 2
    assert strip.shape[1] > 8 and strip.max() > 200  # names drawn in white
    assert np.abs(cells[0].astype(int) - SHADES["dark"]).max() <= 10
    assert np.abs(cells[1].astype(int) - SHADES["light"]).max() <= 10


def test_fakes_rows_are_the_named_classes_generate_makes(conditional_run, tmp_path):
    _, _, run, _ = conditional_run
    grid = np.asarray(Image.open(run / "samples" / "fakes000000.png"))
    _, cells = _cells(grid, 2, 2)
    for row, name in enumerate(SHADES):  # row r: seeds 2r, 2r + 1 of class r
        out = tmp_path / name
        assert cli.main(["generate", "--network", str(run), "--seeds",
                         f"{2 * row},{2 * row + 1}", "--class", name, "--outdir", str(out),
                         "--no-grid"]) == 0
        for col in range(2):
            made = np.asarray(Image.open(out / f"seed{2 * row + col:04d}.png"))
            np.testing.assert_array_equal(cells[row, col], made)


def test_class_names_travel_with_the_network(conditional_run, tmp_path, capsys):
    _, _, run, _ = conditional_run
    assert cli.main(["convert", str(run), str(tmp_path / "net")]) == 0
    info = json.loads((tmp_path / "net" / "networks.json").read_text())["info"]
    assert info["class_names"] == ["dark", "light"]
    for cls in ("light", "1"):
        assert cli.main(["generate", "--network", str(tmp_path / "net"), "--seeds", "5",
                         "--class", cls, "--outdir", str(tmp_path / cls), "--no-grid"]) == 0
    assert (tmp_path / "light" / "seed0005.png").read_bytes() == (
        tmp_path / "1" / "seed0005.png").read_bytes()
    capsys.readouterr()
    assert cli.main(["generate", "--network", str(tmp_path / "net"), "--seeds", "5",
                     "--class", "medium", "--outdir", str(tmp_path / "x")]) == 2
    assert ("--class 'medium': no such class; expected one of dark, light or an index in "
            "[0, 2)") in capsys.readouterr().err
