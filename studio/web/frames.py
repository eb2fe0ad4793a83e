"""Step frames over a studio route, from memory, for their owner only: the Step previews tab shows them with
<img src> to this route, never through Gradio's file route (which serves a user only their own uploads), and no
file is written per frame or per export (frames, animations, the contact sheet). No torch."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import Response

from ..animation import FORMATS, animation_bytes
from ..contact_sheet import contact_sheet_png
from ..inspected import heatmap, png_bytes
from ..jobs import Job, frames_dropped

KINDS = ("x0", "noisy", "c1", "c2", "c3", "c4")
VIEWS = ("x0", "noisy")
DROPPED = "The step frames of this job are no longer kept (the oldest jobs' frames are dropped to save memory)."
FRAME_CACHE = "private, max-age=3600"  # a frame never changes once made; private: it is one user's
NO_STORE = "private, no-store"  # a running job's exports grow, and a download should not be served stale
PROMPT_CHARS = 120  # of each prompt in the job list
MAX_SHEET_WORDS = 6  # attention columns on one contact sheet


def frame_jpeg(frame, kind: str) -> bytes:
    """The JPEG of one kind of picture of a previews.StepFrames (x0, noisy, or latent channel c1..c4)."""
    if kind in VIEWS:
        return getattr(frame, kind)
    return frame.channels[int(kind[1]) - 1]


def build_frames_router(service) -> APIRouter:
    """service: studio.service.JobService."""
    router = APIRouter()

    @router.get("/studio/api/frames")
    def jobs_with_frames(request: Request):
        """The caller's stored jobs that have step frames (or had them dropped), newest first."""
        jobs = [job for job in service.jobs(request.state.user) if job.step_frames or frames_dropped(job) or job.inspection]
        return [job_summary(job) for job in sorted(jobs, key=lambda job: job.created, reverse=True)]

    @router.get("/studio/api/jobs/{job_id}/frames")
    def frame_list(job_id: str, request: Request):
        frames = _frames(_own_job(job_id, request))
        return [{"index": i, "step": f.step, "total": f.total} for i, f in enumerate(frames, start=1)]

    @router.get("/studio/api/jobs/{job_id}/frames/{index}/{kind}.jpg")
    def frame_picture(job_id: str, index: str, kind: str, request: Request):
        job = _own_job(job_id, request)
        frames = _frames(job)
        if kind not in KINDS:
            raise HTTPException(404, f"No such picture kind; one of {', '.join(KINDS)}.")
        if not index.isdigit() or not 1 <= int(index) <= len(frames):
            raise HTTPException(404, DROPPED if frames_dropped(job) else f"No such frame; this job has {len(frames)}.")
        data = frame_jpeg(frames[int(index) - 1], kind)
        return Response(data, media_type="image/jpeg", headers={"Cache-Control": FRAME_CACHE})

    @router.get("/studio/api/jobs/{job_id}/animation.{fmt}")
    def animation(job_id: str, fmt: str, request: Request, view: str = "x0"):
        job = _own_job(job_id, request)
        if fmt not in FORMATS:
            raise HTTPException(404, f"No such animation format; one of {', '.join(FORMATS)}.")
        if view not in VIEWS:
            raise HTTPException(400, f"view must be one of {', '.join(VIEWS)}.")
        data = animation_bytes([getattr(f, view) for f in _some_frames(job)], fmt)
        return _download(data, FORMATS[fmt], f"steps-{job.id[:8]}-{view}.{fmt}")

    @router.get("/studio/api/jobs/{job_id}/contact-sheet.png")
    def contact_sheet(job_id: str, request: Request, words: str = ""):
        """words: prompt words (comma-separated, at most MAX_SHEET_WORDS) whose attention at each step gets a column,
        for a job that captured attention."""
        job = _own_job(job_id, request)
        data = contact_sheet_png(_some_frames(job), title=sheet_title(job), extra_columns=attention_columns(job, words))
        return _download(data, "image/png", f"steps-{job.id[:8]}-sheet.png")

    def _own_job(job_id: str, request: Request) -> Job:
        job = service.job(request.state.user, job_id)
        if job is None:
            raise HTTPException(404, "No such job among yours.")
        return job

    return router


def attention_columns(job: Job, words: str) -> list:
    """The contact sheet's attention columns: one per named word of the job's prompt (unknown names: 400)."""
    wanted = [w.strip() for w in words[:1000].split(",") if w.strip()][:MAX_SHEET_WORDS]
    if not wanted:
        return []
    inspected = job.inspection
    if inspected is None or inspected.attention is None:
        raise HTTPException(404, 'This job did not capture attention: submit it with "inspect": ["attention"].')
    by_text = {word.text: word for word in inspected.words}
    missing = [w for w in wanted if w not in by_text]
    if missing:
        raise HTTPException(400, f"Not a word of this job's prompt: {missing[0][:40]!r}; its words are "
                                 f"{', '.join(by_text)[:400]}.")

    def column(word):
        return lambda frame: png_bytes(heatmap(inspected, word, min(max(frame.step, 1), inspected.steps)))

    return [(f"attention: {w}", column(by_text[w])) for w in wanted]


def job_summary(job: Job) -> dict:
    """One entry of GET /studio/api/frames."""
    frames = _frames(job)
    return {"id": job.id, "prompt": job.request.prompt[:PROMPT_CHARS], "status": job.status, "frames": len(frames),
            "total": frames[-1].total if frames else 0, "created": job.created, "dropped": frames_dropped(job)}


def sheet_title(job: Job) -> str:
    """The contact sheet's title line: the seed once it is known, then the prompt (the sheet cuts a long title at
    the end, so the seed goes first)."""
    seeds = job.started.seeds if job.started is not None else []
    seed = seeds[0] if seeds else job.request.seed
    return f"seed {seed} · {job.request.prompt}" if seed is not None and seed >= 0 else job.request.prompt


def _frames(job: Job) -> list:
    return list(job.step_frames)  # a snapshot: a running job's list grows on another thread


def _some_frames(job: Job) -> list:
    """The job's frames for an export; 404 when there are none (dropped, or none made yet)."""
    frames = _frames(job)
    if not frames:
        raise HTTPException(404, DROPPED if frames_dropped(job) else "This job has no step frames (yet).")
    return frames


def _download(data: bytes, media_type: str, name: str) -> Response:
    return Response(data, media_type=media_type,
                    headers={"Content-Disposition": f'attachment; filename="{name}"', "Cache-Control": NO_STORE})
