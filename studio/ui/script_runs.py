"""A generate tab running an A1111 script: the job service plans the call (every generation checked, the image count
capped, before anything runs) and runs it as the user's own jobs; meanwhile the tab shows "Cell 3/9" with that cell's
step and its live previews (the same live stream as a plain job), and Cancel ends it as A1111's interrupt does (the
cells so far, the grid with blanks for the rest). The end: the grid(s) and the cells in the gallery, each with its own
parameters, and their PNG files — as a plain job's results."""

from __future__ import annotations

import asyncio
import html
import logging
import threading
import time
from typing import Any, AsyncIterator, Optional

import anyio
import gradio as gr

from studio.contract import GenerationRequest, QueueFullError, RequestError, SavedImage
from studio.metadata import parse_infotext
from studio.scripts import ScriptStopped

from .streaming import (PROGRESS_EVERY_S, Services, Session, busy, client_host, downloads_html, final_html, live_html,
                        owner_of, progress_html, public_origin, queue_text, step_text, stream_job)

log = logging.getLogger(__name__)

POLL_SECONDS = 0.1  # how often the tab looks at which cell runs
MAX_CAPTION = 80
IDLE_LIVE = "<div class='studio-live'></div>"


class ScriptRun:
    """One script call of a browser tab: its jobs as the service queues them (in the plan's order), its Cancel, and
    `stop` for when the tab goes away (every job of the script is then cancelled)."""

    def __init__(self, job_service, user: str, total: int):
        self.job_service, self.user, self.total = job_service, user, total
        self.jobs: list = []
        self.stop = threading.Event()
        self.cancelled = False
        self.finished = False
        self._lock = threading.Lock()

    def submitted(self, job) -> None:
        """The service queued the next cell's job (called on the script's thread)."""
        with self._lock:
            self.jobs.append(job)
            cancelled = self.cancelled
        if cancelled:  # Cancel came between two cells: this one never runs
            self.job_service.cancel(self.user, job)

    def cancel(self) -> None:
        """The remaining cells do not run; the one running stops within a step (A1111's interrupt)."""
        with self._lock:
            self.cancelled = True
            jobs = list(self.jobs)
        for job in jobs:
            if not job.done:
                self.job_service.cancel(self.user, job)

    def current(self) -> tuple[int, Any]:
        """(the cell number from 1, its job) of the first cell not done yet (else the last); (0, None) before any."""
        with self._lock:
            jobs = list(self.jobs)
        for number, job in enumerate(jobs, 1):
            if not job.done:
                return number, job
        return len(jobs), (jobs[-1] if jobs else None)


def cell_progress(number: int, total: int, job) -> str:
    """ "Cell 3/9 · Step 4/20 · ETA 2 s" (the browser's live stream keeps the step part current: data-prefix)."""
    prefix = f"Cell {number}/{total}"
    detail = ""
    if job is not None and getattr(job, "last_step", None) is not None:
        detail = step_text(job.last_step)
    elif job is not None and getattr(job, "last_queued", None) is not None and job.last_queued.position > 0:
        detail = queue_text(job.last_queued.position)
    text = f"{prefix} · {detail}" if detail else f"{prefix} · starting…"
    return f"<div class='studio-progress studio-progress-info' data-prefix='{html.escape(prefix)}'>{html.escape(text)}</div>"


def captions(outputs: list) -> list[str]:
    """A caption per picture: "grid" for the grids; for the cells, what tells them apart (the parameters whose values
    differ between them, e.g. "Steps: 2, CFG scale: 5.0"), else their seed."""
    cells = [o for o in outputs if not o.grid]
    parsed = [parse_infotext(o.infotext) if o.infotext else {} for o in cells]
    keys = [k for k in dict.fromkeys(k for p in parsed for k in p)
            if k not in ("Size-1", "Size-2") and len({p.get(k) for p in parsed}) > 1]
    shown, cell = [], iter(parsed)
    for number, output in enumerate(outputs):
        if output.grid:
            shown.append("grid" if number == 0 else f"grid {number + 1}")
            continue
        params = next(cell)
        text = ", ".join(f"{k}: {params.get(k, '')}" for k in keys) if keys else f"seed {output.seed}"
        shown.append(text if len(text) <= MAX_CAPTION else text[:MAX_CAPTION - 1] + "…")
    return shown


def done_text(result, run: ScriptRun) -> str:
    grids = sum(1 for o in result.outputs if o.grid)
    images = len(result.outputs) - grids
    parts = ([f"{grids} grid{'s' if grids != 1 else ''}"] if grids else []) + [f"{images} image{'s' if images != 1 else ''}"]
    if result.interrupted:
        ran = sum(1 for job in run.jobs if job.done and getattr(job.result, "images", None))
        return f"Cancelled after {ran}/{run.total} cells: " + " and ".join(parts)
    return f"Done: {result.title}, " + " and ".join(parts)


async def generate(services: Services, session: Session, tab: str, request: GenerationRequest, gr_request,
                   script: Optional[tuple[str, Any]] = None, img2img: bool = False) -> AsyncIterator[tuple]:
    """A generate tab's run: the plain job, or the script (name, script_args) over it."""
    stream = stream_job(services, session, tab, request, gr_request) if script is None else \
        stream_script(services, session, tab, request, gr_request, script[0], script[1], img2img)
    async for update in stream:
        yield update


async def stream_script(services: Services, session: Session, tab: str, request: GenerationRequest, gr_request,
                        name: str, script_args, img2img: bool) -> AsyncIterator[tuple]:
    """Yields (live preview, progress, gallery, infotext, downloads) as stream_job does; gr.Error for a refused call
    (an unsupported axis, too many images ...) before anything runs, and for a cell that failed."""
    if busy(session, tab):
        raise gr.Error("This tab is already generating: wait for it or press Cancel.", print_exception=False)
    service, user, host = services.job_service, owner_of(gr_request), client_host(gr_request)
    try:
        plan = await anyio.to_thread.run_sync(service.plan_script, name, request, script_args, user, host, img2img)
    except RequestError as exc:
        raise gr.Error(str(exc), print_exception=False) from None
    except Exception:  # never a stack trace in the browser
        log.exception("planning the script failed")
        raise gr.Error("Could not plan the script; the server log says why.", print_exception=False) from None
    for note in plan.notes:
        gr.Warning(note)
    run = ScriptRun(service, user, len(plan.requests))
    session.scripts[tab] = run
    skip = gr.skip()
    yield IDLE_LIVE, progress_html(f"{html.escape(plan.title)}: {run.total} cell{'s' if run.total != 1 else ''}, starting…"), skip, skip, skip
    task = asyncio.ensure_future(anyio.to_thread.run_sync(
        lambda: service.run_script(plan, user, host, run.stop, on_job=run.submitted)))
    task.add_done_callback(lambda t: t.cancelled() or t.exception())  # read, so an abandoned run logs no warning
    try:
        shown, said = None, 0.0
        while not task.done():
            await asyncio.wait({task}, timeout=POLL_SECONDS)
            number, job = run.current()
            if job is not None and job is not shown and not job.done:
                shown, said = job, time.monotonic()
                session.last_job = job
                yield live_html(job, tab), cell_progress(number, run.total, job), skip, skip, skip
            elif job is not None and time.monotonic() - said >= PROGRESS_EVERY_S:
                said = time.monotonic()
                yield skip, cell_progress(number, run.total, job), skip, skip, skip
        result = task.result()
    except (QueueFullError, RequestError) as exc:  # the queue was full before anything ran; an upscaler that failed
        raise gr.Error(str(exc), print_exception=False) from None
    except ScriptStopped:
        return
    except Exception:  # never a stack trace in the browser
        log.exception("running the script failed")
        raise gr.Error("The script failed; the server log says why.", print_exception=False) from None
    finally:
        run.finished = True
        if not task.done():  # the tab went away or the handler was stopped: no cell runs for nobody
            run.stop.set()
        if session.scripts.get(tab) is run:
            del session.scripts[tab]
    async for update in _finish(services, session, tab, gr_request, result, run):
        yield update


async def _finish(services: Services, session: Session, tab: str, gr_request, result, run: ScriptRun):
    skip = gr.skip()
    if result.failed is not None:
        yield skip, progress_html(f"Failed: {html.escape(result.failed.message)}", "cancelled"), skip, skip, skip
        raise gr.Error(result.failed.message, print_exception=False)
    if not result.outputs:
        gr.Info("Cancelled.")
        yield skip, progress_html("Cancelled", "cancelled"), skip, skip, skip
        return
    started = getattr(result.first_job, "started", None)
    if started is not None and started.seeds:
        session.last_seed[tab] = started.seeds[0]
    session.results[tab] = [SavedImage(o.path, o.seed, o.infotext) for o in result.outputs]
    session.selected[tab] = 0
    origin = public_origin(gr_request)
    urls = [origin + services.job_service.result_url(run.user, o.path) for o in result.outputs]
    gallery = list(zip(urls, captions(result.outputs)))
    links = downloads_html([(url, url.rsplit("/", 1)[-1]) for url in urls])
    kind = "cancelled" if result.interrupted else "done"
    yield final_html(urls[0]), progress_html(html.escape(done_text(result, run)), kind), gallery, result.outputs[0].infotext, links
