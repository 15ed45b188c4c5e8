"""StyleGAN3 through the generation tools: `--translate` / `--rotate` as the official
gen_images.py sets the input transform, checked against the reference files' transforms."""

from __future__ import annotations

import numpy as np
import pytest
from official_fixtures import load
from test_stylegan3_official import FILES, official_generator

from stylegan_jax import generate
from stylegan_jax.models import sampling
from stylegan_jax.models.registry import Network

MOVED = [f for f in FILES if load(f)[0].get("transform")]


@pytest.mark.parametrize("path", MOVED, ids=[f.stem for f in MOVED])
def test_translate_and_rotate_set_the_official_transform(path):
    meta, arrays, G, variables = official_generator(path)
    tx, ty, degrees = meta["transform"]
    moved = sampling.with_transform(Network(G, variables), (tx, ty), degrees)
    got = np.asarray(moved.variables["buffers"]["synthesis"]["input"]["transform"])
    np.testing.assert_allclose(got, arrays["G/synthesis.input.transform"], atol=1e-6)
    assert sampling.stylegan3_transform().tolist() == np.eye(3).tolist()


def test_translate_is_refused_for_other_families():
    net = generate.random_generator(16)
    assert sampling.with_transform(net) is net
    with pytest.raises(ValueError, match="StyleGAN3"):
        sampling.with_transform(net, (0.1, 0.0), 0.0)


@pytest.mark.parametrize("path", FILES, ids=[f.stem for f in FILES])
def test_official_pickle_converts_and_generates_the_official_images(path, tmp_path):
    """Official-layout pickle -> `convert` -> `generate --projected-w` of the reference ws
    (with --translate / --rotate where the reference moved its input): the PNGs are NVIDIA's
    images (within one level of 8-bit rounding)."""
    from official_fixtures import nchw_to_nhwc, subdict
    from official_pickle import dump, records_from_state_dict
    from PIL import Image
    from test_stylegan3_official import official_kwargs

    from stylegan_jax.cli import main

    meta, arrays, _, _ = official_generator(path)
    rec = records_from_state_dict("Generator", official_kwargs(meta), subdict(arrays, "G/"))
    rec.module_src = "class SynthesisInput(torch.nn.Module): pass\n"
    dump({"G": rec, "G_ema": rec, "D": None, "training_set_kwargs": {}}, tmp_path / "n.pkl")
    assert main(["convert", str(tmp_path / "n.pkl"), str(tmp_path / "net")]) == 0
    ws = np.asarray(arrays["io/ws_notrunc"], np.float32)
    np.savez(tmp_path / "projected_w.npz", w=ws)
    # As the official gen_images.py, generate sets the input transform (identity by
    # default); the reference images were made with meta.transform.
    tx, ty, degrees = meta.get("transform") or (0.0, 0.0, 0.0)
    assert main(["generate", "--network", str(tmp_path / "net"), "--projected-w",
                 str(tmp_path / "projected_w.npz"), "--outdir", str(tmp_path / "out"),
                 f"--translate={tx},{ty}", f"--rotate={degrees}"]) == 0
    want = np.clip(np.asarray(nchw_to_nhwc(arrays["io/img_notrunc"])) * 127.5 + 128, 0, 255)
    for i in range(len(ws)):
        got = np.asarray(Image.open(tmp_path / "out" / f"proj{i:02d}.png"), np.float32)
        got = got.reshape(want[i].shape)
        assert np.abs(got - want[i]).max() <= 1.0
