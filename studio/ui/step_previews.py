"""Step previews tab: the last job of this browser session, step by step — the decoded frame (what the image is
becoming, or the noisy latent) and the 4 latent channels as grayscale images; play it, or export an animation."""

from __future__ import annotations

import atexit
import io
import os
import shutil
import tempfile
import threading
import time
from typing import Optional

import gradio as gr
from PIL import Image

from .streaming import Session

TAB = "steps"
X0 = "x0 estimate (what the image is becoming)"
NOISY = "noisy latent (what the sampler holds)"
PLAY_FPS = 8
EXPORT_MAX_AGE_S = 3600  # older exports are removed at the next export

class AnimationExports:
    """One folder for the animations this UI exports (Gradio serves copies from its cache): old exports are pruned
    as new ones come, and the folder is removed when the process exits."""

    def __init__(self):
        self._lock = threading.Lock()
        self._folder: Optional[str] = None

    def folder(self) -> str:
        with self._lock:
            if self._folder is None or not os.path.isdir(self._folder):
                self._folder = tempfile.mkdtemp(prefix="studio-steps-")
                atexit.register(shutil.rmtree, self._folder, True)
            folder = self._folder
        now = time.time()
        for entry in os.scandir(folder):
            try:
                if now - entry.stat().st_mtime > EXPORT_MAX_AGE_S:
                    os.remove(entry.path)
            except OSError:
                pass
        return folder


def _open(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def frames_of(session: Optional[Session]) -> list:
    job = session.last_job if session is not None else None
    return list(job.step_frames) if job is not None else []


def frame_view(session: Optional[Session], index, view: str):
    """(main image, 4 channels, caption) for 1-based frame `index`."""
    frames = frames_of(session)
    if not frames:
        return None, None, None, None, None, "No step frames yet: generate something in this browser tab first."
    i = min(max(int(index or 1), 1), len(frames)) - 1
    f = frames[i]
    main = _open(f.noisy if view == NOISY else f.x0)
    channels = [_open(c) for c in f.channels]
    return (main, *channels, f"Step {f.step} of {f.total} · frame {i + 1}/{len(frames)}")


def export_animation(exports: AnimationExports, session: Optional[Session], view: str, fmt: str) -> str:
    frames = frames_of(session)
    if not frames:
        raise gr.Error("Nothing to export yet: generate something first.", print_exception=False)
    images = [_open(f.noisy if view == NOISY else f.x0).convert("RGB") for f in frames]
    job = session.last_job
    ext = "webp" if fmt.lower().startswith("webp") else "gif"
    path = os.path.join(exports.folder(), f"{job.id if job else 'steps'}-{'noisy' if view == NOISY else 'x0'}.{ext}")
    durations = [120] * (len(images) - 1) + [1200]  # hold the last frame
    if ext == "gif":
        images[0].save(path, save_all=True, append_images=images[1:], duration=durations, loop=0, optimize=False)
    else:
        images[0].save(path, save_all=True, append_images=images[1:], duration=durations, loop=0, quality=90)
    return path


def build(engine, session: gr.State) -> dict:
    gr.Markdown("The last job started from this browser tab, one frame per sampling step (the first image of its first batch).")
    with gr.Row():
        load = gr.Button("Show my last job", variant="primary", elem_id="steps-load")
        view = gr.Radio([X0, NOISY], value=X0, label="Frame", elem_id="steps-view")
    caption = gr.Markdown("", elem_id="steps-caption", elem_classes=["studio-quiet"])
    slider = gr.Slider(1, 2, value=1, step=1, label="Step", elem_id="steps-slider")
    with gr.Row():
        main = gr.Image(label="Decoded frame", type="pil", format="png", interactive=False, height=320, elem_id="steps-main")
        with gr.Column():
            with gr.Row():
                c0 = gr.Image(label="Latent channel 0", type="pil", format="png", interactive=False, height=150)
                c1 = gr.Image(label="Latent channel 1", type="pil", format="png", interactive=False, height=150)
            with gr.Row():
                c2 = gr.Image(label="Latent channel 2", type="pil", format="png", interactive=False, height=150)
                c3 = gr.Image(label="Latent channel 3", type="pil", format="png", interactive=False, height=150)
    with gr.Row():
        play = gr.Button("▶ Play", elem_id="steps-play")
        stop = gr.Button("■ Stop", elem_id="steps-stop")
        fmt = gr.Radio(["GIF", "WebP"], value="GIF", label="Animation format")
        export = gr.Button("Export animation", elem_id="steps-export")
    exported = gr.File(label="Animation", interactive=False, elem_id="steps-file")

    pictures = [main, c0, c1, c2, c3, caption]
    private = dict(api_visibility="private", show_progress="hidden")
    telling = dict(private, concurrency_limit=None)  # queued, so its gr.Error shows as a toast; never waits on others

    def show_last(s: Session, v: str):
        frames = frames_of(s)
        n = max(len(frames), 1)
        return (gr.Slider(minimum=1, maximum=max(n, 2), value=n, step=1), *frame_view(s, n, v))

    load.click(show_last, [session, view], [slider] + pictures, queue=False, **private)
    slider.change(frame_view, [session, slider, view], pictures, queue=False, trigger_mode="always_last", **private)
    view.change(frame_view, [session, slider, view], pictures, queue=False, **private)

    def animate(s: Session, v: str):
        frames = frames_of(s)
        if not frames:
            raise gr.Error("Nothing to play yet: generate something first.", print_exception=False)
        for i in range(1, len(frames) + 1):
            yield (gr.Slider(value=i), *frame_view(s, i, v))
            time.sleep(1 / PLAY_FPS)

    playing = play.click(animate, [session, view], [slider] + pictures, **telling)
    stop.click(None, None, None, cancels=[playing], **private)
    exports = AnimationExports()

    def export_steps(s: Session, v: str, f: str) -> str:
        return export_animation(exports, s, v, f)

    export.click(export_steps, [session, view, fmt], exported, **telling)
    return dict(load=load, show_last=show_last, slider=slider, view=view, pictures=pictures)
