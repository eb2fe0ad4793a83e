"""A depth-to-image model in a real browser: Image to image shows the depth map the job kept beside the result (the
model's estimate, or the artist's own, uploaded under "Depth map"); Text to image on it says what the model can do.
Screenshots (1440×900) go to artifacts/screenshots/."""

from __future__ import annotations

import os

import numpy as np
import pytest
from PIL import Image

from tests.test_browser import CHROMIUM, SHOTS, _set_slider, _shot, _toast
from tests.ui_support import logged_in_page, make_input_png

pytestmark = pytest.mark.skipif(not os.path.exists(CHROMIUM), reason=f"{CHROMIUM} is missing (apt-get install -y chromium)")


@pytest.fixture(scope="module")
def tiny_settings(tmp_path_factory, studio_cache):
    """This module's engine runs a tiny depth model (the conftest's `engine` fixture reads these settings)."""
    from studio.checkpoints import materialize_config
    from studio.config import Settings
    from tests.support.depth_model import write_tiny_depth_model

    folder = write_tiny_depth_model(tmp_path_factory.mktemp("models") / "tiny-depth", materialize_config("tiny", studio_cache) / "tokenizer")
    return Settings(model=str(folder), outputs=tmp_path_factory.mktemp("outputs"), cache_dir=studio_cache, warmup=False)


@pytest.fixture(scope="module")
def page(engine):
    pytest.importorskip("playwright.sync_api")
    SHOTS.mkdir(parents=True, exist_ok=True)
    with logged_in_page(engine, CHROMIUM) as page:
        yield page


def _kept_depth(page) -> list:
    """The depth map shown beside the result, as the browser decoded it (its pixels' gray levels)."""
    page.wait_for_function("() => { const i = document.querySelector('#img2img-preview .studio-depth-kept img');"
                           " return i && i.complete && i.naturalWidth > 0; }", timeout=30_000)
    return page.evaluate("""() => { const i = document.querySelector('#img2img-preview .studio-depth-kept img');
        const c = document.createElement('canvas'); c.width = i.naturalWidth; c.height = i.naturalHeight;
        const g = c.getContext('2d'); g.drawImage(i, 0, 0);
        const d = g.getImageData(0, 0, c.width, c.height).data; const row = [];
        for (let x = 0; x < c.width; x++) row.push(d[4 * (Math.floor(c.height / 2) * c.width + x)]);
        return row; }""")


def test_image_to_image_shows_the_depth_map_kept_and_takes_the_artists_own(page, tmp_path):
    page.click("button[role=tab]:has-text('Image to image')")
    page.set_input_files("#img2img-init-image input[type=file]", str(make_input_png(tmp_path / "init.png")))
    page.wait_for_selector("#img2img-init-image img", timeout=30_000)
    page.fill("#img2img-prompt textarea", "a stone bridge")
    _set_slider(page, "img2img-steps", 3)
    page.click("#img2img-generate")
    page.wait_for_selector("#img2img-progress .studio-progress-done", timeout=180_000)
    assert len(_kept_depth(page)) == 64  # the estimate, at the job's size
    # The artist's own: near on the left, far on the right.
    own = tmp_path / "near-left.png"
    Image.fromarray(np.tile(np.linspace(255, 0, 64, dtype=np.uint8), (64, 1)), "L").save(own)
    page.click("#img2img-depth button:has-text('Depth map')")
    page.set_input_files("#img2img-depth-map input[type=file]", str(own))
    page.wait_for_selector("#img2img-depth-map img", timeout=30_000)
    page.click("#img2img-generate")
    page.wait_for_function("() => document.querySelector('#img2img-progress').innerText.includes('Starting')", timeout=30_000)
    page.wait_for_selector("#img2img-progress .studio-progress-done", timeout=180_000)
    row = _kept_depth(page)
    assert row[2] > row[-3] + 100, row  # near (white) on the left
    page.locator("#img2img-preview").scroll_into_view_if_needed()
    assert Image.open(_shot(page, "17-depth-kept", full_page=False)).size == (1440, 900)


def test_text_to_image_on_a_depth_model_says_what_it_can_do(page):
    assert "is a depth-to-image model: it runs Image to image only" in page.inner_text("#studio-model-about")
    page.click("button[role=tab]:has-text('Text to image')")
    page.fill("#txt2img-prompt textarea", "a stone bridge")
    page.click("#txt2img-generate")
    _toast(page, "is a depth-to-image model and cannot run Text to image")
