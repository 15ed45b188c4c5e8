"""StyleGAN3 training: the official presets, the D input blur, and a -r run that crosses the
end of the blur and resumes exactly (the step itself is checked against NVIDIA's recorded
iterations in test_train_step_official.py)."""

from __future__ import annotations

import math

import jax
import numpy as np
import pytest

from stylegan_jax.store.checkpoints import Checkpoints
from stylegan_jax.train import config as config_lib
from stylegan_jax.train import loop
from stylegan_jax.train.families import trainer_class
from stylegan_jax.train.stylegan2 import config as stylegan2_config
from stylegan_jax.train.stylegan2.losses import blur_images


def official_blur(img: np.ndarray, sigma: float) -> np.ndarray:
    """NVIDIA's run_D blur written out directly: a kernel of 2 floor(3 sigma) + 1 taps,
    zero padding, every output pixel a double sum (float64)."""
    r = int(np.floor(sigma * 3))
    if r <= 0:
        return img.astype(np.float64)
    f = np.exp2(-np.square(np.arange(-r, r + 1) / sigma))
    f /= f.sum()
    n, h, w, c = img.shape
    padded = np.zeros((n, h + 2 * r, w + 2 * r, c))
    padded[:, r:r + h, r:r + w] = img
    out = np.zeros((n, h, w, c))
    for dy in range(2 * r + 1):
        for dx in range(2 * r + 1):
            out += f[dy] * f[dx] * padded[:, dy:dy + h, dx:dx + w]
    return out


@pytest.mark.parametrize("sigma", [10.0, 2.6672, 1.0, 0.4, 1 / 3 - 1e-6, 0.0])
def test_d_input_blur_is_the_official_kernel_at_any_sigma(sigma):
    img = np.random.default_rng(0).normal(size=(2, 16, 12, 3)).astype(np.float32)
    ours = jax.jit(blur_images, static_argnums=2)(img, sigma, 30)  # radius of sigma 10
    np.testing.assert_allclose(ours, official_blur(img, sigma), atol=2e-6)


def test_official_presets():
    """NVIDIA's train.py settings and docs/configs.md's recommended gamma per resolution."""
    for variant, res, gamma in [("t", 256, 2.0), ("t", 1024, 32.0), ("r", 512, 8.0)]:
        c = config_lib.load_config(f"stylegan3_{variant}:res={res}")
        config_lib.validate(c, 8)
        m, t = c.model, c.train
        assert (c.family, c.data.resolution, t.r1_gamma, t.batch_size) == (
            "stylegan3", res, gamma, 32)
        assert (t.g_lr, t.d_lr, t.pl_weight, t.style_mixing_prob, t.g_reg_interval,
                t.d_reg_interval, t.ema_kimg, t.ema_rampup) == (
            0.0025, 0.002, 0, 0, 0, 16, 10.0, 0.05)
        assert (m.mapping_layers, m.channel_base, m.channel_max, m.mbstd_group_size) == (
            2, 32768, 512, 4)
        r = variant == "r"
        assert (m.conv_kernel, m.use_radial_filters, m.g_channel_multiplier) == (
            (1, True, 2) if r else (3, False, 1))
        assert (t.blur_init_sigma, t.blur_fade_kimg) == ((10.0, 200.0) if r else (0.0, 0.0))
        nets = trainer_class(c.family)(c, 0).nets
        assert nets.G.magnitude_ema_beta == 0.5 ** (32 / 20000)
        assert (nets.G.channel_base, nets.G.channel_max) == ((65536, 1024) if r
                                                             else (32768, 512))
    c = config_lib.load_config("stylegan3_r:res=512,gamma=16.4")
    assert c.train.r1_gamma == 16.4


@pytest.mark.parametrize("field,value,match", [
    ("train.pl_weight", 2.0, "without path length"),
    ("train.style_mixing_prob", 0.9, "without path length"),
    ("model.conv_kernel", 2, "expected 3"),
    ("model.g_channel_multiplier", 0, "positive integer"),
    ("model.num_layers", 2, "critically sampled"),
    ("train.blur_fade_kimg", -1.0, ">= 0"),
])
def test_bad_stylegan3_configs_name_the_field(field, value, match):
    config = config_lib.load_config("stylegan3_quick:r")
    section, key = field.split(".")
    config[section][key] = value
    with pytest.raises(config_lib.ConfigError, match=match) as e:
        config_lib.validate(config, num_devices=8)
    assert field in str(e.value)


@pytest.mark.parametrize("field,value", [("train.blur_init_sigma", 10.0),
                                         ("metrics.names", "eqt1k_int")])
def test_stylegan3_settings_are_refused_elsewhere(field, value):
    config = config_lib.load_config("quickstart")
    section, key = field.split(".")
    config[section][key] = value
    with pytest.raises(config_lib.ConfigError, match="StyleGAN3") as e:
        config_lib.validate(config, num_devices=8)
    assert field in str(e.value)


def tiny_r_config():
    """stylegan3_quick:r shrunk: 16x16, 3 synthesis layers, 2 images per fake device, the
    blur acting for the first two iterations only, ADA, a checkpoint every 2 iterations."""
    c = config_lib.load_config("stylegan3_quick:r")
    c.data.resolution = 16
    c.model.z_dim = c.model.w_dim = 16
    c.model.channel_base, c.model.channel_max = 128, 8
    c.model.num_layers = 3
    c.model.mbstd_group_size = 2
    c.train.batch_size = 16
    c.train.d_reg_interval = 1  # one program per stage
    c.train.blur_fade_kimg = 0.03  # sigma 10 -> floor(3 sigma) = 0 after 29 images
    c.train.aug, c.train.aug_p, c.train.ada_kimg = "ada", 0.2, 0.1  # after the blur; p moves
    c.train.ada_interval = 2
    c.log.tick_kimg = c.log.snapshot_kimg = c.log.checkpoint_kimg = 0.032
    c.log.keep_last = 5
    c.log.grid_seeds = 4
    c.log.tensorboard = False
    return c


def restore(workdir, step):
    config = tiny_r_config()
    trainer = trainer_class(config.family)(config, 0)
    ckpts = Checkpoints(workdir / "checkpoints", keep_last=10, keep_every=None)
    state, data, _ = ckpts.restore(step, jax.eval_shape(trainer.init_state, 0))
    ckpts.close()
    return state, data


@pytest.mark.slow  # 3 runs, 2 stage programs: ~30 s
def test_stylegan3_r_run_crosses_the_blur_stage_and_resumes_exactly(tmp_path):
    config = tiny_r_config()
    cfg = stylegan2_config.step_config(config)
    assert cfg.blur_end_nimg == math.floor(30 * (1 - 1 / 30)) + 1 == 30
    trainer = trainer_class(config.family)(config, 0)
    assert [trainer.stage_at(n).index for n in (0, 16, 32, 48)] == [0, 0, 1, 1]
    lines = []
    straight = loop.train(config, tmp_path / "a", stop_at_step=4, log=lines.append)
    assert straight["step"] == 4 and straight["checkpoint"] == 64
    assert any("stylegan3" in x for x in lines)
    ticks = [x for x in lines if x.startswith("tick ")]
    assert ticks and all("G/loss" in x and "pl_mean" not in x for x in ticks)  # no PL
    assert (tmp_path / "a" / "samples" / "fakes000000.png").is_file()

    first = loop.train(tiny_r_config(), tmp_path / "b", stop_at_step=1, log=lambda _: None)
    assert first["checkpoint"] == 16  # inside the blur stage
    second = loop.train(tiny_r_config(), tmp_path / "b", stop_at_step=4, log=lambda _: None)
    assert second["step"] == 4
    a_state, a_data = restore(tmp_path / "a", 64)
    b_state, b_data = restore(tmp_path / "b", 64)
    assert a_data == b_data
    for (path, x), y in zip(jax.tree_util.tree_leaves_with_path(a_state),
                            jax.tree_util.tree_leaves(b_state), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y),
                                      err_msg=jax.tree_util.keystr(path))

    # The running statistics moved (in Dmain) and G_ema carries G's buffers.
    emas = {jax.tree_util.keystr(p): float(v) for p, v in
            jax.tree_util.tree_leaves_with_path(a_state.G_buffers) if "magnitude_ema" in
            jax.tree_util.keystr(p)}
    assert len(emas) == 4 and all(v != 1.0 for v in emas.values())
    for x, y in zip(jax.tree_util.tree_leaves(a_state.G_buffers),
                    jax.tree_util.tree_leaves(a_state.G_ema_buffers), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    # D's output bias has an Adam of its own: it was stepped 4 times (Dmain), the rest 8.
    counts = sorted(int(jax.tree_util.tree_leaves(s)[0])
                    for s in a_state.D_opt.inner_states.values())
    assert counts == [4, 8]
    assert float(a_state.augment_p) != 0.2  # ADA adjusted p (every 2 iterations)

    # A new run started from this one (official --resume) takes its networks and, as
    # officially, has no D input blur: one stage.
    config = tiny_r_config()
    config.train.resume = str(tmp_path / "a")
    assert trainer_class(config.family)(config, 0).stage_at(0).end_nimg is None
    lines = []
    started = loop.train(config, tmp_path / "c", stop_at_step=0, log=lines.append)
    assert any(x.startswith(f"Starting from {tmp_path / 'a'}") for x in lines)
    for field in ("G", "G_buffers", "D", "G_ema", "G_ema_buffers"):
        for x, y in zip(jax.tree_util.tree_leaves(getattr(a_state, field)),
                        jax.tree_util.tree_leaves(getattr(started["state"], field)),
                        strict=True):
            np.testing.assert_array_equal(np.asarray(x), np.asarray(y), err_msg=field)


def test_bench_times_the_blur_stage_or_the_one_after():
    """`stylegan-jax bench --nimg N` times the programs of the stage at N images."""
    from stylegan_jax.benchmarks import train as bench

    for nimg, program in ((0, "main+Dreg+blur"), (64, "main+Dreg")):
        run = bench.prepare(tiny_r_config(), 0, reload=False, nimg=nimg)
        sec, host_s = run.time(1)
        result = bench.summarise(run, "tiny", sec, host_s, None)
        assert list(result["compile_s"]) == [program]
        assert result["img_per_s"] > 0 and result["gflop_per_img"] > 0
