"""The studio's own per-user routes under /studio: history, files, the queue, and jobs (status, preview, cancel,
skip, submit), and the LoRA preview pictures the Networks panel shows. Every route acts for the caller only. No torch."""

from __future__ import annotations

from urllib.parse import quote

from fastapi import APIRouter, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, Response

from ..jobs import Job
from ..links import FILES
from ..contract import QueueFullError, RequestError
from .a1111 import Api, Img2ImgBody, Txt2ImgBody, bad_request, client_host, encode_image
from .state import ServerState


def build_studio_router(state: ServerState) -> APIRouter:
    router = APIRouter()
    _file_routes(router, state)
    _lora_preview_route(router, state.service)
    _job_routes(router, state, Api(state), state.service)
    return router


def _file_routes(router: APIRouter, state: ServerState) -> None:
    """The caller's history and their PNGs."""
    service = state.service
    @router.get("/studio/api/history")
    def history(request: Request, limit: int = 100, offset: int = 0):
        entries = state.history.entries(request.state.user)
        limit = max(0, min(limit, 1000))
        return {
            "total": len(entries),
            "items": [
                {"file": e.relative, "url": FILES + quote(e.relative), "seed": e.seed, "created": e.created,
                 "infotext": e.infotext, "parameters": e.parameters}
                for e in entries[max(0, offset) : max(0, offset) + limit]
            ],
        }

    @router.get(FILES + "{relative:path}")
    def output_file(relative: str, request: Request):  # `relative` arrives unquoted; the service checks it is the caller's
        path = service.output_file(request.state.user, relative)
        if path is None:
            raise HTTPException(404, "No such image among your outputs.")
        return FileResponse(path, media_type="image/png")


def _lora_preview_route(router: APIRouter, service) -> None:
    @router.get("/studio/api/loras/{name}/preview")
    def lora_preview(name: str):
        if len(name) > 300:
            raise HTTPException(404, "No such LoRA.")
        found = service.lora_preview(name)
        if found is None:
            raise HTTPException(404, "No preview picture for this LoRA: put name.png (or .jpg, .webp) beside its file.")
        data, media_type = found
        return Response(data, media_type=media_type, headers={
            "Cache-Control": "private, max-age=60", "X-Content-Type-Options": "nosniff",
            "Content-Security-Policy": "default-src 'none'"})


def _job_routes(router: APIRouter, state: ServerState, api: Api, service) -> None:
    """The caller's queue and jobs: status, preview, cancel, skip, submit."""
    @router.get("/studio/api/queue")
    def queue(request: Request):
        user = request.state.user
        return {
            "jobs": [
                {"id": job.id, "status": job.status, "position": service.position(job), "eta": round(service.eta_seconds(job), 2),
                 "step": job.last_step.step if job.last_step else 0, "total": job.last_step.total if job.last_step else 0,
                 "prompt": job.request.prompt[:120], "task": job.request.task.value}
                for job in service.active_jobs(user)
            ],
            "max_queue_per_user": service.settings.max_queue_per_user,
        }

    @router.get("/studio/api/jobs/{job_id}")
    def job_status(job_id: str, request: Request):
        job = _own_job(job_id, request)
        result = job.result
        return {
            "id": job.id,
            "status": job.status,
            "position": service.position(job),
            "eta": round(service.eta_seconds(job), 2),
            "step": job.last_step.step if job.last_step else 0,
            "total": job.last_step.total if job.last_step else 0,
            "message": getattr(result, "message", None),
            "files": [service.result_relative(job.owner, i.path) for i in getattr(result, "images", [])],
        }

    @router.get("/studio/api/jobs/{job_id}/preview")
    def job_preview(job_id: str, request: Request):
        job = _own_job(job_id, request)
        preview = job.last_preview
        return {"image": encode_image(preview.image) if preview else None, "step": preview.step if preview else 0}

    @router.post("/studio/api/jobs/{job_id}/cancel")
    def job_cancel(job_id: str, request: Request):
        service.cancel(request.state.user, _own_job(job_id, request))
        return {"cancelled": job_id}

    @router.post("/studio/api/jobs/{job_id}/skip")
    def job_skip(job_id: str, request: Request):
        service.skip(request.state.user, _own_job(job_id, request))
        return {"skipped": job_id}

    @router.post("/studio/api/jobs")
    async def submit_job(body: Txt2ImgBody, request: Request):
        """Queue a txt2img job and return at once (poll /studio/api/jobs/{id})."""
        return await _submit(request, body, False)

    @router.post("/studio/api/jobs/img2img")
    async def submit_image_job(body: Img2ImgBody, request: Request):
        """Queue an img2img job (an inpainting one with a mask), A1111's img2img fields, and return at once."""
        return await _submit(request, body, True)

    async def _submit(request: Request, body: Txt2ImgBody, img2img: bool) -> dict:
        user = request.state.user
        try:
            gen = await run_in_threadpool(api.build_request, request, user, body, img2img)
            job = await run_in_threadpool(service.submit, gen, user, client_host(request))
        except QueueFullError as exc:
            raise bad_request(str(exc), 429) from None
        except RequestError as exc:
            raise bad_request(str(exc)) from None
        return {"id": job.id, "position": service.position(job)}

    def _own_job(job_id: str, request: Request) -> Job:
        job = service.job(request.state.user, job_id)
        if job is None:
            raise HTTPException(404, "No such job among yours.")
        return job
