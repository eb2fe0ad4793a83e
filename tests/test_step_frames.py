"""Step frames are delivered by the studio's own per-user route from memory (never Gradio's file route): the
routes, owner-only; the animation encoder; and the Step previews tab's HTML pointing at that route."""

from __future__ import annotations

import html
import io
import re
import time

import pytest
from fastapi import FastAPI, Request
from fastapi.testclient import TestClient
from PIL import Image
from server_support import job_service

from studio.animation import animation_bytes
from studio.previews import encode_jpeg
from studio.contract import Finished, GenerationRequest
from studio.ui import step_previews
from studio.ui.streaming import Session
from studio.web.frames import build_frames_router

STEPS = 4


def _wait_for_frames(job, count: int, timeout: float = 10.0) -> None:
    deadline = time.time() + timeout
    while len(job.step_frames) < count and time.time() < deadline:
        time.sleep(0.05)
    assert len(job.step_frames) == count


@pytest.fixture(scope="module")
def alices_job(engine):
    job = engine.submit(GenerationRequest("x", steps=STEPS, width=64, height=64, seed=1), owner="alice")
    assert isinstance(job.wait(60), Finished)
    _wait_for_frames(job, STEPS)
    return job


@pytest.fixture(scope="module")
def client(engine):
    """The router in a tiny app whose 'login' is a header: the user is whoever X-User names."""
    app = FastAPI()

    @app.middleware("http")
    async def user_from_header(request: Request, call_next):
        request.state.user = request.headers.get("x-user", "local")
        return await call_next(request)

    app.include_router(build_frames_router(job_service(engine)))
    with TestClient(app) as test_client:
        yield test_client


def _get(client, path: str, user: str):
    return client.get(path, headers={"X-User": user})


def _decoded(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def test_owner_lists_the_frames(client, alices_job):
    response = _get(client, f"/studio/api/jobs/{alices_job.id}/frames", "alice")
    assert response.status_code == 200
    frames = response.json()
    assert [f["index"] for f in frames] == list(range(1, STEPS + 1))
    assert [f["step"] for f in frames] == [f.step for f in alices_job.step_frames]
    assert all(f["total"] == STEPS for f in frames) and frames[-1]["step"] == STEPS


@pytest.mark.parametrize("kind", ["x0", "noisy", "c1", "c2", "c3", "c4"])
def test_owner_gets_each_picture_as_jpeg_from_memory(client, alices_job, kind):
    response = _get(client, f"/studio/api/jobs/{alices_job.id}/frames/2/{kind}.jpg", "alice")
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/jpeg"
    assert "private" in response.headers["cache-control"]
    image = _decoded(response.content)
    assert image.format == "JPEG" and min(image.size) > 0
    assert image.mode == ("L" if kind.startswith("c") else "RGB")
    frame = alices_job.step_frames[1]
    expected = frame.channels[int(kind[1]) - 1] if kind.startswith("c") else getattr(frame, kind)
    assert response.content == expected


@pytest.mark.parametrize("fmt", ["gif", "webp"])
@pytest.mark.parametrize("view", ["x0", "noisy"])
def test_owner_downloads_the_animation_built_in_memory(client, alices_job, fmt, view):
    response = _get(client, f"/studio/api/jobs/{alices_job.id}/animation.{fmt}?view={view}", "alice")
    assert response.status_code == 200
    assert response.headers["content-type"] == f"image/{fmt}"
    disposition = response.headers["content-disposition"]
    assert disposition.startswith("attachment;") and re.search(rf'filename="[\w.-]+-{view}\.{fmt}"', disposition)
    animation = _decoded(response.content)
    assert animation.format == fmt.upper() and animation.n_frames == STEPS


@pytest.mark.parametrize("path", ["/frames", "/frames/1/x0.jpg", "/frames/1/c4.jpg", "/animation.gif", "/animation.webp?view=noisy"])
def test_someone_elses_or_an_unknown_job_is_404(client, alices_job, path):
    for user, job_id in (("bob", alices_job.id), ("alice", "0" * 32), ("local", alices_job.id)):
        response = _get(client, f"/studio/api/jobs/{job_id}{path}", user)
        assert response.status_code == 404, (user, job_id, path)
        assert response.json()["detail"] == "No such job among yours."
        assert not response.content.startswith((b"\xff\xd8", b"GIF", b"RIFF"))  # no picture bytes leak


@pytest.mark.parametrize("path", ["/frames/0/x0.jpg", f"/frames/{STEPS + 1}/x0.jpg", "/frames/-1/x0.jpg", "/frames/one/x0.jpg",
                                  "/frames/1/c0.jpg", "/frames/1/c5.jpg", "/frames/1/mask.jpg", "/frames/1/x0.png",
                                  "/animation.png", "/animation.jpg"])
def test_bad_index_kind_or_format_is_404(client, alices_job, path):
    assert _get(client, f"/studio/api/jobs/{alices_job.id}{path}", "alice").status_code == 404


def test_a_bad_animation_view_is_refused(client, alices_job):
    assert _get(client, f"/studio/api/jobs/{alices_job.id}/animation.gif?view=channels", "alice").status_code == 400


def test_animation_bytes_has_every_frame_and_holds_the_last():
    colours = [(255, 0, 0), (0, 255, 0), (0, 0, 255)]
    jpegs = [encode_jpeg(Image.new("RGB", (32, 24), c)) for c in colours]
    jpegs.append(encode_jpeg(Image.new("L", (16, 12), 128)))  # another mode and size: converted and resized
    for fmt in ("gif", "WebP"):
        animation = _decoded(animation_bytes(jpegs, fmt, frame_ms=100, hold_last_ms=900))
        assert animation.format == fmt.upper() and animation.n_frames == 4 and animation.size == (32, 24)
        durations = []
        for i in range(animation.n_frames):
            animation.seek(i)
            animation.load()  # WebP sets a frame's duration when it is decoded
            durations.append(animation.info["duration"])
        assert durations == [100, 100, 100, 900]
    with pytest.raises(ValueError):
        animation_bytes(jpegs, "png")
    with pytest.raises(ValueError):
        animation_bytes([], "gif")


def test_step_previews_tab_points_at_the_studio_route(alices_job):
    session = Session(last_job=alices_job)
    main, channels, caption, export = step_previews.frame_view(session, 2, step_previews.NOISY)
    route = f"/studio/api/jobs/{alices_job.id}"
    assert f'src="{route}/frames/2/noisy.jpg"' in main
    assert [f"{route}/frames/2/c{n}.jpg" for n in range(1, 5)] == re.findall(r'src="([^"]+)"', channels)
    assert caption == f"Step 2 of {STEPS} · frame 2/{STEPS}"
    assert f'href="{route}/animation.gif?view=noisy"' in export and f'href="{route}/animation.webp?view=noisy"' in export
    assert " download" in export
    for piece in (main, channels, export):
        assert "/gradio_api/file" not in piece and "file=" not in piece
    x0_main = step_previews.frame_view(session, 99, step_previews.X0)[0]  # clamped to the last frame
    assert f'src="{route}/frames/{STEPS}/x0.jpg"' in x0_main


def test_step_previews_tab_escapes_the_job_id(alices_job):
    class Strange:
        id = '"><script>alert(1)</script>'
        step_frames = alices_job.step_frames

    main, channels, _, export = step_previews.frame_view(Session(last_job=Strange()), 1, step_previews.X0)
    for piece in (main, channels, export):
        assert "<script" not in piece
    assert "/studio/api/jobs/%22%3E%3Cscript%3Ealert%281%29%3C%2Fscript%3E/frames/1/x0.jpg" in main


def test_the_tab_serves_the_frames_it_points_at(client, alices_job):
    """Every URL the tab writes is one the route answers for the owner (and refuses to anyone else)."""
    session = Session(last_job=alices_job)
    pieces = step_previews.frame_view(session, 3, step_previews.X0)
    urls = [html.unescape(u) for u in re.findall(r'(?:src|href)="([^"]+)"', "".join(pieces))]
    assert len(urls) == 1 + 4 + 2
    for url in urls:
        assert _get(client, url, "alice").status_code == 200, url
        assert _get(client, url, "bob").status_code == 404, url

