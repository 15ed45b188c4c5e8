"""Computes the official GAN metrics of a generator: FID, KID, precision/recall, IS, PPL,
and StyleGAN3's equivariance PSNRs (EQ-T, EQ-T_frac, EQ-R).

  stylegan-jax metrics --metrics fid50k_full,kid50k_full --network nets/ffhq --data ffhq/
  stylegan-jax metrics --metrics pr50k3_full,ppl2_wend --workdir runs/00001 --data ffhq.npz
  stylegan-jax metrics --metrics eqt50k_int,eqt50k_frac,eqr50k --network nets/sg3-t

Prints one JSON line per metric (NVIDIA's `metric-<name>.jsonl` format) and, with
--workdir or --run-dir, appends it to `metric-<name>.jsonl` there. Real-image
statistics are cached in --cache-dir. Feature-network weights: see --*-weights.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from stylegan_jax.data.real_images import training_images
from stylegan_jax.metrics import feature_stats, image_source, registry, weight_files
from stylegan_jax.metrics.detectors import Detectors
from stylegan_jax.metrics.runner import compute_metrics, report_metric
from stylegan_jax.store import runs
from stylegan_jax.store.load import generator_name, load_networks


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--metrics", default="fid50k_full",
                   help="comma-separated names: " + ", ".join(registry.OFFICIAL)
                   + " (or another count: fid10k_full, kid1k, pr5k3_full, is1k, eqt1k_int, "
                   "eqr1k, ppl_wend_1k)")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--network", type=Path, help="a network directory (stylegan-jax convert)")
    src.add_argument("--workdir", type=Path,
                     help="a training workdir: its newest exported network directory; results "
                     "are appended to its metric-<name>.jsonl")
    p.add_argument("--which", default=None, help="network in the directory (default G_ema, else G)")
    p.add_argument("--data", type=Path, default=None,
                   help="real images: a folder of PNG/JPEG (optional dataset.json labels) or an "
                   ".npz with 'images' (uint8) and optional 'labels'; not needed for PPL, "
                   "IS and equivariance (but for a conditional generator's labels); with "
                   "--workdir of a training run, default: the run's own data")
    p.add_argument("--run-dir", type=Path, default=None,
                   help="also append results to <run-dir>/metric-<name>.jsonl")
    p.add_argument("--cache-dir", type=Path, default=None,
                   help="real-image statistics cache "
                   f"(default ${feature_stats.CACHE_ENV} or {feature_stats.DEFAULT_CACHE})")
    p.add_argument("--no-cache", action="store_true", help="do not read or write the cache")
    for name, spec in weight_files.FILES.items():
        p.add_argument(f"--{name}-weights", dest=f"{name}_weights", type=Path, default=None,
                       help=f"{spec.url.rsplit('/', 1)[-1]} (default: ${spec.env}, or in "
                       f"${weight_files.DIR_ENV})")
    p.add_argument("--batch", type=int, default=64, help="images per step on this process")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--trunc", type=float, default=1.0, help="truncation psi (official: 1)")
    p.add_argument("--noise-mode", default="random", choices=("random", "const", "none"))
    p.add_argument("--no-progress", action="store_true")


def find_network_dir(workdir: Path) -> Path:
    """The workdir itself if it holds networks.json, else its newest exported network
    directory (`*/networks.json`, the last by name: network-snapshot-<kimg> sorts by time)."""
    if (workdir / "networks.json").is_file() or (workdir / "checkpoints").is_dir():
        return workdir  # load_networks reads a training workdir's newest checkpoint
    found = sorted(p.parent for p in workdir.glob("*/networks.json"))
    if not found:
        raise FileNotFoundError(f"{workdir}: no exported network directory (*/networks.json); "
                                "pass one with --network")
    return found[-1]


def run(args: argparse.Namespace) -> int:
    specs = registry.parse_metrics(args.metrics)
    net_dir = args.network if args.network is not None else find_network_dir(args.workdir)
    # A training run's checkpoint: evaluate a fixed step, on the run's data by default.
    found = runs.checkpoint_path(net_dir)
    if found is not None:
        run_root, (step, nets) = found[0], runs.networks_at(*found)
        net_dir = run_root / "checkpoints" / str(step)
    else:
        nets = load_networks(net_dir)
    G = nets[generator_name(nets, args.which, net_dir)]

    data = None
    needs_data = any(s.needs_real for s in specs) or G.module.c_dim
    if args.data is not None:
        data = image_source.open_images(args.data)
    elif needs_data and found is not None:
        data = training_images(runs.read_config(run_root))
    elif needs_data:
        raise ValueError("--data is needed for " + ", ".join(
            s.name for s in specs if s.needs_real) + " (and for a conditional generator's labels)")
    cache_dir = None
    if not args.no_cache:
        cache_dir = feature_stats.cache_dir(args.cache_dir)
    detectors = Detectors(weights={n: getattr(args, f"{n}_weights") for n in weight_files.FILES})
    results = compute_metrics(
        specs, G,
        None if data is None else (lambda: data.batches(args.batch)),
        cache_dir,
        dataset_key=None if data is None else data.key,
        data_identity=None if data is None else data.identity,
        num_real=None if data is None else data.count,
        label_fn=None if data is None else data.label_fn(G.module.c_dim),
        detectors=detectors, batch_size=args.batch, seed=args.seed,
        truncation_psi=args.trunc, noise_mode=args.noise_mode, progress=not args.no_progress,
    )
    run_dir = args.run_dir or args.workdir
    snapshot = str(net_dir if run_dir is None else os.path.relpath(net_dir, run_dir))
    for result in results.values():
        report_metric(result, run_dir, snapshot)
    return 0
