"""The History tab in a real browser (Debian's chromium, driven by playwright, 1440×900) behind a login: generate two
pictures, open History, search, pick one (large view, parameters, download link, tooltips), send it to Image to image,
delete the other; screenshots go to artifacts/screenshots/history-*.png."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from tests.ui_support import launch_studio, log_in

CHROMIUM = "/usr/bin/chromium"
SHOTS = Path(__file__).resolve().parent.parent / "artifacts" / "screenshots"
PROMPTS = ("a lighthouse at dusk, oil painting", "a red fox in the snow")

pytestmark = pytest.mark.skipif(not os.path.exists(CHROMIUM), reason=f"{CHROMIUM} is missing (apt-get install -y chromium)")


@pytest.fixture(scope="module")
def page(engine):
    sync_api = pytest.importorskip("playwright.sync_api")
    SHOTS.mkdir(parents=True, exist_ok=True)
    with launch_studio(engine, users={"alice": "alice-pw"}) as server, sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu", "--no-first-run",
                                                                     "--disable-background-networking", "--disable-sync"])
        page = browser.new_context(viewport={"width": 1440, "height": 900}).new_page()
        log_in(page, server.url, "alice", "alice-pw")
        try:
            yield page
        finally:
            browser.close()


def _shot(page, name: str) -> Path:
    path = SHOTS / f"{name}.png"
    time.sleep(0.5)
    page.screenshot(path=str(path), full_page=True)
    return path


def _set(page, element_id: str, value) -> None:
    box = page.locator(f"#{element_id} input[type=number]")
    box.fill(str(value))
    box.press("Enter")


def _thumbnails(page, count: int) -> None:
    page.wait_for_function("(n) => document.querySelectorAll('#history-gallery .studio-history-card img').length === n", arg=count, timeout=30_000)


def test_history_tab_in_a_browser(page, engine):
    for name, value in (("steps", 6), ("width", 128), ("height", 128)):
        _set(page, f"txt2img-{name}", value)
    for prompt in PROMPTS:
        page.fill("#txt2img-prompt textarea", prompt)
        page.click("#txt2img-generate")
        page.wait_for_selector("#txt2img-progress .studio-progress-done", state="detached", timeout=30_000)
        page.wait_for_selector("#txt2img-progress .studio-progress-done", timeout=180_000)

    page.click("button[role=tab]:has-text('History')")
    _thumbnails(page, 2)
    assert "Page 1 of 1 · 2 images" in page.inner_text("#history-page")
    assert page.get_attribute("#history-delete", "title").startswith("Move this image to your trash")
    _shot(page, "history-1-listing")

    page.fill("#history-search textarea, #history-search input", "FOX")
    page.locator("#history-search textarea, #history-search input").press("Enter")
    _thumbnails(page, 1)
    page.fill("#history-search textarea, #history-search input", "")
    page.locator("#history-search textarea, #history-search input").press("Enter")
    _thumbnails(page, 2)

    for box, choice in (("history-model", "tiny"), ("history-day", None)):  # the lists offer what the user has
        page.click(f"#{box} input")
        options = page.locator(f"#{box} [role=option]")
        options.first.wait_for(timeout=10_000)
        labels = [o.get_attribute("aria-label") for o in options.all()]
        assert len(labels) == 2, labels  # "All …" and the one model / the one day
        page.click(f"#{box} [role=option][aria-label='{choice or labels[1]}']")
        page.keyboard.press("Escape")
        page.wait_for_function("() => document.querySelector('#history-page').innerText.includes('2 images')", timeout=10_000)
        _thumbnails(page, 2)
    assert page.locator(".toast-body").count() == 0  # no error: the chosen values are accepted
    page.locator("#history-gallery .studio-history-card img").first.click()  # the newest: the fox
    page.wait_for_selector("#history-image img", timeout=10_000)
    page.wait_for_function("() => document.querySelector('#history-parameters textarea').value.includes('red fox')", timeout=10_000)
    page.wait_for_selector("a#history-download[download]", timeout=10_000)
    href = page.get_attribute("#history-download", "href")
    answer = page.request.get(page.evaluate("location.origin") + href)
    assert answer.status == 200 and answer.headers["content-type"] == "image/png"
    _shot(page, "history-2-picked")

    page.click("#history-to-img2img")
    page.wait_for_selector("#img2img-init-image img", timeout=30_000)
    page.wait_for_function("(p) => document.querySelector('#img2img-prompt textarea').value === p", arg=PROMPTS[1], timeout=10_000)
    _shot(page, "history-3-sent-to-img2img")

    page.click("button[role=tab]:has-text('History')")
    _thumbnails(page, 2)
    page.locator("#history-gallery .studio-history-card img").nth(1).click()  # the lighthouse
    page.wait_for_function("() => document.querySelector('#history-parameters textarea').value.includes('lighthouse')", timeout=10_000)
    page.click("#history-delete")
    _thumbnails(page, 1)
    assert "1 image" in page.inner_text("#history-page")
    trash = list((Path(engine.settings.outputs) / "alice" / ".trash").rglob("*.png"))
    assert len(trash) == 1
    _shot(page, "history-4-after-delete")

    # A reload (or a restart) finds the gallery again: it is read from the PNGs on disk.
    page.reload()
    page.wait_for_selector("#txt2img-prompt textarea", timeout=60_000)
    page.click("button[role=tab]:has-text('History')")
    _thumbnails(page, 1)
    assert "1 image" in page.inner_text("#history-page")
