"""`stylegan-jax convert`: official pickles / state dicts <-> this project's network directories."""

from __future__ import annotations

import argparse
from pathlib import Path

from stylegan_jax.convert import official
from stylegan_jax.model_store import load_networks, save_networks


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("source", type=Path, help="--to jax: an official .pkl, or a directory from "
                   "--to official; --to official: a directory from --to jax")
    p.add_argument("dest", type=Path, help="a new directory (never overwritten)")
    p.add_argument("--to", choices=("jax", "official"), default="jax",
                   help="jax: write this project's format (default); official: write the "
                   "official state dicts (<name>.npz) and constructor kwargs")


def run(args: argparse.Namespace) -> int:
    src: Path = args.source
    if not src.exists():
        raise SystemExit(f"{src} does not exist")
    if args.to == "jax":
        nets = (official.networks_from_state_dicts(src) if src.is_dir()
                else official.networks_from_pickle(src))
        dest = save_networks(args.dest, nets, info={"source": str(src.absolute())})
    else:
        dest = official.export_official(load_networks(src), args.dest)
    print(f"wrote {dest}")
    return 0
