"""Inside sampling in a real browser, on the demo model (where the pictures mean something): turn it on in
Settings, make an image, open Step previews; the prompt's words are listed, a clicked word's attention lies over the
picture, the CFG view and the noise schedule follow the slider, and an img2img job shows what it started from.
Screenshots (1440×900) go to artifacts/screenshots/."""

from __future__ import annotations

import os
import re

import pytest
from PIL import Image

from tests.test_browser import CHROMIUM, SHOTS, _set_slider, _shot
from tests.ui_support import logged_in_page

pytestmark = pytest.mark.skipif(not os.path.exists(CHROMIUM), reason=f"{CHROMIUM} is missing (apt-get install -y chromium)")

PROMPT = "a large red circle in the center on a white background"


@pytest.fixture(scope="module")
def tiny_settings(tmp_path_factory, studio_cache):
    """This module's engine runs the demo model (the conftest's `engine` fixture reads these settings)."""
    from studio.config import Settings

    return Settings(model="demo", outputs=tmp_path_factory.mktemp("outputs"), cache_dir=studio_cache, warmup=False)


@pytest.fixture(scope="module")
def page(engine):
    pytest.importorskip("playwright.sync_api")
    SHOTS.mkdir(parents=True, exist_ok=True)
    with logged_in_page(engine, CHROMIUM) as page:
        yield page


def _turn_inspection_on(page) -> None:
    page.click("button[role=tab]:has-text('Settings')")
    for label in ("Attention maps per word", "What CFG does, per step"):
        page.locator("#settings-inspect label", has_text=label).click()
    page.click("#settings-save")
    page.wait_for_function("() => document.querySelector('#settings-status').innerText.includes('Saved')", timeout=15_000)


def _generate(page, tab: str) -> None:
    page.click(f"#{tab}-generate")
    page.wait_for_selector(f"#{tab}-progress .studio-progress-done", timeout=180_000)


def test_inside_sampling_views_follow_the_word_and_the_step(page):
    _turn_inspection_on(page)
    page.click("button[role=tab]:has-text('Text to image')")
    page.fill("#txt2img-prompt textarea", PROMPT)
    _set_slider(page, "txt2img-steps", 20)
    _generate(page, "txt2img")

    page.click("button[role=tab]:has-text('Step previews')")
    page.wait_for_selector("#steps-player .inside-body:not([hidden])", timeout=30_000)
    words = page.locator("#steps-player .inside-token[data-word]").all_inner_texts()
    assert words == PROMPT.split()
    page.locator("#steps-player .inside-token", has_text="circle").click()
    page.wait_for_selector("#steps-player .steps-heat:not([hidden])", timeout=15_000)
    sheet = page.get_attribute("#steps-player .steps-export-sheet", "href")
    assert sheet.endswith("?words=circle")
    page.locator("#steps-player .inside").scroll_into_view_if_needed()
    page.evaluate("() => document.querySelector('#steps-player .steps-main').scrollIntoView()")
    _shot(page, "14-inside-attention", full_page=False)

    caption = page.inner_text("#steps-player .inside-cfg-caption")
    assert "step 20 of 20, CFG 7" in caption
    page.evaluate("""() => { const s = document.querySelector('#steps-player .steps-slider'); s.value = '6';
                              s.dispatchEvent(new Event('input', { bubbles: true })); }""")
    page.wait_for_function("() => document.querySelector('#steps-player .inside-cfg-caption').textContent.startsWith('step 6 of 20')",
                           timeout=15_000)
    assert "step 6: sigma" in page.text_content("#steps-player .inside-schedule svg")
    page.check("#steps-player .inside-this-step")
    page.wait_for_timeout(500)
    page.locator("#steps-player .inside-cfg-box").scroll_into_view_if_needed()
    _shot(page, "15-inside-cfg-and-schedule", full_page=False)


def test_an_image_to_image_job_shows_what_it_started_from(page, tmp_path):
    from studio.demo.scenes import COLOURS, Scene, Thing, render

    source = tmp_path / "red-circle.png"
    render(Scene("white", COLOURS["white"], [Thing("red", "circle", None, None, (64, 64), 56, COLOURS["red"])])).save(source)
    page.click("button[role=tab]:has-text('Image to image')")
    page.set_input_files("#img2img-init-image input[type=file]", str(source))
    page.wait_for_selector("#img2img-init-image img", timeout=30_000)
    page.fill("#img2img-prompt textarea", "a blue circle on a white background")
    _set_slider(page, "img2img-denoising", 0.6)
    _generate(page, "img2img")
    page.click("button[role=tab]:has-text('Step previews')")
    page.click("#steps-player .steps-refresh")
    page.wait_for_selector("#steps-player .inside-start-box:not([hidden])", timeout=30_000)
    caption = page.inner_text("#steps-player .inside-start-caption")
    assert re.search(r"denoising strength 0\.6: .* 12 steps ran from here", caption), caption
    page.locator("#steps-player .inside-start-box").scroll_into_view_if_needed()
    shot = _shot(page, "16-inside-start", full_page=False)
    assert Image.open(shot).size == (1440, 900)
