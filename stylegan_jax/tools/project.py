"""Finds the w of a target image, as NVIDIA's stylegan2-ada-pytorch `projector.py` does.

Writes target.png (the target cropped and resized to the generator), proj.png (the
projection rendered with the generator's own noise), projected_w.npz (key `w`,
[1, num_ws, w_dim] float32: `generate --projected-w` renders it) and, with
--save-video, proj.mp4 (target | projection after each step, 10 fps).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from stylegan_jax import images
from stylegan_jax.generate import add_network_arguments, images_from_ws, network_from_args
from stylegan_jax.metrics import lpips, weight_files
from stylegan_jax.models.registry import Network, image_shape
from stylegan_jax.shapes import ImageShape
from stylegan_jax.tools import projection

VIDEO_FPS = 10  # official: imageio writer, fps=10, libx264, 16 Mbit/s
VIDEO_BITRATE = "16M"


def load_target(path: str | Path, size: int | ImageShape, channels: int) -> np.ndarray:
    """uint8 [H, W, channels] for a generator of `size` (an int: size x size): the largest
    centred window of the image with the generator's aspect ratio (a square's: the largest
    centred square, official), resized with PIL's Lanczos filter (smaller ones upscaled)."""
    return projection.load_image(path, size, channels, "--target")


def load_lpips_weights(vgg16: str | Path | None = None, lpips_file: str | Path | None = None):
    """The LPIPS variables from the weight files the metrics use (flag, env or weights dir)."""
    return lpips.load_lpips(weight_files.resolve("vgg16", vgg16),
                            weight_files.resolve("lpips", lpips_file))


def broadcast_ws(w: np.ndarray, num_ws: int) -> np.ndarray:
    """[N, w_dim] -> [N, num_ws, w_dim]: one w for every layer."""
    return np.repeat(np.asarray(w, np.float32)[:, None, :], num_ws, axis=1)


def save_video(path: Path, target: np.ndarray, frames: np.ndarray) -> Path:
    """target | frame side by side, one video frame per step (grayscale shown as RGB)."""
    # Function-level: imageio (and its ffmpeg) only for the optional video.
    import imageio

    left = np.repeat(target, 3, -1) if target.shape[-1] == 1 else target
    with imageio.get_writer(path, mode="I", fps=VIDEO_FPS, codec="libx264",
                            bitrate=VIDEO_BITRATE) as video:
        for frame in frames:
            right = np.repeat(frame, 3, -1) if frame.shape[-1] == 1 else frame
            video.append_data(np.concatenate([left, right], axis=1))
    return path


def write_outputs(net: Network, target: np.ndarray, w_steps: np.ndarray, outdir: Path,
                  video: bool = False) -> dict[str, Path]:
    """target.png, proj.png, projected_w.npz (and proj.mp4) as the official script names them."""
    G = net.module
    outdir.mkdir(parents=True, exist_ok=True)
    projected = broadcast_ws(w_steps[-1:], G.num_ws)
    out = {
        "target": images.save_image(target, outdir / "target.png"),
        "proj": images.save_image(images_from_ws(net, projected)[0], outdir / "proj.png"),
        "w": outdir / "projected_w.npz",
    }
    np.savez(out["w"], w=projected)
    if video:
        frames = images_from_ws(net, broadcast_ws(w_steps, G.num_ws), desc="video")
        out["video"] = save_video(outdir / "proj.mp4", target, frames)
    return out


def _bool(text: str) -> bool:
    value = text.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_network_arguments(p)
    p.add_argument("--target", type=Path, required=True, metavar="FILE",
                   help="image to project (any size: centre-cropped to the generator's aspect "
                   "ratio, resized with Lanczos)")
    p.add_argument("--num-steps", type=int, default=1000,
                   help="optimisation steps (default: 1000, official)")
    p.add_argument("--seed", type=int, default=303,
                   help="noise initialisation and w noise (default: 303, official)")
    p.add_argument("--save-video", type=_bool, nargs="?", const=True, default=False,
                   metavar="BOOL", help="also write proj.mp4, the progress per step "
                   "(default: false; the official script's default is true)")
    p.add_argument("--outdir", type=Path, required=True)
    p.add_argument("--vgg16-weights", default=None, help="torchvision vgg16-*.pth (default: "
                   f"${weight_files.FILES['vgg16'].env}, else the metrics weights directory)")
    p.add_argument("--lpips-weights", default=None, help="LPIPS v0.1 vgg.pth (default: "
                   f"${weight_files.FILES['lpips'].env}, else the metrics weights directory)")


def run(args: argparse.Namespace) -> int:
    projection.check_steps(args.num_steps)
    net = network_from_args(args)
    projection.check_generator(net.module)
    G = net.module
    target = load_target(args.target, image_shape(G), G.img_channels)
    lpips_vars = load_lpips_weights(args.vgg16_weights, args.lpips_weights)
    start = time.perf_counter()
    w_steps = projection.project(G, net.variables, lpips_vars, target, args.num_steps,
                                 args.seed)
    print(f"Elapsed: {time.perf_counter() - start:.1f} s ({args.num_steps} steps)")
    out = write_outputs(net, target, w_steps, args.outdir, args.save_video)
    print("wrote " + ", ".join(str(p) for p in out.values()))
    return 0
