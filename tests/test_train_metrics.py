"""Metrics during training: every N kimg, logged three ways, and the best checkpoint kept.

Toy feature networks (toy_detectors.py) stand in for Inception so that a run takes
seconds; the values are checked against a second computation of the same metric on
the saved checkpoint with the real images given separately (the bundled faces as an
array), which is what `stylegan-jax metrics` does on a workdir.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import struct
from importlib import metadata

import jax
import numpy as np
import pytest
from toy_detectors import toy_detectors
from train_fixtures import tiny_config

from stylegan_jax.data import sources
from stylegan_jax.data.real_images import RealImages
from stylegan_jax.data.sources import bundled_faces
from stylegan_jax.metrics import command
from stylegan_jax.metrics.runner import compute_metrics
from stylegan_jax.store.checkpoints import BestBy, Checkpoints
from stylegan_jax.store.load import load_networks
from stylegan_jax.tools import convert as convert_command
from stylegan_jax.train import config as config_lib
from stylegan_jax.train import loop

METRICS = "fid32_full,kid32_full,swd32"


def metrics_config(tmp_cache, **metrics):
    c = tiny_config()
    c.log.keep_last = 1
    c.log.checkpoint_kimg = 1.0  # checkpoints come from the evaluations (every 2 iterations)
    c.log.tensorboard = True
    c.metrics.names = METRICS
    c.metrics.every_kimg = 0.032
    c.metrics.best = "fid32_full"
    c.metrics.batch_size = 16
    c.metrics.cache_dir = str(tmp_cache)
    for k, v in metrics.items():
        c.metrics[k] = v
    return c


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """Two calls (a restart in between): evaluations at 32, 64 | 96, 128 images."""
    workdir = tmp_path_factory.mktemp("metrics_run")
    cache = tmp_path_factory.mktemp("stats_cache")
    lines, passes = [], []
    batches = RealImages.batches

    def counted(self, *args, **kwargs):  # passes over the real images
        passes.append(self.key)
        return batches(self, *args, **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(RealImages, "batches", counted)
        first = loop.train(metrics_config(cache), workdir, stop_at_step=4, log=lines.append,
                           detectors=toy_detectors())
        second = loop.train(metrics_config(cache), workdir, stop_at_step=8, log=lines.append,
                            detectors=toy_detectors())
    return dict(workdir=workdir, cache=cache, lines=lines, first=first, second=second,
                passes=passes)


def tensorboard_scalars(workdir) -> dict[str, dict[int, float]]:
    """Tag -> {step: value} from the event files, read as TFRecords of Event protos."""
    from tensorboardX.proto import event_pb2

    out: dict[str, dict[int, float]] = {}
    for path in sorted(workdir.glob("events.out.tfevents.*")):
        data, i = path.read_bytes(), 0
        while i < len(data):
            (length,) = struct.unpack("<Q", data[i:i + 8])
            event = event_pb2.Event.FromString(data[i + 12:i + 12 + length])
            i += 12 + length + 4  # length, its crc, the record, its crc
            for v in event.summary.value:
                out.setdefault(v.tag, {})[event.step] = v.simple_value
    return out


def fids(workdir) -> dict[int, float]:
    records = [json.loads(x) for x in (workdir / "metric-fid32_full.jsonl").read_text()
               .splitlines()]
    return {int(r["snapshot_pkl"].split("/")[1]): r["results"]["fid32_full"] for r in records}


def test_every_evaluation_is_logged_three_ways(run):
    workdir = run["workdir"]
    by_step = fids(workdir)
    assert sorted(by_step) == [32, 64, 96, 128]
    assert all(np.isfinite(v) and v > 0 for v in by_step.values())
    kid_lines = (workdir / "metric-kid32_full.jsonl").read_text().splitlines()
    assert len(kid_lines) == 4 and json.loads(kid_lines[0])["metric"] == "kid32_full"
    # The run's log (tick output) carries the official JSON lines ...
    logged = [json.loads(x) for x in run["lines"] if x.startswith('{"results"')]
    assert [r["results"]["fid32_full"] for r in logged if r["metric"] == "fid32_full"] == \
        [by_step[s] for s in (32, 64, 96, 128)]
    # ... and TensorBoard by images shown (float32 there); stats.jsonl keeps one record a tick.
    scalars = tensorboard_scalars(workdir)
    assert scalars["Metrics/fid32_full"] == pytest.approx(by_step, rel=1e-6)
    assert sorted(scalars["Metrics/kid32_full"]) == [32, 64, 96, 128]
    records = [json.loads(x) for x in (workdir / "stats.jsonl").read_text().splitlines()]
    assert records and all("Loss/G/loss" in r for r in records)


def test_every_score_says_how_it_was_made(run):
    """metric-*.jsonl lines and the checkpoint records name the settings, counts, detector,
    real data (with its resize filter) and the software."""
    workdir = run["workdir"]
    for name in METRICS.split(","):
        for line in (workdir / f"metric-{name}.jsonl").read_text().splitlines():
            prov = json.loads(line)["provenance"]
            assert prov["settings"]["name"] == name
            assert prov["data"]["source"] == "bundled faces" and prov["data"]["count"] == 100
            assert prov["data"]["resize_filter"] == sources.BUNDLED_RESIZE
            assert prov["software"]["stylegan_jax"] == metadata.version("stylegan_jax")
            if name == "swd32":
                assert prov["detector"] is None and prov["counts"] == {"generated": 32,
                                                                        "real": 32}
            else:
                assert prov["detector"] == {"name": "inception", "preloaded": "box"}
                assert prov["counts"] == {"generated": 32, "real": 100}
    ckpts = Checkpoints(workdir / "checkpoints", keep_last=1_000_000, keep_every=None,
                        best=BestBy("fid32_full", False), writer=False)
    try:
        meta = ckpts.read_meta(ckpts.best_step())
    finally:
        ckpts.close()
    assert set(meta["metrics"]) == set(METRICS.split(","))
    assert meta["metrics"]["fid32_full"]["provenance"]["settings"]["kind"] == "fid"
    assert meta["metrics"]["swd32"]["results"]["swd32"] > 0


def test_best_checkpoint_is_kept_across_a_restart(run):
    workdir, by_step = run["workdir"], fids(run["workdir"])
    best = min(by_step, key=by_step.get)
    assert run["first"]["best"] == min((32, 64), key=by_step.get)
    assert run["second"]["best"] == best
    kept = sorted(int(p.name) for p in (workdir / "checkpoints").iterdir() if p.name.isdigit())
    assert kept == sorted({128, best})  # keep_last=1 plus the best
    a = load_networks(workdir / "checkpoints" / "best")["G_ema"].variables
    b = load_networks(workdir / "checkpoints" / str(best))["G_ema"].variables
    for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_best_checkpoint_converts_to_official_state_dicts(run, tmp_path):
    parser = argparse.ArgumentParser()
    convert_command.add_arguments(parser)
    args = parser.parse_args([str(run["workdir"] / "checkpoints" / "best"),
                              str(tmp_path / "official"), "--to", "official"])
    assert convert_command.run(args) == 0
    assert (tmp_path / "official" / "G_ema.npz").is_file()


def test_values_match_a_separate_evaluation_of_the_checkpoint(run, tmp_path):
    """The in-training FID is the FID of that checkpoint's G EMA against every real image."""
    workdir, by_step = run["workdir"], fids(run["workdir"])
    reals = np.asarray(bundled_faces(16, 1))  # what the run trains on
    G = load_networks(workdir / "checkpoints" / "128")["G_ema"]
    results = compute_metrics(["fid32_full"], G, lambda: [reals[:50], reals[50:]], None,
                              detectors=toy_detectors(), batch_size=16, seed=0,
                              progress=False)
    assert results["fid32_full"].results["fid32_full"] == pytest.approx(by_step[128], rel=1e-6)


def test_metrics_command_on_the_workdir_reads_the_runs_data(run, tmp_path, monkeypatch, capsys):
    """`stylegan-jax metrics --workdir` without --data: the run's own images, same FID."""
    monkeypatch.setattr(command, "Detectors", lambda weights: toy_detectors())
    parser = argparse.ArgumentParser()
    command.add_arguments(parser)
    args = parser.parse_args(["--metrics", "fid32_full", "--workdir", str(run["workdir"]),
                              "--run-dir", str(tmp_path), "--cache-dir", str(tmp_path / "c"),
                              "--batch", "16", "--no-progress"])
    assert command.run(args) == 0
    line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert line["results"]["fid32_full"] == pytest.approx(fids(run["workdir"])[128], rel=1e-6)
    assert line["snapshot_pkl"] == os.path.relpath(run["workdir"] / "checkpoints/128", tmp_path)
    assert len(list((tmp_path / "c").glob("*.npz"))) == 1  # its own pass over the run's data


def test_real_statistics_are_computed_once(run):
    # Four evaluations over two calls: one feature pass, then the disk cache; SWD draws its
    # real descriptors once per run (two calls: two passes), then keeps them in memory.
    assert len(run["passes"]) == 3
    cached = list(run["cache"].glob("*.npz"))
    assert len(cached) == 1 and run["passes"][0] in cached[0].name


def test_stop_request_saves_before_evaluating_and_the_resumed_run_evaluates(tmp_path):
    def log(line):
        if line.startswith("tick 0 "):  # at 32 images, just before an evaluation is due
            os.kill(os.getpid(), signal.SIGTERM)

    config = metrics_config(tmp_path / "cache")
    stopped = loop.train(config, tmp_path / "run", stop_at_step=4, log=log,
                         detectors=toy_detectors())
    assert (stopped["reason"], stopped["checkpoint"]) == ("SIGTERM", 32)
    assert not list((tmp_path / "run").glob("metric-*.jsonl"))
    loop.train(config, tmp_path / "run", stop_at_step=4, log=lambda _: None,
               detectors=toy_detectors())
    assert sorted(fids(tmp_path / "run")) == [48, 64]  # the skipped one, then on schedule


def test_missing_weights_fail_before_training(tmp_path, monkeypatch):
    for env in ("SGJ_INCEPTION_WEIGHTS", "SGJ_VGG16_WEIGHTS", "SGJ_LPIPS_WEIGHTS"):
        monkeypatch.delenv(env, raising=False)
    monkeypatch.setenv("SGJ_METRICS_WEIGHTS", str(tmp_path / "no_weights"))
    config = metrics_config(tmp_path / "cache")
    with pytest.raises(FileNotFoundError, match="pt_inception-2015-12-05"):
        loop.train(config, tmp_path / "run", stop_at_step=2, log=lambda _: None)
    assert not (tmp_path / "run" / "checkpoints").exists()


@pytest.mark.parametrize("field,value,match", [
    ("names", "fid50k_ful", "unknown metric"),
    ("best", "kid32_full_mean", "expected one of the results"),
    ("every_kimg", 0.0, "positive number of kimg"),
    ("every_kimg", 0.0004, "at least 0.001"),
    ("keep_best", 0, "at least 1"),
])
def test_bad_metrics_configs_name_the_field(tmp_path, field, value, match):
    config = metrics_config(tmp_path)
    config.metrics[field] = value
    with pytest.raises(config_lib.ConfigError, match=rf"config\.metrics\.{field}=.*{match}"):
        config_lib.validate(config, num_devices=8)


def test_best_ranking_follows_the_metric_direction():
    fid, recall = BestBy("fid50k_full", False), BestBy("pr50k3_full_recall", True)
    assert fid.score({"fid50k_full": np.float32(3.0)}) > fid.score({"fid50k_full": 4.0})
    assert recall.score({"pr50k3_full_recall": 0.6}) > recall.score({"pr50k3_full_recall": 0.5})
    for bad in ({}, {"fid50k_full": float("nan")}, {"fid50k_full": "3"}, None):
        assert fid.score(bad) == -np.inf  # never kept as the best


def test_presets_train_without_metrics_when_names_are_cleared():
    config = config_lib.load_config("paper256", ["--config.metrics.names="])
    config_lib.validate(config, num_devices=8)  # the preset's metrics.best ranks nothing
    assert config_lib.best_by(config) is None and config_lib.metric_specs(config) == []


def test_path_length_needs_a_stylegan2_generator():
    config = config_lib.load_config("progan_quick", ["--config.metrics.names=ppl_wend_64"])
    with pytest.raises(config_lib.ConfigError, match="metrics.names.*StyleGAN2"):
        config_lib.validate(config, num_devices=8)
