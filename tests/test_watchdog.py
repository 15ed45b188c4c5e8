"""The training watchdog: its rules (closed-form cases), the ADA leak probe (images with
known transforms), and runs that break and recover: an injected learning-rate fault rolled
back, a relapsing metric sent back to the best checkpoint, exact resume after a rollback,
the rollback budget, and the ADA leak alarm."""

from __future__ import annotations

import json
import shutil

import jax
import numpy as np
import pytest
from PIL import Image
from train_fixtures import tiny_config

from stylegan_jax.data.sources import bundled_faces
from stylegan_jax.metrics.runner import MetricResult
from stylegan_jax.store.checkpoints import Checkpoints
from stylegan_jax.tools import run_report
from stylegan_jax.train import config as config_lib
from stylegan_jax.train import evaluation, leak_probe, loop, watchdog
from stylegan_jax.train.watchdog import WatchdogConfig, WatchState

ON = WatchdogConfig(enabled=True)


# --- The rules -------------------------------------------------------------------------

def test_tick_problem_names_what_broke():
    assert watchdog.tick_problem({"G/loss": 0.7, "D/loss": 1.2}, ON) is None
    kind, reason = watchdog.tick_problem({"G/loss": float("nan"), "D/loss": 1.2}, ON)
    assert kind == "non-finite" and "G/loss=nan" in reason
    kind, reason = watchdog.tick_problem({"G/loss": 0.7, "D/reg": -2500.0}, ON)
    assert kind == "loss-bound" and "D/reg=-2500" in reason and "loss_bound=1000" in reason
    # Off: only what is certainly broken; scores (logits) are not losses.
    assert watchdog.tick_problem({"D/reg": 2500.0}, WatchdogConfig(enabled=False)) is None
    assert watchdog.tick_problem({"scores/fake": -5000.0}, ON) is None


@pytest.mark.parametrize("higher", [False, True])
def test_metric_relapse_needs_factor_and_patience(higher):
    # FID-like (lower is better) and recall-like values: best 5 (or 1/5), factor 2, patience 2.
    seq = [10.0, 5.0, 9.0, 11.0, 4.9, 10.5, 10.1, 12.0]
    want = [False, False, False, False, False, False, True, True]
    state, got = WatchState(), []
    for v in seq:
        got.append(watchdog.after_evaluation(state, 1 / v if higher else v, higher, ON))
    assert got == want
    assert state.best == pytest.approx(1 / 4.9 if higher else 4.9)
    # 11 after 9 counts (worse than 2 x 5); 4.9 resets; 10.5 and 10.1 (> 9.8) trigger.


def test_learning_rate_factor_fault_and_scaling():
    cfg = WatchdogConfig(enabled=True, lr_scale=0.5, fault_kimg=2.0, fault_lr_scale=1e4)
    state = WatchState()
    assert watchdog.lr_factor(cfg, state, 1999) == 1.0
    assert watchdog.lr_factor(cfg, state, 2000) == 1e4
    state.rollbacks, state.fault_spent = 2, True
    assert watchdog.lr_factor(cfg, state, 5000) == 0.25
    config = config_lib.load_config("quickstart")
    scaled = watchdog.scaled_learning_rates(config, 0.25)
    assert (scaled.train.g_lr, scaled.train.d_lr) == (0.0025 * 0.25, 0.0025 * 0.25)
    assert config.train.g_lr == 0.0025  # the run's config is left as it is
    progan = config_lib.load_config("progan_quick")
    progan.train.g_lrate_dict = ((64, 0.002), (128, 0.001))
    scaled = watchdog.scaled_learning_rates(progan, 0.5)
    assert scaled.train.g_lrate_dict == ((64, 0.001), (128, 0.0005))
    assert scaled.train.d_lr == progan.train.d_lr * 0.5


def test_ada_alarm_after_p_stays_high():
    cfg = WatchdogConfig(enabled=True, ada_p_level=0.8, ada_p_kimg=10.0)
    state = WatchState()
    assert watchdog.ada_alarm(cfg, state, 0.85, 100_000, None) is None
    assert watchdog.ada_alarm(cfg, state, 0.9, 109_999, None) is None
    assert "p=0.900 >= 0.8 for 10 kimg" in watchdog.ada_alarm(cfg, state, 0.9, 110_000, None)
    assert watchdog.ada_alarm(cfg, state, 0.79, 111_000, None) is None  # it fell: cleared
    assert state.p_high_since is None
    leak = {"leak_rotation": 0.5, "leak_colour": 0.1}
    assert "turned" in watchdog.ada_alarm(cfg, state, 0.4, 112_000, leak)
    assert watchdog.ada_alarm(cfg, state, 0.1, 113_000, leak) is None  # barely augmenting
    assert watchdog.ada_alarm(cfg, state, None, 113_000, leak) is None  # no ADA


def test_watch_state_round_trips_through_meta():
    state = WatchState(rollbacks=2, best=3.5, worse=1, last_target=640, fault_spent=True,
                       p_high_since=1000)
    meta = json.loads(json.dumps(state.to_meta()))  # as a checkpoint's JSON keeps it
    assert WatchState.from_meta(meta) == state
    assert WatchState.from_meta(None) == WatchState()


@pytest.mark.parametrize("field,value,expected", [
    ("max_rollbacks", -1, "integer >= 0"), ("metric_factor", 1.0, "factor > 1"),
    ("lr_scale", 2.0, "(0, 1]"), ("metric_patience", 0, "integer >= 1"),
    ("fault_kimg", -1.0, "finite number >= 0")])
def test_bad_watchdog_fields_are_named(field, value, expected):
    config = tiny_config()
    config.train.watchdog[field] = value
    with pytest.raises(config_lib.ConfigError, match=rf"config\.train\.watchdog\.{field}="):
        config_lib.validate(config, 8)
    with pytest.raises(config_lib.ConfigError, match=expected.replace("(", r"\(")
                       .replace(")", r"\)").replace("]", r"\]")):
        config_lib.validate(config, 8)


# --- The leak probe --------------------------------------------------------------------

@pytest.fixture(scope="module")
def faces():
    images = np.asarray(bundled_faces(32))  # uint8 [100, 32, 32, 1]
    return images[:50], images[50:]


def test_probe_sees_no_leak_between_two_halves_of_the_reals(faces):
    a, b = faces
    result = leak_probe.probe(a, b)
    assert abs(result["leak_rotation"]) < 0.15 and result["leak_colour"] < 0.5


def test_probe_sees_turned_and_recoloured_images(faces):
    a, b = faces
    turned = a.copy()
    turned[::2] = np.rot90(a[::2], 1, axes=(1, 2))
    assert leak_probe.probe(turned, b)["leak_rotation"] > 0.3
    assert leak_probe.probe(a[:, :, ::-1], b)["leak_rotation"] < 0.15  # mirrors do not count
    # Brightness + 40 levels: closed form |d mean| / std of the reals' brightness.
    brighter = np.clip(a.astype(np.int64) + 40, 0, 255).astype(np.uint8)
    mean_b = b.reshape(len(b), -1).astype(np.float64).mean(1) / 255
    mean_f = brighter.reshape(len(a), -1).astype(np.float64).mean(1) / 255
    expect = abs(mean_f.mean() - mean_b.mean()) / mean_b.std()
    assert leak_probe.probe(brighter, b)["leak_colour"] >= expect - 1e-9
    assert expect > 1.5


def test_probe_finds_no_evidence_in_images_unlike_the_data(faces):
    a, b = faces
    noise = np.random.default_rng(0).integers(0, 256, a.shape).astype(np.uint8)
    result = leak_probe.probe(noise, b)  # an untrained G: unlike the data in every way
    assert result["leak_likeness"] < 0.75
    assert result["leak_rotation"] == result["leak_colour"] == 0.0
    assert leak_probe.probe(255 - a, b)["leak_likeness"] >= 0.75  # inverted faces are faces


def test_probe_saturation_in_colour():
    rng = np.random.default_rng(0)
    grey = np.repeat(rng.integers(60, 200, (40, 16, 16, 1)), 3, axis=-1).astype(np.uint8)
    tinted = grey.copy()
    tinted[..., 0] = np.clip(grey[..., 0].astype(int) + 50, 0, 255)
    stats = leak_probe.colour_stats(tinted)
    assert stats.shape == (40, 3)
    np.testing.assert_allclose(stats[:, 2], (tinted[..., 0].astype(float) - grey[..., 1])
                               .reshape(40, -1).mean(1) / 255)


# --- Runs that break -----------------------------------------------------------------

def fault_config(**watch):
    """10 iterations; from 64 images the learning rates are infinite (NaN at the next tick,
    96 images) until the first rollback, then half the config's."""
    c = tiny_config(r1_gamma=0.0, pl_weight=0.0)  # one program per learning rate
    c.train.total_kimg = 0.16
    c.train.watchdog.fault_kimg = 0.064
    c.train.watchdog.fault_lr_scale = float("inf")
    c.train.watchdog.lr_scale = 0.5
    for k, v in watch.items():
        c.train.watchdog[k] = v
    return c


@pytest.fixture(scope="module")
def fault_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("fault_run")
    lines = []
    summary = loop.train(fault_config(), workdir, log=lines.append)
    return workdir, summary, lines


def rollbacks(workdir):
    return [json.loads(x) for x in (workdir / "rollbacks.jsonl").read_text().splitlines()]


def test_injected_divergence_is_rolled_back_and_the_run_finishes(fault_run):
    workdir, summary, lines = fault_run
    assert summary["reason"] == "done" and summary["kimg"] == pytest.approx(0.16)
    [record] = rollbacks(workdir)
    assert (record["kind"], record["kimg"], record["to_kimg"], record["checkpoint"]) == \
        ("non-finite", 0.096, 0.064, 64)
    assert "Loss/" not in record["reason"] and "G/loss=nan" in record["reason"]
    assert any(line.startswith("Rollback 1 of 3: non-finite") for line in lines)
    assert record["lr_scale"] == 0.5 and "Learning rates now 0.5 x the config's (kimg 0.1)" \
        in lines
    state = summary["state"]
    assert all(np.isfinite(np.asarray(x)).all() for x in jax.tree_util.tree_leaves(state)
               if np.issubdtype(np.asarray(x).dtype, np.floating))
    # A new latent stream: the initial key folded with the rollback's number.
    k_run = jax.random.split(jax.random.PRNGKey(0), 3)[2]
    np.testing.assert_array_equal(np.asarray(state.rng),
                                  np.asarray(jax.random.fold_in(k_run, 1)))
    stats = [json.loads(x) for x in (workdir / "stats.jsonl").read_text().splitlines()]
    assert [r["kimg"] for r in stats] == [0.032, 0.064, 0.096, 0.096, 0.128, 0.16]
    assert [r["Health/rollbacks"] for r in stats] == [0, 0, 0, 1, 1, 1]
    assert all(r["Timing/img_per_sec"] > 0 and r["Resources/host_rss_gib"] > 0.1
               for r in stats)


def test_restart_after_a_rollback_resumes_exactly(fault_run, tmp_path):
    workdir, summary, _ = fault_run
    config = fault_config()
    # Stopped after the rollback (iterations 5 and 6 again, from checkpoint 64) ...
    first = loop.train(config, tmp_path, stop_at_step=7, log=lambda _: None)
    assert first["kimg"] == pytest.approx(0.112)
    meta = Checkpoints(tmp_path / "checkpoints", 10, None, writer=False).read_meta(112)
    assert meta["watchdog"]["rollbacks"] == 1 and meta["watchdog"]["fault_spent"]
    # ... and restarted: the state the uninterrupted run ended with.
    second = loop.train(config, tmp_path, log=lambda _: None)
    jax.tree_util.tree_map(np.testing.assert_array_equal, second["state"], summary["state"])
    assert len(rollbacks(tmp_path)) == 1


def test_spent_rollback_budget_stops_cleanly(straight_copy):
    # Infinite learning rates for good: every rollback breaks again.
    config = tiny_config(g_lr=float("inf"), r1_gamma=0.0, pl_weight=0.0)
    config.train.watchdog.max_rollbacks = 2
    lines = []
    with pytest.raises(loop.TrainingDiverged, match=r"2 rollbacks \(train.watchdog"
                       r".max_rollbacks\) are spent; the last good checkpoint \(64\) is kept"):
        loop.train(config, straight_copy, stop_at_step=12, log=lines.append)
    records = rollbacks(straight_copy)
    # The second rollback broke again before a newer save: one checkpoint further back.
    assert [(r["checkpoint"], r["kind"]) for r in records] == [(96, "non-finite"),
                                                               (64, "non-finite")]
    assert (straight_copy / "checkpoints" / "96.rollback2").is_dir()  # set aside, kept
    ckpts = Checkpoints(straight_copy / "checkpoints", keep_last=10, keep_every=None)
    assert ckpts.latest_step() == 64
    ckpts.close()


def test_watchdog_off_stops_on_non_finite(straight_copy):
    config = tiny_config(g_lr=float("inf"), r1_gamma=0.0, pl_weight=0.0)
    config.train.watchdog.enabled = False
    with pytest.raises(loop.NonFiniteError, match="non-finite .* the last good checkpoint "
                       r"\(96\) is kept \(train.watchdog.enabled=False"):
        loop.train(config, straight_copy, stop_at_step=12, log=lambda _: None)
    assert not (straight_copy / "rollbacks.jsonl").exists()


@pytest.fixture
def straight_copy(tiny_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(tiny_run[0], run)  # good checkpoints up to 96
    return run


def test_relapsing_metric_goes_back_to_the_best_checkpoint(tmp_path, monkeypatch):
    # The metric's values are scripted (the rollback is what is tested): best 5 at 64,
    # then 20 and 30 (worse than 2 x 5 twice) -> back to checkpoint 64.
    values = iter([10.0, 5.0, 20.0, 30.0, 6.0, 6.5, 7.0])
    seen = []

    def scripted(self, G, progress=False):
        seen.append(next(values))
        return {"swd64": MetricResult("swd64", {"swd64": seen[-1]}, 0.0, 1)}

    monkeypatch.setattr(evaluation.Evaluator, "__call__", scripted)
    config = tiny_config(r1_gamma=0.0, pl_weight=0.0)
    config.train.total_kimg = 0.16
    config.metrics.names, config.metrics.every_kimg = "swd64", 0.032
    config.metrics.cache_dir = str(tmp_path / "cache")
    config.log.keep_last = 1
    summary = loop.train(config, tmp_path / "run", log=lambda _: None)
    assert summary["reason"] == "done"
    [record] = rollbacks(tmp_path / "run")
    assert (record["kind"], record["kimg"], record["checkpoint"]) == ("metric", 0.128, 64)
    assert "swd64=30, worse than the best 5" in record["reason"]
    assert (tmp_path / "run" / "checkpoints" / "96.rollback1").is_dir()
    assert seen == [10.0, 5.0, 20.0, 30.0, 6.0, 6.5, 7.0]  # 96 and 128 evaluated again
    assert summary["best"] == 64


def test_ada_run_forced_to_high_p_raises_the_leak_alarm(tmp_path):
    config = tiny_config(r1_gamma=0.0, pl_weight=0.0, aug="fixed", aug_p=0.9)
    config.train.augpipe = "blit"  # the cheapest pipe: the alarm is about p
    config.train.watchdog.ada_p_kimg = 0.032  # p is first seen at the first tick (32)
    lines = []
    loop.train(config, tmp_path, stop_at_step=6, log=lines.append)
    ticks = [line for line in lines if line.startswith("tick ")]
    assert ["LEAK-ALARM" in t for t in ticks] == [False, True, True]
    assert any("warning: ADA leak alarm at kimg 0.1: p=0.900 >= 0.8 for 0.032 kimg" in line
               for line in lines)
    stats = [json.loads(x) for x in (tmp_path / "stats.jsonl").read_text().splitlines()]
    assert [r["Health/ada_alarm"] for r in stats] == [0, 1, 1]
    assert all("Health/leak_rotation" in r for r in stats[1:])  # the probe of each grid


def test_report_of_the_rolled_back_run(fault_run, tmp_path):
    workdir, _, _ = fault_run
    png, page = run_report.render(workdir, tmp_path / "report.png")
    assert Image.open(png).size == (1920, 1080)
    text = page.read_text()
    assert "rollbacks: 1" in text and "G/loss=nan" in text and "report.png" in text
    # In progress: a half-written last tick.
    running = tmp_path / "running"
    shutil.copytree(workdir, running)
    stats = (running / "stats.jsonl").read_text()
    (running / "stats.jsonl").write_text(stats + stats.splitlines()[-1][:40])
    run_report.render(running)
    assert (running / "report.png").is_file()
