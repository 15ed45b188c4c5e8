"""`serve`'s latent edits (`/api/image?edit=K:STRENGTH,...`, the page's sliders): a served
edit is the edit tool's image of the same ws, every bad `edit` is a 400 naming it, and the
networks without ws to edit (ProGAN, exported artifacts) refuse it.

Reference: the edited image computed here without the server: z of the seed (the official
seeding) -> `models.sampling.mapping` (truncated) -> + the sum of strength * sigma * v on
each direction's layers, written out from the definition -> `models.sampling.synthesis`;
and `generate.images_from_ws` of the same ws (what `stylegan-jax edit` renders).
"""

from __future__ import annotations

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from test_serve import decode, serve_in_thread
from tiny_generators import progan_conditional, visible

from stylegan_jax import cli, images
from stylegan_jax.generate import images_from_ws
from stylegan_jax.models.registry import random_generator
from stylegan_jax.models.sampling import latents_for_seeds, mapping_jit, synthesis_jit, w_shape
from stylegan_jax.serve import params, sliders
from stylegan_jax.serve.app import create_app
from stylegan_jax.serve.engine import Engine
from stylegan_jax.store.networks import save_networks
from stylegan_jax.tools import latent_directions as ld

RES = 16


@pytest.fixture(scope="module")
def net():
    return visible(random_generator(RES))


def _unit(rnd, dim):
    v = rnd.randn(dim)
    return (v / np.linalg.norm(v)).astype(np.float32)


@pytest.fixture(scope="module")
def directions_file(net, tmp_path_factory):
    """Three directions: all layers, layers 1-3 only, the last layer only."""
    num_ws, w_dim = w_shape(net.module)
    rnd = np.random.RandomState(5)
    dirs = [ld.Direction(_unit(rnd, w_dim), sigma, layers, "sefa", score, name)
            for sigma, layers, score, name in ((0.8, (0, num_ws - 1), 0.5, "all"),
                                               (1.3, (1, 3), 0.3, "middle"),
                                               (0.6, (num_ws - 1, num_ws - 1), 0.2, "last"))]
    path = tmp_path_factory.mktemp("dirs") / "dirs.npz"
    return ld.save_directions(path, dirs, {"num_ws": num_ws, "w_dim": w_dim})


@pytest.fixture(scope="module")
def client(net, directions_file):
    engine = Engine(net, max_batch=2)
    engine.warm_up()
    app = create_app(engine, "tiny-edit", sliders=sliders.for_network(net, directions_file))
    with serve_in_thread(app) as c:
        yield c


def independent(net, seed: int, psi: float, edits, directions):
    """(the edited image by mapping + offset + synthesis, `images_from_ws` of the same ws)."""
    G = net.module
    z = jnp.asarray(latents_for_seeds([seed], G.z_dim))
    ws = np.asarray(mapping_jit(G, net.variables, z, jnp.zeros((1, 0)), psi=psi))
    offset = np.zeros(ws.shape[1:], np.float64)
    for k, strength in sorted(edits):
        d = directions[k]
        offset[d.layers[0]:d.layers[1] + 1] += strength * d.sigma * d.vector.astype(np.float64)
    edited = ws + offset.astype(np.float32)
    img = synthesis_jit(G, net.variables, jnp.asarray(edited), jax.random.PRNGKey(0),
                        noise_mode="const")
    return images.to_uint8(np.asarray(img))[0], images_from_ws(net, edited)[0]


def get(client, **query):
    r = client.get("/api/image", params=query)
    assert r.status_code == 200, r.text
    return r


def test_served_edit_is_the_edit_tools_image(client, net, directions_file):
    dirs = ld.load_directions(directions_file)
    for seed, psi, edits in ((7, 1.0, [(0, 2.5)]), (7, 0.7, [(1, -3.0), (2, 4.0)]),
                             (123, 0.5, [(0, -1.5), (1, 2.0), (2, -6.0)])):
        text = ",".join(f"{k}:{s}" for k, s in edits)
        r = get(client, seed=seed, psi=psi, edit=text)
        want, tool = independent(net, seed, psi, edits, dirs)
        served = decode(r.content)
        np.testing.assert_array_equal(served, want)
        np.testing.assert_array_equal(served, tool)
        assert r.headers["x-edit"] == params.edit_text(tuple(edits))
        plain = decode(get(client, seed=seed, psi=psi).content)
        assert np.abs(served.astype(int) - plain).mean() > 1  # the edit shows


def test_edit_bytes_are_reproducible_and_zero_is_no_edit(client):
    a = get(client, seed=9, edit="1:2.5,0:-1")
    b = get(client, seed=9, edit="0:-1.0,1:2.5")  # another order, another spelling
    assert a.content == b.content
    assert a.headers["x-edit"] == b.headers["x-edit"] == "0:-1.0,1:2.5"
    plain = get(client, seed=9)
    assert plain.headers["x-edit"] == ""
    assert get(client, seed=9, edit="0:0").content == plain.content
    assert get(client, seed=9, edit="0:0,2:0.0").headers["x-edit"] == ""
    assert get(client, seed=9, edit="2:0.5").content != plain.content


BAD_EDITS = ["3:1", "-1:1", "0:10.5", "0:-11", "0:nan", "0:inf", "x", "0", "0:", ":1",
             "0:1,0:2", "", "0:1;1:1", ",".join(f"{k % 3}:1" for k in range(17))]


def test_bad_edits_get_400_naming_edit(client):
    for text in BAD_EDITS:
        r = client.get("/api/image", params={"seed": 1, "edit": text})
        assert r.status_code == 400, (text, r.text)
        body = r.json()
        assert body["parameter"] == "edit" and body["error"].startswith("edit"), body
        assert "[0, 2]" in body["allowed"] and "[-10, 10]" in body["allowed"], body
    page = client.get("/", params={"seed": 1, "edit": "7:1"})
    assert page.status_code == 400 and page.json()["parameter"] == "edit"
    assert client.get("/api/image", params={"seed": 1}).status_code == 200


def test_info_lists_directions_and_the_page_carries_the_edit(client, net):
    info = client.get("/api/info").json()
    last = w_shape(net.module)[0] - 1
    assert [(d["index"], d["name"], d["method"], d["layers"]) for d in info["directions"]] \
        == [(0, "all", "sefa", [0, last]), (1, "middle", "sefa", [1, 3]),
            (2, "last", "sefa", [last, last])]
    assert [d["score"] for d in info["directions"]] == pytest.approx([0.5, 0.3, 0.2])
    assert info["strength_range"] == [-10.0, 10.0]
    assert info["directions_source"] == "file dirs.npz"
    page = client.get("/", params={"seed": 7, "edit": "1:2,0:-0.5"}).text
    canonical = "seed=7&amp;psi=1.0&amp;edit=0:-0.5,1:2.0"
    assert f'src="/api/image?{canonical}"' in page
    assert f'href="/?{canonical}"' in page
    assert 'data-edit="0:-0.5,1:2.0"' in page
    names = re.search(r'data-directions="([^"]*)"', page).group(1)
    assert "&quot;middle&quot;" in names


def test_progan_refuses_edits_and_lists_no_directions():
    net = progan_conditional()
    engine = Engine(net, max_batch=1)
    engine.warm_up()
    edits = sliders.for_network(net)
    assert edits.directions == ()
    with serve_in_thread(create_app(engine, "progan", sliders=edits)) as c:
        info = c.get("/api/info").json()
        assert info["directions"] == [] and "no w space" in info["edit_allowed"]
        r = c.get("/api/image", params={"seed": 1, "class": 0, "edit": "0:1"})
        assert r.status_code == 400 and r.json()["parameter"] == "edit"
        assert "no w space" in r.json()["allowed"]
        ok = c.get("/api/image", params={"seed": 1, "class": 0})
        assert ok.status_code == 200 and "x-edit" not in ok.headers
    with pytest.raises(ValueError, match="no w space"):
        sliders.for_network(net, count=3)


def test_sliders_flags(net, tmp_path, capsys):
    """--sliders N: N SeFa directions, 0 none; --directions checked against the network."""
    two = sliders.for_network(net, count=2)
    assert [d.name for d in two.directions] == ["sefa0", "sefa1"]
    assert two.rule == params.EditRule(2)
    off = sliders.for_network(net, count=0)
    assert off.rule.count == 0 and "--sliders 0" in off.rule.reason
    with pytest.raises(ValueError, match="--sliders must be >= 0"):
        sliders.for_network(net, count=-1)
    with pytest.raises(ValueError, match="--sliders 65: SeFa gives at most w_dim = 64"):
        sliders.for_network(net, count=65)
    other = tmp_path / "other.npz"  # made for a generator with another w_dim
    ld.save_directions(other, [ld.Direction(np.eye(8, dtype=np.float32)[0], 1.0, (0, 5),
                                            "sefa", 1.0, "x")], {"num_ws": 6, "w_dim": 8})
    nets = save_networks(tmp_path / "tiny", {"G_ema": net})
    assert cli.main(["serve", "--network", str(nets), "--port", "0", "--directions",
                     str(other)]) == 2
    err = capsys.readouterr().err
    assert "serve: error: --directions:" in err and "w_dim 8" in err and "w_dim 64" in err
    assert cli.main(["serve", "--network", str(nets), "--port", "0", "--directions",
                     str(tmp_path / "missing.npz")]) == 2
    err = capsys.readouterr().err
    assert "--directions: directions file" in err and "missing.npz: no such file" in err
