"""`stylegan-jax attribute`: attribution of images to a generator by projection.

The statistics are held to closed forms and to brute-force counting; the batched
projection to an independent, unbatched re-statement of the official loop (hand-written
Adam, the metrics' own LPIPS on stand-in weight files) and to itself alone vs in other
company; the shipped face generator must put its own images closer than the bundled
real faces; the CLI's calibration file must agree with its own listed distances.
"""

from __future__ import annotations

import csv
import functools
import json
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from feature_net_fixtures import lpips_stand_in
from PIL import Image
from torch_zip_writer import write_zip_state_dict

from stylegan_jax import cli, pretrained
from stylegan_jax.data.sources import bundled_faces
from stylegan_jax.generate import images_from_ws, ws_for_seeds
from stylegan_jax.metrics import lpips
from stylegan_jax.models import stylegan
from stylegan_jax.models.registry import Network
from stylegan_jax.models.sampling import synthesis
from stylegan_jax.store.load import load_generator
from stylegan_jax.store.networks import save_networks
from stylegan_jax.tools import attribution, projection
from stylegan_jax.tools.project import load_target

# pyramid-mse on faces32, 100 generated vs the 100 bundled faces: ROC AUC 0.887 after 25
# steps, 0.939 after 50, 0.959 after 100. The sets below: 0.957 after 50 steps.
STEPS = 50
NUM = 16  # generated images (seeds 0..15) and real faces (every sixth bundled face)
FEW_STEPS = 10  # where only the bookkeeping is tested
LPIPS_STEPS = 6


# ---------------------------------------------------------------- statistics


def _auc_by_pairs(g, r):
    return np.mean([[1.0 if a < b else 0.5 if a == b else 0.0 for b in r] for a in g])


def _balanced_accuracy(g, r, t):
    return 0.5 * (np.mean(np.asarray(g) <= t) + np.mean(np.asarray(r) > t))


def test_roc_auc_closed_forms_and_pair_counting():
    assert attribution.roc_auc([0.1, 0.2], [0.3, 0.4]) == 1.0
    assert attribution.roc_auc([0.3, 0.4], [0.1, 0.2]) == 0.0
    assert attribution.roc_auc([0.5, 0.5], [0.5]) == 0.5
    # Pairs (g, r): (1,2)< (1,4)< (2,2)= (2,4)< (3,2)> (3,4)<  -> (4 + 0.5) / 6
    assert attribution.roc_auc([1, 2, 3], [2, 4]) == pytest.approx(0.75)
    rng = np.random.default_rng(0)
    g, r = rng.integers(0, 6, 40), rng.integers(2, 9, 31)  # many ties
    assert attribution.roc_auc(g, r) == pytest.approx(_auc_by_pairs(g, r), abs=1e-12)


def test_choose_threshold_is_balanced_and_midway():
    # Separated: the midpoint between the groups, every image right.
    assert attribution.choose_threshold([0.1, 0.2], [0.5, 0.6]) == pytest.approx((0.35, 1.0))
    # One generated among nine real: plain accuracy would call everything real (0.9);
    # balanced accuracy cuts above the 5: (1 + 5/9) / 2, midway to the next distance 6.
    t, acc = attribution.choose_threshold([5.0], [1, 2, 3, 4, 6, 7, 8, 9, 10])
    assert (t, acc) == pytest.approx((5.5, 7 / 9))
    # Random overlapping groups: no cut between distinct distances does better.
    rng = np.random.default_rng(1)
    g, r = rng.normal(0, 1, 23), rng.normal(1, 1, 37)
    t, acc = attribution.choose_threshold(g, r)
    values = np.unique(np.concatenate([g, r]))
    cuts = np.concatenate([[values[0] - 1], 0.5 * (values[1:] + values[:-1]), [values[-1]]])
    best = max(_balanced_accuracy(g, r, c) for c in cuts)
    assert acc == pytest.approx(best) and _balanced_accuracy(g, r, t) == pytest.approx(best)
    assert not np.isin(t, values)  # midway, not on an image's distance


def test_verdict_at_the_threshold_is_generated():
    assert attribution.verdict(0.25, 0.25) == "generated"
    assert attribution.verdict(np.nextafter(0.25, 1), 0.25) == "real"
    with pytest.raises(ValueError, match="0 generated and 2 real"):
        attribution.roc_auc([], [1, 2])


# ---------------------------------------------------------------- projection


@pytest.fixture(scope="module")
def faces():
    return load_generator(pretrained.path())




@pytest.fixture(scope="module")
def lpips_files(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("lpips")
    trunk, lin = lpips_stand_in()
    with pytest.MonkeyPatch.context() as mp:
        return (write_zip_state_dict(tmp / "vgg16-test.pth", trunk, mp),
                write_zip_state_dict(tmp / "lpips_vgg_v0.1.pth", lin, mp))


def _reference_projection(net, lpips_vars, target, num_steps, seed):
    """The official loop restated for one image without vmap or optax: Adam by hand (torch's
    update), LPIPS from the metrics module. Returns (final w [w_dim], final distance)."""
    G, s = net.module, projection.Settings()
    w_avg, w_std = projection.w_stats(G, net.variables)
    key_noise, key_w = jax.random.split(jax.random.PRNGKey(seed))
    start = projection.init_state(w_avg, projection.noise_buffers(net.variables), key_noise)
    t_rgb = jnp.repeat(jnp.asarray(target, jnp.float32)[None] / 127.5 - 1, 3, -1)

    def render(g_vars, w, noise):
        ws = jnp.broadcast_to(w[:, None], (1, G.num_ws, G.w_dim))
        img = synthesis(G, projection.with_noise(g_vars, noise), ws, jax.random.PRNGKey(0),
                        noise_mode="const")
        return jnp.repeat(img, 3, -1)

    def loss(params, consts, w_noise):
        (w, noise), (g_vars, lp, t) = params, consts
        d = lpips.LPIPS().apply(lp, render(g_vars, w + w_noise, noise), t)[0]
        return d + s.regularize_noise_weight * projection.noise_regularizer(noise)

    @jax.jit
    def step(params, m, v, i, consts):  # weights as arguments: no constant folding
        lr = projection.learning_rate(i, num_steps, s)
        w_noise = jax.random.normal(jax.random.fold_in(key_w, i), params[0].shape)
        scale = projection.w_noise_scale(i, num_steps, w_std, s)
        grads = jax.grad(loss)(params, consts, w_noise * scale)
        b1, b2 = s.adam_betas
        m = jax.tree_util.tree_map(lambda a, g: b1 * a + (1 - b1) * g, m, grads)
        v = jax.tree_util.tree_map(lambda a, g: b2 * a + (1 - b2) * g * g, v, grads)
        t = i + 1
        params = jax.tree_util.tree_map(
            lambda p, a, b: p - lr * (a / (1 - b1 ** t)) / (jnp.sqrt(b / (1 - b2 ** t))
                                                             + s.adam_eps), params, m, v)
        return (params[0], projection.normalize_noise(params[1])), m, v

    consts = (net.variables, lpips_vars, t_rgb)
    params = (start.w, start.noise)
    m = v = jax.tree_util.tree_map(jnp.zeros_like, params)
    for i in range(num_steps):
        params, m, v = step(params, m, v, i, consts)
    d = jax.jit(lambda c, p: lpips.LPIPS().apply(c[1], render(c[0], *p), c[2]))(consts, params)
    return np.asarray(params[0][0]), float(d[0])


def test_batch_of_one_is_the_official_projection_with_lpips(faces, lpips_files, monkeypatch):
    monkeypatch.setenv("SGJ_VGG16_WEIGHTS", str(lpips_files[0]))
    monkeypatch.setenv("SGJ_LPIPS_WEIGHTS", str(lpips_files[1]))
    distance = attribution.load_distance()
    assert distance.name == "lpips"
    target = bundled_faces()[3]
    got = attribution.project_batch(faces.module, faces.variables, target[None], LPIPS_STEPS,
                                    distance, seed=7, progress=False)
    want_w, want_d = _reference_projection(faces, distance.lpips_vars, target, LPIPS_STEPS, 7)
    start, _ = projection.w_stats(faces.module, faces.variables)
    assert np.abs(want_w - start[0]).max() > 0.2  # the steps moved w
    # Adam's first steps are nearly sign(gradient): float rounding (XLA's optimisation
    # level, batched convolutions) moves w by ~1e-4; a change of the loop moves it ~lr = 0.1.
    np.testing.assert_allclose(got.w[0], want_w, atol=2e-3)
    assert got.distance[0] == pytest.approx(want_d, rel=1e-3)
    official = projection.project(faces.module, faces.variables, distance.lpips_vars, target,
                                  LPIPS_STEPS, seed=7, progress=False)
    np.testing.assert_allclose(official[-1], got.w[0], rtol=1e-5, atol=1e-6)


@pytest.fixture(scope="module")
def eight(faces):
    """Five generated images and three real faces, projected as one batch."""
    G, v = faces.module, faces.variables
    targets = np.concatenate([attribution.generated_images(G, v, [11, 12, 13, 14, 15]),
                              bundled_faces()[[5, 40, 77]]])
    run = functools.partial(attribution.project_batch, G, v, num_steps=FEW_STEPS,
                            distance=attribution.PYRAMID_MSE, seed=5, progress=False)
    return targets, run, run(targets, batch_size=8)


def test_images_in_a_batch_do_not_affect_each_other(eight):
    targets, run, batched = eight
    alone = run(targets[6:7], batch_size=1)  # a real face, seventh of the batch
    # Float rounding differs between batch sizes (~1e-5 in w); a defect moves w by ~lr = 0.1.
    np.testing.assert_allclose(alone.w[0], batched.w[6], atol=5e-4)
    assert alone.distance[0] == pytest.approx(batched.distance[6], rel=1e-3)
    assert not np.allclose(batched.w[0], batched.w[6], atol=1e-3)  # different images


def test_batch_order_and_padding_do_not_change_results(eight):
    targets, run, batched = eight
    order = [6, 0, 7, 1, 5, 2, 4, 3]
    padded = run(targets[order], batch_size=3)  # batches of 3, 3 and 2 + a repeat
    np.testing.assert_allclose(padded.w, batched.w[order], atol=5e-4)
    np.testing.assert_allclose(padded.distance, batched.distance[order], rtol=1e-3)
    assert np.abs(padded.images.astype(int) - batched.images[order]).max() <= 1


def _pyramid_mse(a_uint8, b_uint8):
    """Mean over 1/2 and 1/4 resolution (2x2 block means) of the squared error in [-1, 1]."""
    a, b = (np.asarray(x, np.float64) / 127.5 - 1 for x in (a_uint8, b_uint8))
    n, r = a.shape[0], a.shape[1]
    levels = [np.mean(np.square(a.reshape(n, r // f, f, r // f, f, -1).mean(axis=(2, 4))
                                - b.reshape(n, r // f, f, r // f, f, -1).mean(axis=(2, 4))),
                      axis=(1, 2, 3)) for f in (2, 4)]
    return (levels[0] + levels[1]) / 2


def test_pyramid_distance_ignores_the_finest_octave():
    dist = functools.partial(projection.feature_distance, "pyramid-mse", None)
    feats = functools.partial(projection.features, "pyramid-mse", None)
    zero = jnp.zeros((1, 8, 8, 1))
    # A constant offset c is c^2 at every octave; a pixel checkerboard averages out.
    assert float(dist(feats(zero + 0.5), feats(zero))[0]) == pytest.approx(0.25)
    checker = (-1.0) ** (jnp.arange(8)[:, None] + jnp.arange(8)[None])
    assert float(dist(feats(checker[None, :, :, None]), feats(zero))[0]) == pytest.approx(0)
    # 2x2 blocks of +-1 in a checkerboard: 1 at half resolution, 0 at a quarter -> 0.5
    blocks = jnp.kron(checker[:4, :4], jnp.ones((2, 2)))[None, :, :, None]
    assert float(dist(feats(blocks), feats(zero))[0]) == pytest.approx(0.5)


def test_reported_distance_is_that_of_the_projection(eight):
    targets, _, batched = eight
    assert batched.images.shape == targets.shape and batched.images.dtype == np.uint8
    assert batched.distance.dtype == np.float64 and batched.w.dtype == np.float32
    ratio = batched.distance / _pyramid_mse(targets, batched.images)
    # The distance is of the float rendering; the uint8 projections are rounded (which
    # moves it by ~0.1 %) and clipped (which only brings them closer to a uint8 target:
    # up to 25 % here, in the images with the most clipped pixels).
    assert 0.99 < np.median(ratio) < 1.02 and (ratio > 0.99).all() and (ratio < 1.5).all(), ratio


def _real_faces():
    return bundled_faces()[::6][:NUM]


@pytest.fixture(scope="module")
def separation(faces):
    """Distances of the generator's images (seeds 0..NUM-1) and real faces, NUM each."""
    G, v = faces.module, faces.variables
    targets = np.concatenate([attribution.generated_images(G, v, range(NUM)), _real_faces()])
    d = attribution.project_batch(G, v, targets, STEPS, attribution.PYRAMID_MSE,
                                  batch_size=2 * NUM, progress=False).distance
    return d[:NUM], d[NUM:]


def test_faces32_projects_its_own_images_closer_than_real_faces(separation):
    generated, real = separation
    assert attribution.roc_auc(generated, real) > 0.9, separation


def _stylegan_v1():
    """A StyleGAN (v1) generator, another family; zeros for weights (nothing compiled)."""
    G = stylegan.Generator(num_channels=3, resolution=16, latent_size=16, dlatent_size=16,
                           mapping_layers=2, mapping_fmaps=16, fmap_base=128, fmap_max=16)
    rngs = {"params": jax.random.PRNGKey(0), "noise": jax.random.PRNGKey(0)}
    shapes = jax.eval_shape(lambda: G.init(rngs, jnp.zeros((1, 16)), jnp.zeros((1, 0))))
    return Network(G, jax.tree_util.tree_map(lambda a: np.zeros(a.shape, a.dtype), shapes))


def test_only_stylegan2_generators_project():
    net = _stylegan_v1()
    with pytest.raises(ValueError, match="projection needs a StyleGAN2 generator"):
        attribution.project_batch(net.module, net.variables,
                                  np.zeros((1, 16, 16, 3), np.uint8), 1, attribution.PYRAMID_MSE)


# ---------------------------------------------------------------- distance and files


def test_the_fallback_distance_when_weights_are_missing(tmp_path, monkeypatch, lpips_files):
    monkeypatch.setenv("SGJ_METRICS_WEIGHTS", str(tmp_path))
    monkeypatch.delenv("SGJ_VGG16_WEIGHTS", raising=False)
    monkeypatch.delenv("SGJ_LPIPS_WEIGHTS", raising=False)
    assert attribution.load_distance() == attribution.Distance("pyramid-mse", None)
    with pytest.raises(FileNotFoundError, match="vgg16 weights not found.*Download"):
        attribution.load_distance(fallback=False)
    with pytest.raises(FileNotFoundError, match="missing.pth is not a file"):
        attribution.load_distance(vgg16=tmp_path / "missing.pth")  # named: no fallback
    monkeypatch.setenv("SGJ_VGG16_WEIGHTS", str(tmp_path / "gone.pth"))
    with pytest.raises(FileNotFoundError, match="SGJ_VGG16_WEIGHTS .*gone.pth is not a file"):
        attribution.load_distance()
    monkeypatch.delenv("SGJ_VGG16_WEIGHTS")
    distance = attribution.load_distance(*lpips_files)
    want = lpips.params_from_state_dicts(*lpips_stand_in())
    assert distance.name == "lpips"
    jax.tree_util.tree_map(np.testing.assert_array_equal, distance.lpips_vars, want)


def test_calibration_round_trip_and_named_errors(tmp_path):
    cal = attribution.calibrate([0.1, 0.2], [0.5, 0.6], "pyramid-mse", 40, "faces32",
                                generated_seeds=[0, 1], real_files=["a.png", "b.png"])
    path = attribution.save_calibration(tmp_path / "c.json", cal)
    assert attribution.load_calibration(path) == cal
    data = json.loads(path.read_text())
    for field, value, message in (("threshold", "x", "field 'threshold' is 'x', expected float"),
                                  ("distance", "l2", "field 'distance' is 'l2'"),
                                  ("real", [1, "a"], "field 'real' .* list of numbers")):
        (tmp_path / "bad.json").write_text(json.dumps({**data, field: value}))
        with pytest.raises(ValueError, match=f"bad.json: {message}"):
            attribution.load_calibration(tmp_path / "bad.json")
    del data["num_steps"]
    (tmp_path / "bad.json").write_text(json.dumps(data))
    with pytest.raises(ValueError, match="bad.json: field 'num_steps' is missing"):
        attribution.load_calibration(tmp_path / "bad.json")
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(ValueError, match="bad.json: not a readable JSON"):
        attribution.load_calibration(tmp_path / "bad.json")
    with pytest.raises(FileNotFoundError, match="nope.json: no such file"):
        attribution.load_calibration(tmp_path / "nope.json")


def _has_colour(image, rgb, tol=4):
    return bool((np.abs(image[..., :3].astype(int) - rgb).max(-1) <= tol).any())


def test_histogram_shows_both_groups(tmp_path):
    path = attribution.histogram_png(tmp_path / "h.png", [0.01, 0.012, 0.02], [0.05, 0.07],
                                     0.03, "pyramid-mse")
    image = np.asarray(Image.open(path).convert("RGB"))
    # tab:blue and tab:orange at alpha 0.6 over white
    blue = 0.6 * np.array([31, 119, 180]) + 0.4 * 255
    orange = 0.6 * np.array([255, 127, 14]) + 0.4 * 255
    assert _has_colour(image, blue) and _has_colour(image, orange)


def test_images_are_fitted_as_the_projector_fits_them(tmp_path):
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (24, 41, 3), dtype=np.uint8)).save(tmp_path / "a.png")
    for r, c in ((16, 3), (32, 1)):
        np.testing.assert_array_equal(projection.load_image(tmp_path / "a.png", r, c, "IMAGES"),
                                      load_target(tmp_path / "a.png", r, c))


# ---------------------------------------------------------------- CLI


def _save_png(image, path):
    Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image).save(path)
    return path


CLI_REAL = [3, 30, 60, 90]  # bundled faces for --reals


@pytest.fixture(scope="module")
def calibrated(tmp_path_factory, faces):
    """`attribute --calibrate` on 4 generated and 4 real faces, then `attribute
    --calibration` on gen0.png and a directory of 3 generated images and 4 real faces."""
    tmp = tmp_path_factory.mktemp("attribute")
    (tmp / "reals").mkdir()
    (tmp / "test").mkdir()
    for i in CLI_REAL:
        _save_png(bundled_faces()[i], tmp / "reals" / f"face{i:02d}.png")
    gen = attribution.generated_images(faces.module, faces.variables, [200, 201, 202])
    test_files = [_save_png(gen[i], tmp / "test" / f"gen{i}.png") for i in range(3)]
    test_files += [_save_png(bundled_faces()[i], tmp / "test" / f"real{i}.png")
                   for i in (50, 55, 59, 66)]
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SGJ_METRICS_WEIGHTS", str(tmp))
        mp.delenv("SGJ_VGG16_WEIGHTS", raising=False)
        mp.delenv("SGJ_LPIPS_WEIGHTS", raising=False)
        assert cli.main(["attribute", "--calibrate", "--reals", str(tmp / "reals"),
                         "--num-generated", "4", "--steps", str(FEW_STEPS),
                         "--outdir", str(tmp / "cal")]) == 0
        assert cli.main(["attribute", str(tmp / "test" / "gen0.png"), str(tmp / "test"),
                         "--calibration", str(tmp / "cal" / "calibration.json"),
                         "--outdir", str(tmp / "att")]) == 0
    return tmp, test_files


def test_calibrate_writes_what_its_distances_say(calibrated, faces):
    tmp, _ = calibrated
    cal = json.loads((tmp / "cal" / "calibration.json").read_text())
    g, r = cal["generated"], cal["real"]
    # The library on the same images (PNG files are lossless, already at 32x32).
    G, v = faces.module, faces.variables
    want = attribution.project_batch(
        G, v, np.concatenate([attribution.generated_images(G, v, range(4)),
                              bundled_faces()[CLI_REAL]]),
        FEW_STEPS, attribution.PYRAMID_MSE, progress=False).distance
    np.testing.assert_allclose(g + r, want, rtol=1e-4)
    assert cal["num_steps"] == FEW_STEPS
    assert cal["distance"] == "pyramid-mse" and cal["network"] == "faces32"
    assert cal["auc"] == pytest.approx(_auc_by_pairs(g, r))
    assert cal["accuracy"] == pytest.approx(_balanced_accuracy(g, r, cal["threshold"]))
    values = np.unique(g + r)
    cuts = np.concatenate([0.5 * (values[1:] + values[:-1]), values[-1:]])
    assert cal["accuracy"] == pytest.approx(max(_balanced_accuracy(g, r, c) for c in cuts))
    assert cal["generated_seeds"] == [0, 1, 2, 3]
    assert cal["real_files"] == [str(tmp / "reals" / f"face{i:02d}.png") for i in CLI_REAL]
    with open(tmp / "cal" / "distances.csv") as f:
        rows = list(csv.DictReader(f))
    assert [float(x["distance"]) for x in rows] == g + r
    assert Image.open(tmp / "cal" / "histogram.png").size == (640, 400)


def test_attribute_with_a_calibration_file(calibrated, capsys):
    tmp, test_files = calibrated
    cal = json.loads((tmp / "cal" / "calibration.json").read_text())
    out = json.loads((tmp / "att" / "attribution.json").read_text())
    assert out["distance"] == "pyramid-mse" and out["num_steps"] == FEW_STEPS  # the file's
    assert out["threshold"] == cal["threshold"]
    assert out["threshold_source"] == f"calibration {tmp / 'cal' / 'calibration.json'}"
    # gen0.png named alone, then the directory's seven images, sorted
    assert [x["image"] for x in out["images"]] == [str(p) for p in [test_files[0],
                                                                    *test_files]]
    for x in out["images"]:
        assert x["verdict"] == ("generated" if x["distance"] <= cal["threshold"] else "real")
    assert out["images"][0]["distance"] == pytest.approx(out["images"][1]["distance"], 1e-5)


def test_console_names_the_distance_and_threshold_source(faces, tmp_path, capsys):
    G = faces.module
    image = _save_png(attribution.generated_images(G, faces.variables, [300])[0],
                      tmp_path / "g.png")
    assert cli.main(["attribute", str(image), "--steps", "3", "--num-generated", "8",
                     "--outdir", str(tmp_path / "o")]) == 0
    lines = capsys.readouterr().out.splitlines()
    line = next(x for x in lines if x.startswith(str(image)))
    assert "pyramid-mse" in line and "self-calibration on 8 generated images" in line
    assert line.endswith(": generated") or line.endswith(": real")
    out = json.loads((tmp_path / "o" / "attribution.json").read_text())
    assert out["distance"] == "pyramid-mse" and out["images"][0]["verdict"] in line


def _error(argv, capsys):
    assert cli.main(["attribute", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0, err
    return err


def test_bad_input_is_one_clear_line(tmp_path, capsys, lpips_files, calibrated):
    tmp, test_files = calibrated
    good = str(test_files[0])
    (tmp_path / "empty").mkdir()
    (tmp_path / "bad.png").write_bytes(b"not an image")
    v1 = save_networks(tmp_path / "v1", {"G_ema": _stylegan_v1()})
    cal = str(tmp / "cal" / "calibration.json")
    cases = [
        ([str(tmp_path / "empty")], "IMAGES: no images .* in directory .*empty"),
        ([str(tmp_path / "bad.png")], r"IMAGES .*bad\.png: not an image"),
        ([str(tmp_path / "nope.png")], r"IMAGES: .*nope\.png: no such file"),
        (["--calibrate"], "--calibrate needs --reals"),
        ([], "no IMAGES given"),
        ([good, "--steps", "0"], "--steps must be a positive integer"),
        ([good, "--network", str(v1)], "projection needs a StyleGAN2 generator"),
        ([good, "--calibration", cal, "--steps", "7"],
         f"--steps 7: calibration .* was made with {FEW_STEPS} steps"),
        ([good, "--calibration", cal, "--vgg16-weights",
          str(lpips_files[0]), "--lpips-weights", str(lpips_files[1])],
         "made with the pyramid-mse distance, but the distance now is lpips"),
    ]
    for argv, message in cases:
        err = _error(argv, capsys)
        assert err.startswith("stylegan-jax attribute: error: "), err
        assert re.search(message, err), (argv, err)


def test_self_threshold_is_the_quantile_of_the_generators_own_images(faces):
    G, v = faces.module, faces.variables
    seeds_images = images_from_ws(faces, ws_for_seeds(faces, list(range(8))))  # psi 1
    np.testing.assert_array_equal(attribution.generated_images(G, v, range(8)), seeds_images)
    d = np.sort(attribution.project_batch(G, v, seeds_images, 3, attribution.PYRAMID_MSE,
                                          progress=False).distance)
    # 0.9 quantile of 8 values, linear: position 0.9 * 7 = 6.3
    want = d[6] + 0.3 * (d[7] - d[6])
    got = attribution.self_threshold(G, v, attribution.PYRAMID_MSE, num_images=8, num_steps=3)
    assert got == pytest.approx(want, rel=1e-6)
