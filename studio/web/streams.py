"""A job's live stream from memory (server-sent events), for its owner only: queue position, start, every step,
the newest preview frame as JPEG bytes (a newer frame replaces one not yet sent), and the end with the result
URLs. No file is written per step; a slow reader costs the sampler nothing."""

from __future__ import annotations

import base64
import json
import os

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import StreamingResponse

from ..contract import Cancelled, Failed, Finished, Preview, Queued, Started, Step

KEEPALIVE_S = 15.0


def sse(kind: str, data: dict) -> bytes:
    return f"event: {kind}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


def _jpeg(event: Preview) -> bytes:
    if event.jpeg is not None:
        return event.jpeg
    from io import BytesIO

    buffer = BytesIO()
    event.image.convert("RGB").save(buffer, format="JPEG", quality=85)
    return buffer.getvalue()


def build_stream_router(service) -> APIRouter:
    """service: studio.service.JobService."""
    router = APIRouter()

    @router.get("/studio/api/jobs/{job_id}/stream")
    async def stream(job_id: str, request: Request):
        """text/event-stream: events queued, started, step, preview (a data: URL), finished, failed, cancelled."""
        user = request.state.user
        job = service.job(user, job_id)
        if job is None:
            raise HTTPException(404, "No such job among yours.")
        channel = job.watch()

        async def events():
            try:
                while True:
                    event = await channel.get_async(timeout=KEEPALIVE_S)
                    if event is None:
                        yield b": keep-alive\n\n"
                        continue
                    # Inline: the frame thread already encoded the JPEG; a thread hop per event would cost the
                    # sampler more than base64 and JSON.
                    yield _encode(service, job, event)
                    if isinstance(event, (Finished, Failed, Cancelled)):
                        return
            finally:
                job.unwatch(channel)

        return StreamingResponse(events(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})

    return router


def _encode(service, job, event) -> bytes:
    """One event as SSE bytes."""
    if isinstance(event, Preview):
        image = "data:image/jpeg;base64," + base64.b64encode(_jpeg(event)).decode("ascii")
        return sse("preview", {"step": event.step, "total": event.total, "image": image})
    if isinstance(event, Step):
        return sse("step", {"step": event.step, "total": event.total, "eta": round(event.eta_seconds, 2)})
    if isinstance(event, Queued):
        return sse("queued", {"position": event.position})
    if isinstance(event, Started):
        return sse("started", {"model": event.model, "seeds": list(event.seeds), "notes": list(event.notes)})
    if isinstance(event, Finished):
        images = [{"url": service.result_url(job.owner, image.path), "seed": image.seed,
                   "name": os.path.basename(image.path)} for image in event.images]
        return sse("finished", {"images": images, "skipped": event.skipped})
    if isinstance(event, Failed):
        return sse("failed", {"message": event.message})
    return sse("cancelled", {})
