"""Step previews tab: the last job of this browser session, step by step — the decoded frame (what the image is
becoming, or the noisy latent) and the 4 latent channels as grayscale images; play it, or download an animation.

The pictures are <img> tags pointing at the studio's own per-user frame route (studio/web/frames.py), which serves
them from memory to the job's owner: nothing goes through Gradio's file cache or route, and nothing is written to
disk. This module only writes HTML (no torch, no studio.web)."""

from __future__ import annotations

import html
import time
from typing import Optional
from urllib.parse import quote

import gradio as gr

from studio.jobs import frames_dropped
from studio.links import JOBS

from .streaming import Session

TAB = "steps"
X0 = "x0 estimate (what the image is becoming)"
NOISY = "noisy latent (what the sampler holds)"
PLAY_FPS = 8
CHANNEL_KINDS = ("c1", "c2", "c3", "c4")
NO_FRAMES = "No step frames yet: generate something in this browser tab first."
FRAMES_DROPPED = "The step frames of this job are no longer kept: the oldest jobs' frames are dropped to save memory."


def frames_of(session: Optional[Session]) -> list:
    job = session.last_job if session is not None else None
    return list(job.step_frames) if job is not None else []


def view_kind(view: str) -> str:
    return "noisy" if view == NOISY else "x0"


def job_path(job_id: str) -> str:
    """The studio route of one job (escaped: the id goes into a URL, then into HTML)."""
    return JOBS + quote(str(job_id), safe="")


def frame_url(job_id: str, index: int, kind: str) -> str:
    return f"{job_path(job_id)}/frames/{int(index)}/{quote(kind, safe='')}.jpg"


def animation_url(job_id: str, fmt: str, view: str) -> str:
    return f"{job_path(job_id)}/animation.{fmt}?view={view_kind(view)}"


def _img(src: str, alt: str, style: str) -> str:
    return f'<img src="{html.escape(src)}" alt="{html.escape(alt)}" style="{style}">'


def main_html(job_id: str, index: int, view: str) -> str:
    alt = f"{'Noisy latent' if view == NOISY else 'Decoded frame'}, frame {index}"
    picture = _img(frame_url(job_id, index, view_kind(view)), alt,
                   "display:block;width:min(100%,512px);height:auto;border-radius:6px;margin:0 auto")
    return f'<div class="steps-main-picture" style="min-height:256px">{picture}</div>'


def channels_html(job_id: str, index: int) -> str:
    cells = []
    for n, kind in enumerate(CHANNEL_KINDS, start=1):
        picture = _img(frame_url(job_id, index, kind), f"Latent channel {n}, frame {index}",
                       "display:block;width:100%;height:auto;border-radius:4px")
        cells.append(f'<figure style="flex:1 1 0;max-width:160px;margin:0">{picture}'
                     f'<figcaption style="font-size:0.8em;text-align:center;opacity:0.75">Latent channel {n}</figcaption></figure>')
    return f'<div class="steps-channels" style="display:flex;gap:8px;justify-content:center">{"".join(cells)}</div>'


def export_html(job_id: str, view: str) -> str:
    """Download links: the studio route builds the animation in memory and sends it as an attachment."""
    links = " ".join(
        f'<a href="{html.escape(animation_url(job_id, fmt, view))}" download class="steps-export-{fmt}" '
        f'style="margin-right:12px">⬇ {label}</a>'
        for fmt, label in (("gif", "GIF"), ("webp", "WebP"))
    )
    return f'<div class="steps-export">Download the animation ({html.escape(view_kind(view))}): {links}</div>'


def frame_view(session: Optional[Session], index, view: str) -> tuple[str, str, str, str]:
    """(main picture HTML, channels HTML, caption, export links HTML) for 1-based frame `index`."""
    frames = frames_of(session)
    if not frames:
        job = session.last_job if session is not None else None
        return "", "", FRAMES_DROPPED if frames_dropped(job) else NO_FRAMES, ""
    job_id = session.last_job.id
    i = min(max(int(index or 1), 1), len(frames))
    f = frames[i - 1]
    caption = f"Step {f.step} of {f.total} · frame {i}/{len(frames)}"
    return main_html(job_id, i, view), channels_html(job_id, i), caption, export_html(job_id, view)


def build(session: gr.State) -> dict:
    gr.Markdown("The last job started from this browser tab, one frame per sampling step (the first image of its first batch).")
    with gr.Row():
        load = gr.Button("Show my last job", variant="primary", elem_id="steps-load")
        view = gr.Radio([X0, NOISY], value=X0, label="Frame", elem_id="steps-view")
    caption = gr.Markdown("", elem_id="steps-caption", elem_classes=["studio-quiet"])
    slider = gr.Slider(1, 2, value=1, step=1, label="Step", elem_id="steps-slider")
    main = gr.HTML("", elem_id="steps-main")
    channels = gr.HTML("", elem_id="steps-channels")
    with gr.Row():
        play = gr.Button("▶ Play", elem_id="steps-play")
        stop = gr.Button("■ Stop", elem_id="steps-stop")
    export = gr.HTML("", elem_id="steps-export")

    pictures = [main, channels, caption, export]
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
        """Steps the slider and the pictures through every frame; the browser fetches each frame's JPEGs."""
        frames = frames_of(s)
        if not frames:
            dropped = frames_dropped(s.last_job if s is not None else None)
            raise gr.Error(FRAMES_DROPPED if dropped else "Nothing to play yet: generate something first.", print_exception=False)
        for i in range(1, len(frames) + 1):
            yield (gr.Slider(value=i), *frame_view(s, i, v))
            time.sleep(1 / PLAY_FPS)

    playing = play.click(animate, [session, view], [slider] + pictures, **telling)
    stop.click(None, None, None, cancels=[playing], **private)
    return dict(load=load, show_last=show_last, slider=slider, view=view, pictures=pictures, animate=animate)
