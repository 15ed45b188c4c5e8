"""Editing directions (tools/latent_directions.py, `stylegan-jax directions`): SeFa against
the eigenvectors of a hand-built affine structure, GANSpace against an SVD of w mapped here,
the supervised direction against a known linear labelling, edits in closed form, the .npz
format and its errors, and the CLI (the labels method through a few projection steps)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import tiny_generators
from PIL import Image

from stylegan_jax import cli, generate
from stylegan_jax.models import progan, stylegan2
from stylegan_jax.models.registry import Network
from stylegan_jax.store.networks import save_networks
from stylegan_jax.tools import latent_directions as ld
from stylegan_jax.tools import projection

RES = 16  # num_ws 6: b4.conv1, b8.conv0, b8.conv1, b16.conv0, b16.conv1, b16.torgb
# The affines each ws index feeds, as genforce/sefa's factorize_weight takes them for
# StyleGAN2 (conv layer i for index i, the last ToRGB for the last index).
SEFA_AFFINES = ["b4/conv1", "b8/conv0", "b8/conv1", "b16/conv0", "b16/conv1", "b16/torgb"]
# Layer l's 32 affine columns: q_l 10 times, q_l+1 6, q_l+2 3, q_l+3 2, then q_l+4 ..
# q_l+14 once each (indices mod 32) and the rest of the basis not at all.
COUNTS = (10, 6, 3, 2)


def affine_weight(variables, path: str) -> np.ndarray:
    node = variables["params"]["synthesis"]
    for part in path.split("/"):
        node = node[part]
    return np.asarray(node["affine"]["weight"])


def set_affine(variables, path: str, weight: np.ndarray) -> dict:
    params = jax.tree_util.tree_map(lambda a: a, variables["params"])  # a copy of the dicts
    node = params["synthesis"]
    for part in path.split("/"):
        node = node[part]
    node["affine"] = {**node["affine"], "weight": jnp.asarray(weight, jnp.float32)}
    return {**variables, "params": params}


def tiny_generator(seed: int) -> Network:
    """A 16x16 StyleGAN2 with w_dim 32 and 32 channels everywhere (so every affine is
    [32, 32]), initialised by one compiled call."""
    G = stylegan2.Generator(z_dim=32, c_dim=0, w_dim=32, img_resolution=RES, img_channels=3,
                            mapping_layers=2, channel_base=512, channel_max=32)
    key = jax.random.PRNGKey(seed)
    return Network(G, jax.jit(G.init)({"params": key, "noise": key}, jnp.zeros((1, 32)),
                                      jnp.zeros((1, 0))))


@pytest.fixture(scope="module")
def base() -> Network:
    return tiny_generator(3)


@pytest.fixture(scope="module")
def structured(base):
    """A tiny StyleGAN2 whose SeFa affines have columns ± g * q_j of an orthonormal basis Q,
    with random per-column gains g (column normalisation must remove them), and layer l's
    multiplicities on the basis rotated by l: A Aᵀ (normalised) = sum_j m_j q_j q_jᵀ, so the
    eigenvectors are the q_j and the eigenvalues the multiplicities m_j over the chosen
    layers. The intermediate ToRGBs (b4, b8), which SeFa leaves out, get one column
    repeated: including them would make it the top direction."""
    net = base
    w_dim = net.module.w_dim
    rng = np.random.default_rng(0)
    q, _ = np.linalg.qr(rng.standard_normal((w_dim, w_dim)))
    variables = net.variables
    layout = {}
    for layer, path in enumerate(SEFA_AFFINES):
        order = np.roll(np.arange(w_dim), -layer)  # layer l: q_l has multiplicity 10, ...
        cols = np.concatenate([np.repeat(order[:4], COUNTS), order[4:w_dim - sum(COUNTS) + 4]])
        assert len(cols) == w_dim
        gains = rng.uniform(0.2, 3.0, w_dim) * rng.choice([-1, 1], w_dim)
        variables = set_affine(variables, path, q[:, cols] * gains)
        layout[path] = cols
    for path in ("b4/torgb", "b8/torgb"):
        variables = set_affine(variables, path, np.repeat(q[:, -1:], w_dim, axis=1) * 5)
    return Network(net.module, variables), q, layout


def normalised_eigh(affines: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    a = np.concatenate(affines, axis=1).astype(np.float64)
    a = a / np.linalg.norm(a, axis=0)
    values, vectors = np.linalg.eigh(a @ a.T)
    return values[::-1], vectors[:, ::-1]


def own_w(net: Network, num: int, seed: int) -> np.ndarray:
    """w [num, w_dim] of z = RandomState(seed).randn (the documented sampling), mapped here
    through the module itself."""
    G = net.module
    z = jnp.asarray(np.random.RandomState(seed).randn(num, G.z_dim).astype(np.float32))
    ws = G.apply(net.variables, z, jnp.zeros((num, 0)), method=stylegan2.Generator.mapping_fn)
    return np.asarray(ws[:, 0], np.float64)


@pytest.mark.parametrize("layers", [None, (0, 0), (2, 3), (5, 5)])
def test_sefa_is_the_eigenbasis_of_the_normalised_affines(structured, layers):
    net, q, layout = structured
    found = ld.sefa(net.module, net.variables, layers, num=3, sigma_samples=4000, seed=1)
    first, last = layers or (0, 5)
    chosen = SEFA_AFFINES[first:last + 1]
    values, vectors = normalised_eigh([affine_weight(net.variables, p) for p in chosen])
    # The closed form: multiplicities over the chosen layers.
    mult = np.zeros(q.shape[1])
    for p in chosen:
        np.add.at(mult, layout[p], 1)
    expected_top = np.argsort(-mult)[:2]
    assert len({*np.sort(mult)[-3:]}) == 3  # distinct top eigenvalues: a unique basis
    w = own_w(net, 20000, seed=7)
    for k, d in enumerate(found[:2]):
        assert d.method == "sefa" and d.layers == (first, last) and d.name == f"sefa{k}"
        assert abs(np.linalg.norm(d.vector) - 1) < 1e-5
        assert abs(d.vector @ vectors[:, k]) > 0.9999
        assert abs(d.vector @ q[:, expected_top[k]]) > 0.9999
        assert d.score == pytest.approx(values[k] / values.sum(), rel=1e-5)
        assert d.score == pytest.approx(mult[expected_top[k]] / mult.sum(), rel=1e-5)
        assert d.sigma == pytest.approx(np.std(w @ d.vector), rel=0.05)


def test_sefa_directions_are_orthonormal_and_ordered(structured):
    net, _, _ = structured
    found = ld.sefa(net.module, net.variables, num=6, sigma_samples=100)
    v = np.stack([d.vector for d in found])
    np.testing.assert_allclose(v @ v.T, np.eye(6), atol=1e-5)
    scores = [d.score for d in found]
    assert scores == sorted(scores, reverse=True)


def nested(tree, path: str) -> np.ndarray:
    for part in path.split("/"):
        tree = tree[part]
    return np.asarray(tree)


@pytest.mark.parametrize("family", ["stylegan", "stylegan3"])
def test_sefa_of_the_other_w_space_families(family):
    """StyleGAN v1: ws i feeds layer i's StyleMod (scale and shift columns); StyleGAN3: ws
    i + 1 feeds layer i's affine (ws 0 the input transform's, zero in a fresh network and
    left out); a conditional generator's w sampled over its classes."""
    if family == "stylegan":
        net = tiny_generators.stylegan_v1()
        syn = "G_synthesis"
        paths = ["4x4/Const", "4x4/Conv", "8x8/Conv0_up", "8x8/Conv1", "16x16/Conv0_up",
                 "16x16/Conv1"]
        paths = [f"{p}/StyleMod/weight" for p in paths]
        layers = (0, 5)
    else:
        net = tiny_generators.stylegan3_conditional()
        syn = "synthesis"
        paths = [f"{p}/affine/weight" for p in
                 ["L0_36_16", "L1_36_16", "L2_36_16", "L3_16_16", "L4_16_3"]]
        layers = (1, 5)
        with pytest.raises(ValueError, match="all zero"):
            ld.sefa(net.module, net.variables, (0, 0), num=1, sigma_samples=10)
    found = ld.sefa(net.module, net.variables, layers, num=2, sigma_samples=500)
    _, vectors = normalised_eigh([nested(net.variables["params"][syn], p) for p in paths])
    for k, d in enumerate(found):
        assert abs(d.vector @ vectors[:, k]) > 0.9999 and d.sigma > 0


def test_ganspace_is_the_top_principal_component(structured):
    net, _, _ = structured
    n = 3000
    found = ld.ganspace(net.module, net.variables, num=2, num_samples=n, seed=4)
    w = own_w(net, n, seed=4)
    centred = w - w.mean(axis=0)
    _, s, vt = np.linalg.svd(centred, full_matrices=False)
    for k, d in enumerate(found):
        assert d.method == "ganspace" and d.name == f"pc{k}" and d.layers == (0, 5)
        assert abs(d.vector @ vt[k]) > 0.999
        assert d.sigma == pytest.approx(np.std(w @ vt[k]), rel=1e-3)
        assert d.score == pytest.approx(s[k] ** 2 / np.sum(s**2), rel=1e-3)


def test_no_w_space_no_directions():
    G = progan.Generator(num_channels=3, resolution=8, latent_size=16, fmap_base=64,
                         fmap_max=16)
    for method in (ld.sefa, ld.ganspace):
        with pytest.raises(ValueError, match="no w space"):
            method(G, {})  # refused before any variable is read


def test_supervised_recovers_a_linear_labelling():
    rng = np.random.default_rng(5)
    d = 16
    n = rng.standard_normal(d)
    n /= np.linalg.norm(n)
    w = rng.standard_normal((2000, d)) * 1.5 + 0.3
    labels = (w @ n + 0.4 > 0).astype(int)
    sampled = rng.standard_normal((5000, d)) * 2.0
    neg, pos = ld.supervised(w, labels, ["neg", "pos"], num_ws=4, sigma_w=sampled)
    assert (pos.name, pos.method, pos.layers) == ("pos", "labels", (0, 3))
    assert pos.vector @ n > 0.95 and neg.vector @ n < -0.95
    assert pos.score > 0.97
    assert pos.sigma == pytest.approx(np.std(sampled @ pos.vector), rel=1e-6)


def test_supervised_one_direction_per_class():
    """Three blobs at 5 q_k: class k's direction points toward its blob, away from the
    others (q_k - (q_i + q_j) / 2 up to the fit)."""
    rng = np.random.default_rng(6)
    d = 16
    q, _ = np.linalg.qr(rng.standard_normal((d, d)))
    labels = rng.integers(0, 3, 1500)
    w = rng.standard_normal((1500, d)) + 5 * q[:, :3].T[labels] + 0.7
    found = ld.supervised(w, labels, ["a", "b", "c"], layers=(1, 2), num_ws=4)
    assert [f.name for f in found] == ["a", "b", "c"]
    for k, f in enumerate(found):
        target = q[:, k] - (q[:, (k + 1) % 3] + q[:, (k + 2) % 3]) / 2
        assert f.vector @ target / np.linalg.norm(target) > 0.95
        assert f.score > 0.97 and f.layers == (1, 2)


def test_supervised_scores_on_held_out_w():
    """Labels unrelated to w: a classifier fits most of its 40 training w in 32 dims, but
    the score is the held-out accuracy, near chance."""
    rng = np.random.default_rng(7)
    w = rng.standard_normal((400, 32))
    labels = rng.integers(0, 2, 400)
    idx = np.r_[np.flatnonzero(labels == 0)[:30], np.flatnonzero(labels == 1)[:30]]
    found = ld.supervised(w[idx], labels[idx], ["a", "b"], num_ws=2, val_fraction=0.34)
    assert found[0].score < 0.8


@pytest.mark.parametrize("fraction", [0.01, 0.3, 0.99])
def test_split_keeps_every_class_on_both_sides(fraction):
    labels = np.array([0, 0, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2])
    train, val = ld.stratified_split(labels, fraction, seed=0)
    assert sorted(np.r_[train, val]) == list(range(len(labels)))
    for k in range(3):
        assert k in labels[train] and k in labels[val]
    assert np.sum(labels[val] == 2) == min(max(1, round(15 * fraction)), 14)


@pytest.mark.parametrize("labels, names, match", [
    ([0, 0, 0, 1], ["a", "b"], "at least 2"),
    ([0, 0, 2, 2], ["a", "b"], r"integers in \[0, 2\)"),
    ([0, 0, 0, 0], ["a"], "at least 2 classes"),
])
def test_supervised_rejects_bad_labels(labels, names, match):
    with pytest.raises(ValueError, match=match):
        ld.supervised(np.zeros((4, 3)), np.array(labels), names, num_ws=2)


def unit(i: int, d: int) -> np.ndarray:
    v = np.zeros(d, np.float32)
    v[i] = 1
    return v


def test_edit_offset_closed_form():
    d0 = ld.Direction(unit(0, 4), 2.0, (1, 2), "sefa", 0.5, "sefa0")
    d1 = ld.Direction(unit(3, 4), 0.5, (0, 4), "ganspace", 0.2, "pc0")
    off = ld.edit_offset([d0, d1], [(0, 1.5), (1, -2.0), (0, 1.0)], num_ws=5, w_dim=4)
    expected = np.zeros((5, 4))
    expected[1:3, 0] = (1.5 + 1.0) * 2.0
    expected[:, 3] = -2.0 * 0.5
    np.testing.assert_allclose(off, expected)
    assert off.dtype == np.float32
    with pytest.raises(ValueError, match="index 2 out of range.*2 directions"):
        ld.edit_offset([d0, d1], [(2, 1.0)], 5, 4)
    with pytest.raises(ValueError, match="w_dim is 8"):
        ld.edit_offset([d0], [(0, 1.0)], 5, 8)
    with pytest.raises(ValueError, match="within this generator's 2 ws"):
        ld.edit_offset([d0], [(0, 1.0)], 2, 4)


def test_parse_edits_and_strengths():
    assert ld.parse_edits("0:1.5,3:-2") == [(0, 1.5), (3, -2.0)]
    assert ld.parse_edits(" 1 : 2 ,") == [(1, 2.0)]
    assert ld.parse_edits("") == []
    for bad in ("0", "a:1", "0:x", "-1:2", "0:nan", "1:2:3"):
        with pytest.raises(ValueError, match="INDEX:STRENGTH"):
            ld.parse_edits(bad)
    np.testing.assert_allclose(ld.parse_strengths("-3:3:7"), [-3, -2, -1, 0, 1, 2, 3])
    np.testing.assert_allclose(ld.parse_strengths("0.5,-1"), [0.5, -1])
    for bad in ("1:2", "1:2:0", "a:b:3", "1:2:x", "1,,2", "inf"):
        with pytest.raises(ValueError, match="--strengths"):
            ld.parse_strengths(bad)
    assert ld.parse_layers("2-4", 6) == (2, 4) and ld.parse_layers("5", 6) == (5, 5)
    for bad in ("4-2", "0-6", "x", "-1"):
        with pytest.raises(ValueError, match="--layers"):
            ld.parse_layers(bad, 6)


def test_file_round_trip_and_errors(tmp_path):
    dirs = [ld.Direction(unit(1, 4), 1.25, (0, 2), "labels", 0.9, "smile"),
            ld.Direction(unit(2, 4), 0.5, (3, 3), "labels", 0.8, "glasses")]
    path = ld.save_directions(tmp_path / "d.npz", dirs, {"num_ws": 4, "w_dim": 4, "x": 1})
    back = ld.load_directions(path, num_ws=4, w_dim=4)
    for a, b in zip(dirs, back, strict=True):
        assert (b.sigma, b.layers, b.method, b.score, b.name) == (
            a.sigma, a.layers, a.method, a.score, a.name)
        np.testing.assert_array_equal(a.vector, b.vector)
    assert ld.load_meta(path)["x"] == 1
    with pytest.raises(ValueError, match="num_ws 4, w_dim 4; this one has num_ws 6"):
        ld.load_directions(path, num_ws=6, w_dim=4)
    with np.load(path) as data:
        fields = dict(data)
    np.savez(tmp_path / "bad.npz", **{k: v for k, v in fields.items() if k != "sigmas"})
    with pytest.raises(ValueError, match=r"bad\.npz.*no field 'sigmas'"):
        ld.load_directions(tmp_path / "bad.npz")
    np.savez(tmp_path / "bad2.npz", **{**fields, "vectors": fields["vectors"] * 2})
    with pytest.raises(ValueError, match="bad2.npz: field 'vectors' must hold finite unit"):
        ld.load_directions(tmp_path / "bad2.npz")
    with pytest.raises(FileNotFoundError, match="no such file"):
        ld.load_directions(tmp_path / "none.npz")


# --- the CLI ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def saved(base, tmp_path_factory):
    net = base
    path = save_networks(tmp_path_factory.mktemp("net") / "G", {"G_ema": net})
    return net, path


def test_cli_sefa_round_trip(saved, tmp_path, capsys):
    net, path = saved
    out = tmp_path / "sefa.npz"
    assert cli.main(["directions", "--network", str(path), "--method", "sefa", "--num", "4",
                     "--layers", "1-3", "--samples", "500", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "eigen share" in text and "sefa3" in text
    found = ld.load_directions(out, net.module.num_ws, net.module.w_dim)
    ref = ld.sefa(net.module, net.variables, (1, 3), num=4, sigma_samples=500)
    assert [d.name for d in found] == ["sefa0", "sefa1", "sefa2", "sefa3"]
    for a, b in zip(found, ref, strict=True):
        assert a.layers == (1, 3) and a.method == "sefa"
        np.testing.assert_allclose(a.vector, b.vector, atol=1e-6)
        assert (a.sigma, a.score) == pytest.approx((b.sigma, b.score))
    meta = ld.load_meta(out)
    assert (meta["method"], meta["num_ws"], meta["w_dim"], meta["samples"]) == (
        "sefa", 6, 32, 500)


@pytest.mark.parametrize("argv, match", [
    (["--method", "sefa", "--layers", "3-9"], "--layers: layers 3-9"),
    (["--method", "sefa", "--num", "99"], "num: between 1 and w_dim"),
    (["--method", "ganspace", "--data", "bundled"], "--folders / --data are for"),
    (["--method", "labels", "--folders", "a=x"], "two or more classes"),
])
def test_cli_errors(saved, tmp_path, capsys, argv, match):
    _, path = saved
    rc = cli.main(["directions", "--network", str(path), "--out", str(tmp_path / "d.npz"),
                   *argv])
    assert rc == 2
    err = capsys.readouterr().err
    assert err.startswith("stylegan-jax directions: error: ") and match in err
    assert not (tmp_path / "d.npz").exists()


def test_cli_labels_through_projection(saved, tmp_path):
    """Two folders of the generator's own images, one brightened, one darkened, projected
    with a few steps (pixel MSE without LPIPS weights): a direction per folder, the
    'bright' one raising the image's brightness when applied. Then the bundled dataset
    (faces / non-faces) through --data."""
    net, path = saved
    imgs = generate.generate_images(net, list(range(6)))
    for name, shift in (("bright", 80), ("dark", -80)):
        (tmp_path / name).mkdir()
        for i, img in enumerate(imgs[:3] if shift > 0 else imgs[3:]):
            out = np.clip(img.astype(int) + shift, 0, 255).astype(np.uint8)
            Image.fromarray(out).save(tmp_path / name / f"{i}.png")
    out = tmp_path / "labels.npz"
    common = ["--network", str(path), "--method", "labels", "--num-steps", "3",
              "--batch-size", "6", "--samples", "300", "--val-fraction", "0.34"]
    assert cli.main(["directions", *common, "--folders", f"bright={tmp_path / 'bright'}",
                     f"dark={tmp_path / 'dark'}", "--out", str(out)]) == 0
    bright, dark = ld.load_directions(out, net.module.num_ws, net.module.w_dim)
    assert (bright.name, dark.name) == ("bright", "dark")
    assert bright.method == "labels" and bright.layers == (0, net.module.num_ws - 1)
    assert 0 <= bright.score <= 1 and bright.sigma > 0
    np.testing.assert_allclose(bright.vector, -dark.vector, atol=1e-4)
    meta = ld.load_meta(out)
    assert meta["num_steps"] == 3 and meta["distance"] in projection.DISTANCES

    out2 = tmp_path / "bundled.npz"
    assert cli.main(["directions", *common, "--data", "bundled", "--max-per-class", "3",
                     "--out", str(out2)]) == 0
    names = [d.name for d in ld.load_directions(out2)]
    assert names == ["face", "non-face"]
