"""A real browser (Debian's chromium, driven by playwright) against the whole studio behind a login: log in, type a
prompt, press Ctrl+Enter, watch the live preview change every step (frames from the studio's own stream) before
the result appears, with no file written but the PNGs; paint a mask in Inpainting and generate; open the Networks
panel and click a LoRA and an embedding into the prompt; pick a style and see it applied; visit every tab and
save a screenshot of each to artifacts/screenshots/ (1440×900).

Prints the number of preview frames seen and the time from Generate to the first preview (run with -s)."""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from pathlib import Path

import pytest

from tests.ui_support import launch_studio, log_in

CHROMIUM = "/usr/bin/chromium"
ROOT = Path(__file__).resolve().parent.parent
SHOTS = ROOT / "artifacts" / "screenshots"
STEPS = 16
SIZE = 128

pytestmark = pytest.mark.skipif(not os.path.exists(CHROMIUM), reason=f"{CHROMIUM} is missing (apt-get install -y chromium)")

WATCH_PREVIEW = """(selector) => {
  window.__previews = [];
  setInterval(() => {
    const img = document.querySelector(selector + ' img');
    const src = img ? img.src : null;
    const seen = window.__previews;
    if (src && (seen.length === 0 || seen[seen.length - 1][0] !== src)) seen.push([src, performance.now()]);
  }, 15);
}"""


LORA = "detail_lora"
EMBEDDING = "goodemb"  # two vectors
STYLE = ("Cinematic", "{prompt}, cinematic lighting", "blurry")


def make_prompt_files(root: Path) -> dict:
    """A LoRA folder (a listing-only .safetensors with a preview picture beside it), an embeddings folder with one
    embedding that fits the tiny model, and a styles.csv: what the studio's settings point at."""
    import torch
    from PIL import Image, ImageDraw
    from safetensors.torch import save_file

    lora_dir, embeddings_dir = root / "Lora", root / "embeddings"
    lora_dir.mkdir()
    embeddings_dir.mkdir()
    save_file({"lora_unet_x.alpha": torch.tensor(1.0)}, str(lora_dir / f"{LORA}.safetensors"), metadata={"ss_output_name": LORA})
    preview = Image.new("RGB", (96, 96), (40, 70, 140))
    ImageDraw.Draw(preview).ellipse([18, 18, 78, 78], fill=(250, 200, 60))
    preview.save(lora_dir / f"{LORA}.png")
    save_file({"other.alpha": torch.tensor(1.0)}, str(lora_dir / "no_preview.safetensors"))
    width = json.loads((ROOT / "models" / "tiny" / "recipe.json").read_text())["text_encoder"]["hidden_size"]
    save_file({"emb_params": torch.randn(2, width)}, str(embeddings_dir / f"{EMBEDDING}.safetensors"))  # fits tiny
    styles = root / "styles.csv"
    styles.write_text("name,prompt,negative_prompt\n" + ",".join(f'"{v}"' for v in STYLE) + "\n", encoding="utf-8")
    return dict(lora_dir=lora_dir, embeddings_dir=embeddings_dir, styles_file=styles, vae_dir=root / "VAE")


@pytest.fixture(scope="module")
def tiny_settings(tmp_path_factory, studio_cache):
    """This module's engine reads LoRAs, embeddings and styles from folders made here."""
    from studio.config import Settings

    files = make_prompt_files(tmp_path_factory.mktemp("prompt-files"))
    return Settings(model="tiny", outputs=tmp_path_factory.mktemp("outputs"), cache_dir=studio_cache, warmup=False, **files)


@pytest.fixture(scope="module")
def logged_in(engine):
    """(browser context holding alice's session cookie, server URL): strangers get the login form first."""
    sync_api = pytest.importorskip("playwright.sync_api")
    SHOTS.mkdir(parents=True, exist_ok=True)
    with launch_studio(engine, users={"alice": "alice-pw"}) as server, sync_api.sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                  "--disable-sync", "--no-first-run"],
        )
        context = browser.new_context(viewport={"width": 1440, "height": 900})
        page = context.new_page()
        log_in(page, server.url, "alice", "alice-pw")
        page.close()
        try:
            yield context, server.url
        finally:
            browser.close()


def _open(logged_in):
    context, url = logged_in
    page = context.new_page()
    page.goto(url + "/")
    page.wait_for_selector("#txt2img-prompt textarea", timeout=60_000)
    return page


@pytest.fixture
def fresh_page(logged_in):
    """A new browser tab: a Gradio session of its own, with no results yet."""
    page = _open(logged_in)
    yield page
    page.close()


@pytest.fixture(scope="module")
def browser_page(logged_in):
    """One tab kept across this module's tests (its results, its last job); each test makes what it needs."""
    page = _open(logged_in)
    yield page
    page.close()


def _ensure_result(page) -> None:
    """A finished text-to-image job in this tab (of STEPS steps at SIZE), made here if none was made yet."""
    page.click("button[role=tab]:has-text('Text to image')")
    if page.locator("#txt2img-gallery img").count():
        return
    page.fill("#txt2img-prompt textarea", "a lighthouse at dusk")
    for name, value in (("steps", STEPS), ("width", SIZE), ("height", SIZE)):
        _set_slider(page, f"txt2img-{name}", value)
    page.click("#txt2img-generate")
    page.wait_for_selector("#txt2img-gallery img", timeout=180_000)
    page.wait_for_selector("#txt2img-progress .studio-progress-done", timeout=30_000)


def _set_slider(page, element_id: str, value) -> None:
    box = page.locator(f"#{element_id} input[type=number]")
    box.fill(str(value))
    box.press("Enter")


def _watch_and_wait(page, tab: str, start) -> tuple[list, float]:
    """Start watching `tab`'s live preview, run `start()` (at t0), wait for the result: (previews, t0)."""
    page.evaluate(WATCH_PREVIEW, f"#{tab}-preview")
    t0 = page.evaluate("performance.now()")
    start()
    page.wait_for_selector(f"#{tab}-progress .studio-progress-done", state="detached", timeout=30_000)  # this job's
    page.wait_for_selector(f"#{tab}-gallery img", timeout=180_000)
    page.wait_for_selector(f"#{tab}-progress .studio-progress-done", timeout=180_000)
    return page.evaluate("window.__previews"), t0


def _start_long_job(page, prompt: str) -> None:
    """A 150-step txt2img job, started and seen sampling."""
    page.locator("#txt2img-prompt textarea").fill(prompt)
    _set_slider(page, "txt2img-steps", 150)
    page.click("#txt2img-generate")
    page.wait_for_function("() => /Step \\d+\\/150/.test(document.querySelector('#txt2img-progress').innerText)", timeout=60_000)


def _shot(page, name: str, full_page: bool = True) -> Path:
    """full_page=False while a mask is painted: a full-page shot resizes the window for a moment, and Gradio's image
    editor redraws its canvas then, without the strokes not yet sent."""
    path = SHOTS / f"{name}.png"
    time.sleep(0.4)
    page.screenshot(path=str(path), full_page=full_page)
    return path


def _toast(page, text: str) -> None:
    """A visible Gradio toast containing `text` (then closes every toast)."""
    page.wait_for_selector(f".toast-body:has-text('{text}')", state="visible", timeout=10_000)
    for close in page.locator(".toast-close").all():
        try:
            close.click(timeout=1_000)
        except Exception:
            pass


def test_instant_buttons_tell_the_user_on_a_fresh_page(fresh_page):
    """Before anything is generated, the send/reuse buttons answer with a visible toast (not a silent HTTP 500)."""
    page = fresh_page
    page.click("#txt2img-to-img2img")
    _toast(page, "No result to send yet: generate first.")
    page.click("#txt2img-to-inpaint")
    _toast(page, "No result to send yet: generate first.")
    page.click("#txt2img-reuse-seed")
    _toast(page, "No result yet.")
    page.click("#txt2img-recycle")
    _toast(page, "No seed yet: generate once first.")
    assert page.input_value("#txt2img-seed input") == "-1"
    assert "Text to image" in page.inner_text("button[role=tab][aria-selected=true]")  # no tab switch
    _set_slider(page, "txt2img-width", 48)  # no such size: it snaps to the minimum
    page.wait_for_function("() => document.querySelector('#txt2img-width input[type=number]').value === '64'", timeout=10_000)
    _set_slider(page, "txt2img-width", 0)


def test_text_to_image_streams_previews_then_the_result(browser_page):
    page = browser_page
    page.click("button[role=tab]:has-text('Text to image')")
    page.fill("#txt2img-prompt textarea", "a lighthouse at dusk, dramatic sky, oil painting")
    assert "/75" in page.inner_text("#txt2img-prompt-tokens")
    for name, value in (("steps", STEPS), ("width", SIZE), ("height", SIZE), ("batch-size", 2)):
        _set_slider(page, f"txt2img-{name}", value)
    page.fill("#txt2img-seed input", "42")
    page.locator("#txt2img-seed input").press("Tab")

    def ctrl_enter():
        page.focus("#txt2img-prompt textarea")
        page.keyboard.press("Control+Enter")

    cache = Path(os.environ["GRADIO_TEMP_DIR"])
    cached_before = {p for p in cache.rglob("*") if p.is_file()}
    previews, t0 = _watch_and_wait(page, "txt2img", ctrl_enter)
    distinct = len({src for src, _ in previews if src.startswith("data:")})
    first = (previews[0][1] - t0) / 1000 if previews else float("nan")
    print(f"\n[browser] txt2img {STEPS} steps at {SIZE}px: {distinct} distinct preview frames seen; first preview after {first:.2f} s")
    assert distinct >= STEPS - 2, f"only {distinct} preview frames seen for {STEPS} steps"
    assert {p for p in cache.rglob("*") if p.is_file()} == cached_before, "files were written for the job's previews or results"
    assert "Seed: 42" in page.input_value("#txt2img-infotext textarea")
    done = page.inner_text("#txt2img-progress").strip()
    assert re.fullmatch(r"Done: 2 images in \d+\.\d s", done), done  # with the time it took; no Gradio timer text mixed in
    assert page.get_attribute("#txt2img-preview img", "src").endswith(".png")  # the result, not the last JPEG preview
    shown = page.evaluate("""() => { const g = document.querySelector('#txt2img-gallery').getBoundingClientRect();
        const i = document.querySelector('#txt2img-gallery img').getBoundingClientRect();
        return i.top >= g.top - 1 && i.bottom <= g.bottom + 1 && i.left >= g.left - 1 && i.right <= g.right + 1; }""")
    assert shown, "the result image does not fit in the Results gallery"
    assert "seed 42" in page.inner_text("#txt2img-gallery")  # its caption is visible
    assert page.locator("#txt2img-files a, #txt2img-files button").count() >= 1
    assert page.locator("#txt2img-files .label-clear-button:visible").count() == 0  # downloads only, no "remove" ×
    # The next job in the same tab streams its own frames too (Gradio updates the live box in place).
    again, _ = _watch_and_wait(page, "txt2img", lambda: page.click("#txt2img-generate"))
    assert len({src for src, _ in again if src.startswith("data:")}) >= STEPS - 2, "the second job showed no live frames"
    shot = _shot(page, "1-text-to-image")
    if os.environ.get("STUDIO_UPDATE_SCREENSHOT"):  # the README's picture, refreshed on purpose (tests leave git clean)
        shutil.copyfile(shot, ROOT / "docs" / "screenshot.png")


# One sample of the player: the frame the caption names, the slider's value, and the frame whose picture is shown
# (found back from the blob URL the player made for it).
PLAYER_STATE = """() => {
  const box = document.getElementById('steps-player'), s = window.__studioSteps;
  const caption = box.querySelector('.steps-caption').textContent.match(/frame (\\d+)\\/(\\d+)/);
  const src = box.querySelector('.steps-picture').src;
  return { caption: caption ? Number(caption[1]) : null, slider: Number(box.querySelector('.steps-slider').value),
           index: s.index, src };
}"""


def _frame_requests(page) -> list:
    return [r for r in page.evaluate("() => performance.getEntriesByType('resource').map((e) => e.name)") if "/frames/" in r]


def test_step_previews_play_in_the_browser_and_survive_a_reload(browser_page):
    page = browser_page
    _ensure_result(page)
    page.click("button[role=tab]:has-text('Step previews')")
    page.wait_for_function("() => /Step (\\d+) of \\1 · frame (\\d+)\\/\\2/.test(document.querySelector('#steps-player .steps-caption').textContent)",
                           timeout=30_000)  # the newest job, at its last step
    assert page.locator("#steps-player .steps-job option").count() >= 1
    assert page.get_attribute("#steps-player .steps-picture", "src").startswith("blob:")
    frames = int(page.get_attribute("#steps-player .steps-slider", "max"))
    assert frames == STEPS  # one frame per step
    sheet = page.get_attribute("#steps-player .steps-export-sheet", "href")
    answer = page.request.get(page.evaluate("(h) => new URL(h, location.href).href", sheet))
    assert answer.status == 200 and answer.headers["content-type"] == "image/png"
    _shot(page, "4-step-previews")

    # Play: every frame is fetched before the first is shown, and then nothing more; caption, slider and picture
    # always name the same frame.
    page.select_option("#steps-player .steps-speed", "15")
    page.evaluate("() => performance.clearResourceTimings()")
    page.click("#steps-player .steps-play")
    page.wait_for_function("() => document.querySelector('#steps-player .steps-play').textContent === 'Playing'", timeout=30_000)
    fetched = len(_frame_requests(page))
    samples = []
    while True:
        state = page.evaluate(PLAYER_STATE)
        samples.append(state)
        if page.inner_text("#steps-player .steps-play") == "Play":
            break
        page.wait_for_timeout(20)
    samples.append(page.evaluate(PLAYER_STATE))  # where it stopped (it may stop between a sample and the check)
    while len(samples) > 1 and samples[0]["index"] == frames:  # sampled after "Playing" showed, before it rewound to 1
        samples.pop(0)
    indices = [s["index"] for s in samples]
    assert all(s["caption"] == s["slider"] == s["index"] for s in samples), samples[:5]
    assert indices == sorted(indices) and indices[-1] == frames and len(set(indices)) >= frames // 2, indices
    assert len(_frame_requests(page)) == fetched, "playing fetched frames again"
    assert fetched <= frames * 5  # at most once each: the picture and 4 channels per frame

    page.reload()
    page.wait_for_selector("#txt2img-prompt textarea", timeout=60_000)
    page.click("button[role=tab]:has-text('Step previews')")
    page.wait_for_function("(n) => document.querySelector('#steps-player .steps-caption').textContent.includes(`frame ${n}/${n}`)",
                           arg=frames, timeout=30_000)
    assert page.get_attribute("#steps-player .steps-picture", "src").startswith("blob:")


def test_png_info_reads_parameters_and_sends_them(browser_page, engine):
    page = browser_page
    _ensure_result(page)
    page.click("button[role=tab]:has-text('PNG info')")
    outputs = sorted(Path(engine.settings.outputs).rglob("*.png"), key=lambda p: p.stat().st_mtime)
    page.set_input_files("#pnginfo-image input[type=file]", str(outputs[-1]))
    page.wait_for_function("() => document.querySelector('#pnginfo-text textarea').value.includes('Steps:')", timeout=30_000)
    _shot(page, "5-png-info")
    page.click("#pnginfo-send")
    page.wait_for_function("() => document.querySelector('#txt2img-prompt textarea').value.length > 0", timeout=10_000)


def test_inpainting_paints_a_mask_and_generates(browser_page):
    page = browser_page
    _ensure_result(page)
    page.click("#txt2img-to-inpaint")  # the last result goes to Inpainting
    page.wait_for_selector("#inpaint-editor canvas", timeout=30_000)
    time.sleep(1.0)
    _set_slider(page, "inpaint-steps", 12)
    page.fill("#inpaint-prompt textarea", "a red door")
    page.click("#inpaint-editor button[aria-label=Brush]")
    canvas = page.locator("#inpaint-editor canvas").last
    page.locator("#inpaint-editor").scroll_into_view_if_needed()  # the mouse paints only where the window shows
    box = canvas.bounding_box()
    cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.mouse.move(cx - 60, cy - 20)
    page.mouse.down()
    for i in range(1, 13):
        page.mouse.move(cx - 60 + i * 10, cy - 20 + (i % 4) * 10, steps=2)
    page.mouse.up()
    time.sleep(0.5)
    _shot(page, "3-inpainting-mask", full_page=False)
    previews, _ = _watch_and_wait(page, "inpaint", lambda: page.click("#inpaint-generate"))
    print(f"[browser] inpaint: {len({s for s, _ in previews})} distinct preview frames seen")
    assert "Mask blur" in page.input_value("#inpaint-infotext textarea")
    _shot(page, "3-inpainting-result")


def _stroke_thickness(page, engine, size: int) -> int:
    """Paint one straight stroke with the Brush size field at `size`, generate: the mask's height in pixels."""
    _set_slider(page, "inpaint-brush-size", size)
    page.click("#inpaint-clear-mask")
    time.sleep(1.0)
    page.click("#inpaint-editor button[aria-label=Brush]")
    page.locator("#inpaint-editor").scroll_into_view_if_needed()
    box = page.locator("#inpaint-editor canvas").last.bounding_box()
    cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.mouse.move(cx - 50, cy)
    page.mouse.down()
    page.mouse.move(cx + 50, cy, steps=10)
    page.mouse.up()
    time.sleep(0.5)
    page.click("#inpaint-generate")
    page.wait_for_selector("#inpaint-progress .studio-progress-done", state="detached", timeout=30_000)
    page.wait_for_selector("#inpaint-progress .studio-progress-done", timeout=120_000)
    mask = engine.jobs.latest("alice").request.mask.convert("L")
    rows = [y for y in range(mask.height) if any(mask.getpixel((x, y)) > 127 for x in range(mask.width))]
    return len(rows)


def test_the_brush_size_field_sets_the_mask_brush(browser_page, engine):
    page = browser_page
    _ensure_result(page)
    page.click("#txt2img-to-inpaint")
    page.wait_for_selector("#inpaint-editor canvas", timeout=30_000)
    _set_slider(page, "inpaint-steps", 2)
    _set_slider(page, "inpaint-mask-blur", 0)
    thin, thick = _stroke_thickness(page, engine, 4), _stroke_thickness(page, engine, 40)
    print(f"[browser] mask stroke at brush 4: {thin} px high; at brush 40: {thick} px")
    assert 0 < thin and thick >= 4 * thin


def test_image_to_image_tab_screenshot(browser_page):
    page = browser_page
    _ensure_result(page)
    sent = page.input_value("#txt2img-infotext textarea")
    steps, seed = (re.search(rf"{key}: (\d+)", sent).group(1) for key in ("Steps", "Seed"))
    page.click("#txt2img-to-img2img")
    page.wait_for_selector("#img2img-init-image img", timeout=30_000)
    # Send-to carries the result's own parameters, not only its picture and prompts.
    page.wait_for_function("([s, d]) => document.querySelector('#img2img-steps input[type=number]').value === s"
                           " && document.querySelector('#img2img-seed input').value === d", arg=[steps, seed], timeout=10_000)
    assert page.input_value("#img2img-prompt textarea") == sent.split("\n")[0]
    _shot(page, "2-image-to-image")


def _open_networks(page, tab: str = "txt2img") -> None:
    page.click(f"#{tab}-networks button.label-wrap")
    page.wait_for_selector(f"#{tab}-networks-list .studio-lora", state="visible", timeout=10_000)


def _prompt_is(page, tab: str, expected: str) -> None:
    page.wait_for_function("([sel, want]) => document.querySelector(sel).value === want",
                           arg=[f"#{tab}-prompt textarea", expected], timeout=10_000)


def test_networks_panel_puts_a_lora_tag_and_an_embedding_into_the_prompt(fresh_page):
    page = fresh_page
    assert not page.locator("#txt2img-networks-list .studio-lora").is_visible()  # closed by default
    page.fill("#txt2img-prompt textarea", "a cat")
    page.wait_for_function("() => document.querySelector('#txt2img-prompt-tokens').innerText.includes('2/75')", timeout=10_000)
    _open_networks(page)
    lora = page.locator(f"#txt2img-networks-list .studio-lora[data-name='{LORA}']")
    # the preview picture beside the LoRA file, from the studio's route (for this logged-in user); none for the other
    picture = lora.locator(".studio-card-picture").evaluate("e => getComputedStyle(e).backgroundImage")
    assert f"/studio/api/loras/{LORA}/preview" in picture
    origin = page.evaluate("location.origin")
    answer = page.request.get(f"{origin}/studio/api/loras/{LORA}/preview")
    assert answer.status == 200 and answer.headers["content-type"] == "image/png"
    assert page.request.get(f"{origin}/studio/api/loras/no_preview/preview").status == 404
    lora.click()
    _prompt_is(page, "txt2img", f"a cat <lora:{LORA}:1>")
    page.wait_for_function("() => document.querySelector('#txt2img-prompt-tokens').innerText.includes('2/75')", timeout=10_000)
    _shot(page, "6-networks")
    lora.click()  # again: the tag comes out
    _prompt_is(page, "txt2img", "a cat")
    page.click(f"#txt2img-networks-list .studio-embedding[data-name='{EMBEDDING}']")
    _prompt_is(page, "txt2img", f"a cat {EMBEDDING}")
    # the embedding counts its two vectors, not its name's tokens
    page.wait_for_function("() => document.querySelector('#txt2img-prompt-tokens').innerText.includes('4/75')", timeout=10_000)
    # the other tabs have their own panel, writing into their own prompt
    page.click("button[role=tab]:has-text('Image to image')")
    _open_networks(page, "img2img")
    page.click(f"#img2img-networks-list .studio-lora[data-name='{LORA}']")
    _prompt_is(page, "img2img", f"<lora:{LORA}:1>")


def test_networks_refresh_finds_a_new_lora(fresh_page, engine):
    from safetensors.torch import save_file
    import torch

    page = fresh_page
    _open_networks(page)
    assert page.locator("#txt2img-networks-list .studio-lora[data-name='added_later']").count() == 0
    save_file({"x.alpha": torch.tensor(1.0)}, str(Path(engine.settings.lora_dir) / "added_later.safetensors"))
    page.click("#txt2img-networks-refresh")
    page.wait_for_selector("#txt2img-networks-list .studio-lora[data-name='added_later']", timeout=10_000)
    _toast(page, "Found 3 LoRAs")


def test_a_chosen_style_is_applied(fresh_page):
    page = fresh_page
    page.fill("#txt2img-prompt textarea", "a lighthouse")
    for name, value in (("steps", 2), ("width", 64), ("height", 64), ("clip-skip", 2)):
        _set_slider(page, f"txt2img-{name}", value)
    page.click("#txt2img-styles input")
    page.click(f"#txt2img-styles [role=option][aria-label='{STYLE[0]}']")
    page.keyboard.press("Escape")
    page.wait_for_selector(f"#txt2img-styles .token:has-text('{STYLE[0]}')", timeout=10_000)
    _shot(page, "7-styles-and-settings")
    page.click("#txt2img-generate")
    page.wait_for_selector("#txt2img-progress .studio-progress-done", timeout=180_000)
    infotext = page.input_value("#txt2img-infotext textarea")
    assert infotext.startswith("a lighthouse, cinematic lighting"), infotext
    assert "Negative prompt: blurry" in infotext and "Clip skip: 2" in infotext


def test_hires_fix_from_text_to_image(fresh_page):
    """Open the Hires. fix accordion (closed at first), tick it, generate at 64×64: the result is the upscaled picture
    and its parameters carry the hires fields. Seed's Extra shows the variation seed row."""
    page = fresh_page
    assert not page.locator("#txt2img-enable-hr").is_visible()  # closed by default
    page.fill("#txt2img-prompt textarea", "a lighthouse at dusk")
    for name, value in (("steps", 3), ("width", 64), ("height", 64)):
        _set_slider(page, f"txt2img-{name}", value)
    page.click("#txt2img-hires button.label-wrap")
    page.wait_for_selector("#txt2img-enable-hr", state="visible", timeout=10_000)
    page.check("#txt2img-enable-hr input[type=checkbox]")
    page.wait_for_function("() => document.querySelector('#txt2img-hires-size').innerText.includes('64×64 → 128×128')", timeout=10_000)
    page.wait_for_function("() => document.querySelector('#txt2img-hires').innerText.includes('Hires. fix — on')", timeout=10_000)
    assert "Latent" in page.input_value("#txt2img-hr-upscaler input")
    page.check("#txt2img-seed-extras input[type=checkbox]")
    page.wait_for_selector("#txt2img-variation", state="visible", timeout=10_000)
    page.click("#txt2img-generate")
    page.wait_for_selector("#txt2img-progress .studio-progress-done", timeout=180_000)
    infotext = page.input_value("#txt2img-infotext textarea")
    assert "Hires upscale: 2" in infotext and "Hires upscaler: Latent" in infotext, infotext
    assert "Variation seed" not in infotext  # Extra shown, strength 0: no variation
    size = page.evaluate("() => { const i = document.querySelector('#txt2img-preview img'); return [i.naturalWidth, i.naturalHeight]; }")
    assert size == [128, 128], size
    page.locator("#txt2img-hires").scroll_into_view_if_needed()
    _shot(page, "8-hires-fix")


def test_extras_upscales_an_uploaded_image(browser_page, tmp_path):
    """Extras: upload a 64×64 PNG, pick Lanczos, scale by 2, Generate: the 128×128 result and its info text; the
    result goes on to Image to image, and a Text to image result comes to Extras with "→ Extras"."""
    from tests.ui_support import make_input_png

    page = browser_page
    page.click("button[role=tab]:has-text('Extras')")
    page.set_input_files("#extras-image input[type=file]", str(make_input_png(tmp_path / "small.png")))
    page.wait_for_selector("#extras-image img", timeout=30_000)
    page.click("#extras-upscaler-1 input")
    page.click("#extras-upscaler-1 [role=option][aria-label='Lanczos']")
    page.keyboard.press("Escape")
    _set_slider(page, "extras-resize", 2)
    page.click("#extras-generate")
    page.wait_for_function("() => document.querySelector('#extras-info textarea').value.includes('Lanczos')", timeout=60_000)
    assert page.input_value("#extras-info textarea") == "Postprocess upscale by: 2, Postprocess upscaler: Lanczos"
    page.wait_for_function("() => { const i = document.querySelector('#extras-result img'); return i && i.naturalWidth > 0; }",
                           timeout=30_000)
    size = page.evaluate("() => { const i = document.querySelector('#extras-result img'); return [i.naturalWidth, i.naturalHeight]; }")
    assert size == [128, 128], size
    assert page.locator("#extras-result button[aria-label*='ownload'], #extras-result a[download]").count() >= 1
    _shot(page, "9-extras")
    # "Scale to" (its sub-tab sets resize_mode), cropped to fit
    page.click("#extras-resize-tabs button[role=tab]:has-text('Scale to')")
    _set_slider(page, "extras-width", 96)
    _set_slider(page, "extras-height", 48)
    page.click("#extras-generate")
    page.wait_for_function("() => document.querySelector('#extras-info textarea').value.includes('96x48')", timeout=60_000)
    assert "Postprocess crop to: 96x48" in page.input_value("#extras-info textarea")
    _shot(page, "9-extras-scale-to")
    page.click("#extras-to-img2img")
    page.wait_for_selector("#img2img-init-image img", timeout=30_000)
    _ensure_result(page)
    page.click("#txt2img-to-extras")
    page.wait_for_function("() => { const i = document.querySelector('#extras-image img'); return i && i.naturalWidth === %d; }" % SIZE,
                           timeout=30_000)


def _pick(page, element_id: str, option: str) -> None:
    """Choose `option` in the dropdown #element_id."""
    page.click(f"#{element_id} input")
    page.click(f"#{element_id} [role=option][aria-label='{option}']")
    page.keyboard.press("Escape")
    page.wait_for_function("([sel, want]) => document.querySelector(sel).value === want",
                           arg=[f"#{element_id} input", option], timeout=10_000)


def test_xyz_plot_from_text_to_image(fresh_page, tmp_path):
    """Script → X/Y/Z plot (its panel appears), X = Steps "2,3", Generate: the tab says which cell runs, then shows the
    grid first and each cell after it, each with its own parameters. A .txt file picked under "Prompts from file or
    textbox" is read into its box in the browser."""
    page = fresh_page
    assert not page.locator("#txt2img-script-xyz-plot").is_visible()  # "None" at first: no script panel
    page.fill("#txt2img-prompt textarea", "a lighthouse at dusk")
    for name, value in (("width", 64), ("height", 64)):
        _set_slider(page, f"txt2img-{name}", value)
    _pick(page, "txt2img-script", "X/Y/Z plot")
    page.wait_for_selector("#txt2img-script-xyz-plot", state="visible", timeout=10_000)
    _pick(page, "txt2img-xyz-x-type", "Steps")
    page.fill("#txt2img-xyz-x-values textarea", "2,3")
    page.evaluate("""() => { window.__progress = []; setInterval(() => {
        const t = (document.querySelector('#txt2img-progress') || {}).innerText || '';
        if (t && window.__progress[window.__progress.length - 1] !== t) window.__progress.push(t); }, 10); }""")
    page.click("#txt2img-generate")
    page.wait_for_selector("#txt2img-progress .studio-progress-done", timeout=180_000)
    assert page.inner_text("#txt2img-progress").strip() == "Done: X/Y/Z plot, 1 grid and 2 images"
    seen = page.evaluate("window.__progress")
    assert any("X/Y/Z plot: 2 cells" in text or "Cell " in text for text in seen), seen
    page.wait_for_function("() => document.querySelectorAll('#txt2img-gallery .thumbnail-item img, #txt2img-gallery img').length >= 3",
                           timeout=30_000)
    gallery = page.inner_text("#txt2img-gallery")
    assert "grid" in gallery and "Steps: 2" in gallery and "Steps: 3" in gallery, gallery
    infotext = page.input_value("#txt2img-infotext textarea")
    assert "Script: X/Y/Z plot" in infotext and "X Type: Steps" in infotext and 'X Values: "2,3"' in infotext, infotext
    grid = page.evaluate("() => { const i = document.querySelector('#txt2img-preview img'); return [i.naturalWidth, i.naturalHeight]; }")
    assert grid[0] == 2 * 64 and grid[1] > 64, grid  # the grid: two cells side by side, the Steps labels above
    assert page.locator("#txt2img-files a").count() == 3
    page.locator("#txt2img-script").scroll_into_view_if_needed()
    _shot(page, "10-xyz-plot")
    # Prompts from file: a .txt file is read in the browser into "List of prompt inputs"
    _pick(page, "txt2img-script", "Prompts from file or textbox")
    page.wait_for_selector("#txt2img-file-prompts", state="visible", timeout=10_000)
    lines = tmp_path / "prompts.txt"
    lines.write_text("a red fox\r\na blue bird\n", encoding="utf-8")
    page.set_input_files("#txt2img-file-upload input[type=file]", str(lines))
    page.wait_for_function("() => document.querySelector('#txt2img-file-prompts textarea').value === 'a red fox\\na blue bird\\n'",
                           timeout=10_000)
    assert "2 lines" in page.inner_text("#txt2img-file-upload")


def test_keyboard_emphasis_and_labelled_seed_buttons(fresh_page):
    """A1111's Ctrl+↑/↓ on the selected words (0.1 a press, brackets gone back at 1); the seed buttons are words with
    tooltips, not emoji that render as empty boxes without an emoji font."""
    page = fresh_page
    area = page.locator("#txt2img-prompt textarea")
    area.fill("a red fox, snow")
    area.evaluate("(el) => { el.focus(); el.setSelectionRange(2, 5); }")  # "red"
    page.keyboard.press("Control+ArrowUp")
    page.keyboard.press("Control+ArrowUp")
    _prompt_is(page, "txt2img", "a (red:1.2) fox, snow")
    page.keyboard.press("Control+ArrowDown")
    page.keyboard.press("Control+ArrowDown")
    _prompt_is(page, "txt2img", "a red fox, snow")
    area.evaluate("(el) => { el.focus(); el.setSelectionRange(12, 12); }")  # the cursor in "snow"
    page.keyboard.press("Control+ArrowDown")
    _prompt_is(page, "txt2img", "a red fox, (snow:0.9)")
    assert page.inner_text("#txt2img-dice").strip() == "Random"
    assert "random seed" in (page.get_attribute("#txt2img-dice", "title") or "").lower()
    assert page.get_attribute("#txt2img-cancel", "title") == "Stop this tab's job (Escape)"


def test_escape_cancels_the_running_job(fresh_page):
    page = fresh_page
    _start_long_job(page, "a long walk")
    page.locator("#txt2img-prompt textarea").focus()
    page.keyboard.press("Escape")
    page.wait_for_function("() => /Cancel/.test(document.querySelector('#txt2img-progress').innerText)", timeout=30_000)


def test_aspect_presets_and_swap_set_the_size(fresh_page):
    page = fresh_page
    number = lambda side: int(float(page.input_value(f"#txt2img-{side} input[type=number]")))  # noqa: E731
    page.click("#txt2img-aspect-3x2")
    page.wait_for_function("() => Number(document.querySelector('#txt2img-width input[type=number]').value) > 0")
    width, height = number("width"), number("height")
    assert width > height > 0 and width % 8 == height % 8 == 0 and abs(width / height - 1.5) < 0.1
    page.click("#txt2img-size-swap")
    page.wait_for_function(f"() => Number(document.querySelector('#txt2img-width input[type=number]').value) === {height}")
    assert (number("width"), number("height")) == (height, width)
    _shot(page, "9-size-presets")


def test_skip_ends_a_job_with_its_image(fresh_page):
    page = fresh_page
    _start_long_job(page, "a long walk, skipped")
    page.click("#txt2img-skip")
    page.wait_for_function("() => document.querySelector('#txt2img-progress').innerText.includes('Done (finished early): 1 image')",
                           timeout=60_000)
    assert page.locator("#txt2img-gallery img").count() >= 1
    assert "Steps: 150" in page.input_value("#txt2img-infotext textarea")


def test_two_clicks_make_two_jobs_in_the_job_list(fresh_page):
    page = fresh_page
    _start_long_job(page, "two jobs, one tab")
    page.click("#txt2img-generate")
    page.wait_for_function("() => document.querySelectorAll('#txt2img-jobs li').length === 2", timeout=20_000)
    rows = page.locator("#txt2img-jobs li")
    assert "Step" in rows.nth(0).inner_text() and "Queued" in rows.nth(1).inner_text()
    assert "two jobs, one tab" in rows.nth(1).inner_text()
    _shot(page, "10-job-list")
    rows.nth(1).locator("button[data-act=cancel]").click()  # the queued one, from the list
    page.wait_for_function("() => document.querySelectorAll('#txt2img-jobs li').length === 1", timeout=20_000)
    page.locator("#txt2img-jobs li button[data-act=skip]").click()  # the running one ends with its picture
    page.wait_for_function("() => document.querySelectorAll('#txt2img-jobs li').length === 0", timeout=60_000)


def _number_is(page, element_id: str, value) -> None:
    page.wait_for_function("([sel, want]) => Number(document.querySelector(sel).value) === want",
                           arg=[f"#{element_id} input[type=number]", value], timeout=15_000)


def test_settings_are_saved_per_user_and_set_the_tabs(fresh_page, engine):
    page = fresh_page
    page.click("button[role=tab]:has-text('Settings')")
    pattern = "#settings-filename-pattern input, #settings-filename-pattern textarea"
    page.fill(pattern, "[seed]-[hash]")
    page.click("#settings-save")
    _toast(page, "unknown tokens ([hash])")  # refused, saying which
    _pick(page, "settings-sampler", "DDIM")
    _set_slider(page, "settings-steps", 3)
    page.fill(pattern, "[seed]-[prompt_words]")
    page.click("#settings-save")
    page.wait_for_function("() => document.querySelector('#settings-status').innerText.includes('Saved')", timeout=15_000)
    _shot(page, "12-settings")
    page.click("button[role=tab]:has-text('Text to image')")
    _number_is(page, "txt2img-steps", 3)  # the tabs take the new defaults at once
    assert page.input_value("#txt2img-sampler input") == "DDIM"
    try:
        page.reload()  # ... and on every page load
        page.wait_for_selector("#txt2img-prompt textarea", timeout=60_000)
        _number_is(page, "txt2img-steps", 3)
        page.click("button[role=tab]:has-text('Inpainting')")
        _number_is(page, "inpaint-steps", 3)
        page.click("button[role=tab]:has-text('Text to image')")
        page.fill("#txt2img-prompt textarea", "a settings check")
        for name in ("width", "height"):
            _set_slider(page, f"txt2img-{name}", 64)
        page.click("#txt2img-generate")
        page.wait_for_selector("#txt2img-progress .studio-progress-done", timeout=120_000)
        infotext = page.input_value("#txt2img-infotext textarea")
        assert "Steps: 3, Sampler: DDIM" in infotext
        seed = re.search(r"Seed: (\d+)", infotext).group(1)
        names = [p.name for p in Path(engine.settings.outputs).rglob("*.png")]
        assert any(re.fullmatch(rf"\d{{5}}-{seed}-a settings check\.png", n) for n in names), names  # the pattern
    finally:
        page.click("button[role=tab]:has-text('Settings')")
        page.click("#settings-reset")
        page.wait_for_function("() => document.querySelector('#settings-status').innerText.includes('defaults')", timeout=15_000)
    _number_is(page, "txt2img-steps", 20)


def test_the_page_stays_put_when_a_job_ends(fresh_page):
    page = fresh_page
    page.locator("#txt2img-prompt textarea").fill("a quiet page")
    _set_slider(page, "txt2img-steps", 4)
    page.evaluate("() => window.scrollTo(0, 0)")
    page.click("#txt2img-generate")
    page.wait_for_function("() => /Done/.test(document.querySelector('#txt2img-progress').innerText)", timeout=60_000)
    page.wait_for_timeout(500)  # the results' pictures load
    assert page.evaluate("() => window.scrollY") == 0
    assert page.locator("#txt2img-generate").is_visible() and page.locator("#txt2img-prompt textarea").is_visible()


def test_outpainting_extends_the_canvas_and_fills_it(browser_page):
    page = browser_page
    _ensure_result(page)
    width, height = (int(v) for v in re.search(r"Size: (\d+)x(\d+)", page.input_value("#txt2img-infotext textarea")).groups())
    page.click("#txt2img-to-inpaint")
    page.wait_for_selector("#inpaint-editor canvas", timeout=30_000)
    time.sleep(1.0)
    page.wait_for_function("() => document.querySelector('#inpaint-prompt textarea').value !== ''", timeout=30_000)
    page.click("#inpaint-outpaint button.label-wrap")
    page.wait_for_selector("#inpaint-outpaint-left input", state="visible", timeout=10_000)
    time.sleep(1.0)  # the sent parameters land before the side is typed
    page.fill("#inpaint-outpaint-left input", "64")
    page.locator("#inpaint-outpaint-left input").press("Tab")
    page.wait_for_function("() => document.querySelector('#inpaint-outpaint-left input').value === '64'", timeout=10_000)
    page.click("#inpaint-extend")
    time.sleep(1.5)  # the editor takes the new canvas and its mask
    _set_slider(page, "inpaint-steps", 4)
    page.fill("#inpaint-prompt textarea", "more of the same, to the left")
    _shot(page, "11-outpaint-canvas")
    _watch_and_wait(page, "inpaint", lambda: page.click("#inpaint-generate"))
    assert f"Size: {width + 64}x{height}" in page.input_value("#inpaint-infotext textarea")
    _shot(page, "11-outpaint-result")


@pytest.mark.parametrize("width, height", [(1440, 900), (1024, 768)])
def test_every_tab_at_both_sizes(fresh_page, width, height):
    page = fresh_page
    page.set_viewport_size({"width": width, "height": height})
    for tab in ("Text to image", "Image to image", "Inpainting", "Extras", "Step previews", "PNG info", "History", "Settings"):
        page.click(f"button[role=tab]:has-text('{tab}')")
        page.wait_for_timeout(400)
        overflow = page.evaluate("() => document.documentElement.scrollWidth - document.documentElement.clientWidth")
        assert overflow <= 0, f"{tab} at {width}×{height} scrolls sideways by {overflow} px"
        _shot(page, f"tabs-{width}x{height}-{tab.lower().replace(' ', '-')}")
