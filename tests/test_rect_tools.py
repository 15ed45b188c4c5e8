"""The projector (`project`, `attribute`, `directions --method labels`) and `serve` on
W x H generators (issue #26).

References: PIL's own crop and Lanczos resize of windows computed here by hand; NumPy
octaves of the noise regulariser and block means for LPIPS's input; a 64x32 generator made
from the shipped faces32 (its weights, the 4x4 constant and the noise buffers tiled twice
across: two faces side by side), served: its own images, uploaded, project much closer
than pairs of real faces; `stylegan-jax generate` (the PNG it writes) for the served
image, the edit computed from its definition (mapping + offset on the direction's layers
+ synthesis), and `attribution.project_batch` of a target cropped by PIL for an upload.
"""

from __future__ import annotations

import io

import jax.numpy as jnp
import numpy as np
import pytest
from flax import traverse_util
from PIL import Image
from test_serve import decode, serve_in_thread, wait_for

from stylegan_jax import cli, pretrained
from stylegan_jax.data.sources import bundled_faces
from stylegan_jax.generate import images_from_ws
from stylegan_jax.models.registry import Network, random_generator
from stylegan_jax.models.sampling import latents_for_seeds, mapping_jit
from stylegan_jax.serve import projector, sliders
from stylegan_jax.serve.app import create_app
from stylegan_jax.serve.attribution_queue import AttributionQueue, Threshold
from stylegan_jax.serve.engine import Engine
from stylegan_jax.shapes import ImageShape
from stylegan_jax.store.load import load_generator
from stylegan_jax.store.networks import save_networks
from stylegan_jax.tools import attribution, projection
from stylegan_jax.tools.project import load_target

# ---------------------------------------------------------------- the target


@pytest.mark.parametrize("image_wh,target_wh,box", [
    ((41, 24), (32, 16), (0, 2, 41, 22)),  # a wide target of a less wide image: full width
    ((41, 24), (16, 32), (14, 0, 26, 24)),  # a tall target: full height, 12 columns
    ((30, 70), (32, 16), (0, 27, 30, 42)),  # a tall image, a wide target: 15 rows
    ((41, 24), (16, 16), (8, 0, 32, 24)),  # a square: the official centred square
])
def test_target_is_the_centred_window_of_the_generators_aspect(tmp_path, image_wh, target_wh,
                                                               box):
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (image_wh[1], image_wh[0], 3), dtype=np.uint8)
    want = np.asarray(Image.fromarray(image).crop(box).resize(target_wh,
                                                              Image.Resampling.LANCZOS))
    size = ImageShape(target_wh[1], target_wh[0])
    np.testing.assert_array_equal(projection.fit_image(image, size, 3), want)
    Image.fromarray(image).save(tmp_path / "t.png")
    np.testing.assert_array_equal(load_target(tmp_path / "t.png", size, 3), want)


# ---------------------------------------------------------------- the optimisation's pieces


def _np_regularizer(buf):
    """Octaves by 2x2 means until the shorter side is 8 or less; per octave the squared mean
    products with the buffer rolled by one along each axis."""
    x, total = np.asarray(buf, np.float64), 0.0
    while True:
        total += np.mean(x * np.roll(x, 1, axis=1)) ** 2 + np.mean(x * np.roll(x, 1, axis=0)) ** 2
        if min(x.shape) <= 8:
            return total
        x = x.reshape(x.shape[0] // 2, 2, x.shape[1] // 2, 2).mean(axis=(1, 3))


def test_noise_regularizer_octaves_stop_at_a_shorter_side_of_8():
    rng = np.random.default_rng(1)
    tall = rng.normal(size=(64, 16)).astype(np.float32)  # 64x16 and 32x8: two octaves
    wide = rng.normal(size=(8, 32)).astype(np.float32)  # one octave
    for buf in (tall, wide):
        got = float(projection.noise_regularizer({"n": jnp.asarray(buf)}))
        assert got == pytest.approx(_np_regularizer(buf), rel=1e-5)
    # By hand: ones of 32x16 -> 1 per axis at 32x16 and 16x8, then stop: 4.
    assert float(projection.noise_regularizer({"n": jnp.ones((32, 16))})) == pytest.approx(4)


def test_lpips_input_is_downsampled_by_one_factor_on_both_axes():
    assert projection.lpips_size(512, 1024) == (256, 512)
    assert projection.lpips_size(2048, 512) == (1024, 256)
    assert projection.lpips_size(1024, 1024) == (256, 256)  # official
    assert projection.lpips_size(128, 1024) == (128, 1024)  # shorter side below 256: as is
    x = np.random.default_rng(2).uniform(-1, 1, (1, 512, 1024, 1)).astype(np.float32)
    got = np.asarray(projection.to_lpips_input(jnp.asarray(x)))
    want = x.reshape(1, 256, 2, 512, 2, 1).mean(axis=(2, 4)).repeat(3, axis=-1)
    np.testing.assert_allclose(got, want, atol=1e-6)


# ---------------------------------------------------------------- projection and serve


@pytest.fixture(scope="module")
def faces_wide(tmp_path_factory):
    """(faces32's weights in a 64x32 generator, its network directory): the constant and
    the noise buffers tiled across, so it draws two faces side by side."""
    square = load_generator(pretrained.path())
    flat = traverse_util.flatten_dict(square.variables, sep="/")
    tiled = {k: np.concatenate([v, v], axis=1)
             if k.endswith("b4/const") or k.endswith("noise_const") else v
             for k, v in flat.items()}
    net = Network(square.module.clone(img_aspect=(1, 2)),
                  traverse_util.unflatten_dict(tiled, sep="/"))
    return net, save_networks(tmp_path_factory.mktemp("wide") / "faces-wide", {"G_ema": net})


STEPS = 30  # pyramid-mse: own images 0.016-0.023, pairs of real faces 0.037-0.089 (measured)
THRESHOLD = 0.03


@pytest.fixture(scope="module")
def client(faces_wide):
    """serve of the 64x32 generator: two SeFa sliders, attribution by the real projector
    (one program of a batch of one serves every upload and the references below)."""
    net, _ = faces_wide
    engine = Engine(net, max_batch=1)
    engine.warm_up()
    proj = projector.NetworkProjector(net, attribution.PYRAMID_MSE, STEPS)
    queue = AttributionQueue(proj, Threshold(THRESHOLD, "test"), limit=2)
    app = create_app(engine, "faces-wide", sliders=sliders.for_network(net, count=2),
                     attribution=queue)
    with serve_in_thread(app) as c:
        c.timeout = 120
        state = lambda: c.get("/api/info").json()["attribution"]  # noqa: E731
        wait_for(lambda: state()["ready"] or state()["failed"] is not None, True,
                 "attribution ready (or failed)", 300)
        assert state()["ready"], state()["failed"]
        yield c


def _png(image: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image).save(buf, format="PNG")
    return buf.getvalue()


def test_serve_answers_with_generates_w_x_h_image(client, faces_wide, tmp_path):
    _, network_dir = faces_wide
    assert cli.main(["generate", "--network", str(network_dir), "--seeds", "7",
                     "--outdir", str(tmp_path), "--no-grid"]) == 0
    want = np.asarray(Image.open(tmp_path / "seed0007.png"))
    assert want.shape == (32, 64)
    served = decode(client.get("/api/image", params={"seed": 7}).content)
    np.testing.assert_array_equal(served, want)
    info = client.get("/api/info").json()
    assert (info["width"], info["height"], info["resolution"]) == (64, 32, 32)
    page = client.get("/", params={"seed": 7}).text
    assert 'width="64" height="32"' in page and "--w: 64; --h: 32" in page
    assert "64&times;32" in page


def test_a_served_edit_is_its_definition(client, faces_wide):
    net, _ = faces_wide
    assert len(client.get("/api/info").json()["directions"]) == 2
    found = sliders.for_network(net, count=2).directions[1]
    G, v = net.module, net.variables
    ws = np.array(mapping_jit(G, v, jnp.asarray(latents_for_seeds([7], G.z_dim)),
                              jnp.zeros((1, 0))))
    lo, hi = found.layers
    ws[:, lo:hi + 1] += 3.0 * found.sigma * found.vector
    served = decode(client.get("/api/image", params={"seed": 7, "edit": "1:3"}).content)
    np.testing.assert_array_equal(served, images_from_ws(net, ws)[0][..., 0])
    plain = decode(client.get("/api/image", params={"seed": 7}).content)
    assert np.abs(served.astype(int) - plain).mean() > 1


def test_own_images_are_attributed_and_pairs_of_real_faces_are_not(client, faces_wide):
    net, _ = faces_wide
    own = attribution.generated_images(net.module, net.variables, range(4))
    faces = bundled_faces()
    real = np.stack([np.concatenate([faces[i], faces[i + 11]], axis=1) for i in (5, 17, 40, 77)])
    assert own.shape == real.shape == (4, 32, 64, 1)
    answers = []
    for image in (*own, *real):
        r = client.post("/api/attribute", content=_png(image))
        assert r.status_code == 200, r.text
        answers.append(r.json())
    mine = np.array([a["distance"] for a in answers[:4]])
    theirs = np.array([a["distance"] for a in answers[4:]])
    assert mine.max() < theirs.min() and mine.mean() < 0.5 * theirs.mean(), (mine, theirs)
    assert [a["verdict"] for a in answers] == ["generated"] * 4 + ["real"] * 4


def test_an_upload_is_fitted_to_the_wide_generator(client, faces_wide):
    net, _ = faces_wide
    image = np.random.default_rng(4).integers(0, 256, (30, 40), dtype=np.uint8)  # 40x30
    got = client.post("/api/attribute", content=_png(image[..., None])).json()
    # By hand: 40x30 to 2:1 -> all 40 columns, 20 rows from row 5.
    target = np.asarray(Image.fromarray(image).crop((0, 5, 40, 25)).resize(
        (64, 32), Image.Resampling.LANCZOS))[None, :, :, None]
    want = attribution.project_batch(net.module, net.variables, target, STEPS,
                                     attribution.PYRAMID_MSE, batch_size=1,
                                     progress=False).distance[0]
    assert got["distance"] == pytest.approx(want, rel=1e-4)
    assert (got["image"]["width"], got["image"]["height"]) == (40, 30)


def test_serve_keeps_alpha_in_png_and_composites_jpeg_over_black(tmp_path):
    """An RGBA W x H generator served: the PNG is `generate`'s file, alpha kept, byte for
    byte; the JPEG (no alpha) shows the colour composited over black (NumPy reference,
    within JPEG's loss)."""
    net = random_generator(8, channels=4, aspect=(1, 2))
    network_dir = save_networks(tmp_path / "rgba", {"G_ema": net})
    assert cli.main(["generate", "--network", str(network_dir), "--seeds", "3",
                     "--outdir", str(tmp_path / "gen"), "--no-grid"]) == 0
    png = (tmp_path / "gen" / "seed0003.png").read_bytes()
    engine = Engine(net, max_batch=1)
    engine.warm_up()
    with serve_in_thread(create_app(engine, "rgba", sliders=None)) as c:
        assert c.get("/api/image", params={"seed": 3}).content == png
        jpeg = decode(c.get("/api/image", params={"seed": 3, "format": "jpeg"}).content)
    rgba = np.asarray(Image.open(io.BytesIO(png))).astype(np.float64)
    assert rgba.shape == (8, 16, 4) and rgba[..., 3].std() > 0
    want = rgba[..., :3] * rgba[..., 3:] / 255
    assert jpeg.shape == (8, 16, 3) and np.abs(jpeg - want).mean() < 6
