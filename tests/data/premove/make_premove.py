"""Writes the pre-move artifacts of tests/data/premove/ (run against the PRE-MOVE code).

The package layout changed after commit ff22e7e (model_store.py, train/checkpoint.py and
train/export.py moved to store/, convert/official.py renamed, ...). This script must run
against a checkout of that commit, whose `stylegan_jax` (and its tests/ helpers) it imports:

    git worktree add --detach /tmp/premove ff22e7e
    python -m venv /tmp/premove-venv && /tmp/premove-venv/bin/pip install -e /tmp/premove
    cd /tmp/premove && PYTHONPATH=/tmp/premove /tmp/premove-venv/bin/python \
        /path/to/tests/data/premove/make_premove.py OUT

OUT must not exist. It gets: run_stylegan2/ and run_progan/ (tiny training workdirs:
config.json + Orbax checkpoints/), networks_stylegan2/ (`stylegan-jax convert` of
run_stylegan2, G_ema only), official_G_ema.pkl (an official-format StyleGAN2-ADA PyTorch
pickle, written by tests/official_pickle.py from tests/data/official/...16_orig_orig_cond.npz),
converted_pickle/ (`stylegan-jax convert` of that pickle) and expected.npz (the images the
pre-move code generates from each, see README.md). The environment is the one
tests/conftest.py sets (8 fake CPU devices, XLA at LLVM level 0), so that the tests
reproduce the numbers.
"""

import os
import sys

os.environ.setdefault("XLA_FLAGS", "")
if "xla_force_host_platform_device_count" not in os.environ["XLA_FLAGS"]:
    os.environ["XLA_FLAGS"] += " --xla_force_host_platform_device_count=8"
if "xla_backend_optimization_level" not in os.environ["XLA_FLAGS"]:
    os.environ["XLA_FLAGS"] += " --xla_backend_optimization_level=0"
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
os.environ.setdefault("SGJ_COMPILATION_CACHE", "off")

import hashlib  # noqa: E402
import json  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

import stylegan_jax  # noqa: E402

REPO = Path(stylegan_jax.__file__).resolve().parents[1]
if not (REPO / "stylegan_jax" / "model_store.py").is_file():
    sys.exit(f"{REPO} is not the pre-move layout (no stylegan_jax/model_store.py)")
sys.path.insert(0, str(REPO / "tests"))  # the pre-move test helpers

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import official_pickle as op  # noqa: E402
from official_fixtures import DATA, load, official_init_kwargs, subdict  # noqa: E402

from stylegan_jax import cli, generate, images  # noqa: E402
from stylegan_jax.generate import (  # noqa: E402
    generate_images,
    labels_for,
    latents_for_seeds,
    load_generator,
)
from stylegan_jax.train.export import networks_at  # noqa: E402

SEEDS = [0, 1]
PICKLE_SOURCE = DATA / "official" / "stylegan2_ada_16_orig_orig_cond.npz"
PICKLE_CLASS = 0  # that network is conditional (c_dim 3): images of class 0

# tests/train_fixtures.py's tiny_config, as overrides of `--config quickstart`:
# 16x16 bundled faces, channel_max 8, 2 images per fake device; 4 iterations, one
# checkpoint (64 images; only the newest is kept, for size).
STYLEGAN2_TRAIN = [
    "train", "--config", "quickstart", "--stop-at-step", "4",
    "--config.data.resolution=16", "--config.model.z_dim=16", "--config.model.w_dim=16",
    "--config.model.channel_base=128", "--config.model.channel_max=8",
    "--config.model.mbstd_group_size=2", "--config.train.batch_size=16",
    "--config.train.g_reg_interval=2", "--config.train.d_reg_interval=2",
    "--config.train.total_kimg=1.0", "--config.log.tick_kimg=0.032",
    "--config.log.snapshot_kimg=1.0", "--config.log.checkpoint_kimg=0.064",
    "--config.log.keep_last=1", "--config.log.grid_seeds=4",
    "--config.log.tensorboard=False",
]
# tests/progressive_fixtures.py's tiny_config("progan"), as overrides of `--config
# progan_quick`: 4x4 -> 8x8 -> 16x16, 16 images per iteration; 4x4 (lod 2) for images
# [0, 128), 8x8 fading in from 128. 10 iterations, one checkpoint at 160 images, mid-fade
# (lod 1.5): a network left between two levels of detail.
PROGAN_TRAIN = [
    "train", "--config", "progan_quick", "--stop-at-step", "10",
    "--config.data.resolution=16", "--config.model.fmap_base=64",
    "--config.model.fmap_max=16", "--config.model.latent_size=16",
    "--config.model.mbstd_group_size=2", "--config.train.batch_size=16",
    "--config.train.minibatch_dict=()", "--config.train.lod_initial_resolution=4",
    "--config.train.lod_training_kimg=0.064", "--config.train.lod_transition_kimg=0.128",
    "--config.train.total_kimg=1.0", "--config.log.tick_kimg=0.032",
    "--config.log.snapshot_kimg=1.0", "--config.log.checkpoint_kimg=0.16",
    "--config.log.keep_last=1", "--config.log.grid_seeds=4",
    "--config.log.tensorboard=False",
]


def run_cli(argv: list[str]) -> None:
    print("stylegan-jax " + " ".join(argv), flush=True)
    rc = cli.main(argv)
    if rc != 0:
        sys.exit(f"stylegan-jax {argv[0]} exited {rc}")


def prune_workdir(workdir: Path) -> None:
    """Keeps config.json and checkpoints/ (grids, stats and logs are not the point)."""
    for p in workdir.iterdir():
        if p.name not in ("config.json", "checkpoints"):
            shutil.rmtree(p) if p.is_dir() else p.unlink()


def float_images(net, class_idx: int | None) -> np.ndarray:
    """generate_images' float32 NHWC images in [-1, 1] (before to_uint8): one batch, the
    key of the first seed, the network's own lod, no truncation, noise 'const'."""
    G = net.module
    z = latents_for_seeds(SEEDS, G.z_dim)
    c = labels_for(class_idx, G.c_dim, len(SEEDS))
    img = generate._synthesize(G, net.variables, jnp.asarray(z), jnp.asarray(c),
                               jax.random.PRNGKey(SEEDS[0]), jnp.float32(net.lod),
                               psi=1.0, cutoff=None, noise_mode="const")
    return np.asarray(img, np.float32)


def write_pickle(path: Path) -> None:
    """The official-format pickle test_convert.py builds, with G_ema only (size)."""
    meta, arrays = load(PICKLE_SOURCE)
    g_init, _ = official_init_kwargs(meta)
    G = op.records_from_state_dict("Generator", g_init, subdict(arrays, "G/"))
    op.dump(dict(G_ema=G, augment_pipe=None,
                 training_set_kwargs={"resolution": meta["img_resolution"]}), path)


def main() -> None:
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    out = Path(sys.argv[1]).absolute()
    out.mkdir(parents=True)  # refuses an existing one
    commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], check=True,
                            capture_output=True, text=True).stdout.strip()

    run_cli([*STYLEGAN2_TRAIN[:3], "--workdir", str(out / "run_stylegan2"), *STYLEGAN2_TRAIN[3:]])
    prune_workdir(out / "run_stylegan2")
    run_cli([*PROGAN_TRAIN[:3], "--workdir", str(out / "run_progan"), *PROGAN_TRAIN[3:]])
    prune_workdir(out / "run_progan")
    run_cli(["convert", str(out / "run_stylegan2"), str(out / "networks_stylegan2"),
             "--only", "G_ema"])
    write_pickle(out / "official_G_ema.pkl")
    run_cli(["convert", str(out / "official_G_ema.pkl"), str(out / "converted_pickle")])

    expected: dict[str, np.ndarray] = {"seeds": np.asarray(SEEDS)}

    def record(key: str, source: Path, class_idx: int | None = None) -> None:
        net = load_generator(source)
        expected[key] = generate_images(net, seeds=SEEDS, class_idx=class_idx,
                                        noise_mode="const")
        expected[f"{key}_float32"] = float_images(net, class_idx)
        assert np.array_equal(images.to_uint8(expected[f"{key}_float32"]), expected[key]), key

    for name in ("run_stylegan2", "run_progan"):
        step, nets = networks_at(out / name)  # the newest (here the only) checkpoint
        expected[f"{name}_step"] = np.int64(step)
        expected[f"{name}_lod"] = np.float32(nets["G_ema"].lod)
        record(name, out / name)
        named = generate_images(load_generator(out / name / "checkpoints" / str(step)),
                                seeds=SEEDS, noise_mode="const")
        assert np.array_equal(named, expected[name]), f"{name}/checkpoints/{step}"
    record("networks_stylegan2", out / "networks_stylegan2")
    record("converted_pickle", out / "converted_pickle", PICKLE_CLASS)
    record("official_pickle", out / "official_G_ema.pkl", PICKLE_CLASS)
    expected["meta"] = np.asarray(json.dumps({
        "commit": commit, "seeds": SEEDS, "noise_mode": "const",
        "class_idx": {"converted_pickle": PICKLE_CLASS, "official_pickle": PICKLE_CLASS},
        "xla_flags": os.environ["XLA_FLAGS"].strip(),
        "jax": jax.__version__,
    }))
    np.savez_compressed(out / "expected.npz", **expected)
    for k, v in expected.items():
        print(k, v.shape, v.dtype, v if v.ndim == 0 else "")
    print("pickle sha256", hashlib.sha256((out / "official_G_ema.pkl").read_bytes()).hexdigest())


if __name__ == "__main__":
    main()
