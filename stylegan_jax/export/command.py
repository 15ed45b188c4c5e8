"""`stylegan-jax export`: a generator as a portable artifact that runs without this package.

  stylegan-jax export --network runs/x --format stablehlo --out exported/x
  python -c "import jax; jax.export.deserialize(open('exported/x/generator.stablehlo','rb')
             .read()).call(z, psi)"

Formats: stablehlo (jax.export, any batch, every platform), savedmodel (jax2tf, any
batch, a serving_default signature for TF Serving), tflite and tflite-f16 (LiteRT, float32
or float16 weights) and onnx (onnxruntime); the last three need
`pip install 'stylegan-jax[export]'`. Every artifact is a directory with export.json
(calling convention, shapes, dtypes, versions, sha256s).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from stylegan_jax.export import artifact, formats, program
from stylegan_jax.generate import (
    add_network_arguments,
    class_names_from_args,
    label_kind_from_args,
    named_network_from_args,
)
from stylegan_jax.nn.layers import NOISE_MODES


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_network_arguments(p)
    p.add_argument("--format", required=True, help=f"one of {', '.join(formats.FORMATS)}")
    p.add_argument("--out", type=Path, required=True, help="the artifact's directory")
    p.add_argument("--input", choices=program.INPUTS, default="z",
                   help="z: latents (+ labels, ψ); w: ws into the synthesis network")
    p.add_argument("--noise-mode", choices=NOISE_MODES, default="const",
                   help="random adds a noise_seed input")
    p.add_argument("--force", action="store_true", help="replace an existing --out")


def run(args: argparse.Namespace) -> int:
    write = formats.writer(args.format)
    if args.out.exists() and not args.force:  # before the network is read
        raise FileExistsError(f"--out {args.out} already exists; pass --force to replace it")
    net, name = named_network_from_args(args)
    prog = program.build(net, args.input, args.noise_mode)
    # What c means travels with the artifact: served or called, it is read as trained.
    kind, names = label_kind_from_args(args, net), class_names_from_args(args, net)
    if kind:
        prog.details["label_kind"] = kind
    if names:
        prog.details["class_names"] = list(names)
    source = str(args.network or getattr(args, "workdir", None) or name)
    t0 = time.perf_counter()
    manifest = artifact.write(args.out, args.format, prog, write, source, args.force)
    size = sum(f.stat().st_size for f in args.out.rglob("*") if f.is_file())
    shapes = ", ".join(f"{t['name']} {t['shape']} {t['dtype']}" for t in manifest["inputs"])
    size_text = (f"{manifest['width']}x{manifest['height']}" if "width" in manifest
                 else f"{manifest['resolution']}²")  # manifests before rectangles
    print(f"{args.out}: {args.format}, {manifest['family']} {size_text} "
          f"({shapes}) -> images {manifest['output']['shape']} uint8; "
          f"{size / 2**20:.1f} MiB in {time.perf_counter() - t0:.1f} s")
    return 0
