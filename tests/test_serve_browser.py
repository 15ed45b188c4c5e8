"""The page of `stylegan-jax serve` in headless Chromium (Debian's /usr/bin/chromium,
driven by Playwright): the face loads at the network's resolution, the button brings
another, the truncation control changes the URL, and a screenshot shows a face that is
neither blank nor uniform. Skips without Chromium unless SGJ_REQUIRE_BROWSER=1 (CI).
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
    srv = launch.start(["--network", str(nets), "--max-batch", "2"])
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
