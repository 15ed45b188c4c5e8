"""`stylegan-jax edit`: one direction of a directions file (`stylegan-jax directions`)
applied at several strengths.

Writes grid.png (rows: the seeds, or the ws of --projected-w; columns: the strengths, e.g.
-3:3:7 = seven from -3 to 3; strength 1 moves w by one std of the generator's w along the
direction, on the direction's layers or --layers), or with --video edit.mp4, sweeping the
strengths there and back (each frame shows every row). The noise is the generator's own
(--noise-mode const): the same inputs give the same images. A strength starting with a
minus needs the = form: --strengths=-2:2:5.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from stylegan_jax import images
from stylegan_jax.generate import (
    add_class_argument,
    add_network_arguments,
    class_from_args,
    images_from_ws,
    load_projected_w,
    network_from_args,
    parse_seeds,
    ws_for_seeds,
)
from stylegan_jax.models import stylegan2
from stylegan_jax.models.registry import Network, family_of
from stylegan_jax.models.sampling import w_shape
from stylegan_jax.tools import latent_directions as ld
from stylegan_jax.tools.video import write_mp4

GRID_STRENGTHS = "-3:3:7"
VIDEO_STRENGTHS = "-3:3:61"


def edited_ws(ws: np.ndarray, direction: ld.Direction, strengths: np.ndarray) -> np.ndarray:
    """[N, L, D] ws -> [N, S, L, D]: each w moved by every strength along `direction`."""
    num_ws, w_dim = ws.shape[1:]
    offsets = np.stack([ld.edit_offset([direction], [(0, float(s))], num_ws, w_dim)
                        for s in strengths])
    return ws[:, None] + offsets[None]


def render_edits(net: Network, ws: np.ndarray, direction: ld.Direction, strengths: np.ndarray,
                 noise_mode: str = "const", batch_size: int = 16) -> np.ndarray:
    """uint8 [N, S, H, W, C]: row n, column s is ws[n] edited by strengths[s], all rendered by
    one compiled synthesis program, each image as if alone (StyleGAN3 normalises its styles
    over the batch otherwise)."""
    net = Network(family_of(net.module).each_image_alone(net.module), net.variables, net.lod)
    edited = edited_ws(ws, direction, strengths)
    imgs = images_from_ws(net, edited.reshape(-1, *ws.shape[1:]), noise_mode, batch_size,
                          desc="edit")
    return imgs.reshape(*edited.shape[:2], *imgs.shape[1:])


def sweep_frames(cells: np.ndarray) -> list[np.ndarray]:
    """[N, S, H, W, C] -> frames strength 0..S-1 and back (S-2..1, so that it loops), each
    frame the N rows side by side in a near-square grid."""
    s = cells.shape[1]
    order = list(range(s)) + list(range(s - 2, 0, -1))
    return [images.make_grid(cells[:, i]) for i in order]


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_network_arguments(p)
    p.add_argument("--directions", type=Path, required=True, metavar="FILE",
                   help="a .npz written by `stylegan-jax directions`")
    p.add_argument("--index", type=int, default=0, help="which direction (default: 0)")
    p.add_argument("--strengths", default=None, metavar="A:B:N",
                   help="N strengths evenly spaced from A to B, or a list like -2,0,2, in "
                   f"sigmas (default: {GRID_STRENGTHS}, with --video {VIDEO_STRENGTHS}); "
                   "write --strengths=-2:2:5 when it starts with a minus")
    p.add_argument("--layers", default=None, metavar="A-B",
                   help="ws indices to edit, inclusive (default: the direction's own)")
    p.add_argument("--seeds", default=None, help="row seeds, e.g. 0-3 (default: 0-3)")
    p.add_argument("--projected-w", type=Path, default=None, metavar="FILE",
                   help="rows from the ws of a projected_w.npz (key 'w') instead of seeds")
    p.add_argument("--trunc", "--psi", dest="psi", type=float, default=1.0,
                   help="truncation psi of the seeds' w (before the edit)")
    add_class_argument(p)
    p.add_argument("--noise-mode", choices=stylegan2.NOISE_MODES, default="const")
    p.add_argument("--video", action="store_true",
                   help="write edit.mp4 sweeping the strengths instead of grid.png")
    p.add_argument("--fps", type=float, default=30, help="with --video (default: 30)")
    p.add_argument("--batch-size", type=int, default=16, help="images per compiled call")
    p.add_argument("--outdir", type=Path, required=True)


def run(args: argparse.Namespace) -> int:
    strengths = ld.parse_strengths(args.strengths or (VIDEO_STRENGTHS if args.video
                                                      else GRID_STRENGTHS))
    seeds = None if args.projected_w is not None else parse_seeds(args.seeds or "0-3")
    if args.fps <= 0:
        raise ValueError(f"--fps must be > 0, got {args.fps}")
    net = network_from_args(args)
    num_ws, w_dim = w_shape(net.module)
    directions = ld.load_directions(args.directions, num_ws, w_dim)
    if not 0 <= args.index < len(directions):
        raise ValueError(f"--index {args.index}: {args.directions} has {len(directions)} "
                         f"directions (0-{len(directions) - 1})")
    direction = directions[args.index]
    if args.layers is not None:
        direction = ld.with_layers(direction, ld.parse_layers(args.layers, num_ws))
    if args.projected_w is not None:
        if args.seeds is not None:
            print("warning: --seeds is ignored with --projected-w")
        ws = load_projected_w(args.projected_w, (num_ws, w_dim))
    else:
        ws = ws_for_seeds(net, seeds, args.psi, class_idx=class_from_args(args, net))
    cells = render_edits(net, ws, direction, strengths, args.noise_mode, args.batch_size)
    what = (f"direction {args.index} ({direction.name}, {direction.method}, layers "
            f"{direction.layers[0]}-{direction.layers[1]}, sigma {direction.sigma:.4g})")
    args.outdir.mkdir(parents=True, exist_ok=True)
    if args.video:
        path = args.outdir / "edit.mp4"
        n = write_mp4(sweep_frames(cells), path, args.fps)
        print(f"wrote {path}: {what}, strengths {strengths[0]:g} to {strengths[-1]:g} "
              f"({n} frames)")
    else:
        path = images.save_image(images.make_grid(cells.reshape(-1, *cells.shape[2:]),
                                                  cols=len(strengths)),
                                 args.outdir / "grid.png")
        print(f"wrote {path}: {what}; rows {len(ws)}, strengths "
              + ", ".join(f"{s:g}" for s in strengths))
    return 0
