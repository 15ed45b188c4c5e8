"""`stylegan-jax style-mix`: the official style-mixing matrix (style_mixing.py).

Row r, column c is the row seed's w with the layers in --styles taken from the column
seed's w; the first row holds the column seeds' own images, the first column the row
seeds', the top-left cell is blank. Writes grid.png and every image as {row}-{col}.png
(a seed's own image as {seed}-{seed}.png), as the official script names them.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from stylegan_jax import images
from stylegan_jax.generate import (
    Condition,
    add_class_argument,
    add_network_arguments,
    class_from_args,
    images_from_ws,
    network_from_args,
    parse_seeds,
    ws_for_seeds,
)
from stylegan_jax.models import stylegan2
from stylegan_jax.models.registry import Network
from stylegan_jax.models.sampling import w_shape


def mix_ws(row_ws: np.ndarray, col_ws: np.ndarray, styles: list[int]) -> np.ndarray:
    """[R, L, D], [C, L, D] -> [R, C, L, D]: each row's ws with layers `styles` from each column."""
    mixed = np.repeat(row_ws[:, None], len(col_ws), axis=1)
    mixed[:, :, styles] = col_ws[None][:, :, styles]
    return mixed


def style_mix(net: Network, row_seeds: list[int], col_seeds: list[int], styles: list[int],
              truncation_psi: float = 1.0, noise_mode: str = "const",
              class_idx: Condition = None, batch_size: int = 16
              ) -> tuple[dict[int, np.ndarray], np.ndarray]:
    """({seed: its own image}, mixed images [R, C, H, W, ch]), uint8; all rendered by one
    compiled synthesis program; `class_idx`: a class or a label vector
    (generate.conditioning). Truncation (psi) applies to every layer, as officially."""
    num_ws, _ = w_shape(net.module)
    bad = [s for s in styles if not 0 <= s < num_ws]
    if bad:
        raise ValueError(f"--styles: layers {bad} out of range; this generator has {num_ws} "
                         f"ws (layers 0-{num_ws - 1})")
    seeds = list(dict.fromkeys(row_seeds + col_seeds))
    ws = ws_for_seeds(net, seeds, truncation_psi, class_idx=class_idx)
    index = {s: i for i, s in enumerate(seeds)}
    mixed = mix_ws(ws[[index[s] for s in row_seeds]], ws[[index[s] for s in col_seeds]], styles)
    everything = np.concatenate([ws, mixed.reshape(-1, *ws.shape[1:])])
    imgs = images_from_ws(net, everything, noise_mode, batch_size, desc="style-mix")
    own = dict(zip(seeds, imgs[: len(seeds)], strict=True))
    return own, imgs[len(seeds):].reshape(len(row_seeds), len(col_seeds), *imgs.shape[1:])


def mixing_grid(row_images: np.ndarray, col_images: np.ndarray, mixed: np.ndarray
                ) -> np.ndarray:
    """One [(R+1)*H, (C+1)*W, ch] image: column headers on top, row headers on the left."""
    rows, cols, h, w, ch = mixed.shape
    canvas = np.zeros((rows + 1, cols + 1, h, w, ch), np.uint8)
    canvas[0, 1:] = col_images
    canvas[1:, 0] = row_images
    canvas[1:, 1:] = mixed
    return canvas.transpose(0, 2, 1, 3, 4).reshape((rows + 1) * h, (cols + 1) * w, ch)


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_network_arguments(p)
    p.add_argument("--rows", required=True, help="row seeds, e.g. 85,100,75,458,1500")
    p.add_argument("--cols", required=True, help="column seeds, e.g. 55,821,1789,293")
    p.add_argument("--styles", default="0-6",
                   help="layers (w indices) taken from the column seed (default: 0-6, coarse)")
    p.add_argument("--trunc", type=float, default=1.0, help="truncation psi")
    add_class_argument(p)
    p.add_argument("--noise-mode", choices=stylegan2.NOISE_MODES, default="const")
    p.add_argument("--batch-size", type=int, default=16, help="images per compiled call")
    p.add_argument("--outdir", type=Path, required=True)


def run(args: argparse.Namespace) -> int:
    rows = parse_seeds(args.rows, "--rows")
    cols = parse_seeds(args.cols, "--cols")
    styles = parse_seeds(args.styles, "--styles")
    net = network_from_args(args)
    own, mixed = style_mix(net, rows, cols, styles, args.trunc, args.noise_mode,
                           class_from_args(args, net), args.batch_size)
    for seed, img in own.items():
        images.save_image(img, args.outdir / f"{seed}-{seed}.png")
    for r, row_seed in enumerate(rows):
        for c, col_seed in enumerate(cols):
            images.save_image(mixed[r, c], args.outdir / f"{row_seed}-{col_seed}.png")
    grid = mixing_grid(np.stack([own[s] for s in rows]), np.stack([own[s] for s in cols]),
                       mixed)
    path = images.save_image(grid, args.outdir / "grid.png")
    print(f"wrote {path} ({len(rows)} x {len(cols)}, styles {args.styles}) and the images")
    return 0
