"""`video`: the walk's interpolation against scipy's interp1d (as the official gen_video.py
calls it), the official seed assignment, and an MP4 read back with imageio."""

from __future__ import annotations

import imageio.v2 as imageio
import numpy as np
import pytest
import scipy.interpolate

from stylegan_jax import cli, generate
from stylegan_jax.store.networks import save_networks
from stylegan_jax.tools import video


@pytest.mark.parametrize("kind", ["cubic", "linear"])
@pytest.mark.parametrize("num_keyframes", [1, 3, 4])
def test_interpolation_is_scipys_interp1d_over_wrapped_keyframes(kind, num_keyframes):
    k, w_frames, wraps = num_keyframes, 5, 2
    keyframes = np.random.RandomState(k).randn(k, 2, 3)
    x = np.arange(-k * wraps, k * (wraps + 1))
    y = np.tile(keyframes, [2 * wraps + 1, 1, 1])
    t = np.arange(k * w_frames) / w_frames
    expected = scipy.interpolate.interp1d(x, y, kind=kind, axis=0)(t)
    got = np.einsum("tk,kab->tab", video.interpolation_weights(k, t, kind), keyframes)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12)
    np.testing.assert_allclose(got[::w_frames], keyframes, rtol=0, atol=1e-12)


def test_keyframe_seeds_as_the_official_script_assigns_them():
    cells = video.keyframe_seeds([10, 11, 12, 13, 14], (2, 1), 3)
    np.testing.assert_array_equal(cells, [[[10, 11, 12], [13, 14, 10]]])
    order = np.random.RandomState(7).permutation([10, 11, 12, 13, 14, 10])
    shuffled = video.keyframe_seeds([10, 11, 12, 13, 14], (2, 1), 3, shuffle_seed=7)
    np.testing.assert_array_equal(shuffled.reshape(-1), order)
    assert video.keyframe_seeds(list(range(8)), (2, 2), None).shape == (2, 2, 2)
    with pytest.raises(ValueError, match="5 seeds do not divide into the 2x2 grid"):
        video.keyframe_seeds(list(range(5)), (2, 2), None)


def luma(rgb: np.ndarray) -> np.ndarray:
    return rgb.astype(float) @ np.array([0.299, 0.587, 0.114])


@pytest.mark.filterwarnings("ignore:os.fork:RuntimeWarning")  # ffmpeg reading (fork+exec)
def test_mp4_reads_back(tmp_path):
    """4 seeds on a 2x1 grid: 2 keyframes x 3 frames; frame 0 shows seeds 0 | 2, frame 3
    (keyframe 1) seeds 1 | 3. H.264 in yuv420p halves the chroma resolution, so the frames
    are compared in luma: mean error <= 4 levels, max <= 32 (measured on these noisy
    16 px images: ~2 and ~20; a different image differs by ~55 on average)."""
    net = generate.random_generator(16, seed=3)
    path = save_networks(tmp_path / "G", {"G_ema": net})
    out = tmp_path / "walk" / "lerp.mp4"
    assert cli.main(["video", "--network", str(path), "--seeds", "0-3", "--grid", "2x1",
                     "--w-frames", "3", "--fps", "24", "--output", str(out)]) == 0
    reader = imageio.get_reader(out)
    meta = reader.get_meta_data()
    frames = np.stack(list(reader.iter_data()))  # len(reader) is inf: no list(reader)
    reader.close()
    assert meta["fps"] == 24 and meta["size"] == (32, 16)
    assert frames.shape == (6, 16, 32, 3)
    own = generate.generate_images(net, [0, 1, 2, 3])
    for index, (left, right) in ((0, (0, 2)), (3, (1, 3))):
        err = np.abs(luma(frames[index]) - luma(np.concatenate([own[left], own[right]], 1)))
        assert err.mean() <= 4 and err.max() <= 32, (index, err.mean(), err.max())


def test_bad_options_are_named(tmp_path, capsys):
    base = ["video", "--random-init", "--resolution", "16", "--seeds", "0-3"]
    assert cli.main([*base, "--grid", "2y2", "--output", str(tmp_path / "a.mp4")]) == 2
    assert "--grid: '2y2'" in capsys.readouterr().err
    assert cli.main([*base, "--output", str(tmp_path / "a.gif")]) == 2
    assert "is not an .mp4" in capsys.readouterr().err
    assert cli.main([*base, "--w-frames", "0", "--output", str(tmp_path / "a.mp4")]) == 2
    assert "--w-frames must be >= 1" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())  # nothing half-written


def test_rgba_frames_are_composited_over_black(tmp_path):
    """H.264 has no alpha: an RGBA frame is encoded as its colour times its opacity (what a
    viewer shows on black), not its colour with the alpha thrown away."""
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 256, (16, 32, 4), dtype=np.uint8)
    frame[:, :16, 3] = 0  # the left half fully transparent: black
    frame[:, 16:, 3] = 255  # the right half opaque: its colour
    out = tmp_path / "a.mp4"
    assert video.write_mp4([frame] * 2, out, fps=24) == 2
    reader = imageio.get_reader(out)
    got = np.asarray(reader.get_data(0), np.float64)
    reader.close()
    assert np.abs(luma(got[:, :12])).mean() <= 4  # (chroma blurs the seam a little)
    err = np.abs(luma(got[:, 20:]) - luma(frame[:, 20:, :3].astype(np.float64)))
    assert err.mean() <= 8
