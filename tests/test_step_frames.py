"""Step frames are delivered by the studio's own per-user route from memory (never Gradio's file route): the
routes, owner-only; the animation encoder; the contact sheet and the list of the caller's jobs with frames."""

from __future__ import annotations

import io
import re
import time
from types import SimpleNamespace

import pytest
from PIL import Image
from server_support import header_user_client, job_service

from studio.animation import animation_bytes
from studio.contact_sheet import contact_sheet_png, spread_indices
from studio.previews import encode_jpeg
from studio.contract import Finished, GenerationRequest
from studio.web.frames import DROPPED, build_frames_router

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
    with header_user_client(build_frames_router(job_service(engine))) as test_client:
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


@pytest.mark.parametrize("path", ["/frames", "/frames/1/x0.jpg", "/frames/1/c4.jpg", "/animation.gif", "/animation.webp?view=noisy",
                                  "/contact-sheet.png"])
def test_someone_elses_or_an_unknown_job_is_404(client, alices_job, path):
    for user, job_id in (("bob", alices_job.id), ("alice", "0" * 32), ("local", alices_job.id)):
        response = _get(client, f"/studio/api/jobs/{job_id}{path}", user)
        assert response.status_code == 404, (user, job_id, path)
        assert response.json()["detail"] == "No such job among yours."
        assert not response.content.startswith((b"\xff\xd8", b"GIF", b"RIFF", b"\x89PNG"))  # no picture bytes leak


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


# ---- the contact sheet and the list of jobs with frames

SHEET_MAX_WIDTH = 1100  # "sized for sharing"


def _sheet(data: bytes) -> Image.Image:
    image = _decoded(data)
    assert image.format == "PNG" and image.mode == "RGB"
    return image


def test_owner_downloads_the_contact_sheet(client, alices_job):
    response = _get(client, f"/studio/api/jobs/{alices_job.id}/contact-sheet.png", "alice")
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/png"
    assert response.headers["content-disposition"] == f'attachment; filename="steps-{alices_job.id[:8]}-sheet.png"'
    assert response.headers["cache-control"] == "private, no-store"
    sheet = _sheet(response.content)
    assert sheet.width <= SHEET_MAX_WIDTH
    # The title line (prompt and seed) sits above the header: the same frames untitled make a shorter sheet.
    untitled = _sheet(contact_sheet_png(alices_job.step_frames))
    assert sheet.width == untitled.width and sheet.height > untitled.height
    one_row = _sheet(contact_sheet_png(alices_job.step_frames[:1]))
    assert untitled.height > one_row.height  # a row per frame (STEPS of them, under max_rows)


def _frames_job(engine, owner: str, steps: int = 2):
    job = engine.submit(GenerationRequest("y", steps=steps, width=64, height=64, seed=2), owner=owner)
    assert isinstance(job.wait(60), Finished)
    _wait_for_frames(job, steps)
    return job


def test_a_job_without_frames_has_no_contact_sheet(client, engine):
    dropped, empty = _frames_job(engine, "carol"), _frames_job(engine, "carol")
    dropped.step_frames, dropped.frames_dropped = [], True  # as JobStore drops them
    empty.step_frames = []  # as before the first previewed step
    response = _get(client, f"/studio/api/jobs/{dropped.id}/contact-sheet.png", "carol")
    assert response.status_code == 404 and response.json()["detail"] == DROPPED
    response = _get(client, f"/studio/api/jobs/{empty.id}/contact-sheet.png", "carol")
    assert response.status_code == 404 and response.json()["detail"] == "This job has no step frames (yet)."
    listed = _get(client, "/studio/api/frames", "carol").json()
    assert [entry["id"] for entry in listed] == [dropped.id]  # the dropped job is listed, the frameless one is not
    assert listed[0]["dropped"] is True and listed[0]["frames"] == 0 and listed[0]["total"] == 0


def test_the_caller_lists_only_their_jobs_with_frames_newest_first(client, engine, alices_job):
    newer = _frames_job(engine, "alice", steps=3)
    listed = _get(client, "/studio/api/frames", "alice").json()
    assert [entry["id"] for entry in listed][:2] == [newer.id, alices_job.id]
    assert [entry["created"] for entry in listed] == sorted((entry["created"] for entry in listed), reverse=True)
    entry = next(entry for entry in listed if entry["id"] == alices_job.id)
    assert entry == {"id": alices_job.id, "prompt": "x", "status": "finished", "frames": STEPS, "total": STEPS,
                     "created": alices_job.created, "dropped": False}
    for stranger in ("bob", "local"):
        seen = {entry["id"] for entry in _get(client, "/studio/api/frames", stranger).json()}
        assert not seen & {newer.id, alices_job.id}, stranger


def _solid_frames(count: int, side: int = 64) -> list:
    """Stand-ins for previews.StepFrames whose x0 colour tells the frame: (10 * index, 0, 255 - 10 * index)."""

    def jpeg(colour, mode="RGB"):
        return encode_jpeg(Image.new(mode, (side, side), colour))

    return [SimpleNamespace(step=i + 1, total=count, x0=jpeg((10 * i, 0, 255 - 10 * i)), noisy=jpeg((0, 200, 0)),
                            channels=tuple(jpeg(60 * c, "L") for c in range(4))) for i in range(count)]


def _frames_shown(sheet: Image.Image, count: int) -> list[int]:
    """The frames whose x0 colour fills at least a cell's worth of the sheet's pixels (JPEG is off by a little)."""
    colours = sheet.getcolors(sheet.width * sheet.height)
    shown = []
    for i in range(count):
        expected = (10 * i, 0, 255 - 10 * i)
        pixels = sum(n for n, colour in colours if max(abs(a - b) for a, b in zip(colour, expected)) <= 3)
        if pixels >= 32 * 32 * 0.8:
            shown.append(i)
    return shown


def test_the_sheet_grows_a_band_per_row_up_to_max_rows():
    heights = []
    for count in range(1, 9):
        sheet = _sheet(contact_sheet_png(_solid_frames(count), max_rows=5, cell=32))
        heights.append(sheet.height)
        assert _frames_shown(sheet, count) == spread_indices(count, 5)
    bands = [b - a for a, b in zip(heights, heights[1:])]
    assert bands[:4] == [bands[0]] * 4 and bands[0] >= 32  # rows 2..5: one cell (and a gap) each
    assert bands[4:] == [0, 0, 0]  # beyond max_rows: no more rows


def test_the_default_sheet_of_many_steps_is_sized_for_sharing():
    frames = _solid_frames(20)
    sheet = _sheet(contact_sheet_png(frames, title="a long prompt, " * 40))
    assert sheet.width <= SHEET_MAX_WIDTH
    assert _frames_shown(sheet, 20) == spread_indices(20, 10) and len(spread_indices(20, 10)) == 10
    one_row = _sheet(contact_sheet_png(frames[-1:], title="short"))  # the same widest label, "Step 20/20"
    assert sheet.width == one_row.width  # a long title is cut to the width, never widens the sheet
    band = _sheet(contact_sheet_png(frames[-2:], title="t")).height - one_row.height
    assert band > 0 and sheet.height - one_row.height == 9 * band  # 10 rows at most
    with pytest.raises(ValueError):
        contact_sheet_png([])


def test_spread_indices_keeps_the_ends_and_spreads_evenly():
    assert spread_indices(20, 12)[:3] == [0, 2, 3] and spread_indices(3, 12) == [0, 1, 2]
    for count in range(1, 70):
        for limit in range(2, 14):
            chosen = spread_indices(count, limit)
            assert len(chosen) == min(count, limit)
            assert chosen[0] == 0 and chosen[-1] == count - 1
            assert chosen == sorted(set(chosen))  # increasing: no duplicates
            gaps = [b - a for a, b in zip(chosen, chosen[1:])]
            assert not gaps or max(gaps) - min(gaps) <= 1, (count, limit, chosen)
    with pytest.raises(ValueError):
        spread_indices(5, 1)
