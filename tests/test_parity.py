"""`stylegan-jax parity`: the official spec derived from a config, the verdict's statistics
against closed forms and scipy, and the whole command with a stand-in official side."""

from __future__ import annotations

import json
import math
import os
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from stylegan_jax.convert.torch_kwargs import official_init_kwargs
from stylegan_jax.models.registry import networks_from_config
from stylegan_jax.parity import compare, report
from stylegan_jax.parity.command import _evaluated
from stylegan_jax.parity.spec import official_spec
from stylegan_jax.train import config as config_lib

HERE = Path(__file__).parent


def test_spec_follows_the_config():
    config = config_lib.load_config("quickstart", ["--config.train.r1_gamma=3.5",
                                                   "--config.train.aug=ada"])
    spec = official_spec(config, 0, 7, [2.0, 4.0])
    nets = networks_from_config(config, 0)
    g = official_init_kwargs(nets.G)
    assert spec["G_kwargs"]["mapping_kwargs"] == g["mapping_kwargs"]
    assert spec["G_kwargs"]["synthesis_kwargs"] == g["synthesis_kwargs"]
    assert not {"c_dim", "img_resolution", "img_channels"} & set(spec["G_kwargs"])
    assert spec["D_kwargs"]["epilogue_kwargs"]["mbstd_group_size"] == 4
    assert spec["loss_kwargs"]["r1_gamma"] == 3.5
    assert spec["random_seed"] == 7 and spec["snapshot_kimg"] == [2.0, 4.0]
    assert spec["ema_rampup"] == 0.05 and spec["ema_kimg"] == 1.0
    # ada with the bgc pipe: every blit, geometric and colour operation at 1
    assert spec["augment_kwargs"] == {op: 1 for op in (
        "xflip", "rotate90", "xint", "scale", "rotate", "aniso", "xfrac", "brightness",
        "contrast", "lumaflip", "hue", "saturation")}
    assert spec["ada_target"] == 0.6
    noaug = official_spec(config_lib.load_config("quickstart", []), 0, 0, [2.0])
    assert noaug["augment_kwargs"] is None and noaug["ada_target"] is None


def test_spec_refuses_what_the_official_loop_cannot_train():
    with pytest.raises(ValueError, match="stylegan2 config"):
        official_spec(config_lib.load_config("progan_quick", []), 0, 0, [1.0])
    with pytest.raises(ValueError, match="num_bf16_res"):
        official_spec(config_lib.load_config("quickstart", ["--config.model.num_bf16_res=2"]),
                      0, 0, [1.0])


def test_welch_equals_scipy_and_closed_form():
    a, b = [10.0, 12.0, 11.0, 13.0], [14.0, 15.5, 13.0, 16.0]
    w = compare.welch(a, b)
    ref = stats.ttest_ind(a, b, equal_var=False)
    assert w["t"] == pytest.approx(ref.statistic) and w["p"] == pytest.approx(ref.pvalue)
    va, vb = np.var(a, ddof=1) / 4, np.var(b, ddof=1) / 4
    assert w["t"] == pytest.approx((np.mean(a) - np.mean(b)) / math.sqrt(va + vb))
    assert w["df"] == pytest.approx((va + vb) ** 2 / (va ** 2 / 3 + vb ** 2 / 3))


def test_verdict_band_and_final_test():
    official = {s: {2.0: 100 + s, 4.0: 80 + s, 6.0: 60 + s} for s in range(4)}  # std 1.29
    close = {s: {2.0: 150.0, 4.0: 81.5 + s, 6.0: 61.5 + s} for s in range(4)}
    v = compare.compare({"official": official, "ours": close}, skip_kimg=2.0)
    assert [r["kimg"] for r in v["rows"]] == [2.0, 4.0, 6.0]
    assert not v["rows"][0]["checked"]  # far apart, but before the band applies
    assert v["rows"][1]["within"] and v["band_pass"]
    assert v["final"]["kimg"] == 6.0 and v["welch_pass"] and v["pass"]
    far = {s: {2.0: 100 + s, 4.0: 85 + s, 6.0: 60 + s} for s in range(4)}
    v = compare.compare({"official": official, "ours": far}, skip_kimg=2.0)
    assert not v["rows"][1]["within"] and not v["band_pass"] and not v["pass"]
    assert compare.outcome(v) == "FAIL" and v["decided"]
    assert v["rows"][1]["gap_in_std"] == pytest.approx(5 / np.std([80, 81, 82, 83], ddof=1))
    partial = {s: {2.0: 100.0 + s} for s in range(3)} | {3: {2.0: 103.0, 4.0: 83.0}}
    v = compare.compare({"official": official, "ours": partial}, skip_kimg=0.0)
    assert [r["kimg"] for r in v["rows"]] == [2.0]  # 4 kimg: not every seed got there yet
    one = compare.compare({"official": {0: official[0]}, "ours": {0: close[0]}}, skip_kimg=2.0)
    assert compare.outcome(one) == "UNDECIDED"  # one seed: no spread to compare with
    assert "**UNDECIDED**" in report.markdown(one, "swd1k", "stylegan-jax parity ...")


def test_evaluations_cut_short_by_a_kill_are_dropped(tmp_path):
    path = tmp_path / "evals.jsonl"
    whole = json.dumps(dict(side="ours", seed=0, kimg=2.0, results={"swd1k": 3.0}))
    path.write_text(whole + "\n" + '{"side": "ours", "se')
    assert list(_evaluated(path)) == [("ours", 0, 2.0)]
    assert path.read_text() == whole + "\n"  # the next evaluation appends after it
    path.write_text("not json\n" + whole + "\n")
    with pytest.raises(ValueError, match="line 1 is not JSON"):
        _evaluated(path)


@pytest.mark.slow
def test_parity_command_end_to_end(tmp_path):
    """The command on the bundled faces with a stand-in official side (test-made official
    pickles of random networks, no torch): data export, spec, both sides' runs, the same
    evaluation of every snapshot, the report, and a rerun that only reports."""
    checkout = tmp_path / "checkout"
    (checkout / "training").mkdir(parents=True)
    (checkout / "training" / "training_loop.py").write_text("# stand-in\n")
    python = tmp_path / "torch-python"
    python.write_text(f"#!/bin/sh\nshift\nexec {sys.executable} "
                      f"{HERE / 'fake_official_driver.py'} \"$@\"\n")
    python.chmod(python.stat().st_mode | stat.S_IEXEC)
    out = tmp_path / "parity"
    argv = [sys.executable, "-m", "stylegan_jax.cli", "parity", "--official", str(checkout),
            "--official-python", str(python), "--out", str(out), "--seeds", "0,1",
            "--kimg", "0.032", "--every", "0.032", "--metrics", "swd64,msssim16",
            "--skip-kimg", "0", "--config.train.batch_size=16",
            "--config.model.channel_max=16"]
    # One device: the runs' programs compile and step faster than over 8 fake devices.
    flags = os.environ.get("XLA_FLAGS", "").replace("device_count=8", "device_count=1")
    env = dict(os.environ, PYTHONPATH=str(HERE.parent), XLA_FLAGS=flags)
    first = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=900)
    assert first.returncode in (0, 1), first.stdout + first.stderr
    data = sorted((out / "data").rglob("*.png"))
    assert len(data) == 100 and json.loads((out / "data" / "dataset.json").read_text()) == {
        "labels": None}
    spec = json.loads((out / "official" / "seed1" / "spec.json").read_text())
    assert spec["random_seed"] == 1 and spec["snapshot_kimg"] == [0.032]
    evals = [json.loads(line) for line in (out / "evals.jsonl").read_text().splitlines()]
    assert sorted((e["side"], e["seed"], e["kimg"]) for e in evals) == sorted(
        (side, seed, k) for side in ("official", "ours") for seed in (0, 1)
        for k in (0.032,))
    for e in evals:
        assert set(e["results"]) == {"swd64", "swd64_32", "swd64_16", "msssim16"}
        prov = e["provenance"]["swd64"]
        assert prov["counts"] == {"generated": 64, "real": 64}
        assert prov["data"]["resize_filter"] and prov["data"]["count"] == 100
    # the stand-in writes a different random generator per snapshot, so values differ
    assert len({e["results"]["swd64"] for e in evals}) == len(evals)
    report = json.loads((out / "parity.json").read_text())
    assert report["metric"] == "swd64"
    assert set(report["curves"]) == {"official", "ours"}
    assert (out / "parity.png").stat().st_size > 1000
    assert "| kimg |" in (out / "parity.md").read_text()
    # A rerun finds every run and evaluation done: nothing is trained or evaluated again.
    again = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=600)
    assert again.returncode == first.returncode, again.stderr
    assert "training" not in again.stdout
    assert (out / "evals.jsonl").read_text().count("\n") == len(evals)
    # Other settings into the same directory are refused, naming what changed.
    other = subprocess.run(argv[:-2] + ["--config.train.batch_size=32"], capture_output=True,
                           text=True, env=env, timeout=600)
    assert other.returncode == 2 and "overrides" in other.stderr
