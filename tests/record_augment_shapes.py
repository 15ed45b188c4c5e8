"""Records `tests/data/augment/shapes/*.npz`: NVIDIA's ADA pipe on non-square and RGBA batches.

Not a test (pytest collects `test_*.py` only); it runs NVIDIA's code, so it needs torch and
a checkout of NVlabs/stylegan2-ada-pytorch (`training/augment.py`, as for the square files)::

    /path/to/torch-venv/bin/python tests/record_augment_shapes.py \\
        --official /path/to/stylegan2-ada-pytorch [--out tests/data/augment/shapes]
    # the recording procedure against a bundled square file (records nothing):
    ... tests/record_augment_shapes.py --official ... \\
        --check tests/data/augment/augment_bgc_32_rgb.npz

Procedure (that of the square files, tests/data/augment/README.md): `AugmentPipe(**kwargs)`
with strength `p`, forward and backward on the CPU. Inputs come from NumPy's
`default_rng(seed)` (images uniform in [-1, 1], then the cotangent, standard normal). The
draws are made by `torch.rand` / `torch.randn` after `torch.manual_seed(seed)` in a float32
run, each copied out in call order; the float64 run (default dtype float64, the pipe's
buffers in float64 except the float32-only `Hz_geom`, which upfirdn2d casts itself) replays
exactly those draws and gives `io/out` and `io/grad`; `f32err/...` is how far the float32
run is from it. Replay checks every request's kind and shape and that every draw was used.

RGBA files (channels = 4) hold the pipe this project defines on RGBA, built from two
official runs on the same draws: channels 0-2 are the official pipe on the RGB part with
`kwargs`; channel 3 is the official pipe on the alpha channel alone (one channel) with
`meta.alpha_kwargs` (colour operations and additive noise off: they leave alpha as it is)
replaying the draws `meta.alpha_draws` of the RGB run (geometry, image filtering, cutout:
they move, filter and cut alpha with the colour channels). `io/cotangent` and `io/grad`
split the same way; `f32err` is the larger of the two runs'.

A seed is taken from `--seed` on only when every enabled operation applies to at least one
image (so each one is tested on the rectangle), for `blit` also when some image has an odd
number of quarter turns (the case where a rectangle would change shape) and an even one.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from pathlib import Path

import numpy as np

BLIT = ("xflip", "rotate90", "xint")
GEOM = ("scale", "rotate", "aniso", "xfrac")
COLOR = ("brightness", "contrast", "lumaflip", "hue", "saturation")
ALL = BLIT + GEOM + COLOR + ("imgfilter", "noise", "cutout")
SOURCE = "NVlabs/stylegan2-ada-pytorch training/augment.py AugmentPipe.forward (CPU)"

# name, (height, width), channels, batch, p, enabled operations.
FILES = (
    ("augment_blit_32x16_rgb", (32, 16), 3, 3, 1.0, BLIT),
    ("augment_geom_16x32_rgb", (16, 32), 3, 2, 1.0, GEOM),
    ("augment_color_16x32_rgba", (16, 32), 4, 2, 1.0, COLOR),
    ("augment_bgcfnc_48x24_rgba", (48, 24), 4, 2, 0.8, ALL),
)


def import_official(path):
    sys.path.insert(0, str(path))
    global torch, AugmentPipe
    import torch
    from training.augment import AugmentPipe


def draw_layout(kwargs: dict, channels: int, p: float) -> list[tuple[str, int, int, float]]:
    """(operation, number of draws, index of its probability draw, threshold), in the
    official order; the threshold is what the probability draw is compared with."""
    on = {k: float(v) for k, v in kwargs.items() if k in ALL and float(v) > 0}
    p_rot = 1 - np.sqrt(np.clip(1 - on.get("rotate", 0) * p, 0, 1))
    ops = []
    for op in BLIT + ("scale", "rotate", "aniso", "rotate", "xfrac") + COLOR:
        if op in on and not (op in ("hue", "saturation") and channels == 1):
            ops.append((op, 2, 1, p_rot if op == "rotate" else on[op] * p))
    if "imgfilter" in on:
        bands = kwargs.get("imgfilter_bands", [1, 1, 1, 1])
        ops += [(f"imgfilter{i}", 2, 1, on["imgfilter"] * p * b) for i, b in enumerate(bands)]
    if "noise" in on:
        ops.append(("noise", 3, 1, on["noise"] * p))
    if "cutout" in on:
        ops.append(("cutout", 2, 0, on["cutout"] * p))
    return ops


class Draws(contextlib.AbstractContextManager):
    """Patches torch.rand / torch.randn: records fresh draws, or replays a list of them."""

    def __init__(self, replay=None):
        self.replay = replay
        self.kinds, self.values = [], []

    def __enter__(self):
        self.saved = torch.rand, torch.randn
        torch.rand, torch.randn = self._rand, self._randn
        return self

    def __exit__(self, *exc):
        torch.rand, torch.randn = self.saved
        if exc[0] is None and self.replay is not None and len(self.values) != len(self.replay):
            raise AssertionError(f"replay used {len(self.values)} of {len(self.replay)} draws")

    def _draw(self, kind, shape, **kw):
        shape = [int(s) for s in shape]
        i = len(self.values)
        if self.replay is None:
            value = self.saved[kind == "randn"](shape, dtype=torch.float32, **kw).numpy()
        else:
            rec_kind, value = self.replay[i]
            if (rec_kind, list(value.shape)) != (kind, shape):
                raise AssertionError(f"draw {i}: {kind}{shape} asked, {rec_kind}"
                                     f"{list(value.shape)} recorded")
        self.kinds.append(kind)
        self.values.append(np.asarray(value, np.float32))
        return torch.as_tensor(value, dtype=torch.get_default_dtype())

    def _rand(self, shape, **kw):
        return self._draw("rand", shape, **kw)

    def _randn(self, shape, **kw):
        return self._draw("randn", shape, **kw)


def run_official(kwargs, p, images, cotangent, dtype, replay=None):
    """(out, grad, [(kind, value)] draws) of the official pipe; records unless `replay`."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        pipe = AugmentPipe(**kwargs)
        pipe.p.copy_(torch.as_tensor(p))
        pipe.p.data = pipe.p.data.to(dtype)
        pipe.Hz_fbank.data = pipe.Hz_fbank.data.to(dtype)  # Hz_geom: float32 by contract
        x = torch.as_tensor(images, dtype=dtype).requires_grad_(True)
        with Draws(replay) as draws:
            out = pipe(x)
        (out * torch.as_tensor(cotangent, dtype=dtype)).sum().backward()
    finally:
        torch.set_default_dtype(previous)
    return (out.detach().numpy(), x.grad.numpy(),
            list(zip(draws.kinds, draws.values, strict=True)))


def run_pair(kwargs, p, images, cotangent, replay=None):
    """float64 (out, grad), float32 errors (out, grad), draws: the recording procedure."""
    out32, grad32, draws = run_official(kwargs, p, images, cotangent, torch.float32, replay)
    out64, grad64, _ = run_official(kwargs, p, images, cotangent, torch.float64, draws)
    err = (float(np.abs(out32 - out64).max()), float(np.abs(grad32 - grad64).max()))
    return (out64, grad64), err, draws


def alpha_part(kwargs, draws, p):
    """kwargs and draw indices of the alpha run: colour operations and noise off."""
    alpha_kwargs = {k: (0 if k in COLOR + ("noise",) else v) for k, v in kwargs.items()}
    keep, i = [], 0
    for op, count, _, _ in draw_layout(kwargs, 3, p):
        if op not in COLOR + ("noise",):
            keep += range(i, i + count)
        i += count
    assert i == len(draws), (i, len(draws))
    return alpha_kwargs, keep


def every_op_applies(kwargs, draws, channels, p, name):
    layout, i = draw_layout(kwargs, min(channels, 3), p), 0
    assert sum(n for _, n, _, _ in layout) == len(draws)
    for _, count, prob, threshold in layout:
        if not (draws[i + prob][1] < threshold).any():
            return False
        i += count
    if "blit" in name:
        quarter_turns = np.floor(draws[2][1] * 4) % 2
        return bool(quarter_turns.any() and not quarter_turns.all())
    return True


def record(name, size, channels, batch, p, ops, first_seed):
    height, width = size
    kwargs = {op: 1 for op in ops}
    for seed in range(first_seed, first_seed + 1000):
        rng = np.random.default_rng(seed)
        images = rng.uniform(-1, 1, (batch, channels, height, width)).astype(np.float32)
        cotangent = rng.standard_normal(images.shape).astype(np.float32)
        torch.manual_seed(seed)
        rgb = slice(0, min(channels, 3))
        (out, grad), err, draws = run_pair(kwargs, p, images[:, rgb], cotangent[:, rgb])
        if every_op_applies(kwargs, draws, channels, p, name):
            break
    else:
        raise AssertionError(f"{name}: no seed where every operation applies")
    meta = dict(family="stylegan2_ada_augment_shapes", name=name, seed=seed, batch=batch,
                channels=channels, height=height, width=width, p=p, kwargs=kwargs,
                draw_kinds=[k for k, _ in draws],
                draw_shapes=[list(v.shape) for _, v in draws], layout="NCHW",
                source=SOURCE + ", float32 draws",
                reference_precision="float64 official run on the same draws and inputs, "
                                    "stored as float32")
    if channels == 4:
        alpha_kwargs, keep = alpha_part(kwargs, draws, p)
        (a_out, a_grad), a_err, _ = run_pair(alpha_kwargs, p, images[:, 3:], cotangent[:, 3:],
                                             replay=[draws[i] for i in keep])
        out = np.concatenate([out, a_out], axis=1)
        grad = np.concatenate([grad, a_grad], axis=1)
        err = tuple(max(a, b) for a, b in zip(err, a_err, strict=True))
        meta.update(alpha_kwargs=alpha_kwargs, alpha_draws=keep, composition=(
            "channels 0-2: the official pipe on images[:, :3] with kwargs and every draw; "
            "channel 3: the official pipe on images[:, 3:] (one channel) with alpha_kwargs, "
            "replaying the draws listed in alpha_draws"))
    arrays = {"meta": json.dumps(meta), "io/images": images, "io/out": out.astype(np.float32),
              "io/cotangent": cotangent, "io/grad": grad.astype(np.float32),
              "f32err/io/out": np.float64(err[0]), "f32err/io/grad": np.float64(err[1])}
    arrays |= {f"draws/{i:03d}": v for i, (_, v) in enumerate(draws)}
    return arrays, meta, err


def check(path):
    """Replays a bundled official file with this procedure; returns the largest relative error."""
    with np.load(path) as data:
        meta = json.loads(str(data["meta"]))
        draws = [(k, data[f"draws/{i:03d}"]) for i, k in enumerate(meta["draw_kinds"])]
        (out, grad), _, _ = run_pair(meta["kwargs"], meta["p"], data["io/images"],
                                     data["io/cotangent"], replay=draws)
        return max(float(np.abs(ours - data[key]).max() / np.abs(data[key]).max())
                   for ours, key in ((out, "io/out"), (grad, "io/grad")))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--official", required=True, help="stylegan2-ada-pytorch checkout")
    parser.add_argument("--out", default=str(Path(__file__).parent / "data/augment/shapes"))
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--check", nargs="*", default=None,
                        help="bundled official files to replay (records nothing)")
    args = parser.parse_args(argv)
    import_official(args.official)
    torch.use_deterministic_algorithms(True)
    if args.check is not None:
        for path in args.check:
            print(f"{path}: max |procedure - file| / max|file| = {check(path):.2e}")
        return 0
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for spec in FILES:
        arrays, meta, err = record(*spec, first_seed=args.seed)
        np.savez_compressed(out / f"{spec[0]}.npz", **arrays)
        print(f"{spec[0]}: seed {meta['seed']}, {len(meta['draw_kinds'])} draws, "
              f"f32err out {err[0]:.1e} grad {err[1]:.1e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
