"""Transfer learning (official --resume / --freezed) and the labels of generated images."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest
from PIL import Image
from test_train_step import BATCH, real_batch, step_config, tiny_networks

from stylegan_jax.models.registry import Network
from stylegan_jax.store.checkpoints import Checkpoints
from stylegan_jax.store.networks import save_networks
from stylegan_jax.train import config as config_lib
from stylegan_jax.train import labels as labels_lib
from stylegan_jax.train.stylegan2 import config as stylegan2_config
from stylegan_jax.train.stylegan2 import freeze
from stylegan_jax.train.stylegan2 import step as step_lib
from stylegan_jax.train.stylegan2.trainer import StyleGAN2Trainer


def d_params(architecture):
    model = ml_collections.ConfigDict(dict(
        z_dim=8, w_dim=8, mapping_layers=1, channel_base=64, channel_max=4,
        g_architecture="skip", d_architecture=architecture, conv_clamp=None, num_bf16_res=0,
        mbstd_group_size=2, mbstd_num_channels=1))
    nets = step_lib.build_networks(model, 32, 3, c_dim=0)
    shapes = jax.eval_shape(functools.partial(step_lib.init_state, nets, step_config(), 0))
    return nets.D, shapes.D


# The official DiscriminatorBlock numbering (networks.py: fromrgb when it is the first block
# or the architecture is skip, conv0, conv1, then skip for resnet), blocks from 32x32 down
# to 8x8; the 4x4 epilogue has no numbered layers.
OFFICIAL_ORDER = {
    "orig": ["b32.fromrgb", "b32.conv0", "b32.conv1", "b16.conv0", "b16.conv1",
             "b8.conv0", "b8.conv1"],
    "skip": ["b32.fromrgb", "b32.conv0", "b32.conv1", "b16.fromrgb", "b16.conv0",
             "b16.conv1", "b8.fromrgb", "b8.conv0", "b8.conv1"],
    "resnet": ["b32.fromrgb", "b32.conv0", "b32.conv1", "b32.skip", "b16.conv0", "b16.conv1",
               "b16.skip", "b8.conv0", "b8.conv1", "b8.skip"],
}


@pytest.mark.parametrize("architecture", sorted(OFFICIAL_ORDER))
def test_frozen_layers_follow_the_official_numbering(architecture):
    _, params = d_params(architecture)
    want = OFFICIAL_ORDER[architecture]
    for n in (0, 1, 4, len(want), len(want) + 3):
        got = [f"{b}.{layer}" for b, layer in freeze.frozen_d_layers(params, n)]
        assert got == want[:n]


def _one_iteration(cfg, nets, state, draws):
    # Gmain and Dmain only: Dreg would see the frozen layers' other values.
    fn = functools.partial(step_lib.iteration, nets=nets, cfg=cfg, do_greg=False,
                           do_dreg=False)
    mapped = jax.vmap(fn, axis_name=step_lib.AXIS)  # one "device"
    add = functools.partial(jax.tree_util.tree_map, lambda x: x[None])
    out, _ = jax.jit(mapped)(add(state), jnp.asarray(real_batch(0))[None],
                             jnp.zeros((1, BATCH, 0)), add(draws))
    return jax.tree_util.tree_map(lambda x: x[0], out)


def test_freeze_d_keeps_the_first_layers_and_trains_the_rest_as_before():
    nets = tiny_networks()
    plain, frozen_cfg = step_config(), step_config(freeze_d=3)
    state = step_lib.init_state(nets, plain, seed=1)
    draws = step_lib.draw_iteration(jax.random.PRNGKey(2), nets, plain, BATCH,
                                    jnp.zeros((1, 0)))
    free = _one_iteration(plain, nets, state, draws)
    held = _one_iteration(frozen_cfg, nets, state, draws)
    frozen = {f"{b}.{layer}" for b, layer in freeze.frozen_d_layers(state.D, 3)}
    assert frozen == {"b16.fromrgb", "b16.conv0", "b16.conv1"}  # resnet at 16x16
    before = dict(jax.tree_util.tree_leaves_with_path(state.D))
    after_free = dict(jax.tree_util.tree_leaves_with_path(free.D))
    changed = 0
    for path, leaf in jax.tree_util.tree_leaves_with_path(held.D):
        layer = ".".join(str(k.key) for k in path[:2])
        if layer in frozen:
            np.testing.assert_array_equal(leaf, before[path])
        else:  # the frozen layers' gradients reach the rest exactly as without freezing
            np.testing.assert_allclose(leaf, after_free[path], rtol=1e-6, atol=1e-7)
            changed += not np.array_equal(leaf, before[path])
    assert changed > 0
    for a, b in zip(jax.tree_util.tree_leaves(held.G), jax.tree_util.tree_leaves(free.G),
                    strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


@pytest.fixture(scope="module")
def trainer_and_source(tmp_path_factory):
    config = config_lib.load_config("quickstart")
    config.data.resolution = 16
    config.model.z_dim = config.model.w_dim = 16
    config.model.channel_base, config.model.channel_max = 128, 8
    trainer = StyleGAN2Trainer(config, 0)
    init = jax.jit(trainer.init_state, static_argnums=0)
    source_state = init(7)
    nets = trainer.export(source_state)
    path = save_networks(tmp_path_factory.mktemp("nets") / "src", nets)
    return trainer, init, source_state, path


def _assert_same(a, b):
    for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_resume_takes_every_network_of_a_network_directory(trainer_and_source):
    trainer, init, source, path = trainer_and_source
    lines = []
    state = trainer.start_from(init(0), str(path), log=lines.append)
    for field in ("G", "G_buffers", "G_ema", "G_ema_buffers", "D"):
        _assert_same(getattr(state, field), getattr(source, field))
    _assert_same(state.G_opt, init(0).G_opt)  # optimizer and counters start afresh
    assert int(state.step) == 0 and "Starting from" in lines[0]


def test_resume_from_one_generator_starts_g_and_g_ema(trainer_and_source, tmp_path):
    trainer, init, source, _ = trainer_and_source
    only = save_networks(tmp_path / "g_ema", {"G_ema": trainer.export(source)["G_ema"]})
    state = trainer.start_from(init(0), str(only), log=lambda _: None)
    _assert_same(state.G, source.G_ema)
    _assert_same(state.G_ema, source.G_ema)
    _assert_same(state.D, init(0).D)  # no D in the source: as initialised


def test_resume_from_an_official_snapshot_takes_its_networks_and_p(trainer_and_source,
                                                                   tmp_path):
    import official_pickle as op

    from stylegan_jax.convert import torch_stylegan2

    trainer, init, source, _ = trainer_and_source
    nets = trainer.export(source)
    records = {name: op.records_from_state_dict(
        "Generator" if name.startswith("G") else "Discriminator",
        torch_stylegan2.official_init_kwargs(net.module),
        torch_stylegan2.variables_to_state_dict(net.variables, net.module))
        for name, net in nets.items()}
    pipe = op.records_from_state_dict("AugmentPipe", {"xflip": 1}, {"p": np.float32(0.37)})
    op.dump(dict(**records, augment_pipe=pipe, training_set_kwargs={}), tmp_path / "s.pkl")
    state = trainer.start_from(init(0), str(tmp_path / "s.pkl"), log=lambda _: None)
    for field in ("G", "G_buffers", "G_ema", "D"):
        _assert_same(getattr(state, field), getattr(source, field))
    assert float(state.augment_p) == pytest.approx(0.37)


def test_resume_shape_mismatch_names_the_tensor(trainer_and_source, tmp_path):
    trainer, init, source, _ = trainer_and_source
    G = trainer.export(source)["G_ema"]
    bad = jax.tree_util.tree_map(lambda x: x, G.variables)
    bad["params"]["mapping"]["fc0"]["weight"] = jnp.zeros((3, 3))
    path = save_networks(tmp_path / "bad", {"G_ema": Network(G.module, bad)})
    with pytest.raises(ValueError, match=r"G\.params\.mapping\.fc0\.weight has shape \(3, 3\)"):
        trainer.start_from(init(0), str(path), log=lambda _: None)
    with pytest.raises(FileNotFoundError, match="train.resume=.*nowhere"):
        trainer.start_from(init(0), str(tmp_path / "nowhere"), log=lambda _: None)


def test_resume_uses_the_official_tweaks():
    config = config_lib.load_config("paper256")
    plain = stylegan2_config.step_config(config)
    config.train.resume = "/some/network"
    resumed = stylegan2_config.step_config(config)
    assert (plain.ada_kimg, resumed.ada_kimg) == (500.0, 100.0)
    config = config_lib.load_config("quickstart")  # the quickstart ramps its EMA up
    assert stylegan2_config.step_config(config).ema_rampup == 0.05
    config.train.resume = "/some/network"
    assert stylegan2_config.step_config(config).ema_rampup is None


def test_generated_labels_follow_the_dataset():
    assert labels_lib.label_table(np.array([5000] * 10)).tolist() == np.eye(10).tolist()
    table = labels_lib.label_table(np.array([6, 2, 0, 4]))  # gcd 2: rows 3, 1, 0, 2
    assert table.argmax(1).tolist() == [0, 0, 0, 1, 3, 3]
    big = labels_lib.label_table(np.array([700_001, 299_999, 1]), max_rows=1000)
    assert np.bincount(big.argmax(1), minlength=3).tolist() == [700, 300, 0]
    with pytest.raises(ValueError, match="counts"):
        labels_lib.label_table(np.array([0, 0]))
    # The step's draws of the fakes' labels, many of them, follow the table's proportions.
    nets, cfg = tiny_networks(), step_config()
    c_table = jnp.asarray(labels_lib.label_table(np.array([1, 3])))
    keys = jax.random.split(jax.random.PRNGKey(0), 256)
    draw = jax.vmap(lambda k: step_lib.draw_iteration(k, nets, cfg, BATCH, c_table).g_main.c)
    share = float(np.asarray(draw(keys))[..., 1].mean())  # 4096 draws of class 1 (p = 0.75)
    assert abs(share - 0.75) < 5 * np.sqrt(0.75 * 0.25 / 4096)


def test_checkpoints_with_per_tensor_adam_moments_resume_exactly(tmp_path):
    """Checkpoints of the earlier layout (one Adam mu/nu per tensor) restore into today's
    flat moments, and the next Adam step is the one the per-tensor Adam takes."""
    nets, cfg = tiny_networks(), step_config()
    fresh = step_lib.init_state(nets, cfg, seed=0)
    rng = np.random.default_rng(0)
    ratio = cfg.g_reg_interval / (cfg.g_reg_interval + 1)
    per_tensor = optax.adam(cfg.g_lr * ratio, b1=cfg.betas[0] ** ratio,
                            b2=cfg.betas[1] ** ratio, eps=cfg.eps)

    def moments(params, opt):  # a mid-run per-tensor Adam state
        random = jax.tree_util.tree_map(
            lambda p: jnp.asarray(rng.standard_normal(p.shape), jnp.float32), params)
        adam = opt.init(params)[0]._replace(count=jnp.int32(7), mu=random,
                                              nu=jax.tree_util.tree_map(jnp.abs, random))
        return (adam, *opt.init(params)[1:])

    legacy = fresh.replace(G_opt=moments(fresh.G, per_tensor),
                           D_opt=moments(fresh.D, optax.adam(0.1)))
    ckpts = Checkpoints(tmp_path / "ckpt", keep_last=2, keep_every=None, async_save=False)
    ckpts.save(16, legacy, {"position": 3}, {"tick": 1})
    ckpts.wait()
    earlier = [(step_lib.per_tensor_moments_layout(fresh), step_lib.flat_moments)]
    restored, data, meta = ckpts.restore(16, fresh, earlier)
    ckpts.close()
    assert data == {"position": 3} and meta["tick"] == 1
    grads = jax.tree_util.tree_map(lambda p: jnp.full(p.shape, 0.3, jnp.float32), fresh.G)
    want = optax.apply_updates(fresh.G, per_tensor.update(grads, legacy.G_opt, fresh.G)[0])
    g_opt = step_lib.optimizers(cfg)[0]
    got = optax.apply_updates(fresh.G, g_opt.update(grads, restored.G_opt, fresh.G)[0])
    for a, b in zip(jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(want),
                    strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


def test_a_run_started_from_another_starts_from_its_images(tiny_run, tmp_path):
    """The source is conftest's finished run; the new run stops before its first iteration
    (its programs, which differ by the resume's EMA settings, are never compiled)."""
    from train_fixtures import tiny_config

    from stylegan_jax.train import loop

    source = tiny_run[0]
    lines = []
    loop.train(tiny_config(resume=str(source)), tmp_path / "b", stop_at_step=0,
               log=lines.append)
    assert any(x.startswith(f"Starting from {source}: D, G, G_ema") for x in lines)
    # The new run's first grid (official fakes_init.png) is the source run's last one.
    a = Image.open(source / "samples" / "fakes000000.png")
    b = Image.open(tmp_path / "b" / "samples" / "fakes_init.png")
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_train_resume_flag_sets_the_config_and_reruns_keep_it(tmp_path, monkeypatch):
    import json

    from stylegan_jax.cli import main
    from stylegan_jax.train import loop

    seen = []

    def fake_train(config, workdir, **_):  # the loop itself is tested above
        seen.append(config.train.resume)
        (workdir / "config.json").write_text(config.to_json_best_effort())
        return {"kimg": 0.0, "step": 0, "checkpoint": None, "reason": "done"}

    monkeypatch.setattr(loop, "train", fake_train)
    source = tmp_path / "nets"
    source.mkdir()
    run = tmp_path / "run"
    run.mkdir()
    assert main(["train", "--workdir", str(run), "--resume", str(source)]) == 0
    assert main(["train", "--workdir", str(run)]) == 0  # a rerun: same hyperparameters
    assert seen == [str(source), str(source)]
    assert json.loads((run / "config.json").read_text())["train"]["resume"] == str(source)
