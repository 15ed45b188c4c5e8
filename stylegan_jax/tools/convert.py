"""`stylegan-jax convert`: official pickles / state dicts <-> this project's network directories.

Reads NVIDIA's PyTorch pickles (StyleGAN2 networks of stylegan2-ada-pytorch and of the
stylegan3 code base) and TensorFlow pickles (ProGAN `karras2018iclr-*.pkl`, StyleGAN
`karras2019stylegan-*.pkl`, StyleGAN2 `stylegan2-*-config-{a,e,f}.pkl`, StyleGAN2-ADA TF);
the format is told by the first class the file names, read without building anything.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from stylegan_jax.convert import pickles, tf_progressive, torch_stylegan2
from stylegan_jax.convert.pickle_reader import UnsafePickleError, is_tf_pickle
from stylegan_jax.models import stylegan2
from stylegan_jax.store.load import class_names, label_kind, load_networks
from stylegan_jax.store.networks import save_networks
from stylegan_jax.store.runs import checkpoint_path


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("source", type=Path, help="--to jax: an official .pkl (PyTorch or "
                   "TensorFlow), a directory from --to official, or a training run "
                   "(its newest checkpoint, or RUN/checkpoints/N); --to official: a "
                   "directory from --to jax or a training run")
    p.add_argument("dest", type=Path, help="a new directory (never overwritten)")
    p.add_argument("--to", choices=("jax", "official"), default="jax",
                   help="jax: write this project's format (default); official: write the "
                   "official state dicts (<name>.npz) and constructor kwargs (StyleGAN2 only)")
    p.add_argument("--only", default=None, metavar="NAMES",
                   help="keep only these networks, e.g. G_ema (default: all)")


def run(args: argparse.Namespace) -> int:
    try:
        return _run(args)
    except UnsafePickleError as e:  # reported like every other bad input (exit status 2)
        raise ValueError(str(e)) from None


def _run(args: argparse.Namespace) -> int:
    src: Path = args.source
    if args.to == "jax":
        if not src.exists():
            raise SystemExit(f"{src} does not exist")
        info = {"source": str(src.absolute())}
        if checkpoint_path(src) is not None:  # a training run: its networks as they are
            nets = load_networks(src)
            names, kind = class_names(src), label_kind(src)
            if names:
                info["class_names"] = list(names)
            if kind:  # a network trained on label vectors keeps refusing --class
                info["label_kind"] = kind
        elif src.is_dir():
            nets = torch_stylegan2.networks_from_state_dicts(src)
        elif is_tf_pickle(src):
            nets = pickles.networks_from_tf_pickle(src)
            info["official_names"] = {ours: theirs for theirs, ours in tf_progressive.PICKLE_NAMES}
        else:
            nets = torch_stylegan2.networks_from_pickle(src)
        dest = save_networks(args.dest, _only(nets, args.only, src), info=info)
    else:
        nets = _only(load_networks(src), args.only, src)
        others = sorted(name for name, net in nets.items() if not isinstance(
            net.module, stylegan2.Generator | stylegan2.Discriminator))
        if others:
            raise ValueError(f"{src}: --to official writes StyleGAN2 networks only; "
                             f"{others} are not")
        dest = torch_stylegan2.export_official(nets, args.dest)
    print(f"wrote {dest}")
    return 0


def _only(nets: dict, names: str | None, src: Path) -> dict:
    if names is None:
        return nets
    wanted = [n.strip() for n in names.split(",") if n.strip()]
    missing = [n for n in wanted if n not in nets]
    if missing or not wanted:
        raise ValueError(f"--only {names!r}: {src} has the networks {sorted(nets)}")
    return {n: nets[n] for n in wanted}
