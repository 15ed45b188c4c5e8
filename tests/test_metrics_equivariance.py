"""StyleGAN3 equivariance metrics (eqt*_int, eqt*_frac, eqr*) against NVIDIA's
`metrics/equivariance.py`: its image operators on fixed images and its whole metric on
the reference generator (tests/data/equivariance/README.md), closed-form cases, and the
metric through the CLI.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from test_stylegan3_official import official_generator

from stylegan_jax.cli import main
from stylegan_jax.metrics import equivariance as eq
from stylegan_jax.metrics import registry, runner
from stylegan_jax.models import stylegan2, stylegan3
from stylegan_jax.models.registry import Network
from stylegan_jax.store.checkpoints import higher_is_better
from stylegan_jax.store.networks import save_networks

DATA = Path(__file__).parent / "data"
OFFICIAL = DATA / "equivariance" / "official.npz"
GENERATOR = DATA / "reference" / "stylegan3" / "stylegan3_t_32.npz"


@pytest.fixture(scope="module")
def ref():
    with np.load(OFFICIAL) as data:
        return {k: data[k] for k in data.files}


def _full(mask, shape):
    return np.broadcast_to(np.asarray(mask), shape)


_integer = jax.jit(eq.integer_translation)
_fractional = jax.jit(eq.fractional_translation)
_sums = jax.jit(eq.error_sums, static_argnums=0)


def test_translations_match_the_official_operators(ref):
    """Non-square images; shifts past the border, a half pixel (rounds to even), none."""
    x = ref["x"]
    for i, (tx, ty) in enumerate(ref["int_t"]):
        z, m = _integer(x, tx, ty)
        np.testing.assert_array_equal(np.asarray(z), ref[f"int_z/{i}"], err_msg=f"int {i}")
        np.testing.assert_array_equal(_full(m, x.shape), ref[f"int_m/{i}"])
    for i, (tx, ty) in enumerate(ref["frac_t"]):
        z, m = _fractional(x, tx, ty)
        np.testing.assert_allclose(np.asarray(z), ref[f"frac_z/{i}"], atol=5e-6,
                                   err_msg=f"frac {i}")
        np.testing.assert_array_equal(_full(m, x.shape), ref[f"frac_m/{i}"])


def test_rotation_filters_and_operators_match_the_official(ref):
    @jax.jit
    def run(x, angle):  # one compiled program for every angle
        return (eq.affine_bandlimit_filter(eq.rotation_matrix(angle), a=3, amax=6, up=4),
                eq.affine_bandlimit_filter(eq.rotation_matrix(-angle), a=3, amax=6, up=1),
                eq.fractional_rotation(x, angle), eq.fractional_pseudo_rotation(x, angle))

    xs = ref["x_square"]
    for i, angle in enumerate(ref["rot_angle"]):
        f_rot, f_pseudo, (z, m), (y, m_pseudo) = run(xs, angle)
        np.testing.assert_allclose(np.asarray(f_rot), ref[f"rot_filter/{i}"], atol=1e-6)
        np.testing.assert_allclose(np.asarray(f_pseudo), ref[f"pseudo_filter/{i}"], atol=2e-6)
        np.testing.assert_allclose(np.asarray(z), ref[f"rot_z/{i}"], atol=5e-5,
                                   err_msg=f"angle {angle}")
        np.testing.assert_array_equal(_full(m, xs.shape), ref[f"rot_m/{i}"])
        np.testing.assert_allclose(np.asarray(y), ref[f"pseudo_z/{i}"], atol=2e-5)
        np.testing.assert_array_equal(_full(m_pseudo, xs.shape), ref[f"pseudo_m/{i}"])
    x = ref["x"]  # non-square: the grid's aspect scaling
    z, m = jax.jit(eq.fractional_rotation)(x, ref["rot_nonsquare_angle"])
    np.testing.assert_allclose(np.asarray(z), ref["rot_nonsquare_z"], atol=5e-5)
    np.testing.assert_array_equal(_full(m, x.shape), ref["rot_nonsquare_m"])


def test_whole_pixel_shifts_of_an_identity_generator_score_infinity():
    """An 'identity generator' whose moved image is its own image rolled by whole pixels
    (np.roll; the wrapped border falls outside the mask): the masked error is exactly 0,
    so PSNR = +inf, what the official code gives (it has no cap); the mask counts the
    pixels of the overlap, over every channel and sample."""
    x = np.random.default_rng(0).standard_normal((4, 16, 16, 3)).astype(np.float32)
    for dx, dy in [(2, -1), (-3, 0), (0, 0)]:
        moved = np.roll(x, (dy, dx), axis=(1, 2))
        s = np.asarray(_sums("int", jnp.array([dx / 16, dy / 16]), x, moved), np.float64)
        assert s[0] == 0 and s[1] == 4 * 3 * (16 - abs(dy)) * (16 - abs(dx))
        assert eq.psnr(s) == math.inf
    # Moved the other way: a finite error, 20 log10(2) - 10 log10(mean squared difference).
    moved = np.roll(x, (0, -2), axis=(1, 2))
    s = np.asarray(_sums("int", jnp.array([2 / 16, 0.0]), x, moved), np.float64)
    diff = x[:, :, :-2] - moved[:, :, 2:]
    want = 20 * np.log10(2) - 10 * np.log10(np.mean(np.square(diff, dtype=np.float64)))
    assert eq.psnr(s) == pytest.approx(want, abs=1e-4)


def test_rotating_a_constant_image_has_the_closed_form_psnr():
    """The band-limit filters keep a constant (unit gain per phase), so a 'generator' whose
    rotated image is its constant image plus delta scores 20 log10(2 / delta). At angle 0
    each pixel j lands on upsampled sample 4 j + 25 (a 23-sample pad), and the mask keeps
    j in [6, W - 7]: samples 2 p + 1 = 47 inside the border; the pseudo-rotation's
    [5, W - 6] lies around it."""
    orig = np.full((4, 32, 32, 3), 0.3, np.float32)
    delta = 0.01
    for angle in (0.0, 1.0, -2.5):
        s = np.asarray(_sums("rot", jnp.array([angle, 0.0]), orig, orig + delta), np.float64)
        assert eq.psnr(s) == pytest.approx(20 * np.log10(2 / delta), abs=1e-3)
        if angle == 0:
            assert s[1] == 4 * 3 * 20 * 20


def _waves(h: int, w: int, warp) -> np.ndarray:
    """[4, h, w, 2] images of a band-limited field (three sinusoids of at most 0.13 cycles
    per pixel) sampled at pixel centres q = warp(p), p centred and in pixels (x, y)."""
    x, y = np.meshgrid(np.arange(w) + 0.5 - w / 2, np.arange(h) + 0.5 - h / 2)
    q = warp(np.stack([x, y], -1))
    freqs, phases = [[0.07, 0.03], [-0.05, 0.09], [0.11, -0.06]], [0.3, 1.1, -0.4]
    v = sum(np.sin(2 * np.pi * (q @ np.array(f)) + ph)
            for f, ph in zip(freqs, phases, strict=True)) / 3
    return np.broadcast_to(v[None, :, :, None], (4, h, w, 2)).astype(np.float32)


@pytest.mark.parametrize("hw", [(16, 32), (32, 16)], ids=["32x16", "16x32"])
def test_rectangles_move_in_the_input_units(hw):
    """On W x H images the metric's moves are a W x H StyleGAN3's input moves: a
    translation t moves t * R pixels on both axes (R the shorter side), a rotation turns
    the pixels about the centre. Images of one band-limited field, moved in closed form,
    score far above (> 50 dB) what moves in fractions of each side / normalised
    coordinates (the official operators' reading, a shear on rectangles) get (< 25 dB)."""
    h, w = hw
    r = min(h, w)
    orig = _waves(h, w, lambda p: p)
    t = np.float32([0.1, -0.07])
    for mode, tt in (("int", np.round(t * r) / r), ("frac", t)):
        right = _waves(h, w, lambda p, tt=tt: p - tt * r)
        wrong = _waves(h, w, lambda p, tt=tt: p - tt * np.array([w, h]))
        assert eq.psnr(np.asarray(_sums(mode, jnp.asarray(tt), orig, right))) > (
            1e9 if mode == "int" else 50)
        assert eq.psnr(np.asarray(_sums(mode, jnp.asarray(tt), orig, wrong))) < 25
    a = 0.6
    inv = np.linalg.inv(np.array([[np.cos(a), np.sin(a)], [-np.sin(a), np.cos(a)]]))
    s = np.array([w, h]) / r  # pixels per normalised unit, over the shorter side's
    right = _waves(h, w, lambda p: p @ inv.T)
    wrong = _waves(h, w, lambda p: (p / s) @ inv.T * s)
    param = jnp.array([a, 0.0])
    assert eq.psnr(np.asarray(_sums("rot", param, orig, right))) > 50
    assert eq.psnr(np.asarray(_sums("rot", param, orig, wrong))) < 25


def test_draws_follow_the_official_ranges():
    rng = np.random.default_rng(0)
    t_int = np.stack([eq.draw_param(rng, "int", 32) for _ in range(200)])
    assert np.abs(t_int).max() <= 0.125 and np.allclose(t_int * 32, np.round(t_int * 32))
    t_frac = np.stack([eq.draw_param(rng, "frac", 32) for _ in range(200)])
    assert np.abs(t_frac).max() < 0.125 and not np.allclose(t_frac * 32, np.round(t_frac * 32))
    angles = np.stack([eq.draw_param(rng, "rot", 32) for _ in range(200)])
    assert np.abs(angles[:, 0]).max() <= np.pi and angles[:, 0].std() > 1.5
    np.testing.assert_allclose(np.asarray(eq.input_transform("frac", jnp.array([0.1, -0.2]))),
                               [[1, 0, -0.1], [0, 1, 0.2], [0, 0, 1]])
    with pytest.raises(ValueError, match="mode must be one of"):
        eq.draw_param(rng, "scale", 32)


@pytest.fixture(scope="module")
def official_psnrs(ref):
    """Our sums for the z, translations and angles the official metric drew (two groups of
    4 per mode) on the reference generator, all modes in one pass (one compiled program):
    groups 0-1 are the translations' z (int and frac drew the same), 2-3 the rotation's."""
    _, _, G, variables = official_generator(GENERATOR)
    z = np.concatenate([ref["gen_int/z"], ref["gen_rot/z"]]).reshape(4, eq.GROUP, -1)
    np.testing.assert_array_equal(ref["gen_int/z"], ref["gen_frac/z"])
    angles = np.stack([ref["gen_rot/param"], np.zeros(2, np.float32)], 1)
    params = np.zeros((4, 3, 2), np.float32)
    params[:2, 0], params[:2, 1] = ref["gen_int/param"], ref["gen_frac/param"]
    params[2:, 2] = angles
    sums = jax.jit(eq.group_sums, static_argnums=(0, 2))(
        G, variables, eq.MODES, z, np.zeros((4, eq.GROUP, 0), np.float32), params)
    sums = np.asarray(sums, np.float64)
    return {m: eq.psnr(sums[rows, i].sum(0)) for i, (m, rows) in
            enumerate(zip(eq.MODES, (slice(0, 2), slice(0, 2), slice(2, 4)), strict=True))}


@pytest.mark.parametrize("mode", eq.MODES)
def test_metric_equals_the_official_metric_on_the_reference_generator(ref, official_psnrs, mode):
    assert official_psnrs[mode] == pytest.approx(float(ref[f"gen_{mode}/psnr"]), abs=2e-3)


def test_registry_names():
    specs = registry.parse_metrics("eqt50k_int,eqt50k_frac,eqr50k,eqt64_frac,eqr1k")
    assert [(s.kind, s.mode, s.num_gen) for s in specs] == [
        ("eq", "int", 50_000), ("eq", "frac", 50_000), ("eq", "rot", 50_000),
        ("eq", "frac", 64), ("eq", "rot", 1000)]
    assert all(not s.needs_real and s.detector is None for s in specs)
    assert higher_is_better("eqr50k") and not higher_is_better("fid50k")
    for bad in ("eqt50k", "eqr50k_int", "eqt50k_rot"):
        with pytest.raises(ValueError, match="unknown metric"):
            registry.parse_metric(bad)


def _stylegan2_module():
    return stylegan2.Generator(z_dim=8, c_dim=0, w_dim=8, img_resolution=16, img_channels=3)


def test_other_generators_are_refused_with_the_metric_named():
    with pytest.raises(ValueError, match=r"eqt8_int: .*input transform \(StyleGAN3"):
        runner.compute_metrics(["eqt8_int"], Network(_stylegan2_module(), {}), None, None,
                               progress=False)


def test_cli_computes_the_metrics_of_a_tiny_stylegan3(tmp_path):
    """Through `stylegan-jax metrics` (the runner, sharded over the 8 test devices):
    finite PSNRs in a sane range, appended to the run dir's metric-<name>.jsonl."""
    G = stylegan3.Generator(z_dim=8, c_dim=0, w_dim=8, img_resolution=16, img_channels=3,
                            channel_base=128, channel_max=4, num_layers=2, num_critical=1)
    variables = jax.jit(G.init)({"params": jax.random.PRNGKey(0)}, jnp.zeros((1, 8)),
                                jnp.zeros((1, 0)))
    save_networks(tmp_path / "net", {"G_ema": Network(G, variables)})
    # Same count: one pass (one compiled program) serves both.
    assert main(["metrics", "--metrics", "eqt8_int,eqr8", "--network", str(tmp_path / "net"),
                 "--run-dir", str(tmp_path), "--batch", "8", "--no-progress"]) == 0
    for name in ("eqt8_int", "eqr8"):
        line = json.loads((tmp_path / f"metric-{name}.jsonl").read_text().splitlines()[-1])
        value = line["results"][name]
        assert math.isfinite(value) and 10 < value < 200, (name, value)
