"""`serve`'s `POST /api/attribute` ("is this face real?"): an uploaded image's projection
distance, threshold and verdict; hostile uploads refused with a 4xx while images keep being
served; the upload's own small queue (503 with Retry-After when full); nothing written to
disk; the networks that cannot be projected into answer 501.

References: `attribution.project_batch` run here on a target cropped and resized by PIL
directly, and `attribution.self_threshold` (the `attribute` command's self-calibration, its
images projected two at a time where serve projects one at a time).
"""

from __future__ import annotations

import asyncio
import io
import os
import socket
import struct
import sys
import threading
import time
import zlib
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest
from PIL import Image
from test_serve import decode, metric, serve_in_thread, wait_for
from tiny_generators import progan_conditional, stylegan3_conditional, visible

from stylegan_jax.models.registry import random_generator
from stylegan_jax.serve import projector, uploads
from stylegan_jax.serve.app import create_app
from stylegan_jax.serve.attribution_queue import AttributionQueue, Threshold
from stylegan_jax.serve.engine import Engine
from stylegan_jax.tools import attribution, projection

RES = 16
STEPS = 5
CALIBRATION_IMAGES = 2
# The distance without the VGG16/LPIPS weight files (named by the library, whatever it is).
FALLBACK = attribution.Distance(
    next(n for n in projection.DISTANCES if n != projection.LPIPS), None)


@pytest.fixture(scope="module")
def net():
    return visible(random_generator(RES))


@pytest.fixture(scope="module")
def engine(net):
    e = Engine(net, max_batch=2)
    e.warm_up()
    return e


@pytest.fixture(scope="module")
def client(net, engine):
    """The real projector (the fallback distance, 5 steps), self-calibrated on seeds 0-1."""
    proj = projector.NetworkProjector(net, FALLBACK, STEPS,
                                      calibration_images=CALIBRATION_IMAGES)
    queue = AttributionQueue(proj, Threshold(None, "self-calibration (test)"), limit=2)
    with serve_in_thread(create_app(engine, "tiny-attr", attribution=queue)) as c:
        c.timeout = 120
        wait_for(lambda: c.get("/api/info").json()["attribution"]["ready"], True,
                 "attribution ready", 300)
        yield c


def png(image: np.ndarray, **kw) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image).save(buf, **kw)
    return buf.getvalue()


def expected_distance(net, image: np.ndarray) -> float:
    """project_batch of the upload's centre square, resized by PIL's Lanczos here."""
    h, w, _ = image.shape
    s = min(h, w)
    top, left = (h - s) // 2, (w - s) // 2
    square = Image.fromarray(image[top:top + s, left:left + s])
    target = np.asarray(square.resize((RES, RES), Image.Resampling.LANCZOS))
    return float(attribution.project_batch(net.module, net.variables, target[None], STEPS,
                                           FALLBACK, batch_size=1,
                                           progress=False).distance[0])


def test_generated_face_upload_gets_a_verdict(client, net):
    # The queue projects the calibration an image at a time (so that it can stop between
    # them): it must give the threshold of `stylegan-jax attribute`'s self-calibration.
    threshold = attribution.self_threshold(net.module, net.variables, FALLBACK,
                                           CALIBRATION_IMAGES, STEPS, batch_size=2)
    info = client.get("/api/info").json()["attribution"]
    assert info["threshold"] == pytest.approx(threshold, rel=1e-6)

    face = decode(client.get("/api/image", params={"seed": 7}).content)
    noise = np.random.RandomState(0).randint(0, 256, (RES, 3, 3), np.uint8)
    wide = np.concatenate([noise, face, noise], axis=1)  # 16 x 22: the crop drops the noise
    big = np.asarray(Image.fromarray(face).resize((40, 40), Image.Resampling.NEAREST))
    jpeg = png(big, format="JPEG", quality=90)
    for body, fmt, size in ((png(wide, format="PNG"), "PNG", [22, 16]),
                            (jpeg, "JPEG", [40, 40])):
        r = client.post("/api/attribute", content=body)
        assert r.status_code == 200, r.text
        got = r.json()
        want = expected_distance(net, np.asarray(Image.open(io.BytesIO(body))))
        assert got["distance"] == pytest.approx(want, rel=1e-5)
        assert got["threshold"] == pytest.approx(threshold, rel=1e-6)
        assert got["verdict"] == ("generated" if want <= threshold else "real")
        assert (got["distance_name"], got["steps"], got["threshold_source"]) == \
            (FALLBACK.name, STEPS, "self-calibration (test)")
        assert [got["image"]["format"], got["image"]["width"], got["image"]["height"]] == \
            [fmt, *size]
        assert got["seconds"] > 0 and r.headers["cache-control"] == "no-store"
    # A generated face projects closer than uniform noise does.
    noisy = client.post("/api/attribute", content=png(
        np.random.RandomState(1).randint(0, 256, (RES, RES, 3), np.uint8), format="PNG"))
    assert noisy.json()["distance"] > client.post(
        "/api/attribute", content=png(face, format="PNG")).json()["distance"]


def _chunk(kind: bytes, data: bytes) -> bytes:
    return (struct.pack(">I", len(data)) + kind + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))


def png_declaring(width: int, height: int) -> bytes:
    """A valid PNG header declaring width x height grey pixels, with a few rows of data:
    a few hundred bytes that would decode to gigabytes."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    rows = zlib.compress(b"\0" * (width + 1) * 4, 9)
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", rows)
            + _chunk(b"IEND", b""))


def hostile() -> list[tuple[str, bytes, int]]:
    face = np.random.RandomState(2).randint(0, 256, (24, 24, 3), np.uint8)
    good = png(face, format="PNG")
    other = {fmt: png(face, format=fmt) for fmt in ("BMP", "TIFF")}
    return [
        ("empty", b"", 400),
        ("random bytes", np.random.RandomState(3).bytes(4000), 415),
        ("truncated PNG", good[: len(good) // 2], 400),
        ("PNG signature only", good[:16], 400),
        ("decompression bomb 30000x30000", png_declaring(30000, 30000), 413),
        ("huge dimensions, small file", png_declaring(5000, 4000), 413),
        ("BMP", other["BMP"], 415),
        ("TIFF", other["TIFF"], 415),
        ("SVG", b'<svg xmlns="http://www.w3.org/2000/svg" width="9" height="9"/>', 415),
        ("16-bit PNG", png(np.zeros((8, 8, 1), np.uint16), format="PNG"), 415),
        ("zero-width GIF header", b"GIF89a\0\0\x10\0\0\0\0;", 400),
    ]


class WriteWatch:
    """Every file this process opens for writing while `active` (an audit hook: it sees
    open(), os.open() and so tempfile, whatever library calls them)."""

    installed: WriteWatch | None = None

    def __init__(self):
        self.active, self.seen = False, []
        if WriteWatch.installed is None:  # audit hooks cannot be removed: one per process
            sys.addaudithook(lambda event, args: WriteWatch.installed._hook(event, args))
        WriteWatch.installed = self

    def _hook(self, event, args):
        if not self.active or event != "open":
            return
        path, mode, flags = args
        writes = (mode and any(c in str(mode) for c in "wax+")) or (
            isinstance(flags, int) and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT))
        if writes:
            self.seen.append((path, mode, flags))


def test_hostile_uploads_get_4xx_and_write_nothing(client):
    watch = WriteWatch()
    watch.active = True
    try:
        answers = [(name, status, client.post("/api/attribute", content=body))
                   for name, body, status in hostile()]

        def chunks():  # no Content-Length: counted as it streams
            for _ in range(9):
                yield b"\0" * 2**20

        answers.append(("9 MiB chunked", 413, client.post("/api/attribute", content=chunks())))
        answers.append(("9 MiB with Content-Length", 413, client.post(
            "/api/attribute", content=b"\x89PNG" + b"\0" * (9 * 2**20))))
        answers.append(("GET", 405, client.get("/api/attribute")))
        # A Content-Length of 100 MB and no body at all: refused from the header alone.
        with socket.create_connection((client.base_url.host, client.base_url.port)) as s:
            s.sendall(b"POST /api/attribute HTTP/1.1\r\nHost: x\r\n"
                      b"Content-Length: 100000000\r\n\r\n")
            s.settimeout(30)
            head = s.recv(65536).decode("latin-1")
    finally:
        watch.active = False
    for name, status, r in answers:
        assert r.status_code == status, (name, r.status_code, r.text)
        body = r.json()
        assert "error" in body, (name, body)
        if status != 405:
            assert body["parameter"] == "body" and body["error"].startswith("body"), body
    assert head.startswith("HTTP/1.1 413"), head
    assert "100000000 bytes declared" in head
    messages = {name: r.json()["error"] for name, _, r in answers}
    assert "looks like BMP" in messages["BMP"] and "looks like SVG" in messages["SVG"]
    assert "5000x4000" in messages["huge dimensions, small file"]
    assert "truncated PNG" in messages["truncated PNG"]
    assert watch.seen == [], watch.seen
    text = client.get("/metrics").text
    assert metric(text, "sgj_requests_total", route="attribute", status="500") == 0
    assert client.get("/api/image", params={"seed": 1}).status_code == 200
    face = decode(client.get("/api/image", params={"seed": 2}).content)
    assert client.post("/api/attribute", content=png(face, format="PNG")).status_code == 200


class GatedProjector:
    """Projections that wait for `gate`: the test holds the worker busy as long as it likes."""

    distance_name, steps = "fake", 1

    def __init__(self):
        self.gate, self.entered = threading.Event(), threading.Event()

    def warm_up(self):
        pass

    def own_images(self):
        raise AssertionError("a threshold was given")

    def project(self, target):
        self.entered.set()
        self.gate.wait(60)
        return float(target.mean()) / 255


def test_a_burst_beyond_the_queue_gets_503_and_images_keep_coming(engine):
    """Limit 2: one upload is projected (held), one waits; three more are refused at once
    with Retry-After, image requests are answered meanwhile, then the two held finish."""
    gated = GatedProjector()
    queue = AttributionQueue(gated, Threshold(0.5, "test"), limit=2)
    body = png(np.full((RES, RES, 3), 51, np.uint8), format="PNG")
    with serve_in_thread(create_app(engine, "gated", attribution=queue)) as c:
        url = f"{c.base_url}/api/attribute"

        def pending():
            return metric(c.get("/metrics").text, "sgj_attribution_pending")

        with ThreadPoolExecutor(2) as pool:
            held = [pool.submit(httpx.post, url, content=body, timeout=60)]
            assert gated.entered.wait(30), "the first upload never reached the projector"
            held.append(pool.submit(httpx.post, url, content=body, timeout=60))
            wait_for(pending, 2, "uploads in the server")

            async def burst():
                async with httpx.AsyncClient(base_url=str(c.base_url), timeout=60) as ac:
                    return await asyncio.gather(
                        *(ac.post("/api/attribute", content=body) for _ in range(3)),
                        *(ac.get("/api/image", params={"seed": s}) for s in range(4)))

            answers = asyncio.run(burst())
            gated.gate.set()
            done = [f.result() for f in held]
        refused, pictures = answers[:3], answers[3:]
        assert [r.status_code for r in refused] == [503] * 3
        assert all(int(r.headers["retry-after"]) >= 1 and "busy" in r.json()["error"]
                   for r in refused)
        assert [r.status_code for r in pictures] == [200] * 4
        assert [r.status_code for r in done] == [200] * 2
        assert [r.json()["distance"] for r in done] == [pytest.approx(51 / 255)] * 2
        assert metric(c.get("/metrics").text, "sgj_attribution_refused_total") == 3


def test_networks_that_cannot_project_answer_501():
    net = progan_conditional()
    engine = Engine(net, max_batch=1)
    engine.warm_up()
    queue, reason = projector.attribution_for(net)
    assert queue is None and "StyleGAN2" in reason
    with serve_in_thread(create_app(engine, "progan", attribution=queue,
                                    attribution_off=reason)) as c:
        r = c.post("/api/attribute", content=b"anything")
        assert r.status_code == 501 and reason in r.json()["error"]
        info = c.get("/api/info").json()["attribution"]
        assert info == {"available": False, "reason": reason}
        assert 'data-attribute="false"' in c.get("/", params={"class": 0}).text
    assert "needs a StyleGAN2 generator" in projector.attribution_for(stylegan3_conditional())[1]
    assert projector.attribution_for(None)[1].startswith("an exported artifact")
    assert "--attribute-queue 0" in projector.attribution_for(visible(random_generator(RES)),
                                                              limit=0)[1]
    with pytest.raises(ValueError, match="--attribute-threshold / --attribute-calibration"):
        projector.attribution_for(net, threshold=0.1)


def test_threshold_flags(net, tmp_path):
    """--attribute-threshold, --attribute-calibration (its threshold and steps; a distance
    or step count that does not match is one clear error), else self-calibration."""
    name = attribution.load_distance().name
    other = next(n for n in projection.DISTANCES if n != name)
    q, _ = projector.attribution_for(net, threshold=0.25)
    assert (q.threshold, q.threshold_source, q.projector.steps) == \
        (0.25, "--attribute-threshold", projector.DEFAULT_STEPS)
    with pytest.raises(ValueError, match="--attribute-threshold must be a finite"):
        projector.attribution_for(net, threshold=float("nan"))
    cal = attribution.calibrate([0.1, 0.2], [0.5, 0.6], name, 40, "tiny")
    good = attribution.save_calibration(tmp_path / "cal.json", cal)
    q, _ = projector.attribution_for(net, calibration=good)
    assert q.threshold == pytest.approx(0.35) and q.projector.steps == 40
    assert "cal.json" in q.threshold_source and "ROC AUC 1.000" in q.threshold_source
    with pytest.raises(ValueError, match="--attribute-steps 30: calibration .* 40 steps"):
        projector.attribution_for(net, steps=30, calibration=good)
    cal.distance = other
    bad = attribution.save_calibration(tmp_path / "other.json", cal)
    with pytest.raises(ValueError, match=f"made with the {other} distance"):
        projector.attribution_for(net, calibration=bad)
    q, _ = projector.attribution_for(net, steps=7)
    assert q.threshold is None and q.projector.steps == 7
    assert q.threshold_source.startswith("self-calibration")
    with pytest.raises(ValueError, match="--attribute-steps must be a positive integer"):
        projector.attribution_for(net, steps=0)
    with pytest.raises(ValueError, match="--attribute-queue must be >= 0"):
        projector.attribution_for(net, limit=-1)


def test_upload_decoding_limits_and_modes():
    """Decoding alone: formats, the EXIF orientation, alpha onto white, the pixel limit."""
    face = np.random.RandomState(4).randint(0, 256, (6, 10, 3), np.uint8)
    for fmt in ("PNG", "JPEG", "WEBP", "GIF"):
        u = uploads.decode(png(face, format=fmt))
        assert (u.format, u.width, u.height, u.image.shape) == (fmt, 10, 6, (6, 10, 3))
    assert np.array_equal(uploads.decode(png(face, format="PNG")).image, face)
    rgba = np.dstack([face, np.zeros((6, 10, 1), np.uint8)])  # fully transparent
    assert (uploads.decode(png(rgba, format="PNG")).image == 255).all()
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to show it upright
    buf = io.BytesIO()
    Image.fromarray(face).save(buf, format="PNG", exif=exif)
    upright = uploads.decode(buf.getvalue())
    assert upright.image.shape == (10, 6, 3) and (upright.width, upright.height) == (10, 6)
    np.testing.assert_array_equal(upright.image, np.rot90(face, -1))
    with pytest.raises(uploads.BadUpload, match="2000x1000 PNG .* the limit is 1 Mpx") as e:
        uploads.decode(png_declaring(2000, 1000), max_pixels=2**20)
    assert e.value.status == 413


class SlowProjector:
    """Self-calibration on 50 images of 0.1 s each, counting the projections."""

    distance_name, steps = "fake", 1

    def __init__(self):
        self.projected = 0

    def warm_up(self):
        pass

    def own_images(self):
        return np.zeros((50, RES, RES, 3), np.uint8)

    def project(self, target):
        time.sleep(0.1)
        self.projected += 1
        return 0.5


def test_stopping_during_self_calibration_ends_the_worker_within_a_projection():
    """The worker is not a daemon (killed inside XLA at exit, it aborts the process), so
    a server stopped during its calibration must not wait for all of it."""
    slow = SlowProjector()
    queue = AttributionQueue(slow, Threshold(None, "self"), limit=1)
    queue.start()
    wait_for(lambda: slow.projected >= 2, True, "calibration under way")
    queue.stop()
    queue._worker.join(5)
    assert not queue._worker.is_alive() and slow.projected < 10
    assert queue.threshold is None and "stopped during self-calibration" in queue.failed
