"""Records `tests/data/stylegan3_rect/*.npz`: NVIDIA's StyleGAN3 layers at W x H.

Not a test (pytest collects `test_*.py` only); it runs NVIDIA's code, so it needs torch and a
checkout of NVlabs/stylegan3 (commit c233a91, `training/networks_stylegan3.py`)::

    /path/to/torch-venv/bin/python tests/record_stylegan3_rect.py \\
        --official /path/to/stylegan3 [--out tests/data/stylegan3_rect]

The official `SynthesisNetwork` asserts a square image, but its layers take [width, height]
sizes (`SynthesisInput(size=[W, H])`, `SynthesisLayer(in_size=[W, H], out_size=[W, H])`).
Procedure: the official square `Generator(**meta.kwargs)` is built and randomised as the
square references were (`torch.manual_seed(seed)`, every parameter `+ 0.1 * randn`,
`mapping.w_avg = randn`, every `magnitude_ema = 1 + 0.5 * |randn|`, where `meta.transform =
[tx, ty, degrees]` the input transform set to the inverse of that rotation plus
translation). Then the official `SynthesisInput` and every official `SynthesisLayer` are
built again with the square one's arguments except the sizes, along an axis of multiple a
(`meta.aspect` = (height, width) multiples): sampling_rate * a + 2 * margin, the last two
layers img_resolution * a; each loads its square layer's state dict (no parameter or filter
depends on the size). Synthesis is the official loop over them (input, layers, times
`output_scale`). The generator runs in eval mode on the CPU (the reference
`filtered_lrelu`); the stored `io/` and `after_update_emas/` values are the float64 run
(stored as float32), `f32err/<key>` the float32 run's largest distance from them.

Keys: `meta` (JSON: `family` = `stylegan3_rect`, `kwargs` (the official Generator kwargs of
the square network), `aspect`, `psi`, `cutoff`, `batch`, `transform`, `layer_names` (the
square network's), `layer_sizes` ([width, height] per layer output, official order)),
`G/<name>` (the official state dict), `io/z`, `io/c`, `io/ws`, `io/img` (NCHW, H x W),
`io/ws_notrunc`, `io/img_notrunc`, `io/noise`, `io/grad_ws` (d sum(synthesis(ws_notrunc) *
noise) / d ws_notrunc, noise = randn / sqrt(H W)), `after_update_emas/G/<layer>.magnitude_ema`
(after one more synthesis(ws_notrunc, update_emas=True)).
"""

from __future__ import annotations

import argparse
import copy
import json
import re
import sys
import types
from pathlib import Path

import numpy as np

SOURCE = "NVlabs/stylegan3 c233a91 training/networks_stylegan3.py (CPU, filtered_lrelu ref)"

# name, seed, official Generator kwargs, (height, width) multiples, psi, cutoff, transform.
FILES = (
    ("stylegan3_t_16_wide", 1, dict(
        z_dim=16, c_dim=0, w_dim=16, img_resolution=16, img_channels=3,
        mapping_kwargs=dict(num_layers=2), channel_base=256, channel_max=8, num_layers=4,
        num_fp16_res=0, conv_clamp=256, conv_kernel=3, use_radial_filters=False,
        magnitude_ema_beta=0.999), (1, 2), 0.7, None, None),
    ("stylegan3_r_32_tall_cond_gray", 2, dict(
        z_dim=12, c_dim=3, w_dim=20, img_resolution=32, img_channels=1,
        mapping_kwargs=dict(num_layers=2), channel_base=512, channel_max=8, num_layers=5,
        num_fp16_res=0, conv_clamp=256, conv_kernel=1, use_radial_filters=True,
        magnitude_ema_beta=0.999), (2, 1), 0.5, 3, [0.1, -0.05, 15.0]),
)
BATCH = 2


def import_official(path):
    sys.path.insert(0, str(path))
    try:  # torch_utils compares torch versions with setuptools' parse_version
        import pkg_resources  # noqa: F401
    except ImportError:  # a venv without setuptools: (major, minor) is all it compares
        shim = types.ModuleType("pkg_resources")
        shim.parse_version = lambda v: tuple(int(x) for x in re.findall(r"\d+", v)[:2])
        sys.modules["pkg_resources"] = shim
    from training import networks_stylegan3

    return networks_stylegan3


def inverse_transform(tx, ty, degrees):
    """The input transform that shows the image rotated by `degrees` and moved by (tx, ty)
    (official gen_images.make_transform, inverted)."""
    a = np.deg2rad(degrees)
    m = np.array([[np.cos(a), np.sin(a), tx], [-np.sin(a), np.cos(a), ty], [0, 0, 1]])
    return np.linalg.inv(m)


class Float64Torch:
    """torch, but `float32` is float64 (the official module's own casts, in a float64 run)."""

    def __init__(self, torch):
        self._torch = torch

    def __getattr__(self, name):
        return self._torch.float64 if name == "float32" else getattr(self._torch, name)


class RectSynthesis:
    """The official input and layers of a square SynthesisNetwork rebuilt at W x H."""

    def __init__(self, official, square, aspect, layer_kwargs):
        import torch

        ah, aw = aspect
        s = square
        # The square design the official __init__ computed: sampling rate s[i] of layer i.
        rates = [getattr(s, n).out_sampling_rate for n in s.layer_names]

        def size(i):
            """[W, H] of the official sizes[i] (the input and layer 0: i = 0)."""
            if i >= s.num_layers - 1:  # sizes[-2:] = img_resolution, per axis
                return [s.img_resolution * aw, s.img_resolution * ah]
            return [int(rates[i]) * a + s.margin_size * 2 for a in (aw, ah)]

        inp = s.input
        self.input = official.SynthesisInput(
            w_dim=inp.w_dim, channels=inp.channels, size=size(0),
            sampling_rate=inp.sampling_rate, bandwidth=inp.bandwidth)
        self.input.load_state_dict(inp.state_dict())
        self.layers, self.sizes = [], []
        for idx, name in enumerate(s.layer_names):
            sq = getattr(s, name)
            layer = official.SynthesisLayer(
                w_dim=sq.w_dim, is_torgb=sq.is_torgb,
                is_critically_sampled=sq.is_critically_sampled, use_fp16=sq.use_fp16,
                in_channels=sq.in_channels, out_channels=sq.out_channels,
                in_size=size(max(idx - 1, 0)), out_size=size(idx),
                in_sampling_rate=sq.in_sampling_rate, out_sampling_rate=sq.out_sampling_rate,
                in_cutoff=sq.in_cutoff, out_cutoff=sq.out_cutoff,
                in_half_width=sq.in_half_width, out_half_width=sq.out_half_width,
                **layer_kwargs)
            for f in ("up_filter", "down_filter"):  # the size changes no filter
                a, b = getattr(sq, f), getattr(layer, f)
                assert (a is None) == (b is None), f
                assert a is None or torch.equal(a.float(), b.float()), f
            layer.load_state_dict(sq.state_dict())
            self.layers.append(layer)
            self.sizes.append([int(v) for v in layer.out_size])
        self.output_scale = s.output_scale

    def modules(self):
        return [self.input, *self.layers]

    def __call__(self, ws, update_emas=False):
        ws = ws.unbind(dim=1)
        x = self.input(ws[0])
        for layer, w in zip(self.layers, ws[1:], strict=True):
            x = layer(x, w, update_emas=update_emas)
        return x * self.output_scale


def record(official, name, seed, kwargs, aspect, psi, cutoff, transform):
    import torch

    torch.manual_seed(seed)
    G = official.Generator(**kwargs).eval()
    with torch.no_grad():
        for p in G.parameters():
            p.add_(0.1 * torch.randn_like(p))
        G.mapping.w_avg.copy_(torch.randn_like(G.mapping.w_avg))
        for n in G.synthesis.layer_names:
            ema = getattr(G.synthesis, n).magnitude_ema
            ema.copy_(1 + 0.5 * torch.randn_like(ema).abs())
        if transform is not None:
            G.synthesis.input.transform.copy_(torch.as_tensor(inverse_transform(*transform)))
    state = {k: v.detach().numpy().copy() for k, v in G.state_dict().items()}
    # What the official SynthesisNetwork hands each layer (its **layer_kwargs).
    layer_kwargs = {k: kwargs[k] for k in ("conv_kernel", "use_radial_filters", "conv_clamp",
                                           "magnitude_ema_beta")}

    rng = np.random.default_rng(seed)
    z = rng.standard_normal((BATCH, kwargs["z_dim"]))
    c = np.eye(kwargs["c_dim"])[rng.integers(0, kwargs["c_dim"], BATCH)] if kwargs["c_dim"] \
        else np.zeros((BATCH, 0))
    ah, aw = aspect
    h, w = kwargs["img_resolution"] * ah, kwargs["img_resolution"] * aw
    noise = rng.standard_normal((BATCH, kwargs["img_channels"], h, w)) / np.sqrt(h * w)

    def run(dtype):
        Gd = copy.deepcopy(G).to(dtype)
        synth = RectSynthesis(official, Gd.synthesis, aspect, layer_kwargs)
        for m in synth.modules():
            m.to(dtype).eval()
        for layer in synth.layers:  # upfirdn2d takes float32 taps only (and casts them)
            for f in ("up_filter", "down_filter"):
                if getattr(layer, f) is not None:
                    setattr(layer, f, getattr(layer, f).float())
        t = lambda a: torch.as_tensor(a, dtype=dtype)  # noqa: E731
        out = {}
        with torch.no_grad():
            ws = Gd.mapping(t(z), t(c), truncation_psi=psi, truncation_cutoff=cutoff)
            ws_nt = Gd.mapping(t(z), t(c))
            out["io/ws"], out["io/ws_notrunc"] = ws, ws_nt
            out["io/img"] = synth(ws)
        ws_g = ws_nt.clone().requires_grad_(True)
        img_nt = synth(ws_g)
        (img_nt * t(noise)).sum().backward()
        out["io/img_notrunc"], out["io/grad_ws"] = img_nt.detach(), ws_g.grad
        with torch.no_grad():
            synth(ws_nt, update_emas=True)
        for n, layer in zip(Gd.synthesis.layer_names, synth.layers, strict=True):
            out[f"after_update_emas/G/synthesis.{n}.magnitude_ema"] = layer.magnitude_ema
        assert out["io/img"].shape == (BATCH, kwargs["img_channels"], h, w)
        return {k: v.detach().numpy().astype(np.float64) for k, v in out.items()}, synth

    # The official modules cast to torch.float32 in places (mapping input, conv input) and
    # make float tensors of the default dtype (torch.eye): for the float64 run their module
    # sees float64 under that name, and float64 is the default.
    official.torch = Float64Torch(torch)
    torch.set_default_dtype(torch.float64)
    try:
        ref, synth = run(torch.float64)
    finally:
        official.torch = torch
        torch.set_default_dtype(torch.float32)
    f32, _ = run(torch.float32)
    arrays = {f"G/{k}": v for k, v in state.items()}
    arrays.update({"io/z": z, "io/c": c, "io/noise": noise})
    arrays.update(ref)
    arrays.update({f"f32err/{k}": np.float64(np.max(np.abs(f32[k] - v))) for k, v in ref.items()})
    meta = dict(family="stylegan3_rect", name=name, source=SOURCE, seed=seed, kwargs=kwargs,
                aspect=list(aspect), psi=psi, cutoff=cutoff, batch=BATCH, transform=transform,
                layer_names=list(G.synthesis.layer_names), layer_sizes=synth.sizes)
    arrays = {k: np.asarray(v, np.float32) for k, v in arrays.items()}
    worst = max(float(arrays[f"f32err/{k}"]) / float(np.max(np.abs(v))) for k, v in ref.items()
                if np.max(np.abs(v)) > 0)
    return meta, arrays, worst


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--official", type=Path, required=True, help="a NVlabs/stylegan3 checkout")
    p.add_argument("--out", type=Path, default=Path(__file__).parent / "data" / "stylegan3_rect")
    args = p.parse_args(argv)
    official = import_official(args.official)
    args.out.mkdir(parents=True, exist_ok=True)
    for name, *spec in FILES:
        meta, arrays, worst = record(official, name, *spec)
        np.savez_compressed(args.out / f"{name}.npz", meta=np.array(json.dumps(meta)), **arrays)
        print(f"{name}: layers {meta['layer_sizes']}, float32 run within {worst:.2e} of max|ref|")
    return 0


if __name__ == "__main__":
    sys.exit(main())
