"""The shared streaming helper: submit a request for this browser session, then turn the job's events into UI
updates (a generator handler that yields), so every generate tab shows the same live preview, progress, queue
position and results — and a closed tab cancels its job."""

from __future__ import annotations

import html
import logging
import math
import re
import time
from dataclasses import dataclass, field, replace
from typing import Any, AsyncIterator, Optional

import gradio as gr

from studio.jobs import Job
from studio.user_settings import request_fields
from studio.links import job_stream_url
from studio.contract import (LOCAL_USER, Cancelled, Failed, Finished, GenerationRequest, Preview, Queued, QueueFullError,
                             RequestError, SavedImage, Started, Step)

log = logging.getLogger(__name__)

GENERATE_QUEUE = "generate"  # the concurrency_id every generate listener shares

# Instant handlers that may tell the user something (gr.Error / gr.Warning / gr.Info). Gradio shows those toasts only
# for queued events: with queue=False a gr.Error is a bare HTTP 500 the page ignores, and gr.Info only reaches stdout.
# So they are queued, with no concurrency limit (never waiting behind a generation) and no progress overlay.
TELLING = dict(api_visibility="private", queue=True, concurrency_limit=None, show_progress="hidden")
# Instant handlers that never message the user: no queue round trip.
SILENT = dict(api_visibility="private", queue=False, show_progress="hidden")


@dataclass
class Session:
    """Per browser session (kept in gr.State, mutated in place so Cancel sees it at once)."""

    jobs: dict[str, Job] = field(default_factory=dict)  # tab → its running job
    last_job: Optional[Job] = None  # for the Step previews tab
    last_seed: dict[str, int] = field(default_factory=dict)  # tab → first seed of its last job
    results: dict[str, list[SavedImage]] = field(default_factory=dict)  # tab → its last results
    selected: dict[str, int] = field(default_factory=dict)  # tab → selected result index
    extras_result: Any = None  # the Extras tab's last result, as handed to this user (a path in Gradio's cache)
    scripts: dict[str, Any] = field(default_factory=dict)  # tab → its running script (script_runs.ScriptRun)

    def __deepcopy__(self, memo):  # gr.State copies the initial value per session: start empty
        return Session()

    def selected_image(self, tab: str) -> Optional[SavedImage]:
        images = self.results.get(tab) or []
        if not images:
            return None
        index = self.selected.get(tab, 0)
        return images[index] if 0 <= index < len(images) else images[0]


def owner_of(request: Optional[gr.Request]) -> str:
    """The logged-in user (set by the server's login wall), or the single local user."""
    return (getattr(request, "username", None) if request is not None else None) or LOCAL_USER


def client_host(request: Optional[gr.Request]) -> Optional[str]:
    client = getattr(request, "client", None) if request is not None else None
    return getattr(client, "host", None)


_HOST = re.compile(r"^[A-Za-z0-9.\-:\[\]]+$")


def public_origin(request: Optional[gr.Request]) -> str:
    """This server as the browser reached it ("http://host:port"): Gradio passes absolute http(s) URLs through to
    the browser untouched, so results are shown from the studio's own file route, not copied into Gradio's cache."""
    headers = getattr(request, "headers", None) or {}
    host = headers.get("x-forwarded-host") or headers.get("host") or "127.0.0.1"
    scheme = headers.get("x-forwarded-proto") or getattr(getattr(request, "url", None), "scheme", None) or "http"
    if not _HOST.match(host) or scheme not in ("http", "https"):
        host, scheme = "127.0.0.1", "http"
    return f"{scheme}://{host}"


def format_eta(seconds: float) -> str:
    if not seconds or not math.isfinite(seconds) or seconds <= 0:
        return ""
    if seconds < 60:
        return f"ETA {seconds:.0f} s" if seconds >= 1 else "ETA <1 s"
    return f"ETA {int(seconds // 60)} min {int(seconds % 60):02d} s"


def progress_html(text: str, kind: str = "info", done: Optional[float] = None) -> str:
    """The progress line; `done` (0..1) fills its bar (the page's script moves it on each step between updates)."""
    bar = f" style='--studio-done: {round(100 * min(max(done, 0.0), 1.0))}%'" if done is not None else ""
    return f"<div class='studio-progress studio-progress-{kind}'{bar}>{text}</div>"


def step_text(event: Step) -> str:
    eta = format_eta(event.eta_seconds)
    return f"Step {event.step}/{event.total}" + (f" · {eta}" if eta else "")


def queue_text(position: int) -> str:
    """Only a job that really waits behind others shows a queue position."""
    if position <= 0:
        return "Starting…"
    return f"Waiting in queue: {position} job{'s' if position != 1 else ''} ahead"


PROGRESS_EVERY_S = 1.0  # step text through Gradio (API clients); the browser gets every step from the live stream


def live_html(job: Job, tab: str) -> str:
    """The live preview: the browser's script (SHORTCUTS_JS) streams the job's frames into it from the studio's
    own route (server-sent events, from memory)."""
    stream = html.escape(job_stream_url(job.id))
    return (f"<div class='studio-live' data-stream='{stream}' data-tab='{html.escape(tab)}' data-job='{html.escape(job.id)}'>"
            f"<img class='studio-live-frame' alt='' hidden></div>")


def final_html(url: Optional[str], depth_url: Optional[str] = None) -> str:
    """The live preview ends on the result (from the studio's file route), not on the last latent preview; a depth
    model's job shows the depth map it kept beside it (from the job's owner-only route)."""
    if not url:
        return "<div class='studio-live studio-live-done'></div>"
    depth = (f"<figure class='studio-depth-kept'><img alt='The depth map the job kept' src='{html.escape(depth_url)}'>"
             "<figcaption>Depth map kept (white = near)</figcaption></figure>") if depth_url else ""
    return f"<div class='studio-live studio-live-done'><img class='studio-live-frame' alt='result' src='{html.escape(url)}'>{depth}</div>"


def downloads_html(links: list[tuple[str, str]]) -> str:
    items = "".join(f"<li><a href='{html.escape(url)}' download='{html.escape(name)}'>⬇ {html.escape(name)}</a></li>"
                    for url, name in links)
    return f"<ul class='studio-downloads'>{items}</ul>" if items else ""


class Services:
    """What the UI works with, injected by the composition root: the job service (jobs, the model rule, engine facts)
    and the place that hands pictures to Gradio for one user (so Gradio's file route will serve them to that user
    only)."""

    def __init__(self, job_service, files=None, user_settings=None, settings_limits=None):
        self.job_service = job_service  # studio.service.JobService
        self.files = files  # studio.web.gradio_files.GradioFiles (duck-typed: the UI imports nothing of the web side)
        self.user_settings = user_settings  # studio.user_settings.UserSettingsStore: each user's saved settings
        self.settings_limits = settings_limits  # studio.user_settings.SettingsLimits
        self.model_picker = None  # the one Model dropdown at the top of the page, once built (studio.ui.build_ui)

    def hand_over(self, request: Optional[gr.Request], picture, name: str = "image") -> Any:
        """A picture (a file path of the studio's, or a PIL image) as a value Gradio may show this user. A PIL image
        becomes `<name>.png`, with its text (its info's str items: "parameters", "postprocessing") kept."""
        if self.files is None:
            return picture
        owner = owner_of(request)
        if isinstance(picture, str):
            return self.files.hand_over(owner, picture)
        import io

        from PIL import PngImagePlugin

        text = PngImagePlugin.PngInfo()
        items = [(k, v) for k, v in (picture.info or {}).items() if isinstance(k, str) and isinstance(v, str)]
        for key, value in items:
            text.add_text(key, value)
        buffer = io.BytesIO()
        picture.save(buffer, format="PNG", pnginfo=text if items else None)
        return self.files.store(owner, buffer.getvalue(), name, "png")

    def submit(self, request: GenerationRequest, gr_request: Optional[gr.Request]) -> Job:
        owner = owner_of(gr_request)
        return self.job_service.submit(self.with_user_settings(request, owner), owner, client_host(gr_request))

    def with_user_settings(self, request: GenerationRequest, owner: str) -> GenerationRequest:
        """The request with the owner's saved live-preview, file-name and inspection settings, where it sets none
        itself."""
        if self.user_settings is None or self.settings_limits is None:
            return request
        saved = self.user_settings.load(owner, self.settings_limits)
        if saved is None:
            return request
        wanted = request_fields(saved)
        unset = {name: value for name, value in wanted.items() if getattr(request, name) in (None, "", ())}
        return replace(request, **unset) if unset else request


async def stream_job(generation: Services, session: Session, tab: str, request: GenerationRequest,
                     gr_request: Optional[gr.Request]) -> AsyncIterator[tuple]:
    """Yields (live preview, progress_html, gallery, infotext, downloads) tuples; gr.skip() where nothing changed.
    Awaits the job's events on the event loop (no thread per waiting tab), so every generate click goes straight to
    the engine's fair queue.

    Bad requests raise gr.Error with the engine's message; a failed job raises gr.Error with its message."""
    script = session.scripts.get(tab)
    if script is not None and not script.finished:
        raise gr.Error("This tab is running a script: wait for it or press Cancel.", print_exception=False)
    earlier = session.jobs.get(tab)
    # A job already running here is not in the way: this one queues behind it (the job list shows both), and the live
    # preview stays on the running one until this one starts.
    behind = earlier is not None and not earlier.done
    try:
        job = generation.submit(request, gr_request)
    except (RequestError, QueueFullError) as exc:
        raise gr.Error(str(exc), print_exception=False) from None
    except Exception:  # never a stack trace in the browser
        log.exception("submit failed")
        raise gr.Error("Could not start the job; the server log says why.", print_exception=False) from None
    service = generation.job_service
    session.jobs[tab] = job
    session.last_job = job
    skip = gr.skip()
    if not behind:
        yield live_html(job, tab), progress_html("Starting…"), skip, skip, skip
    last_progress, started_at, last_step = 0.0, None, None
    channel = job.watch(ignore=(Preview,))  # frames go to the browser over the live stream, not through Gradio
    try:
        async for event in job.events_async(channel):
            if isinstance(event, Queued):
                yield skip, progress_html(queue_text(event.position)), skip, skip, skip
            elif isinstance(event, Started):
                if event.seeds:
                    session.last_seed[tab] = event.seeds[0]
                for note in event.notes:
                    gr.Warning(note)
                seeds = ", ".join(str(s) for s in event.seeds[:4]) + ("…" if len(event.seeds) > 4 else "")
                started_at = time.monotonic()
                yield (live_html(job, tab) if behind else skip), progress_html(f"Starting on {html.escape(event.model)} · seed {seeds}"), \
                    skip, skip, skip
            elif isinstance(event, Step):
                last_step = event
                now = time.monotonic()
                if now - last_progress >= PROGRESS_EVERY_S:
                    last_progress = now
                    yield skip, progress_html(step_text(event), done=event.step / max(event.total, 1)), skip, skip, skip
            elif isinstance(event, Finished):
                session.results[tab] = list(event.images)
                session.selected[tab] = 0
                origin = public_origin(gr_request)
                urls = [origin + service.result_url(job.owner, image.path) for image in event.images]
                gallery = [(url, f"seed {image.seed}") for url, image in zip(urls, event.images)]
                infotext = event.images[0].infotext if event.images else ""
                note = " (finished early)" if event.skipped else ""
                done = f"Done{note}: {len(urls)} image{'s' if len(urls) != 1 else ''}{elapsed_text(started_at)}"
                links = downloads_html([(url, url.rsplit("/", 1)[-1]) for url in urls])
                depth = f"{origin}/studio/api/jobs/{job.id}/depth.png" if job.depth_map is not None else None
                yield final_html(urls[0] if urls else None, depth), progress_html(done, "done"), gallery, infotext, links
            elif isinstance(event, Failed):
                yield skip, progress_html(f"Failed: {html.escape(event.message)}", "cancelled"), skip, skip, skip
                raise gr.Error(event.message, print_exception=False)
            elif isinstance(event, Cancelled):
                gr.Info("Cancelled.")
                if started_at is None:  # it never ran: what is on screen belongs to other jobs
                    yield skip, progress_html("Cancelled before it started", "cancelled"), skip, skip, skip
                else:  # its last preview stays; the results of the job before it go, so they are not taken for its own
                    session.results[tab] = []
                    at = f" at step {last_step.step}/{last_step.total}" if last_step is not None else ""
                    yield (skip, progress_html(f"Cancelled{at}{elapsed_text(started_at)}: nothing saved (Skip keeps the picture)",
                                               "cancelled"), [], "", "")
    finally:
        job.unwatch(channel)
        if not job.done:  # the browser went away or the handler was stopped: free the engine
            service.cancel(job.owner, job)
        if session.jobs.get(tab) is job:
            del session.jobs[tab]


def elapsed_text(started_at: Optional[float]) -> str:
    """" in 3.2 s" since the job started sampling ("" when it never did)."""
    if started_at is None:
        return ""
    seconds = time.monotonic() - started_at
    return f" in {seconds:.1f} s" if seconds < 60 else f" in {int(seconds // 60)} min {int(seconds % 60):02d} s"


def busy(session: Session, tab: str) -> bool:
    """Whether this tab runs a job or a script now."""
    running, script = session.jobs.get(tab), session.scripts.get(tab)
    return (running is not None and not running.done) or (script is not None and not script.finished)


def skip_job(job_service, session: Optional[Session], tab: str) -> Any:
    """Finish this session's job on this tab early (A1111's Skip): it ends with its images as they stand, which are
    saved and shown like any result. A script's running cell is skipped the same way; the script goes on."""
    script = session.scripts.get(tab) if session is not None else None
    job = session.jobs.get(tab) if session is not None else None
    if job is None and script is not None and not script.finished:
        job = script.current()[1]
    if job is None or job.done:
        return progress_html("Nothing to skip")
    job_service.skip(job.owner, job)
    return progress_html("Skipping: finishing with the picture as it stands…")


def cancel_job(job_service, session: Optional[Session], tab: str) -> Any:
    """Cancel this session's job on this tab (the Cancel button: queue=False, so it never waits); a script's
    remaining cells (its running cell stops within a step, and the cells so far are shown)."""
    script = session.scripts.get(tab) if session is not None else None
    if script is not None and not script.finished:
        script.cancel()
        return progress_html("Cancelling…", "cancelled")
    job = session.jobs.get(tab) if session is not None else None
    if job is None or job.done:
        return progress_html("Nothing to cancel")
    job_service.cancel(job.owner, job)
    return progress_html("Cancelling…", "cancelled")
