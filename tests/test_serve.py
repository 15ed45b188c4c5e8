"""`stylegan-jax serve`: the real server on 127.0.0.1 driven over HTTP (from a network and
from an exported artifact), its batching, its refusals, and the images of every family
(StyleGAN3 with its translate / rotate) against `generate`'s.

References: `stylegan-jax generate` (its PNG files and `generate_images`, which render
one seed per call with a static ψ), and PIL's own decoding of the served bytes.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import re
import signal
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest
import uvicorn
from PIL import Image
from tiny_generators import progan_conditional, stylegan3_conditional, stylegan_v1, visible

from stylegan_jax import cli
from stylegan_jax.generate import generate_images
from stylegan_jax.models.registry import random_generator
from stylegan_jax.serve import command, launch
from stylegan_jax.serve.app import create_app
from stylegan_jax.serve.batcher import Batcher, Overloaded
from stylegan_jax.serve.engine import Engine, default_buckets
from stylegan_jax.store.networks import save_networks

RES = 32


def decode(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)))


def metric(text: str, name: str, **labels) -> float:
    """Sum of a metric's samples whose labels include `labels`."""
    total = 0.0
    for line in text.splitlines():
        m = re.fullmatch(rf"{name}(?:{{(.*)}})? (\S+)", line)
        if m and all(f'{k}="{v}"' in (m.group(1) or "") for k, v in labels.items()):
            total += float(m.group(2))
    return total


@pytest.fixture(scope="module")
def network_dir(tmp_path_factory):
    return save_networks(tmp_path_factory.mktemp("serve") / "tiny",
                         {"G_ema": visible(random_generator(RES))})


@pytest.fixture(scope="module", params=["network", "exported"])
def server(request, network_dir, tmp_path_factory):
    """Max batch 4; a 50 ms window so concurrent requests surely share batches; a queue
    of 8 so a flood overflows it. Served from the network, and from its exported
    StableHLO artifact (`serve --exported`): the same checks hold for both."""
    source = ["--network", str(network_dir)]
    if request.param == "exported":
        art = tmp_path_factory.mktemp("exported") / "tiny-exported"
        assert cli.main(["export", *source, "--format", "stablehlo", "--out", str(art)]) == 0
        source = ["--exported", str(art)]
    srv = launch.start([*source, "--max-batch", "4", "--batch-window-ms", "50",
                        "--queue-limit", "8", "--attribute-queue", "0"])
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def client(server):
    with httpx.Client(base_url=server.url, timeout=60) as c:
        yield c


@pytest.fixture(scope="module")
def generated(network_dir, tmp_path_factory):
    """`stylegan-jax generate --seeds 7` at psi 1 and 0.5: the reference PNG files."""
    out = {}
    for psi in (1.0, 0.5):
        outdir = tmp_path_factory.mktemp(f"generate{psi}")
        assert cli.main(["generate", "--network", str(network_dir), "--seeds", "7",
                         "--trunc", str(psi), "--outdir", str(outdir), "--no-grid"]) == 0
        out[psi] = (outdir / "seed0007.png").read_bytes()
    return out


def test_startup_prints_url_and_warm_up(server):
    text = "\n".join(server.lines)
    assert re.search(r"stylegan2 32x32, buckets 1,2,4 warmed up in [0-9.]+ s", text), text
    assert server.url.startswith("http://127.0.0.1:")


def test_two_page_loads_give_different_faces(client):
    pages = [client.get("/") for _ in range(2)]
    seeds, faces = [], []
    for page in pages:
        assert page.status_code == 200
        assert page.headers["cache-control"] == "no-store"
        assert page.headers["content-type"].startswith("text/html")
        seed = int(re.search(r'data-seed="(\d+)"', page.text).group(1))
        src = re.search(r'<img id="face" src="([^"]+)"', page.text).group(1)
        assert src.replace("&amp;", "&") == f"/api/image?seed={seed}&psi=1.0"
        assert f'href="/?seed={seed}&amp;psi=1.0"' in page.text  # the permalink
        assert "tiny" in page.text  # the network's name
        img = client.get(src.replace("&amp;", "&"))
        assert img.status_code == 200
        seeds.append(seed)
        faces.append(decode(img.content))
    assert seeds[0] != seeds[1]
    assert faces[0].shape == (RES, RES, 3)
    assert not np.array_equal(faces[0], faces[1])
    assert client.get("/static/page.js").status_code == 200
    assert client.get("/static/page.css").status_code == 200


def test_permalink_page_shows_its_seed(client):
    page = client.get("/", params={"seed": 7, "psi": 0.5})
    assert page.status_code == 200
    assert 'src="/api/image?seed=7&amp;psi=0.5"' in page.text


def test_seeded_image_is_generates_file_byte_for_byte(client, generated):
    for psi, reference in generated.items():
        a = client.get("/api/image", params={"seed": 7, "psi": psi})
        b = client.get("/api/image", params={"seed": 7, "psi": psi})
        assert a.status_code == b.status_code == 200
        assert a.headers["content-type"] == "image/png"
        assert "max-age" in a.headers["cache-control"]
        assert a.content == b.content
        np.testing.assert_array_equal(decode(a.content), decode(reference))
        assert a.content == reference
    assert generated[1.0] != generated[0.5]  # the truncation shows


def test_unseeded_image_is_not_cached_and_names_its_seed(client):
    r = client.get("/api/image")
    assert r.status_code == 200 and r.headers["cache-control"] == "no-store"
    again = client.get("/api/image", params={"seed": r.headers["x-seed"]})
    assert again.content == r.content


def test_jpeg_is_the_same_image(client):
    png = client.get("/api/image", params={"seed": 7})
    jpeg = client.get("/api/image", params={"seed": 7, "format": "jpeg"})
    assert jpeg.headers["content-type"] == "image/jpeg"
    assert jpeg.content[:2] == b"\xff\xd8"
    other = client.get("/api/image", params={"seed": 8})
    pixels = decode(jpeg.content).astype(int)
    assert np.abs(pixels - decode(png.content)).mean() < \
        0.2 * np.abs(pixels - decode(other.content)).mean()


def test_info_and_health(client):
    info = client.get("/api/info").json()
    assert info | {"family": "stylegan2", "resolution": RES, "channels": 3, "classes": 0,
                   "psi_default": 1.0, "truncation": True, "buckets": [1, 2, 4]} == info
    assert client.get("/healthz").json() == {"status": "ok"}


BAD = [  # (path, query, status, the parameter the error must name)
    ("/api/image", {"seed": "abc"}, 400, "seed"),
    ("/api/image", {"seed": "1.5"}, 400, "seed"),
    ("/api/image", {"seed": "-1"}, 400, "seed"),
    ("/api/image", {"seed": str(2**32)}, 400, "seed"),
    ("/api/image", {"psi": "abc"}, 400, "psi"),
    ("/api/image", {"psi": "nan"}, 400, "psi"),
    ("/api/image", {"psi": "inf"}, 400, "psi"),
    ("/api/image", {"psi": "5"}, 400, "psi"),
    ("/api/image", {"class": "0"}, 400, "class"),  # the network is unconditional
    ("/api/image", {"translate": "0.1,0"}, 400, "translate"),  # only StyleGAN3 moves
    ("/api/image", {"rotate": "10"}, 400, "rotate"),
    ("/api/image", {"format": "gif"}, 400, "format"),
    ("/api/image", {"sede": "1"}, 400, "sede"),
    ("/", {"seed": "x"}, 400, "seed"),
    ("/api/nothing", {}, 404, "path"),
]


def test_bad_input_gets_4xx_naming_the_parameter(client):
    for path, query, status, name in BAD:
        r = client.get(path, params=query)
        assert r.status_code == status, (path, query, r.text)
        body = r.json()
        assert body["parameter"] == name and body["error"].startswith(name), body
        assert body["allowed"]
    r = client.post("/api/image")
    assert r.status_code == 405 and "error" in r.json()
    assert client.get("/api/image", params={"seed": 1}).status_code == 200  # still serving


def test_the_network_offers_edits_and_the_artifact_refuses_them(client, request):
    """Served from the network: SeFa sliders by default, and an edit changes the image.
    From the exported artifact (z only): no directions, `edit` a 400 saying why, and no
    attribution."""
    info = client.get("/api/info").json()
    r = client.get("/api/image", params={"seed": 7, "edit": "0:3"})
    if request.node.callspec.params["server"] == "exported":
        assert info["directions"] == [] and "exported artifact" in info["edit_allowed"]
        assert r.status_code == 400 and r.json()["parameter"] == "edit"
        assert "exported artifact takes z only" in r.json()["allowed"]
        assert info["attribution"] == {"available": False, "reason": "an exported artifact "
                                       "has no network to project into"}
        assert 'data-attribute="false"' in client.get("/").text
    else:
        assert [d["name"] for d in info["directions"]] == [f"sefa{k}" for k in range(5)]
        assert r.status_code == 200 and r.headers["x-edit"] == "0:3.0"
        assert r.content != client.get("/api/image", params={"seed": 7}).content
        assert info["attribution"]["available"] is False  # --attribute-queue 0
    assert client.post("/api/attribute", content=b"x").status_code == 501


def test_concurrent_requests_share_batches(client):
    metrics0 = client.get("/metrics").text
    queries = [{"seed": s, "psi": p} for s, p in zip(range(100, 108), [1.0, 0.5] * 4, strict=True)]

    async def fetch_all():
        async with httpx.AsyncClient(base_url=str(client.base_url), timeout=60) as c:
            return await asyncio.gather(*(c.get("/api/image", params=q) for q in queries))

    together = asyncio.run(fetch_all())
    metrics1 = client.get("/metrics").text
    batches = (metric(metrics1, "sgj_batches_total") - metric(metrics0, "sgj_batches_total"))
    assert all(r.status_code == 200 for r in together)
    assert 2 <= batches < len(queries)  # max batch 4: at least 2, and some shared
    for q, r in zip(queries[:2], together[:2], strict=True):  # batching changes no pixel
        assert client.get("/api/image", params=q).content == r.content


class GatedEngine:
    """An engine whose renders wait for `gate`, so a test holds the generator busy
    for as long as it likes instead of racing it."""

    def __init__(self, engine: Engine):
        self.engine, self.gate = engine, threading.Event()
        self.entered = threading.Event()  # a batch has reached the generator
        self.spec, self.max_batch = engine.spec, engine.max_batch

    def __call__(self, *args):
        self.entered.set()
        self.gate.wait(60)
        return self.engine(*args)


def wait_for(probe, want, what: str, timeout_s: float = 30.0):
    """Polls `probe()` until it returns `want`; fails naming `what` and the last value after
    `timeout_s`. A busy machine delays the server, never the assertions that follow."""
    deadline = time.monotonic() + timeout_s
    while (got := probe()) != want:
        assert time.monotonic() < deadline, f"{what}: {got!r} after {timeout_s:g} s, want {want!r}"
        time.sleep(0.02)


def test_flood_beyond_the_queue_gets_503_with_retry_after():
    """One request blocks in the generator, 8 fill the queue; the next 4 are refused at
    once with Retry-After, and the 9 held ones are answered once the generator frees."""
    engine = Engine(progan_conditional(), max_batch=2)
    engine.warm_up()
    gated = GatedEngine(engine)
    with serve_in_thread(create_app(gated, "gated", window_s=0, queue_limit=8)) as c:
        url = f"{c.base_url}/api/image"

        def depth():
            return metric(c.get("/metrics").text, "sgj_queue_depth")

        with ThreadPoolExecutor(9) as pool:
            held = [pool.submit(httpx.get, url, params={"seed": 0}, timeout=60)]
            # It leaves the queue for the (blocked) generator.
            assert gated.entered.wait(30), "the first request never reached the generator"
            assert depth() == 0
            held += [pool.submit(httpx.get, url, params={"seed": i}, timeout=60)
                     for i in range(1, 9)]
            wait_for(depth, 8, "requests waiting in the queue")
            busy = [c.get("/api/image", params={"seed": i}) for i in range(9, 13)]
            assert c.get("/healthz").status_code == 200  # refusing, yet alive
            gated.gate.set()
            answers = [f.result() for f in held]
        assert [r.status_code for r in busy] == [503] * 4
        assert all(r.headers["retry-after"] == "1" and "busy" in r.json()["error"]
                   for r in busy)
        assert [r.status_code for r in answers] == [200] * 9

        def counted():  # a response is counted just after it is sent
            text = c.get("/metrics").text
            return tuple(metric(text, "sgj_requests_total", route="image", status=s)
                         for s in ("503", "200"))

        wait_for(counted, (4, 9), "image responses counted (503, 200)")


def test_clients_that_disconnect_do_not_hurt_the_server(client):
    """20 clients send a request and hang up: the server finishes with every one, counts
    those it saw leave as 499, and serves on."""
    host, port = client.base_url.host, client.base_url.port

    def image_counts():  # (image requests answered, of them 499)
        text = client.get("/metrics").text
        return (metric(text, "sgj_requests_total", route="image"),
                metric(text, "sgj_requests_total", route="image", status="499"))

    total0, gone0 = image_counts()
    for seed in range(20):
        with socket.create_connection((host, port)) as s:
            s.sendall(f"GET /api/image?seed={seed} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    wait_for(lambda: image_counts()[0] - total0, 20, "abandoned requests finished")
    assert image_counts()[1] - gone0 >= 1
    # The abandoned requests' renders may still hold the queue (answered 503 meanwhile): it
    # drains, then the server serves as before.
    wait_for(lambda: metric(client.get("/metrics").text, "sgj_queue_depth"), 0, "queue drained")
    assert client.get("/api/image", params={"seed": 3}).status_code == 200


def test_sigterm_finishes_requests_in_flight(network_dir):
    """Three requests wait in a 2 s batch window when SIGTERM comes: all are answered."""
    srv = launch.start(["--network", str(network_dir), "--max-batch", "4",
                        "--batch-window-ms", "2000", "--attribute-queue", "0"])
    try:
        with ThreadPoolExecutor(3) as pool:
            pending = [pool.submit(httpx.get, f"{srv.url}api/image", params={"seed": i},
                                   timeout=60) for i in range(3)]
            deadline = time.monotonic() + 30
            while metric(httpx.get(f"{srv.url}metrics").text, "sgj_requests_in_flight") < 4:
                assert time.monotonic() < deadline, "the requests never arrived"
                time.sleep(0.05)
            srv.process.send_signal(signal.SIGTERM)
            answers = [f.result() for f in pending]
        assert [r.status_code for r in answers] == [200] * 3
        assert all(decode(r.content).shape == (RES, RES, 3) for r in answers)
        assert srv.process.wait(60) == 0
        assert "stopped (SIGTERM) after answering every accepted request" in srv.lines
    finally:
        srv.stop()


def test_sigterm_right_after_the_url_line_stops_the_server(network_dir):
    """A supervisor may stop the server the moment it says it serves, before uvicorn has
    put in its own signal handlers: it must still stop, with status 0."""
    srv = launch.start(["--network", str(network_dir), "--max-batch", "1",
                        "--attribute-queue", "0"])
    srv.process.send_signal(signal.SIGTERM)
    try:
        assert srv.process.wait(60) == 0
    finally:
        srv.stop()
    assert "stopped (SIGTERM)" in srv.lines[-1]


# In-process: every family through the engine and the app, against `generate_images`.

@pytest.mark.parametrize("family", ["stylegan2-random-noise", "stylegan", "progan"])
def test_every_family_renders_what_generate_renders(family):
    """Seeds 7 and 123 share a batch; each must equal a lone `generate` of it, in
    random noise mode too (each seed draws its own noise). StyleGAN v1's own generate is
    not batch-invariant on XLA:CPU (its matmuls round differently at batch 1 and 2), so
    it is held to one level on a rare pixel."""
    net, mode, psis, classes = {
        "stylegan2-random-noise": (visible(random_generator(8)), "random", [0.5, 1.0],
                                   [None, None]),
        "stylegan": (stylegan_v1(), "const", [0.7, 1.0], [None, None]),
        "progan": (progan_conditional(), "const", [1.0, 1.0], [1, 0]),
    }[family]
    engine = Engine(net, mode, max_batch=2)
    engine.warm_up()
    seeds = [7, 123]
    got = engine(seeds, psis, classes)
    alone = engine(seeds[1:], psis[1:], classes[1:])[0]  # the other bucket
    for i, seed in enumerate(seeds):
        want = generate_images(net, [seed], psis[i], class_idx=classes[i], noise_mode=mode)[0]
        for image in (got[i], alone) if i else (got[i],):
            if family == "stylegan":
                diff = np.abs(image.astype(int) - want)
                assert diff.max() <= 1 and (diff > 0).mean() < 0.01
            else:
                np.testing.assert_array_equal(image, want)
    if mode == "random":  # the noise shows: const noise gives another image
        const = generate_images(net, [seeds[1]], psis[1], noise_mode="const")[0]
        assert not np.array_equal(got[1], const)


@contextlib.contextmanager
def serve_in_thread(app):
    """uvicorn on a free loopback port in a thread of this process."""
    sock = command.bind("127.0.0.1", 0)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]})
    thread.start()
    while not server.started:
        assert thread.is_alive()
        time.sleep(0.02)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{sock.getsockname()[1]}") as c:
            yield c
    finally:
        server.should_exit = True
        thread.join()


def test_progan_and_labels_through_the_app():
    engine = Engine(progan_conditional(), max_batch=2)
    engine.warm_up()
    with serve_in_thread(create_app(engine, "progan-tiny")) as c:
        info = c.get("/api/info").json()
        assert (info["family"], info["classes"], info["truncation"]) == ("progan", 2, False)
        assert info["class_default"] == 0
        for query, name in (({"psi": "0.5"}, "psi"), ({"class": "2"}, "class"),
                            ({"class": "-1"}, "class")):
            r = c.get("/api/image", params=query)
            assert r.status_code == 400 and r.json()["parameter"] == name, r.text
        r = c.get("/api/image", params={"seed": 7, "class": 1})
        assert r.status_code == 200 and r.headers["x-class"] == "1"
        want = generate_images(progan_conditional(), [7], class_idx=1)[0]
        np.testing.assert_array_equal(decode(r.content), want)
        page = c.get("/", params={"seed": 7, "class": 1}).text
        assert 'src="/api/image?seed=7&amp;class=1"' in page  # no psi: ProGAN has none


def test_named_classes_through_the_app(tmp_path):
    """A conditional network's class names (as its training data named them) are what the
    API and the page's class selector take; an index still works."""
    import argparse

    from stylegan_jax.generate import class_names_from_args
    from stylegan_jax.store.load import load_generator

    path = save_networks(tmp_path / "named", {"G_ema": progan_conditional()},
                         info={"class_names": ["cat", "dog"]})
    net = load_generator(path)
    args = argparse.Namespace(network=path, random_init=False)
    names = class_names_from_args(args, net)
    assert names == ("cat", "dog")
    engine = Engine(net, max_batch=1, class_names=names)
    engine.warm_up()
    with serve_in_thread(create_app(engine, "named")) as c:
        assert c.get("/api/info").json()["class_names"] == ["cat", "dog"]
        by_name = c.get("/api/image", params={"seed": 7, "class": "dog"})
        assert by_name.status_code == 200 and by_name.headers["x-class"] == "1"
        assert by_name.content == c.get("/api/image", params={"seed": 7, "class": 1}).content
        r = c.get("/api/image", params={"class": "cow"})
        assert r.status_code == 400 and r.json()["allowed"] == (
            "one of cat, dog or an integer in [0, 1]")
        assert 'data-class-names="[&quot;cat&quot;, &quot;dog&quot;]"' in c.get("/").text


def test_bad_server_defaults_name_the_flag():
    engine = Engine(progan_conditional(), max_batch=1)
    from stylegan_jax.serve.params import BadParameter, Defaults

    with pytest.raises(BadParameter, match="--trunc"):
        create_app(engine, "x", Defaults(psi=0.5))
    with pytest.raises(BadParameter, match="--class"):
        create_app(engine, "x", Defaults(class_idx=5))


# The batcher alone, with a render that blocks until released.

def test_batcher_gathers_overflows_and_skips_abandoned_requests():
    release, calls = threading.Event(), []

    def render(seeds, psis, classes, moves, offsets):
        calls.append(list(seeds))
        release.wait(10)
        return np.stack([np.full((1, 1, 1), s, np.uint8) for s in seeds])

    async def main():
        b = Batcher(render, max_batch=3, window_s=0.05, queue_limit=4)
        b.start()
        first = b.submit(1, 1.0, None)
        deadline = time.monotonic() + 30
        while not calls:  # until batch [1] is blocked in render
            assert time.monotonic() < deadline, "the first batch never reached render"
            await asyncio.sleep(0.01)
        waiting = [b.submit(s, 1.0, None) for s in (2, 3, 4, 5)]
        with pytest.raises(Overloaded):
            b.submit(6, 1.0, None)
        waiting[1].cancel()  # its client left
        release.set()
        results = await asyncio.gather(first, waiting[0], waiting[2], waiting[3])
        await b.stop()
        return [int(r[0, 0, 0]) for r in results], b.stats

    values, stats = asyncio.run(main())
    assert values == [1, 2, 4, 5]
    assert calls == [[1], [2, 4], [5]]  # 3 dropped; at most 3 gathered, 5 then alone
    assert (stats.batches, stats.images, stats.dropped) == (3, 4, 1)


def test_buckets():
    assert default_buckets(1) == (1,)
    assert default_buckets(32) == (1, 2, 4, 8, 16, 32)
    assert default_buckets(24) == (1, 2, 4, 8, 16, 24)
    with pytest.raises(ValueError, match="max_batch"):
        default_buckets(0)


def test_bench_serve_reports_its_figures(server, network_dir, capsys):
    """A tiny bound against the module's server: every request answered, figures coherent."""
    assert cli.main(["bench-serve", "--network", str(network_dir), "--max-batch", "4",
                     "--url", server.url, "--concurrency", "8", "--requests", "40",
                     "--duration", "30", "--json"]) == 0
    res = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert res["errors"] == 0 and 0 < res["answered"] <= 40
    assert 0 < res["p50_ms"] <= res["p99_ms"]
    assert res["ratio"] == pytest.approx(res["images_per_s"] / res["generator_images_per_s"],
                                         abs=2e-3)
    assert cli.main(["bench-serve", "--random-init", "--url", "http://example.com/"]) == 2
    assert "--url: got 'http://example.com/'" in capsys.readouterr().err


# StyleGAN3: a tiny conditional network served by a real server, against `generate`.

SG3_RES = 16


@pytest.fixture(scope="module")
def stylegan3_dir(tmp_path_factory):
    return save_networks(tmp_path_factory.mktemp("serve3") / "tiny3",
                         {"G_ema": stylegan3_conditional(SG3_RES)})


@pytest.fixture(scope="module")
def stylegan3_client(stylegan3_dir):
    srv = launch.start(["--network", str(stylegan3_dir), "--max-batch", "2",
                        "--batch-window-ms", "50"])
    try:
        with httpx.Client(base_url=srv.url, timeout=60) as c:
            yield srv, c
    finally:
        srv.stop()


# (psi, class, translate, rotate): the plain image and a truncated, moved one.
SG3_CASES = [(1.0, 0, (0.0, 0.0), 0.0), (0.5, 1, (0.125, -0.25), 30.0)]


def test_stylegan3_images_are_generates_files_byte_for_byte(stylegan3_client, stylegan3_dir,
                                                            tmp_path):
    srv, c = stylegan3_client
    assert re.search(r"stylegan3 16x16, buckets 1,2 warmed up", "\n".join(srv.lines))
    info = c.get("/api/info").json()
    assert (info["family"], info["classes"], info["truncation"], info["moves"]) == \
        ("stylegan3", 2, True, True)
    queries = []
    for psi, cls, (tx, ty), deg in SG3_CASES:
        out = tmp_path / f"g{psi}"
        assert cli.main(["generate", "--network", str(stylegan3_dir), "--seeds", "7",
                         "--trunc", str(psi), "--class", str(cls), f"--translate={tx},{ty}",
                         f"--rotate={deg}", "--outdir", str(out), "--no-grid"]) == 0
        q = {"seed": 7, "psi": psi, "class": cls, "translate": f"{tx},{ty}", "rotate": deg}
        r = c.get("/api/image", params=q)
        assert r.status_code == 200, r.text
        assert r.content == (out / "seed0007.png").read_bytes()
        assert (r.headers["x-translate"], r.headers["x-rotate"]) == (f"{tx},{ty}", str(deg))
        queries.append((q, r.content))
    assert queries[0][1] != queries[1][1]

    async def together():  # both in one batch of 2, a third beside them: no byte moves
        async with httpx.AsyncClient(base_url=str(c.base_url), timeout=60) as ac:
            return await asyncio.gather(*(ac.get("/api/image", params=q)
                                          for q, _ in [*queries, ({"seed": 8}, None)]))

    answers = asyncio.run(together())
    assert [r.content for r in answers[:2]] == [b for _, b in queries]
    page = c.get("/", params=queries[1][0]).text
    assert 'data-moves="true"' in page
    assert 'src="/api/image?seed=7&amp;psi=0.5&amp;class=1&amp;translate=0.125,-0.25' \
        '&amp;rotate=30.0"' in page


def test_stylegan3_refuses_bad_moves_naming_them(stylegan3_client):
    _, c = stylegan3_client
    for query, name in (({"translate": "0.1"}, "translate"), ({"translate": "a,b"}, "translate"),
                        ({"translate": "2,0"}, "translate"), ({"translate": "nan,0"}, "translate"),
                        ({"rotate": "inf"}, "rotate"), ({"rotate": "400"}, "rotate"),
                        ({"class": "2"}, "class")):
        r = c.get("/api/image", params=query)
        assert r.status_code == 400 and r.json()["parameter"] == name, (query, r.text)
        assert r.json()["error"].startswith(name)
