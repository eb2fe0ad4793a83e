"""The shared server's rules hold on Gradio's side too (alice is an admin, bob is not), as an attacker on the LAN
tried them: no file path a client names is opened; Gradio's file routes serve a user only their own uploads;
uploads are images checked by their header; browser sessions belong to one user; the UI's generate clicks go
through the engine's fair, capped queue; the UI's model field follows the same rule as /sdapi; a job's live
stream is its owner's; watching a job writes no file."""

from __future__ import annotations

import io
import os
import threading
import time
import uuid
from pathlib import Path

import httpx
import pytest
from PIL import Image

from studio.contract import Finished, GenerationRequest

from tests.server_support import USERS, basic_headers, http, record_start_order
from tests.ui_support import launch_studio

gradio_client = pytest.importorskip("gradio_client")

SMALL = dict(prompt="a lighthouse", negative_prompt="", steps=2, cfg_scale=7.0, seed=1, sampler_name="Euler",
             width=64, height=64, batch_size=1)


@pytest.fixture(scope="module")
def server(engine):
    with launch_studio(engine, users=USERS, admins=("alice",)) as server:
        yield server


def client(server, user: str):
    return gradio_client.Client(server.url + "/", headers=basic_headers(user), verbose=False)


def png_bytes(size=(64, 64), color=(200, 40, 40)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, format="PNG")
    return buffer.getvalue()


def upload(api: httpx.Client, data: bytes, name: str = "in.png") -> httpx.Response:
    return api.post("/gradio_api/upload", files=[("files", (name, data, "application/octet-stream"))])


def event_count(api: httpx.Client) -> int:
    return len(api.get("/config").json()["dependencies"])


def alices_png(engine) -> str:
    result = engine.generate(GenerationRequest("alice's secret", steps=1, width=64, height=64, seed=3), owner="alice")
    assert isinstance(result, Finished)
    return result.images[0].path


# ---- finding 1: any file the server can read, through a FileData path


@pytest.mark.parametrize("route", ["/gradio_api/queue/join", "/gradio_api/run/predict", "/gradio_api/call/txt2img"])
def test_a_file_path_in_an_event_is_refused_on_every_route(server, engine, route):
    secret = alices_png(engine)
    with http(server, "bob") as bob:
        for target in ("/etc/passwd", secret, "http://127.0.0.1:1/x.png", f"{server.url}/studio/files/x.png"):
            for fn_index in range(event_count(bob)):
                payload = {"data": [{"path": target, "meta": {"_type": "gradio.FileData"}}], "fn_index": fn_index,
                           "session_hash": uuid.uuid4().hex, "event_data": None, "trigger_id": None}
                response = bob.post(route, json=payload)
                assert response.status_code == 400, (route, target, fn_index, response.status_code)
                assert "uploaded first" in response.json()["detail"]
                assert target not in response.text
            # nor nested deep inside another value (an image editor's layers)
            nested = {"data": [{"background": None, "layers": [{"path": target}], "composite": None}], "fn_index": 0,
                      "session_hash": uuid.uuid4().hex}
            assert bob.post(route, json=nested).status_code == 400


# ---- finding 2: Gradio's file routes, whatever the spelling


def test_gradio_file_routes_serve_a_user_only_their_own_uploads(server, engine):
    secret = alices_png(engine)
    with http(server, "alice") as alice, http(server, "bob") as bob:
        answer = upload(alice, png_bytes())
        assert answer.status_code == 200, answer.text
        [mine] = answer.json()
        assert alice.get(f"/gradio_api/file={mine}").content == png_bytes()
        assert alice.get(f"/gradio_api/file/{mine}").status_code == 200
        for path in (mine, secret, "/etc/passwd", os.path.realpath(__file__)):
            dotted = f"{os.path.dirname(path)}/../{os.path.basename(os.path.dirname(path))}/{os.path.basename(path)}"
            for url in (f"/gradio_api/file={path}", f"/gradio_api/file/{path}", f"/gradio_api/file//{path}",
                        f"/gradio_api/file={dotted}"):
                assert bob.get(url).status_code == 404, url
        # alice's own results are not Gradio's to serve either: the studio's file route serves them to her alone
        for url in (f"/gradio_api/file={secret}", f"/gradio_api/file/{secret}"):
            assert alice.get(url).status_code == 404
        relative = "/".join(Path(secret).parts[-2:])
        assert alice.get(f"/studio/files/{relative}").status_code == 200
        assert bob.get(f"/studio/files/{relative}").status_code == 404


def test_an_echoed_path_unlocks_nothing(server, engine):
    """The old guard learnt 'allowed' paths from responses: making the server echo a path opened it."""
    secret = alices_png(engine)
    with http(server, "bob") as bob:
        echo = bob.post("/gradio_api/upload", files=[("files", (secret, b"not an image", "image/png"))])
        assert echo.status_code in (400, 415)
        assert secret not in echo.text
        assert bob.get(f"/gradio_api/file={secret}").status_code == 404


def test_uploads_are_checked_images(server):
    with http(server, "bob") as bob:
        assert upload(bob, b"#!/bin/sh\necho hi\n", "x.sh").status_code == 415
        gif = io.BytesIO()
        Image.new("RGB", (8, 8)).save(gif, format="GIF")
        assert upload(bob, gif.getvalue(), "x.gif").status_code == 415
        bomb = io.BytesIO()
        Image.new("1", (12000, 12000)).save(bomb, format="PNG")  # ~17 KB declaring 144 megapixels
        refused = upload(bob, bomb.getvalue(), "bomb.png")
        assert refused.status_code == 400 and "too large" in refused.json()["detail"]
        [path] = upload(bob, png_bytes(), "../../etc/passwd.png").json()
        assert os.path.realpath(path).startswith(os.path.realpath(os.environ["GRADIO_TEMP_DIR"]) + os.sep)
        assert path.endswith(".png") and "/../" not in path


def test_gradios_other_routes_are_closed_and_monitoring_is_for_admins(server):
    with http(server, "alice") as alice, http(server, "bob") as bob:
        for path in ("/gradio_api/runs", "/gradio_api/run-history/records", "/gradio_api/proxy=http://127.0.0.1:1/",
                     "/gradio_api/vibe-code", "/gradio_api/dev/reload"):
            assert bob.get(path).status_code == 404, path
        assert bob.get("/monitoring").status_code == 404
        assert alice.get("/monitoring").status_code != 404
        # The footer keeps "Use via API"; Gradio's developer Settings and Runs pages are not offered.
        assert bob.get("/config").json()["footer_links"] == ["api", "gradio"]


# ---- finding 3, on the UI's side: one rule for models


def test_the_ui_model_field_follows_the_model_rule(server, engine):
    before = engine.info().model
    bob = client(server, "bob")
    messages = []
    for wanted in ("/etc/passwd", str(Path(__file__).resolve()), "/no/such/model.safetensors", "some-owner/some-repo"):
        with pytest.raises(Exception) as refused:
            bob.predict(api_name="/txt2img", **dict(SMALL, steps=1), model=wanted)
        text = str(refused.value)
        assert "not available" in text.lower() or "only an admin" in text.lower(), text
        messages.append(text.replace(wanted, "<name>"))
    assert len(set(messages)) == 1, messages  # the same words whether the path exists or not
    assert engine.info().model == before
    ok = bob.predict(api_name="/txt2img", **dict(SMALL, steps=1), model=before)
    assert ok[2], "picking the operator's model by name works"


# ---- finding 4: one fair queue for the UI and the APIs


def test_ui_clicks_share_the_fair_queue(server, engine):
    """alice fires 6 generations from 6 browser sessions, then bob one: bob's starts before alice's third."""
    alices = [client(server, "alice") for _ in range(6)]
    bob = client(server, "bob")
    order, stop = [], threading.Event()
    watcher = record_start_order(engine, stop, order)
    try:
        jobs = [c.submit(api_name="/txt2img", **dict(SMALL, steps=3, seed=i)) for i, c in enumerate(alices)]
        deadline = time.time() + 30
        while sum(1 for j in engine.queue.snapshot() if j.owner == "alice") < 4 and time.time() < deadline:
            time.sleep(0.02)
        bobs = bob.submit(api_name="/txt2img", **dict(SMALL, steps=3, seed=99))
        bobs.result(timeout=180)
        for job in jobs:
            job.result(timeout=180)
    finally:
        stop.set()
        watcher.join(2)
    owners = [owner for owner, _ in order]
    assert "bob" in owners
    assert owners[: owners.index("bob")].count("alice") <= 2, owners


def test_the_per_user_queue_cap_applies_to_the_ui(server, engine):
    alices = [client(server, "alice") for _ in range(6)]
    saved = engine.queue.max_per_owner
    engine.queue.max_per_owner = 3
    try:
        jobs = [c.submit(api_name="/txt2img", **dict(SMALL, steps=20, seed=i)) for i, c in enumerate(alices)]
        refused = 0
        for job in jobs:
            try:
                job.result(timeout=180)
            except Exception as exc:
                assert "jobs waiting" in str(exc), exc
                refused += 1
        assert refused >= 2, refused  # 6 clicks, at most 1 running and 3 queued
    finally:
        engine.queue.max_per_owner = saved


# ---- finding 8: browser sessions and live streams belong to one user


def test_a_browser_session_id_is_bound_to_its_user(server):
    alice = client(server, "alice")
    session = alice.session_hash
    alice.submit(api_name="/txt2img", **SMALL).result(timeout=120)
    with http(server, "bob") as bob:
        assert bob.get(f"/gradio_api/queue/data?session_hash={session}").status_code == 403
        assert bob.get(f"/gradio_api/heartbeat/{session}").status_code == 403
        join = {"data": [], "fn_index": 0, "session_hash": session, "event_data": None, "trigger_id": None}
        assert bob.post("/gradio_api/queue/join", json=join).status_code == 403
        assert bob.post("/gradio_api/cancel", json={"session_hash": session, "fn_index": 0, "event_id": "x"}).status_code == 403


def test_a_jobs_live_stream_is_its_owners(server, engine):
    job = engine.submit(GenerationRequest("mine", steps=2, width=64, height=64, seed=5), owner="alice")
    job.wait(60)
    with http(server, "alice") as alice, http(server, "bob") as bob:
        assert bob.get(f"/studio/api/jobs/{job.id}/stream").status_code == 404
        with alice.stream("GET", f"/studio/api/jobs/{job.id}/stream") as response:
            assert response.status_code == 200
            text = "".join(response.iter_text())
        assert "event: finished" in text and "/studio/files/" in text


# ---- done-when: watching a job writes no file besides its PNGs


def test_a_watched_job_writes_only_its_pngs(server, engine):
    cache = Path(os.environ["GRADIO_TEMP_DIR"])
    outputs = Path(engine.settings.outputs)

    def files(root: Path) -> set:
        return {p for p in root.rglob("*") if p.is_file()}

    alice = client(server, "alice")
    alice.predict(api_name="/txt2img", **SMALL)  # warm: Gradio's first event may set things up
    before_cache, before_outputs = files(cache), files(outputs)
    result = alice.predict(api_name="/txt2img", **dict(SMALL, steps=8, batch_size=2, seed=11))
    assert len(result[2]) == 2
    assert files(cache) - before_cache == set()
    new = files(outputs) - before_outputs
    assert len(new) == 2 and all(p.suffix == ".png" for p in new)


def test_the_cache_is_swept(tmp_path):
    from studio.web.gradio_files import GradioFiles

    files = GradioFiles(tmp_path, max_age_s=3600)
    path = files.store("alice", png_bytes(), "in.png", "png")
    assert files.owns("alice", path) and not files.owns("bob", path)
    assert files.sweep(force=True) == 0
    old = time.time() - 7200
    os.utime(path, (old, old))
    assert files.sweep(force=True) == 1
    assert not os.path.exists(path) and not files.owns("alice", path)


def test_gradios_cache_is_a_private_folder_of_the_studios(server, engine):
    import stat

    from gradio.utils import get_upload_folder

    cache = Path(os.environ["GRADIO_TEMP_DIR"])
    assert Path(get_upload_folder()).resolve() == cache.resolve() != Path("/tmp/gradio")
    assert stat.S_IMODE(cache.stat().st_mode) == 0o700


def test_job_ids_are_random(engine):
    """Sequential ids told every user how busy the server was and made others' ids guessable."""
    jobs = [engine.submit(GenerationRequest("x", steps=1, width=64, height=64, seed=i), owner="alice") for i in range(3)]
    for job in jobs:
        job.wait(60)
    ids = [job.id for job in jobs]
    assert all(len(i) == 32 and int(i, 16) >= 0 for i in ids)
    assert len({i[:8] for i in ids}) == 3  # not a counter: no shared prefix
