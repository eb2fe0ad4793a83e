"""The shared streaming helper: submit a request for this browser session, then turn the job's events into UI
updates (a generator handler that yields), so every generate tab shows the same live preview, progress, queue
position and results — and a closed tab cancels its job."""

from __future__ import annotations

import html
import logging
import math
from dataclasses import dataclass, field
from typing import Any, Iterator, Optional

import gradio as gr

from studio.jobs import Job
from studio.requests import Cancelled, Failed, Finished, GenerationRequest, Preview, Queued, RequestError, SavedImage, Started, Step

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

    def __deepcopy__(self, memo):  # gr.State copies the initial value per session: start empty
        return Session()

    def selected_image(self, tab: str) -> Optional[SavedImage]:
        images = self.results.get(tab) or []
        if not images:
            return None
        index = self.selected.get(tab, 0)
        return images[index] if 0 <= index < len(images) else images[0]


def owner_of(request: Optional[gr.Request]) -> str:
    if request is None:
        return "local"
    return getattr(request, "username", None) or getattr(request, "session_hash", None) or "local"


def format_eta(seconds: float) -> str:
    if not seconds or not math.isfinite(seconds) or seconds <= 0:
        return ""
    if seconds < 60:
        return f"ETA {seconds:.0f} s" if seconds >= 1 else "ETA <1 s"
    return f"ETA {int(seconds // 60)} min {int(seconds % 60):02d} s"


def progress_html(text: str, kind: str = "info") -> str:
    return f"<div class='studio-progress studio-progress-{kind}'>{text}</div>"


def step_text(event: Step) -> str:
    eta = format_eta(event.eta_seconds)
    return f"Step {event.step}/{event.total}" + (f" · {eta}" if eta else "")


def queue_text(position: int) -> str:
    """Only a job that really waits behind others shows a queue position."""
    if position <= 0:
        return "Starting…"
    return f"Waiting in queue: {position} job{'s' if position != 1 else ''} ahead"


def stream_job(engine, session: Session, tab: str, request: GenerationRequest, owner: str) -> Iterator[tuple]:
    """Yields (preview, progress_html, gallery, infotext, files) tuples; gr.skip() where nothing changed.

    Bad requests raise gr.Error with the engine's message; a failed job raises gr.Error with its message."""
    running = session.jobs.get(tab)
    if running is not None and not running.done:
        raise gr.Error("This tab is already generating: wait for it or press Cancel.", print_exception=False)
    try:
        job = engine.submit(request, owner=owner)
    except RequestError as exc:
        raise gr.Error(str(exc), print_exception=False) from None
    except Exception as exc:  # never a stack trace in the browser
        log.exception("submit failed")
        raise gr.Error(f"Could not start: {type(exc).__name__}", print_exception=False) from None
    session.jobs[tab] = job
    session.last_job = job
    skip = gr.skip()
    yield None, progress_html("Starting…"), skip, skip, skip
    try:
        for event in job.events():
            if isinstance(event, Queued):
                yield skip, progress_html(queue_text(event.position)), skip, skip, skip
            elif isinstance(event, Started):
                if event.seeds:
                    session.last_seed[tab] = event.seeds[0]
                for note in event.notes:
                    gr.Warning(note)
                seeds = ", ".join(str(s) for s in event.seeds[:4]) + ("…" if len(event.seeds) > 4 else "")
                yield skip, progress_html(f"Starting on {event.model} · seed {seeds}"), skip, skip, skip
            elif isinstance(event, Step):
                yield skip, progress_html(step_text(event)), skip, skip, skip
            elif isinstance(event, Preview):
                label = job.last_step if job.last_step and job.last_step.step >= event.step else Step(event.step, event.total, 0.0)
                yield event.image, progress_html(step_text(label)), skip, skip, skip
            elif isinstance(event, Finished):
                session.results[tab] = list(event.images)
                session.selected[tab] = 0
                paths = [image.path for image in event.images]
                gallery = [(image.path, f"seed {image.seed}") for image in event.images]
                infotext = event.images[0].infotext if event.images else ""
                note = " (finished early)" if event.skipped else ""
                done = f"Done{note}: {len(paths)} image{'s' if len(paths) != 1 else ''}"
                final = paths[0] if paths else skip  # the live preview ends on the result, not the last latent
                yield final, progress_html(done, "done"), gallery, infotext, paths
            elif isinstance(event, Failed):
                yield skip, progress_html(f"Failed: {html.escape(event.message)}", "cancelled"), skip, skip, skip
                raise gr.Error(event.message, print_exception=False)
            elif isinstance(event, Cancelled):
                gr.Info("Cancelled.")
                yield skip, progress_html("Cancelled", "cancelled"), skip, skip, skip
    finally:
        if not job.done:  # the browser went away or the handler was stopped: free the engine
            engine.cancel(job)
        if session.jobs.get(tab) is job:
            del session.jobs[tab]


def cancel_job(engine, session: Optional[Session], tab: str) -> Any:
    """Cancel this session's job on this tab (the Cancel button: queue=False, so it never waits)."""
    job = session.jobs.get(tab) if session is not None else None
    if job is None or job.done:
        return progress_html("Nothing to cancel")
    engine.cancel(job)
    return progress_html("Cancelling…", "cancelled")
