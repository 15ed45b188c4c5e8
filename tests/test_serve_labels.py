"""Label vectors through `serve` (a network trained on continuous or multi-hot conditions):
`--label` sets the default c, the API's `label=V1,V2,...` sets c per request (data in the
warmed-up programs: nothing compiles while serving), `class=` / `--class` are refused naming
`label`, /api/info and the page say the kind; `convert` of a vector-labelled run keeps the kind,
so the converted network still refuses --class; `directions --method labels` refuses label
vectors.

References: `stylegan-jax generate --label` (its PNG files) for the served pixels; JAX's own
compile events for "nothing compiles"; the label_kind a run's checkpoint records.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image
from test_serve import decode, serve_in_thread
from tiny_generators import visible
from train_fixtures import tiny_config

from stylegan_jax import cli
from stylegan_jax.models import stylegan2
from stylegan_jax.models.registry import Network, networks_from_config
from stylegan_jax.serve import command
from stylegan_jax.store.checkpoints import Checkpoints
from stylegan_jax.store.load import label_kind
from stylegan_jax.store.networks import network_dir_info, save_networks
from stylegan_jax.tools import latent_directions as ld

RES, C_DIM = 16, 3
DEFAULT = "0.5,-1,2"  # serve --label
ASKED = "0.1,1,-0.333"  # the API's label= (not float32-exact)


def vector_generator() -> Network:
    G = stylegan2.Generator(z_dim=16, c_dim=C_DIM, w_dim=16, img_resolution=RES,
                            img_channels=3, mapping_layers=2, channel_base=128, channel_max=16)
    key = jax.random.PRNGKey(0)
    v = jax.jit(G.init)({"params": key, "noise": key}, jnp.zeros((1, 16)), jnp.zeros((1, C_DIM)))
    return visible(Network(G, v))


@pytest.fixture(scope="module")
def network_dir(tmp_path_factory):
    """A network directory that records training on label vectors (as `convert` writes it)."""
    return save_networks(tmp_path_factory.mktemp("vector") / "tiny-vector",
                         {"G_ema": vector_generator()}, info={"label_kind": "vector"})


def serve_args(network_dir: Path, *flags: str):
    return cli.build_parser().parse_args(
        ["serve", "--network", str(network_dir), "--max-batch", "2", "--batch-window-ms", "20",
         "--sliders", "0", "--attribute-queue", "0", *flags])


@pytest.fixture(scope="module")
def client(network_dir):
    served = command.build(serve_args(network_dir, "--label", DEFAULT))
    served.engine.warm_up()
    with serve_in_thread(served.app) as c:
        yield c


@pytest.fixture(scope="module")
def generated(network_dir, tmp_path_factory):
    """`generate --label L --seeds 7,8` for the served default and the asked label, one seed
    per call as the server renders one request at a time (XLA may round a batch of two
    differently)."""
    out = {}
    for label in (DEFAULT, ASKED):
        outdir = tmp_path_factory.mktemp("generate")
        assert cli.main(["generate", "--network", str(network_dir), "--seeds", "7,8",
                         "--batch-size", "1", "--label", label, "--outdir", str(outdir),
                         "--no-grid"]) == 0
        out[label] = [np.asarray(Image.open(outdir / f"seed{s:04d}.png")) for s in (7, 8)]
    return out


class Compiles:
    """Counts JAX compilations (traces and backend compiles) while in the block."""

    def __enter__(self):
        self.events: list[str] = []
        jax.monitoring.register_event_duration_secs_listener(self._note)
        return self

    def _note(self, name: str, _seconds: float, **_kwargs) -> None:
        if name.startswith("/jax/core/compile/"):
            self.events.append(name)

    def __exit__(self, *exc):
        jax.monitoring.unregister_event_duration_listener(self._note)


def test_served_labels_are_generates_images(client, generated):
    """The default (serve --label) and label= per request, each the image of `generate
    --label` for the same seed."""
    with Compiles() as compiles:
        default = client.get("/api/image", params={"seed": 7})
        asked = [client.get("/api/image", params={"seed": s, "label": ASKED}) for s in (7, 8)]
        mixed = client.get("/api/image", params={"seed": 8, "label": "0.5, -1.0, 2"})
    assert compiles.events == []  # c is data in the warmed-up bucket programs
    assert default.status_code == 200, default.text
    assert default.headers["x-label"] == "0.5,-1.0,2.0" and "x-class" not in default.headers
    np.testing.assert_array_equal(decode(default.content), generated[DEFAULT][0])
    for r, want in zip(asked, generated[ASKED], strict=True):
        assert r.status_code == 200 and r.headers["x-label"] == "0.1,1.0,-0.333"
        np.testing.assert_array_equal(decode(r.content), want)
    np.testing.assert_array_equal(decode(mixed.content), generated[DEFAULT][1])
    assert not np.array_equal(generated[DEFAULT][0], generated[ASKED][0])  # c shows


@pytest.mark.parametrize("query, name", [
    ({"label": "1,2"}, "label"),
    ({"label": "1,2,3,4"}, "label"),
    ({"label": "1,x,3"}, "label"),
    ({"label": "1,,3"}, "label"),
    ({"label": "1,nan,3"}, "label"),
    ({"label": "1,inf,3"}, "label"),
    ({"label": "1,1e39,3"}, "label"),  # float32 overflow: c would be inf
    ({"label": ""}, "label"),
    ({"class": "1", "label": "1,2,3"}, "label"),
])
def test_bad_labels_are_400_naming_label(client, query, name):
    r = client.get("/api/image", params={"seed": 1, **query})
    assert r.status_code == 400, r.text
    body = r.json()
    assert body["parameter"] == name
    if len(query) == 1:
        assert body["allowed"] == ("3 comma-separated finite numbers (the generator's c as it "
                                   "is, e.g. 0,0,0)")


def test_class_on_a_vector_network_names_label(client):
    for path in ("/api/image", "/"):
        r = client.get(path, params={"seed": 1, "class": "1"})
        assert r.status_code == 400
        assert r.json() == {
            "error": "class: got '1', expected no class (this network was trained on label "
                     "vectors: give label=V1,V2,... with 3 numbers, e.g. label=0,0,0)",
            "parameter": "class",
            "allowed": "no class (this network was trained on label vectors: give "
                       "label=V1,V2,... with 3 numbers, e.g. label=0,0,0)"}


def test_info_and_page_carry_the_label(client):
    info = client.get("/api/info").json()
    assert (info["label_kind"], info["label_dim"], info["classes"]) == ("vector", 3, 3)
    assert info["label_default"] == [0.5, -1.0, 2.0] and info["class_default"] is None
    assert "label" in info["class_allowed"] and info["class_names"] == []
    page = client.get("/", params={"seed": 5, "label": ASKED})
    assert page.status_code == 200
    text = page.text.replace("&amp;", "&")
    assert 'data-label-kind="vector"' in text and 'data-label="0.1,1.0,-0.333"' in text
    assert '<img id="face" src="/api/image?seed=5&psi=1.0&label=0.1,1.0,-0.333"' in text
    assert 'href="/?seed=5&psi=1.0&label=0.1,1.0,-0.333"' in text  # the permalink
    assert 'id="label"' in text and "&class=" not in text
    js = client.get("/static/page.js").text
    assert 'q.set("label", state.label)' in js


def test_startup_flags_on_a_vector_network(network_dir, capsys):
    """--class is refused naming --label (generate's words), a bad --label is named, and
    with neither the server renders the zero vector (nothing compiles before these)."""
    for flags, error in [
        (["--class", "1"], "--class '1': this generator was trained on label vectors; pass "
         "--label with 3 comma-separated numbers (e.g. --label 0,0,0)"),
        (["--label", "1,2"], "--label '1,2' has 2 numbers; expected 3 comma-separated"),
        (["--label", "1,nan,2"], "--label '1,nan,2': expected finite numbers"),
    ]:
        capsys.readouterr()
        assert cli.main(["serve", "--network", str(network_dir), "--port", "0",
                         "--attribute-queue", "0", "--sliders", "0", *flags]) == 2
        assert error in capsys.readouterr().err
    served = command.build(serve_args(network_dir))
    assert served.app.state.serve.defaults.label == (0.0, 0.0, 0.0)
    assert served.app.state.serve.defaults.class_idx is None


# --- convert and directions ----------------------------------------------------------------


def zeros_like_init(module, *inputs) -> dict:
    """The module's variables, all zero: their shapes without running the initialisers."""
    shapes = jax.eval_shape(module.init, {"params": jax.random.PRNGKey(0),
                                          "noise": jax.random.PRNGKey(0)}, *inputs)
    return jax.tree_util.tree_map(lambda s: np.zeros(s.shape, s.dtype), shapes)


@pytest.fixture(scope="module")
def vector_run(tmp_path_factory):
    """A training workdir whose checkpoint records label vectors of 3 numbers, as the trainer
    writes it (config.json, a checkpoint's state and meta), without training."""
    run = tmp_path_factory.mktemp("run") / "run"
    run.mkdir()
    config = tiny_config()
    G, D = networks_from_config(config, C_DIM)
    g = zeros_like_init(G, jnp.zeros((1, G.z_dim)), jnp.zeros((1, C_DIM)))
    d = zeros_like_init(D, jnp.zeros((2, RES, RES, config.data.channels)),
                        jnp.zeros((2, C_DIM)))
    (run / "config.json").write_text(config.to_json_best_effort())
    ckpts = Checkpoints(run / "checkpoints", 2, None, async_save=False,
                        run_meta={"label_kind": "vector", "class_names": []})
    ckpts.save(16, {"G": g["params"], "G_buffers": g["buffers"], "G_ema": g["params"],
                    "G_ema_buffers": g["buffers"], "D": d["params"]}, {}, {"c_dim": C_DIM})
    ckpts.wait()
    ckpts.close()
    assert label_kind(run) == "vector"
    return run


def test_convert_keeps_the_label_kind(vector_run, tmp_path, capsys):
    dest = tmp_path / "converted"
    assert cli.main(["convert", str(vector_run), str(dest), "--only", "G_ema"]) == 0
    info = network_dir_info(dest)
    assert info["label_kind"] == "vector" and "class_names" not in info
    assert label_kind(dest) == "vector"
    capsys.readouterr()
    assert cli.main(["generate", "--network", str(dest), "--seeds", "0", "--class", "1",
                     "--outdir", str(tmp_path / "x")]) == 2
    assert ("--class '1': this generator was trained on label vectors; pass --label with 3"
            in capsys.readouterr().err)


def write_vector_dataset(root: Path) -> Path:
    """A 4-image dataset labelled with 2-number vectors (`stylegan-jax dataset`)."""
    src = root / "src"
    src.mkdir(parents=True)
    for i in range(4):
        Image.fromarray(np.full((RES, RES), 40 * i + 20, np.uint8), "L").save(src / f"{i}.png")
    labels = [[f"{i}.png", [i / 4, 1 - i / 4]] for i in range(4)]
    (src / "dataset.json").write_text(json.dumps({"labels": labels}))
    dest = root / "ds"
    assert cli.main(["dataset", "--source", str(src), "--dest", str(dest), "--resolution",
                     str(RES), "--channels", "1", "--no-progress"]) == 0
    return dest


def test_directions_labels_refuses_label_vectors(tmp_path, capsys):
    """(On the shipped unconditional network: projection takes no conditional one.)"""
    dataset = write_vector_dataset(tmp_path)
    capsys.readouterr()
    out = tmp_path / "d.npz"
    assert cli.main(["directions", "--method", "labels",
                     "--data", str(dataset), "--num-steps", "1", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert re.search(r"--data \S+: its labels are vectors of 2 numbers \(label_kind 'vector'\)"
                     r", not classes; --method labels", err), err
    assert not out.exists()
    with pytest.raises(ValueError, match=r"labels \[4, 2\] are label vectors .*not classes"):
        ld.supervised(np.zeros((4, 3)), np.zeros((4, 2), np.float32), ["a", "b"], num_ws=2)


# --- the page in Chromium (as tests/test_serve_browser.py; skips without it) ---------------

LOADED = """(old) => { const i = document.getElementById('face');
    return i.getAttribute('src') !== old && i.complete && i.naturalWidth > 0; }"""
PIXELS = """() => { const c = document.createElement('canvas');
    c.width = face.naturalWidth; c.height = face.naturalHeight;
    const g = c.getContext('2d'); g.drawImage(face, 0, 0);
    return Array.from(g.getImageData(0, 0, c.width, c.height).data); }"""


@pytest.fixture(scope="module")
def browser():
    chromium = Path("/usr/bin/chromium")
    if os.environ.get("SGJ_REQUIRE_BROWSER") != "1":
        if not chromium.is_file():
            pytest.skip(f"no {chromium} (SGJ_REQUIRE_BROWSER=1 makes this a failure)")
        pytest.importorskip("playwright.sync_api")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(chromium),
                              args=["--headless", "--no-sandbox", "--disable-gpu"])
        yield b
        b.close()


def test_page_label_field_in_chromium(client, browser):
    """The label field replaces the class menu; a typed vector becomes the image's label=
    (the pixels shown are /api/image's), a malformed one is marked invalid, not sent."""
    page = browser.new_page()
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(f"{client.base_url}/?seed=3")
    page.wait_for_function(LOADED, arg="")
    assert page.is_hidden("#class-control") and page.is_visible("#label-control")
    assert page.input_value("#label") == "0.5,-1.0,2.0"
    src = page.get_attribute("#face", "src")
    assert src == "/api/image?seed=3&psi=1.0&label=0.5,-1.0,2.0"
    page.fill("#label", " 1, 0,1")
    page.press("#label", "Enter")
    page.wait_for_function(LOADED, arg=src)
    src = page.get_attribute("#face", "src")
    assert src == "/api/image?seed=3&psi=1.0&label=1%2C0%2C1"  # URLSearchParams' encoding
    assert page.url.endswith("/?seed=3&psi=1.0&label=1%2C0%2C1")
    shown = np.array(page.evaluate(PIXELS), np.uint8).reshape(RES, RES, 4)[..., :3]
    served = decode(client.get("/api/image", params={"seed": 3, "label": "1,0,1"}).content)
    np.testing.assert_array_equal(shown, served)
    page.fill("#label", "1,2")
    page.press("#label", "Enter")
    assert page.evaluate("!document.getElementById('label').validity.valid")
    assert page.get_attribute("#face", "src") == src
    assert not errors, errors


def test_an_exported_vector_network_keeps_its_label_kind(network_dir, tmp_path):
    """`export` records what c means (label vectors here; class names where a source has
    them), so `serve --exported` refuses class= on it as on the network itself."""
    from stylegan_jax.export.artifact import read_manifest
    from stylegan_jax.serve.exported import ExportedEngine

    out = tmp_path / "exported"
    assert cli.main(["export", "--network", str(network_dir), "--format", "stablehlo",
                     "--out", str(out)]) == 0
    manifest = read_manifest(out)
    assert manifest["label_kind"] == "vector" and "class_names" not in manifest
    engine = ExportedEngine(out, max_batch=1)
    assert engine.spec.vector_labels and engine.spec.c_dim == C_DIM
    named = save_networks(tmp_path / "named", {"G_ema": vector_generator()},
                          info={"class_names": ["a", "b", "c"]})
    assert cli.main(["export", "--network", str(named), "--format", "stablehlo", "--out",
                     str(tmp_path / "named-exported")]) == 0
    manifest = read_manifest(tmp_path / "named-exported")
    assert (manifest["label_kind"], manifest["class_names"]) == ("class", ["a", "b", "c"])
    assert ExportedEngine(tmp_path / "named-exported", 1).spec.class_names == ("a", "b", "c")
