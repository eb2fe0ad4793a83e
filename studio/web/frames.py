"""Step frames over a studio route, from memory, for their owner only: the Step previews tab shows them with
<img src> to this route, never through Gradio's file route (which serves a user only their own uploads), and no
file is written per frame or per export. No torch."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import Response

from ..animation import FORMATS, animation_bytes
from ..jobs import Job, frames_dropped

KINDS = ("x0", "noisy", "c1", "c2", "c3", "c4")
VIEWS = ("x0", "noisy")
DROPPED = "The step frames of this job are no longer kept (the oldest jobs' frames are dropped to save memory)."
FRAME_CACHE = "private, max-age=3600"  # a frame never changes once made; private: it is one user's


def frame_jpeg(frame, kind: str) -> bytes:
    """The JPEG of one kind of picture of a previews.StepFrames (x0, noisy, or latent channel c1..c4)."""
    if kind in VIEWS:
        return getattr(frame, kind)
    return frame.channels[int(kind[1]) - 1]


def build_frames_router(service) -> APIRouter:
    """service: studio.service.JobService."""
    router = APIRouter()

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
        frames = _frames(job)
        if not frames:
            raise HTTPException(404, DROPPED if frames_dropped(job) else "This job has no step frames (yet).")
        data = animation_bytes([getattr(f, view) for f in frames], fmt)
        name = f"steps-{job.id[:8]}-{view}.{fmt}"
        # no-store: a running job's animation grows, and a download should not be served stale.
        return Response(data, media_type=FORMATS[fmt],
                        headers={"Content-Disposition": f'attachment; filename="{name}"', "Cache-Control": "private, no-store"})

    def _own_job(job_id: str, request: Request) -> Job:
        job = service.job(request.state.user, job_id)
        if job is None:
            raise HTTPException(404, "No such job among yours.")
        return job

    return router


def _frames(job: Job) -> list:
    return list(job.step_frames)  # a snapshot: a running job's list grows on another thread
