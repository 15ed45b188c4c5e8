"""The training loop: exact resume, signals, bad configs, outputs (broken runs:
test_watchdog.py)."""

from __future__ import annotations

import functools
import itertools
import json
import os
import re
import signal
import time

import jax
import numpy as np
import pytest
from train_fixtures import tiny_config

from stylegan_jax import images
from stylegan_jax.store.checkpoints import Checkpoints
from stylegan_jax.train import config as config_lib
from stylegan_jax.train import loop
from stylegan_jax.train.stylegan2 import config as stylegan2_config


def saved(workdir, step):
    ckpts = Checkpoints(workdir / "checkpoints", keep_last=10, keep_every=None)
    config = tiny_config()
    from stylegan_jax.train.stylegan2 import step as step_lib
    nets = step_lib.build_networks(config.model, 16, 1, 0)
    template = jax.eval_shape(  # the layout is all a restore needs
        functools.partial(step_lib.init_state, nets, stylegan2_config.step_config(config)), 0)
    state, data, meta = ckpts.restore(step, template)
    ckpts.close()
    return state, data


def assert_trees_equal(a, b):
    for (path, x), y in zip(jax.tree_util.tree_leaves_with_path(a), jax.tree_util.tree_leaves(b),
                            strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y),
                                      err_msg=jax.tree_util.keystr(path))


@pytest.fixture(scope="module")
def straight(tiny_run):
    return tiny_run  # conftest: 6 iterations of tiny_config, three checkpoints kept


def test_outputs_of_a_run(straight):
    workdir, summary, lines = straight
    summary = {k: v for k, v in summary.items() if k != "state"}
    assert summary == {"step": 6, "kimg": 0.096, "checkpoint": 96, "best": None,
                       "reason": "stop_at_step"}
    assert sorted(int(p.name) for p in (workdir / "checkpoints").iterdir()) == [32, 64, 96]
    assert (workdir / "config.json").is_file()
    assert (workdir / "samples" / "reals.png").is_file()
    assert sorted(p.name for p in (workdir / "samples").glob("fakes*.png"))
    records = [json.loads(x) for x in (workdir / "stats.jsonl").read_text().splitlines()]
    assert records and {"kimg", "Loss/G/loss", "Loss/D/loss"} <= set(records[0])
    tick_lines = [x for x in lines if x.startswith("tick ")]
    assert tick_lines and all("sec/kimg" in x and "eta" in x for x in tick_lines)


def test_resume_is_bitwise_exact(straight, tmp_path):
    workdir, _, _ = straight
    first = loop.train(tiny_config(), tmp_path, stop_at_step=3, log=lambda _: None)
    assert first["checkpoint"] == 48
    second = loop.train(tiny_config(), tmp_path, stop_at_step=6, log=lambda _: None)
    assert second["step"] == 6
    a_state, a_data = saved(workdir, 96)
    b_state, b_data = saved(tmp_path, 96)
    assert a_data == b_data
    assert_trees_equal(a_state, b_state)


def test_tick_time_includes_maintenance(tmp_path, monkeypatch):
    """sec/tick is the wall clock from one tick line to the next, maintenance included, and
    the maintenance field says how much of it the grids (here: slow) took (issue #23)."""
    slow_s, save_image = 1.0, images.save_image

    def slow_save(grid, path):
        if re.fullmatch(r"fakes\d+\.png", path.name):  # snapshots, not reals/fakes_init
            time.sleep(slow_s)
        save_image(grid, path)

    monkeypatch.setattr(images, "save_image", slow_save)
    config = tiny_config()  # the module's compiled programs; a tick every 2 iterations
    config.log.snapshot_kimg = 0.064  # a grid after tick 1 (iteration 4), in tick 2
    config.log.checkpoint_kimg = 1.0  # only the final checkpoint
    ticks = []  # (monotonic time, sec/tick, maintenance) per tick line

    def log(line):
        if line.startswith("tick "):
            fields = dict(re.findall(r"(sec/tick|maintenance) +([\d.]+)", line))
            ticks.append((time.monotonic(), float(fields["sec/tick"]),
                          float(fields["maintenance"])))

    loop.train(config, tmp_path, stop_at_step=6, log=log)
    assert len(ticks) == 3
    for (before, _, _), (now, sec_per_tick, _) in itertools.pairwise(ticks):
        assert sec_per_tick == pytest.approx(now - before, abs=0.4)
    assert ticks[1][2] < slow_s <= ticks[2][2] + 0.05 <= ticks[2][1] + 0.1
    records = [json.loads(x) for x in (tmp_path / "stats.jsonl").read_text().splitlines()]
    assert records[2]["Timing/maintenance_sec"] >= slow_s


def test_sigterm_saves_and_stops(tmp_path):
    def log(line):
        if line.startswith("tick 0 "):
            os.kill(os.getpid(), signal.SIGTERM)

    summary = loop.train(tiny_config(), tmp_path, stop_at_step=50, log=log)
    assert summary["reason"] == "SIGTERM"
    assert summary["step"] < 50 and summary["checkpoint"] == summary["step"] * 16
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # handler restored


def test_incompatible_workdir_is_refused(straight):
    workdir, _, _ = straight
    config = tiny_config()
    config.model.channel_max = 16
    with pytest.raises(config_lib.ConfigError, match="different model"):
        loop.train(config, workdir, stop_at_step=7)


@pytest.mark.parametrize("field,value,match", [
    ("train.batch_size", 12, "multiple of the 8 devices"),
    ("model.g_architecture", "fancy", "expected one of"),
    ("train.d_reg_interval", -1, "integer >= 1"),
    ("data.resolution", 48, "power of two"),
    ("train.backend", "pjit", "pmap"),
    ("model.mbstd_group_size", 3, "divide the per-device batch"),
])
def test_bad_configs_name_the_field(field, value, match):
    config = tiny_config()
    config.train.batch_size = 32  # 4 per device: a group of 3 cannot split it
    section, key = field.split(".")
    config[section][key] = value
    with pytest.raises(config_lib.ConfigError, match=match) as e:
        config_lib.validate(config, num_devices=8)
    assert field in str(e.value)


def test_overrides_are_typed():
    config = config_lib.load_config("quickstart", ["--config.train.batch_size=64",
                                                   "--config.train.r1_gamma=2"])
    assert config.train.batch_size == 64 and config.train.r1_gamma == 2.0
    with pytest.raises(config_lib.ConfigError, match="no field"):
        config_lib.load_config("quickstart", ["--config.train.bogus=1"])
    with pytest.raises(config_lib.ConfigError, match="expected a int"):
        config_lib.load_config("quickstart", ["--config.train.batch_size=big"])
    with pytest.raises(config_lib.ConfigError, match="known configs"):
        config_lib.load_config("nonexistent")


def test_data_resolution_must_match(tmp_path):
    """A 16x16 dataset cannot feed a 32x32 config: the error comes before any compilation."""
    from PIL import Image

    from stylegan_jax import cli

    src = tmp_path / "images"
    src.mkdir()
    rng = np.random.default_rng(0)
    for i in range(4):
        Image.fromarray(rng.integers(0, 256, (16, 16), dtype=np.uint8), "L").save(src / f"{i}.png")
    assert cli.main(["dataset", "--source", str(src), "--dest", str(tmp_path / "ds"),
                     "--resolution", "16", "--channels", "1", "--no-progress"]) == 0
    config = tiny_config()
    config.data.source = "tfrecord"
    config.data.path = str(tmp_path / "ds")
    config.data.resolution = 32
    with pytest.raises(ValueError, match=r"^resolution 32 exceeds the source's 16$"):
        loop.train(config, tmp_path / "run", stop_at_step=1)
    assert not (tmp_path / "run" / "checkpoints").exists() or not any(
        (tmp_path / "run" / "checkpoints").iterdir())


def test_generate_and_export_from_a_workdir(straight, tmp_path):
    from stylegan_jax import cli
    from stylegan_jax.store.load import load_networks

    workdir, _, _ = straight
    nets = load_networks(workdir)
    ckpt_state, _ = saved(workdir, 96)
    np.testing.assert_array_equal(
        nets["G_ema"].variables["params"]["synthesis"]["b16"]["torgb"]["bias"],
        ckpt_state.G_ema["synthesis"]["b16"]["torgb"]["bias"])
    assert cli.main(["generate", "--network", str(workdir), "--seeds", "0-3",
                     "--outdir", str(tmp_path / "img")]) == 0
    assert (tmp_path / "img" / "grid.png").is_file()
    assert cli.main(["convert", str(workdir), str(tmp_path / "official"), "--to",
                     "official"]) == 0
    assert sorted(p.name for p in (tmp_path / "official").iterdir()) == [
        "D.npz", "G.npz", "G_ema.npz", "init_kwargs.json"]
