"""`stylegan-jax bench-networks` (StyleGAN2 and StyleGAN3 -t / -r) and
`bench-filtered-lrelu`: the official layers of each --cfg, and the figures they print.

References: the layer names NVIDIA's `networks_stylegan3.py` gave the reference networks
(tests/data/reference/stylegan3, meta.layer_names), and closed forms (img/s = batch / time;
the per-case sums of the filtered_lrelu lines).
"""

from __future__ import annotations

import argparse
import json
import re

import pytest
from official_fixtures import load
from test_stylegan3_official import FILES

from stylegan_jax import cli
from stylegan_jax.benchmarks import filtered_lrelu, networks


def bench_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    networks.add_arguments(p)
    return p.parse_args(argv)


@pytest.mark.parametrize("path", FILES, ids=[f.stem for f in FILES])
def test_cfg_builds_the_official_generator(path):
    """--cfg stylegan3-t|r with the reference's --cbase / --cmax gives NVIDIA's layers: -r
    doubles the generator's channels, uses 1x1 convs and radial filters."""
    meta, _ = load(path)
    radial = meta["use_radial_filters"]
    scale = 2 if radial else 1  # the fixtures hold the generator's (doubled) kwargs
    args = bench_args(["--cfg", "stylegan3-r" if radial else "stylegan3-t",
                       "--resolution", str(meta["res"]),
                       "--fmaps", str(meta["cbase"] / scale / 32768),
                       "--channel-max", str(meta["cmax"] // scale)])
    G, D = networks.build(args)
    assert networks.stylegan3_layers(G) == meta["layer_names"]
    assert (G.conv_kernel, G.use_radial_filters, G.mapping_layers) == \
        (meta["conv_kernel"], radial, meta["mapping_layers"])
    assert (D.channel_base, D.channel_max) == (meta["cbase"] // scale, meta["cmax"] // scale)


def _figures(out: str) -> tuple[list[str], dict]:
    lines = out.strip().splitlines()
    return lines, json.loads(lines[-1])


def test_stylegan3_r_forward_and_backward(capsys):
    assert cli.main(["bench-networks", "--cfg", "stylegan3-r", "--resolution", "16",
                     "--batch", "2", "--fmaps", "0.01", "--channel-max", "16", "--w-dim",
                     "16", "--layers", "4", "--iters", "1", "--json"]) == 0
    lines, res = _figures(capsys.readouterr().out)
    assert res["cfg"] == "stylegan3-r" and res["layers"][-1] == "L4_16_3"
    assert len(res["layers"]) == 5 and "radial filters True" in lines[0]
    for name in ("G", "G_fwd_bwd", "D", "D_fwd_bwd"):
        r = res[name]
        assert r["compile_s"] > 0 and r["img_per_s"] > 0
        assert r["img_per_s"] == pytest.approx(2 / r["ms_per_batch"] * 1e3, rel=0.01)
    printed = [m.groups() for line in lines
               if (m := re.match(r"([GD]) (forward|fwd\+bwd) +res=16 batch=2 compile", line))]
    assert printed == [("G", "forward"), ("G", "fwd+bwd"), ("D", "forward"), ("D", "fwd+bwd")]
    assert lines[-2].startswith("device ")


def test_stylegan2_forward_only(capsys):
    assert cli.main(["bench-networks", "--resolution", "16", "--batch", "2", "--fmaps",
                     "0.01", "--channel-max", "16", "--w-dim", "16", "--mapping-layers", "1",
                     "--no-backward", "--iters", "1", "--json"]) == 0
    lines, res = _figures(capsys.readouterr().out)
    assert res["cfg"] == "stylegan2" and "layers" not in res
    assert "G" in res and "D" in res and "G_fwd_bwd" not in res and "D_fwd_bwd" not in res
    assert lines[0].startswith("stylegan2: G channel_base 327 channel_max 16 skip; D resnet")


def test_filtered_lrelu_cases_sum_their_layers():
    rows = [dict(layer=f"L{i}", up=u, down=d, up_taps=ut, down_taps=dt, radial=r,
                 fwd_ms=float(i), fwd_bwd_ms=10.0 * i)
            for i, (u, d, ut, dt, r) in enumerate([(2, 2, 12, 12, True), (4, 2, 24, 12, True),
                                                    (2, 2, 12, 12, True), (2, 2, 12, 12, False),
                                                    (1, 1, 1, 1, False)])]
    cases = filtered_lrelu.by_case(rows)
    assert [(c["up"], c["down"], c["radial"], c["layers"]) for c in cases] == [
        (2, 2, True, ["L0", "L2"]), (4, 2, True, ["L1"]), (2, 2, False, ["L3"]),
        (1, 1, False, ["L4"])]
    assert [(c["fwd_ms"], c["fwd_bwd_ms"]) for c in cases] == [(2, 20), (1, 10), (3, 30),
                                                                (4, 40)]


def test_bench_filtered_lrelu_prints_one_line_per_case(capsys):
    assert cli.main(["bench-filtered-lrelu", "--cfg", "r", "--resolution", "16", "--batch",
                     "1", "--channel-base", "128", "--channel-max", "4", "--layers", "3",
                     "--iters", "1", "--json"]) == 0
    lines, res = _figures(capsys.readouterr().out)
    case_lines = [line for line in lines if re.match(r"  up \d down \d taps ", line)]
    assert len(case_lines) == len(res["cases"]) >= 2
    assert sum(len(c["layers"]) for c in res["cases"]) == len(res["layers"]) == 4
    assert [r["layer"] for r in res["layers"]] == [n for c in res["cases"] for n in c["layers"]]
    assert res["cases"][-1]["up"] == res["cases"][-1]["down"] == 1  # ToRGB: no resampling
    assert any(c["radial"] for c in res["cases"])  # -r: radial down filters
    assert res["fwd_bwd_ms"] == pytest.approx(sum(c["fwd_bwd_ms"] for c in res["cases"]))
