"""`stylegan-jax`: one entry point, one module per subcommand (each has add_arguments/run)."""

from __future__ import annotations

import argparse
import importlib
import sys

from stylegan_jax import compilation_cache

# name -> (module, help). Modules are imported only when their parser is built, and
# none imports tensorflow at module level (the GPU machines have none).
SUBCOMMANDS = {
    "train": ("stylegan_jax.train.command", "train a config (default: the quickstart)"),
    "convert": ("stylegan_jax.tools.convert", "convert official networks to/from this project"),
    "generate": ("stylegan_jax.generate", "generate images from a network directory"),
    "serve": ("stylegan_jax.serve.command", "serve a web page and an image API for a generator"),
    "export": ("stylegan_jax.export.command",
               "export a generator as a portable artifact (StableHLO, SavedModel, TFLite, ONNX)"),
    "style-mix": ("stylegan_jax.tools.style_mix", "the official style-mixing grid (rows x cols)"),
    "video": ("stylegan_jax.tools.video", "latent-walk MP4 videos (official gen_video.py)"),
    "project": ("stylegan_jax.tools.project", "find the w of an image (official projector.py)"),
    "attribute": ("stylegan_jax.tools.attribute",
                  "was an image made by this generator? distance after projection, verdict"),
    "directions": ("stylegan_jax.tools.directions",
                   "editing directions in W: SeFa, GANSpace or from labelled images"),
    "edit": ("stylegan_jax.tools.edit", "move faces along a direction: a grid or an MP4"),
    "dataset": ("stylegan_jax.data.dataset_tool", "convert images / a zip / TFDS into a dataset"),
    "metrics": ("stylegan_jax.metrics.command", "compute FID, KID, precision/recall, IS, PPL"),
    "bench": ("stylegan_jax.benchmarks.train", "benchmark the training step of a config"),
    "bench-networks": ("stylegan_jax.benchmarks.networks",
                       "benchmark generator/discriminator forward throughput"),
    "bench-metrics": ("stylegan_jax.metrics.benchmark",
                      "throughput of the metrics' feature networks"),
    "bench-data": ("stylegan_jax.data.benchmark", "benchmark the input pipeline (img/s)"),
    "bench-augment": ("stylegan_jax.benchmarks.augment",
                      "throughput of the ADA augmentation pipe (forward, forward+backward)"),
    "bench-filtered-lrelu": ("stylegan_jax.benchmarks.filtered_lrelu",
                             "StyleGAN3's filtered leaky ReLU per (up, down, filter) case"),
    "soak": ("stylegan_jax.soak", "train through random SIGKILLs/SIGTERMs; check every resume"),
    "bench-export": ("stylegan_jax.benchmarks.export",
                     "img/s, latency, size and cold start of each exported format"),
    "bench-serve": ("stylegan_jax.benchmarks.serve",
                    "load benchmark of serve: concurrent clients, latency, ratio to the generator"),
    "parity": ("stylegan_jax.parity.command",
               "train NVIDIA's StyleGAN2-ADA and this project side by side and compare"),
    "report": ("stylegan_jax.tools.run_report",
               "a training run as one picture: losses, p, metrics, speed, rollbacks, grid"),
}
# Subcommands that compile JAX programs: they use the persistent compilation cache.
COMPILING = ("train", "generate", "serve", "export", "metrics", "bench", "bench-networks",
             "bench-metrics", "bench-augment", "style-mix", "video", "project", "bench-serve",
             "bench-filtered-lrelu", "parity", "bench-export", "attribute", "directions",
             "edit")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="stylegan-jax", description=__doc__)
    parser.add_argument("--compilation-cache", default=None, metavar="DIR|off",
                        help="persistent compilation cache of the compiling commands "
                        "(default: $SGJ_COMPILATION_CACHE, else ~/.cache/stylegan_jax/jax)")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (module_name, help_text) in SUBCOMMANDS.items():
        module = importlib.import_module(module_name)
        p = sub.add_parser(name, help=help_text, description=module.__doc__)
        module.add_arguments(p)
        p.set_defaults(run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and args.command not in ("train", "bench", "parity"):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    bad = [e for e in extra if not e.startswith("--config.")]
    if bad:
        parser.error(f"unrecognized arguments: {' '.join(bad)}")
    args.overrides = extra
    try:
        if args.command in COMPILING:
            compilation_cache.enable(args.compilation_cache)
        return args.run(args)
    except (ValueError, FileExistsError, FileNotFoundError) as e:
        print(f"stylegan-jax {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
