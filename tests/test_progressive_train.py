"""Progressive training through the loop: three resolutions with fades, growing grids,
bitwise-exact resume mid-fade, Adam resets at new lods, the G EMA update.

Per family, one uninterrupted run of 24 iterations (4x4 -> 8x8 -> 16x16, see
progressive_fixtures.py) and one stopped by SIGTERM in the 8x8 fade (inside a group of
minibatches) and resumed to the end; both share the compiled programs of the process.
"""

from __future__ import annotations

import json
import os
import signal

import jax
import numpy as np
import pytest
from PIL import Image
from progressive_fixtures import tiny_config
from toy_detectors import toy_detectors

from stylegan_jax.generate import generate_images
from stylegan_jax.store.checkpoints import Checkpoints
from stylegan_jax.store.load import load_networks
from stylegan_jax.train import loop
from stylegan_jax.train.backends import Backend
from stylegan_jax.train.progressive.trainer import ProgressiveTrainer

pytestmark = pytest.mark.slow  # six stage programs to compile (~1.5 min on 2 cores)

STEPS = 24  # 384 images
SPLIT = 10  # 160 images: 8x8 fading in (lod 1.5), inside a group of 4 minibatches


def saved(workdir, family, nimg):
    trainer = ProgressiveTrainer(tiny_config(family), 0)
    ckpts = Checkpoints(workdir / "checkpoints", keep_last=50, keep_every=None)
    state, data, _ = ckpts.restore(nimg, jax.eval_shape(trainer.init_state, 0))  # the layout
    ckpts.close()
    return state, data


def block_spread(grid: np.ndarray, size: int) -> int:
    """Largest max - min inside any size x size block of the grid (0: a constant block)."""
    h, w = grid.shape[:2]
    blocks = grid.reshape(h // size, size, w // size, size, -1).astype(int)
    return int((blocks.max(axis=(1, 3)) - blocks.min(axis=(1, 3))).max())


@pytest.fixture(scope="module", params=["progan", "stylegan"])
def runs(request, tmp_path_factory):
    family = request.param
    straight = tmp_path_factory.mktemp(f"{family}_straight")
    lines, grids = [], {}

    def log(line):
        lines.append(line)
        if line.startswith("tick "):
            # Tick k ends at 32 (k + 1) images; the loop writes a grid after every
            # iteration, after the tick line: the file holds the previous iteration's.
            nimg = 32 * (int(line.split()[1]) + 1) - 16
            grids[nimg] = np.asarray(Image.open(straight / "samples" / "fakes000000.png"))

    config = tiny_config(family)  # metrics don't change training: compared with `split`
    config.metrics.names, config.metrics.best = "fid32_full", "fid32_full"
    config.metrics.every_kimg, config.metrics.batch_size = 0.128, 16
    config.metrics.cache_dir = str(tmp_path_factory.mktemp(f"{family}_cache"))
    summary = loop.train(config, straight, stop_at_step=STEPS, log=log,
                         detectors=toy_detectors())
    split = tmp_path_factory.mktemp(f"{family}_split")

    def terminate_mid_fade(line):
        if line.startswith("tick 4 "):  # after iteration 10: 160 images
            os.kill(os.getpid(), signal.SIGTERM)

    stopped = loop.train(tiny_config(family), split, stop_at_step=STEPS, log=terminate_mid_fade)
    assert (stopped["reason"], stopped["step"]) == ("SIGTERM", SPLIT)
    loop.train(tiny_config(family), split, stop_at_step=STEPS, log=lambda _: None)
    return dict(family=family, straight=straight, split=split, summary=summary, lines=lines,
                grids=grids)


def test_run_passes_three_resolutions_with_fades(runs):
    assert runs["summary"]["step"] == STEPS and runs["summary"]["checkpoint"] == 16 * STEPS
    records = [json.loads(x) for x in
               (runs["straight"] / "stats.jsonl").read_text().splitlines()]
    lods = [r["Loss/lod"] for r in records]
    stages = [r["Progress/stage"] for r in records]
    assert stages == sorted(stages) and set(stages) == {0, 1, 2}
    assert lods == sorted(lods, reverse=True)
    assert 2.0 in lods and 1.0 in lods  # stable at 4x4 and at 8x8 ...
    assert any(1 < x < 2 for x in lods) and any(0 < x < 1 for x in lods)  # ... and two fades
    assert any(line.startswith("tick ") and "D/reg" in line for line in runs["lines"])
    ticks = [line.split() for line in runs["lines"] if line.startswith("tick ")]
    assert [float(t[t.index("lod") + 1]) for t in ticks] == lods  # the official tick field


def test_grids_show_the_growth(runs):
    grids = runs["grids"]  # by images shown
    assert all(g.shape == (32, 32) for g in grids.values())  # 2x2 grid of 16x16 images
    tol = 1  # StyleGAN's top level reaches lod 2 as lerp(8x8, 4x4, 1): an ulp, not exact
    assert block_spread(grids[112], 4) <= tol  # lod 2: 4x4 images upscaled 4x
    assert block_spread(grids[176], 2) <= tol < block_spread(grids[176], 4)  # 8x8 fading in
    assert block_spread(grids[304], 2) <= tol < block_spread(grids[304], 4)  # 8x8 stable
    assert tol < block_spread(grids[368], 2)  # 16x16 fading in


def test_exports_and_metrics_see_the_grown_network(runs):
    """A checkpoint exports G EMA at its lod (generate renders what the grids showed), and
    metrics evaluate it so, every 128 images, keeping the best checkpoint loadable."""
    straight = runs["straight"]
    G = load_networks(straight / "checkpoints" / "256")["G_ema"]  # 8x8 stable: lod 1
    assert G.lod == 1.0
    grid = generate_images(G, [0, 1, 2, 3])[..., 0]
    assert block_spread(np.concatenate(grid, axis=1), 2) <= 1 < block_spread(
        np.concatenate(grid, axis=1), 4)
    assert load_networks(straight / "checkpoints" / "384")["G_ema"].lod == 0.5
    records = [json.loads(x) for x in (straight / "metric-fid32_full.jsonl").read_text()
               .splitlines()]
    assert [r["snapshot_pkl"] for r in records] == [f"checkpoints/{n}" for n in (128, 256, 384)]
    assert all(np.isfinite(r["results"]["fid32_full"]) for r in records)
    best = min(records, key=lambda r: r["results"]["fid32_full"])["snapshot_pkl"]
    assert runs["summary"]["best"] == int(best.split("/")[1])
    assert load_networks(straight / "checkpoints" / "best")["G_ema"].lod == \
        load_networks(straight / best)["G_ema"].lod


def test_resume_mid_fade_is_bitwise_exact(runs):
    family = runs["family"]
    a_state, a_data = saved(runs["straight"], family, 16 * STEPS)
    b_state, b_data = saved(runs["split"], family, 16 * STEPS)
    assert a_data == b_data
    for (path, x), y in zip(jax.tree_util.tree_leaves_with_path(a_state),
                            jax.tree_util.tree_leaves(b_state), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y),
                                      err_msg=jax.tree_util.keystr(path))
    assert float(a_state.lod) == 0.5 and int(a_state.step) == STEPS


def official_adam_counts(schedule, nimgs):
    """Adam updates since the last reset after each checkpoint, from the official rule:
    reset when floor or ceil of the schedule's lod changes between evaluations."""
    counts, count, prev, n = {}, 0, -1.0, 0
    while n < max(nimgs):
        lod = schedule.lod(n)  # evaluated at the start of each group of 4 minibatches of 16
        if np.floor(lod) != np.floor(prev) or np.ceil(lod) != np.ceil(prev):
            count = 0
        prev = lod
        for _ in range(4):
            count, n = count + 1, n + 16
            counts[n] = count
    return [counts[x] for x in nimgs]


def test_adam_is_reset_at_each_new_lod(runs):
    trainer = ProgressiveTrainer(tiny_config(runs["family"]), 0)
    nimgs = [64, 128, 192, 256, 320, 384]
    counts = [int(saved(runs["straight"], runs["family"], n)[0].G_opt.count) for n in nimgs]
    assert counts == official_adam_counts(trainer.schedule, nimgs) == [4, 8, 4, 4, 8, 4]


def test_one_iteration_updates_ema_and_skips_non_finite_gradients(runs):
    family = runs["family"]
    config = tiny_config(family)
    trainer = ProgressiveTrainer(config, 0)
    backend = Backend(config.train.backend)
    before, _ = saved(runs["split"], family, 16 * SPLIT)  # inside the 8x8 fade's group
    stage = trainer.stage_at(16 * SPLIT)
    images = np.random.default_rng(0).integers(0, 256, (16, 8, 8, 1), np.uint8)
    batch = backend.put_batch((images, np.zeros((16, 0), np.float32)))
    labels = backend.put_replicated(np.zeros((1, 0), np.float32))
    program = trainer.programs(backend, stage)[trainer.program_key(stage, SPLIT)]
    after, stats = program(backend.put_state(jax.tree_util.tree_map(np.asarray, before)),
                           *batch, labels)
    after = backend.host_state(after)
    t = config.train  # ProGAN: a fixed decay per step; StyleGAN: a half-life, minibatch 16
    beta = t.ema_beta if family == "progan" else 0.5 ** (16 / (t.ema_kimg * 1000))
    for e0, g0, e1 in zip(jax.tree_util.tree_leaves(before.G_ema),
                          jax.tree_util.tree_leaves(before.G),
                          jax.tree_util.tree_leaves(after.G_ema), strict=True):
        np.testing.assert_allclose(np.asarray(e1), g0 + beta * (e0 - g0), rtol=1e-6, atol=1e-7)
    assert int(after.G_opt.count) == int(before.G_opt.count) + 1  # no reset inside a group
    assert float(np.asarray(stats["lod"]).reshape(-1)[0]) == 1.5

    # A generator that outputs NaN poisons every gradient: both updates are skipped.
    poisoned = before.replace(G=jax.tree_util.tree_map(lambda x: x * np.nan, before.G))
    after, _ = program(backend.put_state(jax.tree_util.tree_map(np.asarray, poisoned)),
                       *batch, labels)
    after = backend.host_state(after)
    for x, y in zip(jax.tree_util.tree_leaves(after.D), jax.tree_util.tree_leaves(before.D),
                    strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    assert int(after.D_opt.count) == int(before.D_opt.count)


def test_shard_map_backend_matches_pmap(runs):
    """The same per-device iteration under jit + shard_map (one more compile, ProGAN only)."""
    if runs["family"] != "progan":
        pytest.skip("one family is enough for the backend wrapper")
    config = tiny_config("progan")
    trainer = ProgressiveTrainer(config, 0)
    state, _ = saved(runs["split"], "progan", 16 * SPLIT)
    stage = trainer.stage_at(16 * SPLIT)
    images = np.random.default_rng(1).integers(0, 256, (16, 8, 8, 1), np.uint8)
    results = []
    for kind in ("pmap", "shard_map"):
        backend = Backend(kind)
        out, _ = trainer.programs(backend, stage)[trainer.program_key(stage, SPLIT)](
            backend.put_state(state), *backend.put_batch((images, np.zeros((16, 0), np.float32))),
            backend.put_replicated(np.zeros((1, 0), np.float32)))
        results.append(backend.host_state(out))
    for (path, x), y in zip(jax.tree_util.tree_leaves_with_path(results[0]),
                            jax.tree_util.tree_leaves(results[1]), strict=True):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-5, atol=1e-6,
                                   err_msg=jax.tree_util.keystr(path))
