"""`stylegan-jax bench`: the speed/memory settings it ran with, and `--compare-aug`, which
times a config without augmentation and with ADA at a fixed strength in the same process."""

from __future__ import annotations

import contextlib
import io
import json
import re

import pytest

from stylegan_jax.benchmarks import train as bench

# A tiny config on the 8 test devices: 2 images per device in micro-batches of 1, the 16x16
# block rematerialised, the 16x16 block in bfloat16; no regularisers (their second-order
# passes triple the compile time) and the colour pipe (the geometric one compiles for minutes
# on a CPU): one program, "main".
TINY = ["--config.data.resolution=16", "--config.model.z_dim=16", "--config.model.w_dim=16",
        "--config.model.channel_base=64", "--config.model.channel_max=8",
        "--config.train.batch_size=16", "--config.train.batch_per_device=1",
        "--config.model.mbstd_group_size=1", "--config.train.pl_batch_shrink=1",
        "--config.model.remat_resolution=16", "--config.model.num_bf16_res=1",
        "--config.train.g_reg_interval=1", "--config.train.d_reg_interval=1",
        "--config.train.pl_weight=0", "--config.train.r1_gamma=0", "--config.train.augpipe=color"]


@pytest.fixture(scope="module")
def compare_aug() -> str:
    """What `bench --compare-aug` prints for the tiny config (run once for the module)."""
    argv = ["--config", "quickstart", "--iters", "1", "--rounds", "2", "--compare-aug",
            "--aug-p", "0.5", "--json", *TINY]
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert bench.main(argv) == 0
    return out.getvalue()


@pytest.mark.slow  # compiles two training steps: ~65 s of CPU
def test_compare_aug_runs_both_configs_with_their_settings(compare_aug):
    lines = compare_aug.strip().splitlines()
    results = json.loads(lines[-1])
    noaug, ada = results["noaug"], results["ada"]
    settings = [line for line in lines if line.strip().startswith("settings:")]
    assert len(settings) == 2
    for line, aug in zip(settings, ("train.aug=noaug", "train.aug=ada (color, p 0.5"), strict=True):
        assert "train.batch_per_device=1 " in line and "model.remat_resolution=16 " in line
        assert "model.num_bf16_res=1 " in line and aug in line
    for r in (noaug, ada):
        assert (r["batch_per_device"], r["remat_resolution"], r["num_bf16_res"]) == (1, 16, 1)
        assert r["batch"] == 16 and r["resolution"] == 16 and r["img_per_s"] > 0
        assert "peak_gib" in r and set(r["program_gib"]) == {"main"}
    assert (noaug["aug"], noaug["aug_p"], noaug["aug_p_end"]) == ("noaug", None, None)
    assert (ada["aug"], ada["augpipe"], ada["aug_p"]) == ("ada", "color", 0.5)
    # The strength the training state carried (the step's, not the bench's): ADA moves it by
    # at most batch * interval / (ada_kimg * 1000) = 16 * 4 / 500000 per adjustment.
    assert ada["aug_p_end"] == pytest.approx(0.5, abs=1e-3)
    if noaug["gflop_per_img"] is not None:  # the compiled ADA iteration holds the pipe's work
        assert ada["gflop_per_img"] > noaug["gflop_per_img"]
    summary = re.search(r"augmentation cost: ada \(p 0.5\) ([\d.]+) img/s, noaug ([\d.]+) "
                        r"img/s: ada/noaug ([\d.]+) \(median of 2 alternating rounds of 1 "
                        r"iterations\)", compare_aug)
    assert summary, compare_aug
    assert float(summary[1]) == pytest.approx(ada["img_per_s"], abs=0.06)
    assert float(summary[2]) == pytest.approx(noaug["img_per_s"], abs=0.06)
    assert results["ada_over_noaug"] == pytest.approx(ada["img_per_s"] / noaug["img_per_s"],
                                                      rel=1e-3)


@pytest.mark.parametrize("argv, message", [
    (["--compare-aug", "--aug-p", "0"], "--aug-p must be a finite strength > 0"),
    (["--rounds", "0"], "--rounds >= 1"),
    (["--iters", "-1"], "--iters must be >= 0"),
])
def test_bad_options_are_named(argv, message):
    with pytest.raises(ValueError, match=message):
        bench.main(argv)
