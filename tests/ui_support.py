"""Helpers for the UI tests: a launched studio UI on a free port (7861-7869), and small PNG fixtures."""

from __future__ import annotations

import socket
import tempfile
from contextlib import contextmanager
from pathlib import Path

from PIL import Image, ImageDraw


def free_port(candidates=range(7862, 7870)) -> int:
    for port in candidates:
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
                return port
            except OSError:
                continue
    raise RuntimeError("no free port in 7862-7869")


@contextmanager
def launch_studio(engine, users=None, admins=()):
    """The whole studio (UI, routes, rules) served in this process on a free port: yields the LiveServer."""
    from studio.access import Access
    from studio.service import JobService
    from studio.ui import CSS, build_ui
    from studio.web.app import create_app
    from studio.web.auth import Users
    from studio.web.gradio_files import GradioFiles, private_gradio_cache

    from tests.server_support import LiveServer

    private_gradio_cache(engine.settings.cache_dir)
    accounts = Users(dict(users), admins) if users else None
    service, files = JobService(engine, Access(engine, accounts)), GradioFiles()
    blocks = build_ui(service, files=files)
    with tempfile.TemporaryDirectory(prefix="studio-state-") as state_dir:
        app = create_app(blocks, service, accounts, files=files, state_dir=Path(state_dir), css=CSS)
        server = LiveServer(app, free_port(), engine).start()
        try:
            yield server
        finally:
            server.stop()
            blocks.close()


@contextmanager
def logged_in_page(engine, chromium: str, user: str = "alice", password: str = "alice-pw"):
    """The studio served for `user`, open in a 1440×900 chromium page past the login, on the Text to image tab."""
    from playwright.sync_api import sync_playwright

    with launch_studio(engine, users={user: password}) as server, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox", "--disable-gpu", "--no-first-run"])
        page = browser.new_context(viewport={"width": 1440, "height": 900}).new_page()
        log_in(page, server.url, user, password)
        page.goto(server.url + "/")
        page.wait_for_selector("#txt2img-prompt textarea", timeout=60_000)
        try:
            yield page
        finally:
            browser.close()


def make_input_png(path: Path, size=(64, 64)) -> Path:
    image = Image.new("RGB", size)
    draw = ImageDraw.Draw(image)
    for x in range(size[0]):
        draw.line([(x, 0), (x, size[1])], fill=(x * 4 % 256, 90, 255 - x * 4 % 256))
    draw.ellipse([16, 16, 48, 48], fill=(240, 200, 40))
    image.save(path)
    return path


def make_mask_png(path: Path, size=(64, 64)) -> Path:
    mask = Image.new("L", size, 0)
    ImageDraw.Draw(mask).rectangle([20, 20, 44, 44], fill=255)
    mask.save(path)
    return path


def log_in(page, url: str, user: str, password: str) -> None:
    """A playwright page logged in through the studio's login form, with the studio loaded."""
    page.goto(url + "/")
    page.wait_for_selector("input[name=username]", timeout=30_000)
    page.fill("input[name=username]", user)
    page.fill("input[name=password]", password)
    page.click("button[type=submit]")
    page.wait_for_selector("#txt2img-prompt textarea", timeout=60_000)
