"""`stylegan-jax project`: the official projector's schedule, regulariser and outputs.

The acceptance run projects an image made from a known w (the shipped face network
when present, else a fixed random-init 32x32 generator) for 50 steps through the CLI,
with LPIPS weight files written as the metrics tests write them: the VGG16 trunk from
the feature-net fixture's rule, the linear layers the lpips package ships.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from feature_net_fixtures import lpips_stand_in
from PIL import Image
from torch_zip_writer import write_zip_state_dict

from stylegan_jax import cli, pretrained
from stylegan_jax.generate import images_from_ws, ws_for_seeds
from stylegan_jax.metrics import lpips
from stylegan_jax.models.registry import random_generator
from stylegan_jax.store.load import load_generator
from stylegan_jax.store.networks import save_networks
from stylegan_jax.tools import projection
from stylegan_jax.tools.project import broadcast_ws, load_target

NUM_STEPS = 50
TARGET_SEED = 5
RANDOM_SEEDS = list(range(6, 21))  # with w_avg: 16 ws, the batch the video compiled
_lpips = jax.jit(lpips.LPIPS().apply)


def _signed(images_uint8):
    return jnp.asarray(images_uint8, jnp.float32) / 127.5 - 1.0




@pytest.fixture(scope="module")
def lpips_vars():
    return lpips.params_from_state_dicts(*lpips_stand_in())


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """One CLI projection of the known w's image; everything the tests look at."""
    tmp = tmp_path_factory.mktemp("project")
    try:
        network = pretrained.path()
    except FileNotFoundError:
        network = save_networks(tmp / "net", {"G_ema": random_generator(32)})
    net = load_generator(network)
    known_ws = ws_for_seeds(net, [TARGET_SEED])
    target = images_from_ws(net, known_ws)[0]
    Image.fromarray(target[..., 0] if target.shape[-1] == 1 else target).save(tmp / "t.png")
    trunk, lin = lpips_stand_in()
    with pytest.MonkeyPatch.context() as mp:
        vgg_file = write_zip_state_dict(tmp / "vgg16-test.pth", trunk, mp)
        lin_file = write_zip_state_dict(tmp / "lpips_vgg_v0.1.pth", lin, mp)
    out = tmp / "out"
    code = cli.main(["project", "--network", str(network), "--target", str(tmp / "t.png"),
                     "--num-steps", str(NUM_STEPS), "--outdir", str(out), "--save-video",
                     "--vgg16-weights", str(vgg_file), "--lpips-weights", str(lin_file)])
    assert code == 0
    return dict(net=net, network=network, known_ws=known_ws, target=target, out=out, tmp=tmp)


def _read(path):
    return np.asarray(Image.open(path))


def test_projection_recovers_a_known_latent(run, lpips_vars):
    net, target = run["net"], run["target"]
    np.testing.assert_array_equal(_read(run["out"] / "target.png").reshape(target.shape), target)
    proj = _read(run["out"] / "proj.png").reshape(target.shape)
    w_avg, _ = projection.w_stats(net.module, net.variables)  # where the projection starts
    ws = np.concatenate([broadcast_ws(w_avg, net.module.num_ws),
                         ws_for_seeds(net, RANDOM_SEEDS)])
    others = np.concatenate([proj[None], images_from_ws(net, ws)])  # proj, start, randoms
    d = np.asarray(_lpips(lpips_vars, _signed(others),
                          _signed(np.repeat(target[None], len(others), 0))))
    d_proj, d_start, d_rand = d[0], d[1], d[2:]
    assert d_proj < 0.05, d
    assert d_proj < 0.5 * d_rand.min(), d
    assert d_proj < 0.5 * d_start, d


def test_projected_w_is_the_official_format_and_generate_renders_it(run):
    G = run["net"].module
    with np.load(run["out"] / "projected_w.npz") as data:
        assert data.files == ["w"]
        w = data["w"]
    assert w.shape == (1, G.num_ws, G.w_dim) and w.dtype == np.float32
    np.testing.assert_array_equal(w, np.broadcast_to(w[:, :1], w.shape))  # one w, every layer
    out = run["tmp"] / "gen"
    assert cli.main(["generate", "--network", str(run["network"]), "--projected-w",
                     str(run["out"] / "projected_w.npz"), "--outdir", str(out)]) == 0
    np.testing.assert_array_equal(_read(out / "proj00.png"), _read(run["out"] / "proj.png"))


def test_an_official_projected_w_file_renders_its_w(run):
    """The official script writes np.savez(w=[1, num_ws, w_dim] float32)."""
    path = run["tmp"] / "official_projected_w.npz"
    np.savez(path, w=run["known_ws"].astype(np.float32))
    out = run["tmp"] / "gen_official"
    assert cli.main(["generate", "--network", str(run["network"]), "--projected-w", str(path),
                     "--outdir", str(out)]) == 0
    got = _read(out / "proj00.png")
    np.testing.assert_array_equal(got.reshape(run["target"].shape), run["target"])


def test_video_shows_target_and_projection_per_step(run):
    import imageio

    net, target = run["net"], run["target"]
    r = target.shape[0]
    reader = imageio.get_reader(run["out"] / "proj.mp4")
    try:
        assert reader.get_meta_data()["fps"] == 10
        frames = [np.asarray(f, np.float32) for f in reader]
    finally:
        reader.close()
    assert len(frames) == NUM_STEPS and frames[0].shape == (r, 2 * r, 3)
    rgb = lambda x: np.repeat(x, 3, -1) if x.shape[-1] == 1 else x  # noqa: E731
    err = lambda a, b: float(np.abs(a - rgb(b)).mean())  # noqa: E731
    # Step 1 runs at learning rate 0 (the ramp-up starts at 0): its w is w_avg.
    w_avg, _ = projection.w_stats(net.module, net.variables)
    start = images_from_ws(net, broadcast_ws(w_avg, net.module.num_ws))[0]
    proj = _read(run["out"] / "proj.png").reshape(target.shape)
    # libx264 (4:2:0 chroma) blurs colour edges of these small images: compare by distance.
    assert err(frames[0][:, :r], target) < 12 and err(frames[-1][:, :r], target) < 12
    assert err(frames[0][:, r:], start) < 12 and err(frames[-1][:, r:], proj) < 12
    assert err(frames[0][:, r:], start) < 0.5 * err(frames[0][:, r:], proj)
    assert err(frames[-1][:, r:], proj) < 0.5 * err(frames[-1][:, r:], start)


def test_schedule_matches_the_closed_form():
    s = projection.Settings()
    # lr = 0.1 * (0.5 - 0.5 cos(pi * min(1, (1 - t) / 0.25))) * min(1, t / 0.05), t = i / 1000
    expected = {0: 0.0, 25: 0.05, 50: 0.1, 500: 0.1,
                900: 0.1 * (0.5 - 0.5 * math.cos(0.4 * math.pi)), 1000: 0.0}
    for i, lr in expected.items():
        assert float(projection.learning_rate(jnp.int32(i), 1000.0, s)) == pytest.approx(
            lr, abs=1e-7), i
    # w noise = w_std * 0.05 * max(0, 1 - t / 0.75)^2
    for i, scale in {0: 0.05, 375: 0.05 * 0.25, 750: 0.0, 900: 0.0}.items():
        got = float(projection.w_noise_scale(jnp.int32(i), 1000.0, 2.0, s))
        assert got == pytest.approx(2.0 * scale, abs=1e-7), i


def test_noise_regularizer_on_hand_computed_buffers():
    # 16x16 ones: autocorrelation 1 along each axis at 16x16 and 8x8 -> 4 terms of 1.
    # 4x4 x[i, j] = i: along W mean(i^2) = 3.5, along H mean(i (i-1 mod 4)) = 2 -> 12.25 + 4.
    rows = jnp.broadcast_to(jnp.arange(4.0)[:, None], (4, 4))
    noise = {"a": jnp.ones((16, 16)), "b": rows}
    assert float(projection.noise_regularizer(noise)) == pytest.approx(4 + 12.25 + 4)
    # A checkerboard anti-correlates at full size; its 2x2 average is zero.
    checker = (-1.0) ** (jnp.arange(16)[:, None] + jnp.arange(16)[None])
    assert float(projection.noise_regularizer({"c": checker})) == pytest.approx(2.0)


def test_normalize_noise_gives_zero_mean_unit_square():
    x = jax.random.normal(jax.random.PRNGKey(0), (8, 8)) * 3 + 2
    y = projection.normalize_noise({"n": x})["n"]
    assert abs(float(y.mean())) < 1e-6 and float(jnp.square(y).mean()) == pytest.approx(1, 1e-5)


def test_distance_on_precomputed_features_is_the_metrics_lpips(lpips_vars):
    @jax.jit
    def both(v, a, b):
        ours = projection.lpips_distance(v, projection.lpips_taps(v, a),
                                         projection.lpips_taps(v, b))
        return ours, lpips.LPIPS().apply(v, a, b)

    a, b = jax.random.uniform(jax.random.PRNGKey(1), (2, 2, 32, 32, 3), minval=-1, maxval=1)
    ours, metric = both(lpips_vars, a, b)
    np.testing.assert_allclose(ours, metric, rtol=1e-5)


def test_images_above_256_are_area_downsampled_first():
    x = jax.random.uniform(jax.random.PRNGKey(2), (1, 512, 512, 1))
    blocks = np.asarray(x).reshape(1, 256, 2, 256, 2, 1).mean(axis=(2, 4))
    got = projection.to_lpips_input(x)
    assert got.shape == (1, 256, 256, 3)
    np.testing.assert_allclose(got[..., 1:2], blocks, atol=1e-6)
    assert projection.to_lpips_input(x[:, :256, :256]).shape == (1, 256, 256, 3)


def test_w_stats_are_the_mean_and_total_std_of_10000_mapped_latents():
    net = random_generator(8)
    G = net.module
    w_avg, w_std = projection.w_stats(G, net.variables)
    z = np.random.RandomState(123).randn(10000, G.z_dim)
    w = np.asarray(G.apply(net.variables, jnp.asarray(z, jnp.float32), jnp.zeros((10000, 0)),
                           method=G.mapping_fn))[:, 0].astype(np.float64)
    np.testing.assert_allclose(w_avg[0], w.mean(0), rtol=1e-5, atol=1e-6)
    assert w_std == pytest.approx(math.sqrt(w.var(0).sum()), rel=1e-5)


def test_target_is_centre_cropped_and_lanczos_resized_as_official(tmp_path):
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (24, 41, 3), dtype=np.uint8)
    Image.fromarray(image).save(tmp_path / "wide.png")
    pil = Image.fromarray(image)
    w, h, s = 41, 24, 24
    box = ((w - s) // 2, (h - s) // 2, (w + s) // 2, (h + s) // 2)
    for r in (16, 32):  # down and up
        want = np.asarray(pil.crop(box).resize((r, r), Image.LANCZOS))
        np.testing.assert_array_equal(load_target(tmp_path / "wide.png", r, 3), want)
    gray = np.asarray(pil.convert("L").crop(box).resize((16, 16), Image.LANCZOS))
    np.testing.assert_array_equal(load_target(tmp_path / "wide.png", 16, 1)[..., 0], gray)


def test_bad_inputs_are_named(tmp_path):
    (tmp_path / "x.png").write_bytes(b"not an image")
    with pytest.raises(ValueError, match=r"--target .*x\.png: not an image"):
        load_target(tmp_path / "x.png", 16, 3)
    with pytest.raises(FileNotFoundError, match="--target .*missing.png"):
        load_target(tmp_path / "missing.png", 16, 3)
    with pytest.raises(ValueError, match="--num-steps must be a positive integer, got 0"):
        projection.check_steps(0)
    conditional = random_generator(8).module.clone(c_dim=3)
    with pytest.raises(ValueError, match="unconditional generator .* c_dim 3"):
        projection.check_generator(conditional)
    net = random_generator(8)
    with pytest.raises(ValueError, match=r"target image has shape \(16, 16, 3\).*\(8, 8, 3\)"):
        projection.project(net.module, net.variables, {}, np.zeros((16, 16, 3), np.uint8), 1)
