"""`stylegan-jax video`: latent-walk videos as the official gen_video.py makes them.

A grid of cells (--grid WxH), each walking through --num-keyframes ws of its seeds in a
loop, --w-frames frames per keyframe. As officially, the keyframes are tiled 2 times on
each side and interpolated with scipy's interp1d (cubic: a not-a-knot cubic spline;
linear), so the walk loops smoothly. Frames are rendered in batches by one compiled
synthesis program and encoded to H.264 MP4 by imageio-ffmpeg.
"""

from __future__ import annotations

import argparse
import contextlib
import re
import warnings
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
from tqdm import tqdm

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

WRAPS = 2  # keyframe copies on each side of the walked period (the official value)
KINDS = ("cubic", "linear")


def _not_a_knot_second_derivatives(y: np.ndarray) -> np.ndarray:
    """Second derivatives [n, ...] of the not-a-knot cubic spline through y at x = 0..n-1
    (scipy's make_interp_spline default): the third derivative is continuous at x = 1 and
    x = n-2, and the first and second derivatives everywhere."""
    n = len(y)
    a = np.zeros((n, n))
    rhs = np.zeros_like(y, dtype=np.float64)
    a[0, :3] = a[-1, -3:] = (1.0, -2.0, 1.0)
    for i in range(1, n - 1):
        a[i, i - 1:i + 2] = (1.0, 4.0, 1.0)
        rhs[i] = 6.0 * (y[i - 1] - 2.0 * y[i] + y[i + 1])
    return np.linalg.solve(a, rhs)


def interpolation_weights(num_keyframes: int, t: np.ndarray, kind: str = "cubic"
                          ) -> np.ndarray:
    """[T, K] weights: the walk at times `t` (in keyframes, [0, K)) is weights @ keyframes.

    Equals interp1d(x, tile(keyframes), kind) over x = -K*WRAPS .. K*(WRAPS+1)-1, as the
    official gen_video.py builds it; interpolation is linear in the data, so the spline of
    the tiled identity gives the weights.
    """
    if kind not in KINDS:
        raise ValueError(f"interpolation kind must be one of {KINDS}, got {kind!r}")
    k = num_keyframes
    t = np.asarray(t, np.float64)
    if k < 1 or t.min() < 0 or t.max() >= k:
        raise ValueError(f"need num_keyframes >= 1 and times in [0, {k}), got {k}, "
                         f"[{t.min()}, {t.max()}]")
    n = k * (2 * WRAPS + 1)
    y = np.eye(k)[np.arange(n) % k]  # [n, K]: tiled knot j is keyframe j mod K
    s = t + k * WRAPS  # position among the tiled knots
    i = np.minimum(np.floor(s).astype(int), n - 2)
    u = (s - i)[:, None]
    out = (1 - u) * y[i] + u * y[i + 1]
    if kind == "cubic":
        m = _not_a_knot_second_derivatives(y)
        out += ((1 - u) ** 3 - (1 - u)) * m[i] / 6 + (u ** 3 - u) * m[i + 1] / 6
    return out


def parse_grid(text: str) -> tuple[int, int]:
    """'4x2' or '4,2' -> (width, height) in cells."""
    m = re.fullmatch(r"\s*(\d+)\s*[x,]\s*(\d+)\s*", text)
    if not m or int(m[1]) < 1 or int(m[2]) < 1:
        raise ValueError(f"--grid: {text!r} is not a grid like 4x2 (width x height, >= 1)")
    return int(m[1]), int(m[2])


def keyframe_seeds(seeds: list[int], grid: tuple[int, int], num_keyframes: int | None,
                   shuffle_seed: int | None = None) -> np.ndarray:
    """[H, W, K] seeds: cell (y, x) walks through seeds[((y*W + x)*K + k) % len(seeds)],
    shuffled by RandomState(shuffle_seed), as the official script assigns them."""
    cells = grid[0] * grid[1]
    if num_keyframes is None:
        if len(seeds) % cells:
            raise ValueError(f"--seeds: {len(seeds)} seeds do not divide into the "
                             f"{grid[0]}x{grid[1]} grid's {cells} cells; give "
                             "--num-keyframes or a multiple of W*H seeds")
        num_keyframes = len(seeds) // cells
    if num_keyframes < 1:
        raise ValueError(f"--num-keyframes must be >= 1, got {num_keyframes}")
    all_seeds = np.array([seeds[i % len(seeds)] for i in range(num_keyframes * cells)])
    if shuffle_seed is not None:
        np.random.RandomState(shuffle_seed).shuffle(all_seeds)
    return all_seeds.reshape(grid[1], grid[0], num_keyframes)


def walk_frames(net: Network, seeds: list[int], grid: tuple[int, int] = (1, 1),
                num_keyframes: int | None = None, w_frames: int = 120, kind: str = "cubic",
                truncation_psi: float = 1.0, noise_mode: str = "const",
                shuffle_seed: int | None = None, class_idx: Condition = None,
                batch_size: int = 16) -> Iterator[np.ndarray]:
    """The video's uint8 frames [H*h, W*w, ch], num_keyframes * w_frames of them, of class
    or label vector `class_idx` (generate.conditioning). Each
    compiled call renders the cells of ceil(batch_size / cells) frames (the last call
    padded, so one program renders all)."""
    if w_frames < 1:
        raise ValueError(f"--w-frames must be >= 1, got {w_frames}")
    cell_seeds = keyframe_seeds(seeds, grid, num_keyframes, shuffle_seed)
    gh, gw, k = cell_seeds.shape
    unique, inverse = np.unique(cell_seeds, return_inverse=True)
    ws = ws_for_seeds(net, unique.tolist(), truncation_psi, class_idx=class_idx)
    keyframes = ws[inverse.reshape(-1)].reshape(gh * gw, k, *ws.shape[1:])  # [cells, K, L, D]
    num_frames = k * w_frames
    per_call = max(1, -(-batch_size // (gh * gw)))
    weights = interpolation_weights(k, np.arange(num_frames) / w_frames, kind)
    weights = np.concatenate([weights, np.repeat(weights[-1:], -num_frames % per_call, 0)])

    def frames() -> Iterator[np.ndarray]:  # bad input fails above, before any file exists
        for start in tqdm(range(0, num_frames, per_call), desc="video", unit="batch"):
            w = np.einsum("tk,gkld->tgld", weights[start:start + per_call], keyframes)
            imgs = images_from_ws(net, w.reshape(-1, *ws.shape[1:]), noise_mode,
                                  batch_size=len(w) * gh * gw, seed=start)
            imgs = imgs.reshape(per_call, gh * gw, *imgs.shape[1:])
            for frame in imgs[: num_frames - start]:
                yield images.make_grid(frame, cols=gw)

    return frames()


def write_mp4(frames: Iterable[np.ndarray], output: str | Path, fps: float = 60,
              bitrate: str = "12M") -> int:
    """Encodes uint8 frames [H, W, 1, 3 or 4] as H.264 (yuv420p, as the official videos);
    returns the frame count. H.264 has no alpha: RGBA frames are composited over black
    (as the metrics see them), not stripped of it."""
    # Function-level: imageio (and its ffmpeg) loads only to encode.
    import imageio.v2 as imageio

    count = 0
    with warnings.catch_warnings():
        # imageio-ffmpeg starts ffmpeg by fork+exec; JAX's warning about forking a
        # multithreaded process concerns children that keep running Python, not an exec.
        warnings.filterwarnings("ignore", r"os\.fork\(\) was called", RuntimeWarning)
        writer = imageio.get_writer(output, mode="I", fps=fps, codec="libx264",
                                    bitrate=bitrate)
        with contextlib.closing(writer):
            for frame in frames:
                writer.append_data(_opaque(frame))
                count += 1
    return count


def _opaque(frame: np.ndarray) -> np.ndarray:
    """[H, W] for grayscale, RGB for colour; RGBA composited over black."""
    return frame[..., 0] if frame.shape[-1] == 1 else images.over_black(frame)


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_network_arguments(p)
    p.add_argument("--seeds", required=True, help="seeds, e.g. 0-31")
    p.add_argument("--shuffle-seed", type=int, default=None, help="shuffle the seeds' order")
    p.add_argument("--grid", default="1x1", help="cells, width x height, e.g. 4x2")
    p.add_argument("--num-keyframes", type=int, default=None,
                   help="keyframes per cell (default: seeds / cells; seeds are reused)")
    p.add_argument("--w-frames", type=int, default=120, help="frames per keyframe")
    p.add_argument("--kind", choices=KINDS, default="cubic", help="interpolation in W")
    p.add_argument("--trunc", type=float, default=1.0, help="truncation psi")
    add_class_argument(p)
    p.add_argument("--noise-mode", choices=stylegan2.NOISE_MODES, default="const")
    p.add_argument("--fps", type=float, default=60)
    p.add_argument("--bitrate", default="12M", help="H.264 bitrate (ffmpeg syntax)")
    p.add_argument("--batch-size", type=int, default=16, help="images per compiled call")
    p.add_argument("--output", type=Path, required=True, help="the .mp4 to write")


def run(args: argparse.Namespace) -> int:
    seeds = parse_seeds(args.seeds)
    grid = parse_grid(args.grid)
    if args.output.suffix.lower() != ".mp4":
        raise ValueError(f"--output: {args.output} is not an .mp4 file")
    net = network_from_args(args)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    frames = walk_frames(net, seeds, grid, args.num_keyframes, args.w_frames, args.kind,
                         args.trunc, args.noise_mode, args.shuffle_seed, class_from_args(args, net),
                         args.batch_size)
    n = write_mp4(frames, args.output, args.fps, args.bitrate)
    print(f"wrote {args.output} ({n} frames at {args.fps:g} fps)")
    return 0
