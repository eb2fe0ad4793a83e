"""Helpers for the UI tests: a launched studio UI on a free port (7861-7869), and small PNG fixtures."""

from __future__ import annotations

import socket
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


def launch_ui(engine):
    """(blocks, url) — the studio UI launched in this process, not blocking."""
    from studio.ui import build_ui, launch_options

    blocks = build_ui(engine)
    port = free_port()
    blocks.queue(default_concurrency_limit=None).launch(
        server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True, **launch_options(engine)
    )
    return blocks, f"http://127.0.0.1:{port}/"


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
