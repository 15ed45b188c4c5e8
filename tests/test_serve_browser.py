"""The page of `stylegan-jax serve` in headless Chromium (Debian's /usr/bin/chromium,
driven by Playwright): the face loads at the network's resolution, the button brings
another, the truncation control changes the URL, and a screenshot shows a face that is
neither blank nor uniform; a slider edits the face (the pixels shown are /api/image's with
the same edit) and the drop zone shows a verdict for an image file. Skips without Chromium
unless SGJ_REQUIRE_BROWSER=1 (CI).
"""

from __future__ import annotations

import io
import os
import re
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image
from test_serve import RES, visible

from stylegan_jax.models.registry import random_generator
from stylegan_jax.serve import launch
from stylegan_jax.store.networks import save_networks

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
REQUIRED = os.environ.get("SGJ_REQUIRE_BROWSER") == "1"

if not REQUIRED:
    if not CHROMIUM.is_file():
        pytest.skip(f"no {CHROMIUM} (SGJ_REQUIRE_BROWSER=1 makes this a failure)",
                    allow_module_level=True)
    pytest.importorskip("playwright.sync_api")
os.environ.setdefault("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")  # never fetch a browser


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    nets = save_networks(tmp_path_factory.mktemp("browser") / "tiny-faces",
                         {"G_ema": visible(random_generator(RES))})
    srv = launch.start(["--network", str(nets), "--max-batch", "2", "--attribute-steps", "3",
                        "--attribute-threshold", "0.05"])
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def browser():
    assert CHROMIUM.is_file(), f"SGJ_REQUIRE_BROWSER=1 but there is no {CHROMIUM}"
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        yield b
        b.close()


LOADED = """(old) => { const i = document.getElementById('face');
    return i.getAttribute('src') !== old && i.complete && i.naturalWidth > 0; }"""


def test_page_in_chromium(server, browser, tmp_path):
    page = browser.new_page(viewport={"width": 800, "height": 900})
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(server.url)
    page.wait_for_function(LOADED, arg="")
    assert page.evaluate("[face.naturalWidth, face.naturalHeight]") == [RES, RES]
    assert "tiny-faces" in page.text_content("#network")
    first_seed, first_src = page.text_content("#seed"), page.get_attribute("#face", "src")
    assert first_src == f"/api/image?seed={first_seed}&psi=1.0"

    page.click("#another")
    page.wait_for_function(LOADED, arg=first_src)
    seed = page.text_content("#seed")
    assert seed != first_seed
    assert page.url.endswith(f"/?seed={seed}&psi=1.0")  # the address is the permalink
    assert page.get_attribute("#permalink", "href") == f"/?seed={seed}&psi=1.0"

    shot = tmp_path / "page.png"
    page.screenshot(path=str(shot))
    box = page.locator("#face").bounding_box()
    assert box["width"] >= 4 * RES  # shown large, not at its natural 32 px
    pixels = np.asarray(Image.open(shot).convert("RGB")).astype(float)
    assert pixels.std() > 5, "blank screenshot"
    face = pixels[int(box["y"]) + 2:int(box["y"] + box["height"]) - 2,
                  int(box["x"]) + 2:int(box["x"] + box["width"]) - 2]
    assert face.std(axis=(0, 1)).min() > 5, "the face region is uniform"
    served = np.asarray(Image.open(io.BytesIO(
        httpx.get(f"{server.url}api/image", params={"seed": seed}).content))).astype(float)
    # The screenshot shows the served image (scaled): the same mean colour.
    np.testing.assert_allclose(face.mean(axis=(0, 1)), served.mean(axis=(0, 1)), atol=12)

    src = page.get_attribute("#face", "src")
    page.locator("#psi").fill("0.5")
    page.wait_for_function(LOADED, arg=src)
    assert page.get_attribute("#face", "src") == f"/api/image?seed={seed}&psi=0.5"
    assert page.text_content("#psi-value") == "0.5"

    page.set_viewport_size({"width": 390, "height": 844})  # a phone
    box = page.locator("#face").bounding_box()
    button = page.locator("#another").bounding_box()
    assert 0.8 * 390 <= box["width"] <= 390 and box["x"] >= 0
    assert button["y"] + button["height"] <= 844  # the button is on screen
    assert not errors, errors
    assert re.fullmatch(r"\d+", seed)


PIXELS = """() => { const c = document.createElement('canvas');
    c.width = face.naturalWidth; c.height = face.naturalHeight;
    const g = c.getContext('2d'); g.drawImage(face, 0, 0);
    return Array.from(g.getImageData(0, 0, c.width, c.height).data); }"""


def shown(page) -> np.ndarray:
    """The RGB pixels the page's <img> holds (drawn onto a canvas)."""
    return np.array(page.evaluate(PIXELS), np.uint8).reshape(RES, RES, 4)[..., :3]


def test_sliders_and_drop_zone_in_chromium(server, browser):
    page = browser.new_page(viewport={"width": 800, "height": 1200})
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(f"{server.url}?seed=11")
    page.wait_for_function(LOADED, arg="")
    labels = page.locator(".slider span").all_text_contents()
    assert labels == [f"sefa{k}" for k in range(5)]  # the server's SeFa directions, named
    plain_src = page.get_attribute("#face", "src")
    assert plain_src == "/api/image?seed=11&psi=1.0"
    plain = shown(page)

    page.locator("#edit-1").fill("2.5")
    page.wait_for_function(LOADED, arg=plain_src)
    edited_query = "seed=11&psi=1.0&edit=1%3A2.5"
    assert page.get_attribute("#face", "src") == f"/api/image?{edited_query}"
    assert page.get_attribute("#permalink", "href") == f"/?{edited_query}"
    assert page.url.endswith(f"/?{edited_query}")
    assert page.text_content("#edit-value-1") == "2.5"
    served = np.asarray(Image.open(io.BytesIO(httpx.get(
        f"{server.url}api/image", params={"seed": 11, "edit": "1:2.5"}).content)))
    np.testing.assert_array_equal(shown(page), served)
    assert not np.array_equal(served, plain)

    page.click("#reset")
    page.wait_for_function(LOADED, arg=f"/api/image?{edited_query}")
    assert page.get_attribute("#face", "src") == plain_src
    np.testing.assert_array_equal(shown(page), plain)

    # The drop zone: a file set on its input gets a verdict (busy first), garbage an error.
    page.evaluate("""() => { window.states = [];
        new MutationObserver(() => states.push(attribution.className))
            .observe(attribution, { attributes: true }); }""")
    face_png = httpx.get(f"{server.url}api/image", params={"seed": 11}).content
    page.set_input_files("#upload", files=[{"name": "face.png", "mimeType": "image/png",
                                            "buffer": face_png}])
    done = "(kinds) => kinds.includes(document.getElementById('attribution').className)"
    page.wait_for_function(done, arg=["generated", "real"], timeout=240_000)
    assert page.evaluate("states")[0] == "busy"
    kind = page.get_attribute("#attribution", "class")
    assert page.text_content("#verdict").startswith("Generated" if kind == "generated"
                                                    else "Real")
    detail = page.text_content("#verdict-detail")
    assert re.search(r"[a-z-]+ distance [0-9.e-]+ (\u2264|>) threshold 0\.05000 "
                     r"\(--attribute-threshold\); 3 projection steps", detail), detail
    assert page.is_visible("#upload-preview")

    page.set_input_files("#upload", files=[{"name": "note.txt", "mimeType": "text/plain",
                                            "buffer": b"not an image"}])
    page.wait_for_function(done, arg=["error"], timeout=60_000)
    assert page.text_content("#verdict") == "That image was refused."
    assert "not a PNG, JPEG, WebP or GIF image" in page.text_content("#verdict-detail")
    assert not errors, errors
