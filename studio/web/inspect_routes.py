"""What a job captured from inside its sampling (request "inspect": ["attention", "cfg"]), for its owner only: the
attention map of each prompt word, the CFG view of a step, the noise levels of its steps and the picture sampling
started from; a depth-to-image job's depth map. 404 for anyone else's job, as for a job that does not exist. No torch."""

from __future__ import annotations

import base64
import io
from typing import Optional

from fastapi import APIRouter, HTTPException, Request, Response

from ..inspected import heatmap, png_bytes
from ..jobs import Job, frames_dropped
from .frames import DROPPED

RUNNING = "The job is still running: what it captures is ready when it finishes."
NOT_ASKED = 'This job did not capture {what}: submit it with "inspect": [{names}].'


def build_inspect_router(service) -> APIRouter:
    """service: studio.service.JobService."""
    router = APIRouter()

    @router.get("/studio/api/jobs/{job_id}/attention")
    def attention(job_id: str, request: Request, step: Optional[int] = None):
        inspected = _inspected(_own_job(service, job_id, request), "attention")
        _check_step(step, inspected.steps)
        return {"steps": inspected.steps, "step": step, "size": list(inspected.size), "tokens": [
            {"index": word.index, "text": word.text, "weight": word.weight, "embedding": word.embedding, "positions": word.positions,
             "heatmap": _b64(png_bytes(heatmap(inspected, word, step)))}
            for word in inspected.words
        ]}

    @router.get("/studio/api/jobs/{job_id}/tokens")
    def tokens(job_id: str, request: Request):
        """The prompt as CLIP saw it: each token with its id, chunk (75-token windows), emphasis weight and the
        embedding it belongs to; the LoRA tags, which are taken out of the prompt before tokenizing."""
        inspected = _inspected(_own_job(service, job_id, request), None)
        return {"chunks": 1 + max((t.chunk for t in inspected.tokens), default=0),
                "tokens": [{"position": t.position, "chunk": t.chunk, "id": t.id, "text": t.text, "weight": t.weight,
                            "embedding": t.embedding} for t in inspected.tokens],
                "loras": [{"name": name, "weight": weight} for name, weight in inspected.loras]}

    @router.get("/studio/api/jobs/{job_id}/cfg")
    def cfg(job_id: str, request: Request, step: Optional[int] = None):
        inspected = _inspected(_own_job(service, job_id, request), "cfg")
        if step is None:
            raise HTTPException(400, f"Give the step to look at: ?step=N, from 1 to {inspected.steps}.")
        _check_step(step, inspected.steps)
        pictures = inspected.cfg[step - 1]
        return {"step": step, "steps": inspected.steps, "cfg_scale": inspected.guidance,
                **{name: None if picture is None else _b64(png_bytes(picture)) for name, picture in pictures.items()},
                "difference": _b64(png_bytes(inspected.difference(step)))}

    @router.get("/studio/api/jobs/{job_id}/schedule")
    def schedule(job_id: str, request: Request):
        inspected = _inspected(_own_job(service, job_id, request), None)
        return {"sigmas": inspected.sigmas, "timesteps": inspected.timesteps}

    @router.get("/studio/api/jobs/{job_id}/start")
    def start(job_id: str, request: Request):
        """What the first step denoised: for img2img and inpainting, the input after forward diffusion to the noise
        level the denoising strength gives; and the number of steps that ran from there."""
        job = _own_job(service, job_id, request)
        inspected = _inspected(job, None)
        return {"image": None if inspected.start is None else _b64(png_bytes(inspected.start)), "steps": inspected.steps,
                "denoising_strength": job.request.denoising_strength if job.request.init_image is not None else None}

    @router.get("/studio/api/jobs/{job_id}/depth")
    def depth(job_id: str, request: Request):
        """The depth map a depth-to-image job kept (the model's estimate, or the one sent as depth_map), white = near,
        at the job's size."""
        picture = _depth_map(_own_job(service, job_id, request))
        return {"depth_map": _b64(_png(picture)), "size": list(picture.size)}

    @router.get("/studio/api/jobs/{job_id}/depth.png")
    def depth_png(job_id: str, request: Request):
        """The same depth map as a picture (what the Image to image tab shows beside the result)."""
        return Response(_png(_depth_map(_own_job(service, job_id, request))), media_type="image/png",
                        headers={"Cache-Control": "private, max-age=3600"})

    return router


def _own_job(service, job_id: str, request: Request) -> Job:
    job = service.job(request.state.user, job_id)
    if job is None:
        raise HTTPException(404, "No such job among yours.")
    return job


def _inspected(job: Job, what: Optional[str]):
    inspected = job.inspection
    if inspected is None:
        if not job.done and job.request.inspect:
            raise HTTPException(409, RUNNING)
        if frames_dropped(job):
            raise HTTPException(404, DROPPED)
        raise HTTPException(404, NOT_ASKED.format(what=what or "its sampling", names=f'"{what or "attention"}"'))
    if what is not None and what not in inspected.inspect:
        raise HTTPException(404, NOT_ASKED.format(what=what, names=", ".join(f'"{n}"' for n in (*inspected.inspect, what))))
    return inspected


def _depth_map(job: Job):
    if job.depth_map is None:
        if not job.done:
            raise HTTPException(409, "The job has not started sampling yet: its depth map is ready at the first step.")
        if frames_dropped(job):
            raise HTTPException(404, DROPPED)
        raise HTTPException(404, "This job kept no depth map: only image to image on a depth-to-image model does.")
    return job.depth_map


def _png(picture) -> bytes:
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return buffer.getvalue()


def _check_step(step: Optional[int], steps: int) -> None:
    if step is not None and not 1 <= step <= steps:
        raise HTTPException(400, f"step must be from 1 to {steps}, the steps this job ran.")


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")
