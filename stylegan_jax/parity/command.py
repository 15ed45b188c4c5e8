"""`stylegan-jax parity`: train NVIDIA's StyleGAN2-ADA and this project side by side on the
same data and settings, evaluate both with the same code at the same kimg, and compare.

  stylegan-jax parity --official ~/stylegan2-ada-pytorch --official-python ~/torch/bin/python \\
      --config quickstart --seeds 0,1,2,3 --kimg 20 --every 2 --out parity/quickstart

The official side runs NVIDIA's own modules from the checkout named by --official, under a
Python with torch (`official_driver.py`: on a CPU it composes them into the official
schedule, as their training_loop only runs on CUDA). Every snapshot of both sides is
evaluated here with the same metric code, real images and evaluation seed (SWD always;
FID/KID/PR where the feature-network weights are present). Writes evals.jsonl (one line per
evaluation), parity.json, parity.md and parity.png in --out; rerunning the same command
continues where it stopped. --from-official K also starts this project from each official
snapshot at K kimg (`train --resume`) and continues it, as a third curve.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
from pathlib import Path

from stylegan_jax.atomic import replace_file
from stylegan_jax.data import sources
from stylegan_jax.data.official_folder import write_official_folder
from stylegan_jax.data.real_images import training_images
from stylegan_jax.metrics import registry
from stylegan_jax.metrics.runner import compute_metrics
from stylegan_jax.parity import compare, report, runs
from stylegan_jax.parity.spec import check_supported, official_spec
from stylegan_jax.store.load import load_generator
from stylegan_jax.train import config as config_lib


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--official", type=Path, required=True,
                   help="a checkout of NVlabs/stylegan2-ada-pytorch (its modules are imported, "
                   "never copied)")
    p.add_argument("--official-python", default="python3",
                   help="a Python with torch (and numpy, Pillow) for the official side")
    p.add_argument("--config", default="quickstart",
                   help="this project's config (and --config.a.b=value overrides); the "
                   "official side gets the same settings")
    p.add_argument("--out", type=Path, required=True, help="directory of the comparison")
    p.add_argument("--seeds", default="0,1,2,3", help="training seeds, each run on both sides")
    p.add_argument("--kimg", type=float, default=20.0, help="training length of every run")
    p.add_argument("--every", type=float, default=2.0, help="evaluate every N kimg")
    p.add_argument("--metrics", default="swd1k",
                   help="comma-separated metrics; the first decides the verdict (SWD needs no "
                   "downloaded network)")
    p.add_argument("--eval-seed", type=int, default=0,
                   help="seed of the evaluation's latents and draws (the same for every point)")
    p.add_argument("--eval-batch", type=int, default=64)
    p.add_argument("--from-official", type=float, default=None, metavar="K",
                   help="also start this project from the official snapshot at K kimg")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1,
                   help="torch threads of the official side")
    p.add_argument("--skip-kimg", type=float, default=4.0,
                   help="the band rule applies after this many kimg")


def _seeds(text: str) -> list[int]:
    try:
        seeds = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise ValueError(f"--seeds {text!r}: expected comma-separated integers") from None
    if not seeds or len(set(seeds)) != len(seeds):
        raise ValueError(f"--seeds {text!r}: expected distinct integers")
    return seeds


def _settings(args, overrides: list[str]) -> dict:
    """What defines the comparison; a rerun into the same --out must match it."""
    return dict(config=args.config, overrides=overrides, kimg=args.kimg, every=args.every,
                metrics=args.metrics, eval_seed=args.eval_seed,
                official=str(args.official.resolve()))


def _check_settings(out: Path, settings: dict) -> None:
    path = out / "settings.json"
    if path.is_file():
        before = json.loads(path.read_text())
        if before != settings:
            changed = sorted(k for k in settings if before.get(k) != settings[k])
            raise ValueError(f"{out}: a parity run with other settings ({', '.join(changed)}) "
                             "is there; choose a new --out")
    else:
        replace_file(path, json.dumps(settings, indent=1))


def _evaluated(path: Path) -> dict[tuple, dict]:
    """The evaluations already in evals.jsonl; a last line cut short by a kill is dropped."""
    done = {}
    if not path.is_file():
        return done
    lines = [line for line in path.read_text().splitlines() if line.strip()]
    for i, line in enumerate(lines):
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            if i != len(lines) - 1:
                raise ValueError(f"{path}: line {i + 1} is not JSON; the file was edited or "
                                 "damaged (delete the line to evaluate that snapshot again)"
                                 ) from None
            replace_file(path, "".join(f"{kept}\n" for kept in lines[:-1]))
            break
        done[(rec["side"], rec["seed"], rec["kimg"])] = rec
    return done


class _Evaluation:
    """Evaluates snapshots with one metric set, one real-image source and one seed."""

    def __init__(self, config, names: str, seed: int, batch: int, path: Path, say):
        self.specs = registry.parse_metrics(names)
        self.real = training_images(config)
        # Both sides train conditionally on the data's classes when the config uses labels.
        self.c_dim = self.real.num_classes if config.data.use_labels else 0
        self.seed, self.batch, self.path, self.say = seed, batch, path, say
        self.done = _evaluated(path)
        self.swd_reals: dict = {}  # the same real descriptors for every snapshot

    def __call__(self, snap: runs.Snapshot) -> None:
        key = (snap.side, snap.seed, snap.kimg)
        if key in self.done:
            return
        G = load_generator(snap.path)  # G_ema of an official pickle or a run's checkpoint
        results = compute_metrics(
            self.specs, G, lambda: self.real.batches(self.batch), None,
            dataset_key=self.real.key, data_identity=self.real.identity,
            swd_reals=self.swd_reals,
            num_real=self.real.count,
            label_fn=self.real.label_fn(self.c_dim), batch_size=self.batch, seed=self.seed,
            progress=False)
        values = {k: v for r in results.values() for k, v in r.results.items()}
        rec = dict(side=snap.side, seed=snap.seed, kimg=snap.kimg, snapshot=str(snap.path),
                   results=values,
                   provenance={name: r.provenance for name, r in results.items()})
        with open(self.path, "a") as f:
            f.write(json.dumps(rec) + "\n")
        self.done[key] = rec
        first = self.specs[0].name
        self.say(f"  {snap.side:>18} seed {snap.seed} kimg {snap.kimg:7.3f}: "
                 f"{first} {values[first]:.4f}")


def run(args: argparse.Namespace) -> int:
    overrides = list(getattr(args, "overrides", []))
    config = config_lib.load_config(args.config, overrides)
    check_supported(config)
    seeds = _seeds(args.seeds)
    if args.every <= 0 or args.kimg < args.every:
        raise ValueError(f"--every {args.every} / --kimg {args.kimg}: expected 0 < every <= kimg")
    batch = int(config.train.batch_size)
    points = [round(args.every * i, 6) for i in range(1, int(args.kimg / args.every + 1e-9) + 1)]
    for k in points + [args.kimg] + ([args.from_official] if args.from_official else []):
        if round(k * 1000) % batch:
            raise ValueError(f"{k:g} kimg is not a whole number of batches of {batch}: choose "
                             "--kimg, --every and --from-official as multiples of the batch")
    if args.from_official is not None and args.from_official not in points:
        raise ValueError(f"--from-official {args.from_official:g}: expected one of the "
                         f"evaluation points {points}")
    if not (args.official / "training" / "training_loop.py").is_file():
        raise FileNotFoundError(f"--official {args.official}: not a checkout of "
                                "stylegan2-ada-pytorch (no training/training_loop.py)")
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    _check_settings(out, _settings(args, overrides))
    say = print
    source = sources.source_from_config(config.data)
    data_dir = out / "data"
    if not data_dir.is_dir():
        info = write_official_folder(source, data_dir, config.data.resolution)
        say(f"wrote the training images for the official side: {info['count']} images in "
            f"{data_dir}")
    evaluation = _Evaluation(config, args.metrics, args.eval_seed, args.eval_batch,
                             out / "evals.jsonl", say)
    snapshot_kimg = sorted(set(points) | {float(args.kimg)})
    for seed in seeds:
        spec = official_spec(config, evaluation.c_dim, seed, snapshot_kimg)
        spec["total_kimg"] = float(args.kimg)
        official_dir = runs.official_run(out, seed, spec, data_dir, args.official,
                                         args.official_python, args.threads, say)
        for snap in runs.official_snapshots(official_dir, seed):
            evaluation(snap)
        ours = runs.ours_run(out, "ours", seed, args.config, overrides, args.kimg, args.every,
                             say)
        for snap in runs.our_snapshots(ours, "ours", seed):
            evaluation(snap)
        if args.from_official is not None:
            k = args.from_official
            start = next(s.path for s in runs.official_snapshots(official_dir, seed)
                         if abs(s.kimg - k) < 1e-9)
            cross = runs.ours_run(out, "ours_from_official", seed, args.config, overrides,
                                  args.kimg - k, args.every, say, resume=start)
            for snap in runs.our_snapshots(cross, "ours_from_official", seed, offset_kimg=k):
                evaluation(snap)
        _write_report(out, args, overrides, evaluation)
    verdict = _write_report(out, args, overrides, evaluation)
    say(f"{compare.outcome(verdict)}: see {out / 'parity.md'}")
    return 0 if verdict["pass"] else 1


def _write_report(out: Path, args, overrides: list[str], evaluation: _Evaluation) -> dict:
    metric = evaluation.specs[0].name
    curves: dict = {}
    for rec in evaluation.done.values():
        curves.setdefault(rec["side"], {}).setdefault(rec["seed"], {})[rec["kimg"]] = (
            rec["results"][metric])
    verdict = compare.compare(curves, skip_kimg=args.skip_kimg)
    command = "stylegan-jax parity " + " ".join(shlex.quote(a) for a in [
        "--config", args.config, *overrides, "--seeds", args.seeds, "--kimg", f"{args.kimg:g}",
        "--every", f"{args.every:g}", "--metrics", args.metrics]
        + (["--from-official", f"{args.from_official:g}"] if args.from_official else []))
    cross = None
    if "ours_from_official" in curves:
        cross = compare.compare(curves, candidate="ours_from_official", skip_kimg=args.skip_kimg)
    replace_file(out / "parity.json", json.dumps(dict(
        command=command, metric=metric, curves={s: {str(seed): {str(k): v for k, v in c.items()}
                                                     for seed, c in per.items()}
                                                 for s, per in curves.items()},
        verdict=verdict, from_official=cross), indent=1))
    text = "# Parity with NVIDIA's StyleGAN2-ADA\n\n" + report.markdown(verdict, metric, command)
    if cross is not None:
        text += ("\n## This project started from the official snapshot at "
                 f"{args.from_official:g} kimg\n\n"
                 + report.markdown(cross, metric, command, candidate="ours_from_official"))
    replace_file(out / "parity.md", text)
    if curves:
        report.plot(curves, metric, out / "parity.png",
                    f"{args.config}: {metric} over training, mean ± std over seeds")
    return verdict
