"""Records tests/data/progressive_rect/*.npz: NVIDIA's TF ProGAN / StyleGAN v1 networks on
rectangles (not collected by pytest; run by hand, see tests/data/progressive_rect/README.md).

    python3 tests/record_progressive_rect.py [--stylegan-git DIR] [--out DIR]

The official functions `G_paper` / `D_paper` (training/networks_progan.py) and `G_mapping` /
`G_synthesis` / `D_basic` (training/networks_stylegan.py) of NVlabs/stylegan are read from a
git mirror of that repository (`fetch github:NVlabs/stylegan`) and run under TensorFlow 2's
`tf.compat.v1` (CPU, NCHW, float32). The only textual changes, each asserted to apply
exactly once, are TF 2's import and the ones that put the 4x4 start on a 4*AH x 4*AW
rectangle: ProGAN's first dense layer (16 -> 16*AH*AW outputs, reshaped to [C, 4*AH,
4*AW]), StyleGAN's constant and noise inputs ([.., 2**res*AH, 2**res*AW]) and the
discriminators' input shape. Everything after the start (convolutions, fused and separate
resampling, blur, minibatch stddev, the dense layers' He fan-in of the flattened input,
the recursive lod structure) is NVIDIA's code unchanged.

The file format is that of tests/data/official_tf (see its README), plus `meta.img_aspect`.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import types
from pathlib import Path

import numpy as np

HERE = Path(__file__).parent
DEFAULT_GIT = Path("/work/.mirror/NVlabs+stylegan/repo")

IMPORT = ("import tensorflow as tf\n", "import tensorflow.compat.v1 as tf\n")
EDITS = {
    "training/networks_progan.py": [
        IMPORT,
        ("x = dense(x, fmaps=nf(res-1)*16, gain=", "x = dense(x, fmaps=nf(res-1)*16*AH*AW, gain="),
        ("x = tf.reshape(x, [-1, nf(res-1), 4, 4])",
         "x = tf.reshape(x, [-1, nf(res-1), 4*AH, 4*AW])"),
        ("images_in.set_shape([None, num_channels, resolution, resolution])",
         "images_in.set_shape([None, num_channels, resolution*AH, resolution*AW])"),
    ],
    "training/networks_stylegan.py": [
        IMPORT,
        ("shape = [1, use_noise, 2**res, 2**res]", "shape = [1, use_noise, 2**res*AH, 2**res*AW]"),
        ("shape=[1, nf(1), 4, 4], initializer=tf.initializers.ones()",
         "shape=[1, nf(1), 4*AH, 4*AW], initializer=tf.initializers.ones()"),
        ("images_in.set_shape([None, num_channels, resolution, resolution])",
         "images_in.set_shape([None, num_channels, resolution*AH, resolution*AW])"),
    ],
}

# Tiny networks: 16 -> 8 -> 4 channels from 4x4 to 16x16 (in / out axes cannot be confused).
FMAPS = dict(fmap_base=64, fmap_max=16)
CASES = {
    # 32x16 (W x H), fused up / down-sampling (ProGAN's default), unconditional.
    "progan_32x16": dict(
        family="progan", img_aspect=[1, 2], batch=4, lods=[0.0, 0.4, 1.0, 1.7],
        G_kwargs=dict(num_channels=3, resolution=16, label_size=0, latent_size=12, **FMAPS),
        D_kwargs=dict(num_channels=3, resolution=16, label_size=0, mbstd_group_size=2,
                      **FMAPS)),
    # 16x32 (W x H), separate resampling with the blur ('auto' below 128), two labels.
    "stylegan_16x32": dict(
        family="stylegan", img_aspect=[2, 1], batch=4, lods=[0.0, 0.3, 1.0, 1.6],
        truncation_psi=0.7, truncation_cutoff=3,
        G_kwargs=dict(num_channels=3, resolution=16, label_size=2, latent_size=12,
                      dlatent_size=10, mapping_layers=2, mapping_fmaps=10, use_noise=1,
                      **FMAPS),
        D_kwargs=dict(num_channels=3, resolution=16, label_size=2, mbstd_group_size=2,
                      **FMAPS)),
}


def official_module(git_dir: Path, path: str, aspect) -> types.ModuleType:
    """NVIDIA's module with the EDITS applied, its globals AH, AW = aspect."""
    text = subprocess.run(["git", "--git-dir", str(git_dir), "show", f"HEAD:{path}"],
                          check=True, capture_output=True).stdout.decode("utf-8-sig")
    for old, new in EDITS[path]:
        assert text.count(old) == 1, f"{path}: {old!r} occurs {text.count(old)} times"
        text = text.replace(old, new)
    module = types.ModuleType(path.replace("/", ".")[:-3])
    module.AH, module.AW = aspect
    exec(compile(text, path, "exec"), module.__dict__)  # noqa: S102 (NVIDIA's code, as the oracle)
    return module


def stub_dnnlib(tf) -> None:
    """networks_stylegan.py imports dnnlib.tflib for `lerp` / `lerp_clip` (the recursive
    structure) only; G_style's `tflib.Network` is not used here."""
    dnnlib = types.ModuleType("dnnlib")
    tflib = types.ModuleType("dnnlib.tflib")
    tflib.lerp = lambda a, b, t: a + (b - a) * t
    tflib.lerp_clip = lambda a, b, t: a + (b - a) * tf.clip_by_value(t, 0.0, 1.0)
    dnnlib.tflib, dnnlib.EasyDict = tflib, dict
    sys.modules.setdefault("dnnlib", dnnlib)
    sys.modules.setdefault("dnnlib.tflib", tflib)


def record(name: str, case: dict, git_dir: Path, out: Path, seed: int) -> None:
    import tensorflow as tf2

    tf2.config.set_visible_devices([], "GPU")
    tf = tf2.compat.v1
    tf.disable_v2_behavior()  # graph mode; shapes of Dimensions (NVIDIA's `.value`)
    tf.reset_default_graph()
    tf.set_random_seed(seed)  # NVIDIA's initializers: a re-run writes the same file
    stub_dnnlib(tf)
    ah, aw = case["img_aspect"]
    family, gk, dk, n = case["family"], case["G_kwargs"], case["D_kwargs"], case["batch"]
    path = f"training/networks_{family}.py"
    net = official_module(git_dir, path, (ah, aw))
    rng = np.random.default_rng(seed)
    res, ch = gk["resolution"], gk["num_channels"]
    h, w = res * ah, res * aw

    z_in = tf.placeholder(tf.float32, [None, gk["latent_size"]])
    c_in = tf.placeholder(tf.float32, [None, gk["label_size"]])
    x_in = tf.placeholder(tf.float32, [None, ch, h, w])
    with tf.variable_scope("G", reuse=tf.AUTO_REUSE):
        if family == "progan":
            images = net.G_paper(z_in, c_in, **gk)
            dlatents = None
        else:
            num_layers = 2 * int(np.log2(res)) - 2
            with tf.variable_scope("G_mapping"):
                dlatents = net.G_mapping(z_in, c_in, dlatent_broadcast=num_layers, **gk)
            avg = tf.get_variable("dlatent_avg", shape=[gk["dlatent_size"]],
                                  initializer=tf.initializers.zeros(), trainable=False)
            # G_style's truncation: lerp(dlatent_avg, dlatents, psi) below the cutoff.
            layer = np.arange(num_layers)[np.newaxis, :, np.newaxis]
            coefs = np.where(layer < case["truncation_cutoff"], case["truncation_psi"],
                             1.0).astype(np.float32)
            truncated = avg + (dlatents - avg) * coefs
            with tf.variable_scope("G_synthesis"):
                images = net.G_synthesis(truncated, randomize_noise=False, **gk)
    with tf.variable_scope("D", reuse=tf.AUTO_REUSE):
        D = net.D_paper if family == "progan" else net.D_basic
        scores = D(x_in, c_in, **dk)
    sq_norm = tf.reduce_sum(tf.square(tf.gradients(tf.reduce_sum(scores), [x_in])[0]),
                            axis=[1, 2, 3])

    sess = tf.Session()
    sess.run(tf.global_variables_initializer())
    for v in tf.trainable_variables():
        sess.run(v.assign(v + 0.1 * rng.standard_normal(v.shape.as_list()).astype(np.float32)))
    lods = [v for v in tf.global_variables() if v.name.split("/")[-1] == "lod:0"]
    if family == "stylegan":
        sess.run(avg.assign(rng.standard_normal(avg.shape.as_list()).astype(np.float32)))

    arrays = {}
    for v in tf.global_variables():
        scope, tail = v.name[:-2].split("/", 1)
        if tail.split("/")[-1] != "lod":
            arrays[f"{scope}/{tail}"] = sess.run(v)
    z = rng.standard_normal((n, gk["latent_size"])).astype(np.float32)
    labels = np.eye(gk["label_size"], dtype=np.float32)[rng.integers(0, max(gk["label_size"], 1),
                                                                     n)] if gk["label_size"] \
        else np.zeros((n, 0), np.float32)
    real = rng.standard_normal((n, ch, h, w)).astype(np.float32)
    mix = rng.uniform(0, 1, (n, 1, 1, 1)).astype(np.float32)
    io = dict(z=z, labels=labels, real=real, mix=mix, lods=np.asarray(case["lods"], np.float32))
    if dlatents is not None:
        io["dlatents_notrunc"] = sess.run(dlatents, {z_in: z, c_in: labels})
    for i, lod in enumerate(case["lods"]):
        for v in lods:
            sess.run(v.assign(np.float32(lod)))
        fake = sess.run(images, {z_in: z, c_in: labels})
        io[f"images_lod{i}"] = fake
        for key, x in (("fake", fake), ("real", real)):
            io[f"scores_{key}_lod{i}"] = sess.run(scores, {x_in: x, c_in: labels})
        io[f"r1_lod{i}"] = sess.run(sq_norm, {x_in: real, c_in: labels})
        io[f"gp_grad_sqnorm_lod{i}"] = sess.run(sq_norm, {x_in: real + (fake - real) * mix,
                                                          c_in: labels})
    arrays.update({f"io/{k}": v for k, v in io.items()})
    commit = subprocess.run(["git", "--git-dir", str(git_dir), "rev-parse", "HEAD"], check=True,
                            capture_output=True, text=True).stdout.strip()
    meta = {k: v for k, v in case.items()}
    meta.update(seed=seed, source=f"NVlabs/stylegan {commit} {path}, edited: "
                + "; ".join(f"{a.strip()!r} -> {b.strip()!r}" for a, b in EDITS[path]))
    out.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out / f"{name}.npz", meta=json.dumps(meta), **arrays)
    sess.close()
    print(f"{name}: {len(arrays)} arrays, images {fake.shape} (NCHW)")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--stylegan-git", type=Path, default=DEFAULT_GIT,
                   help="git directory of NVlabs/stylegan (a mirror or a clone's .git)")
    p.add_argument("--out", type=Path, default=HERE / "data" / "progressive_rect")
    p.add_argument("--seed", type=int, default=26)
    args = p.parse_args(argv)
    for k, (name, case) in enumerate(CASES.items()):
        record(name, case, args.stylegan_git, args.out, args.seed + k)
    return 0


if __name__ == "__main__":
    sys.exit(main())
