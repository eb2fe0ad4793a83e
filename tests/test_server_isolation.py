"""Two users on one server: B cannot cancel, skip, watch or read A's job; fair round-robin; per-user cap and models."""

import os
import threading
import time

import pytest
from server_support import SMALL, live_server, record_start_order

USERS = {"ann": "ann-pw", "ben": "ben-pw"}


@pytest.fixture(scope="module")
def server(engine):
    import server_support

    server_support.USERS.update(USERS)
    with live_server(engine, users=USERS, admins=()) as server:
        yield server


def _wait(client, job_id, status=("finished", "failed", "cancelled"), timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        info = client.get(f"/studio/api/jobs/{job_id}").json()
        if info["status"] in status:
            return info
        time.sleep(0.05)
    raise AssertionError(f"{job_id} did not reach {status}")


def test_b_cannot_touch_a_job(server):
    with server.client("ann") as ann, server.client("ben") as ben:
        job_id = ann.post("/studio/api/jobs", json=dict(SMALL, steps=25, prompt="ann's secret")).json()["id"]
        _wait(ann, job_id, status=("running",))
        deadline = time.time() + 10
        while ann.get(f"/studio/api/jobs/{job_id}/preview").json()["image"] is None and time.time() < deadline:
            time.sleep(0.05)
        assert ann.get(f"/studio/api/jobs/{job_id}/preview").json()["image"]  # A sees her preview
        assert ann.get("/sdapi/v1/progress").json()["state"]["job"] == job_id
        # B: not found, not cancellable, not skippable, no progress, no preview
        for method, path in (("GET", ""), ("GET", "/preview"), ("POST", "/cancel"), ("POST", "/skip")):
            response = ben.request(method, f"/studio/api/jobs/{job_id}{path}")
            assert response.status_code == 404, (path, response.status_code)
        progress = ben.get("/sdapi/v1/progress").json()
        assert progress["state"]["job"] != job_id and progress["current_image"] is None and progress["state"]["job_count"] == 0
        assert ben.post("/sdapi/v1/interrupt").json() == {"interrupted": None}
        assert ben.post("/sdapi/v1/skip").json() == {"skipped": None}
        info = _wait(ann, job_id)
        assert info["status"] == "finished" and info["step"] == info["total"] == 25  # ran to the end
        relative = info["files"][0]
        assert ann.get(f"/studio/files/{relative}").content[:8] == b"\x89PNG\r\n\x1a\n"
        # B cannot read A's file, by name, by `..`, by encoded `..`, or through a symlink in B's own folder
        assert ben.get(f"/studio/files/{relative}").status_code == 404
        day, name = relative.split("/")
        for attempt in (f"../ann/{relative}", f"{day}/../../ann/{relative}", f"%2e%2e/ann/{relative}", f"{day}/..%2F..%2Fann%2F{day}%2F{name}"):
            assert ben.get(f"/studio/files/{attempt}").status_code == 404, attempt
        ben_day = server.engine.outputs.owner_root("ben") / day
        ben_day.mkdir(parents=True, exist_ok=True)
        link = ben_day / "00999-1.png"
        if not link.exists():
            os.symlink(server.engine.outputs.owner_root("ann") / relative, link)
        assert ben.get(f"/studio/files/{day}/00999-1.png").status_code == 404
        # ... nor through Gradio's file route
        absolute = str(server.engine.outputs.owner_root("ann") / relative)
        assert ben.get(f"/gradio_api/file={absolute}").status_code == 404
        # history is per user
        assert any(item["file"] == relative for item in ann.get("/studio/api/history").json()["items"])
        assert all(item["file"] != relative for item in ben.get("/studio/api/history").json()["items"])
        assert "ann's secret" not in ben.get("/studio/api/history").text


def test_b_interrupt_does_not_stop_a_but_a_can(server):
    with server.client("ann") as ann, server.client("ben") as ben:
        job_id = ann.post("/studio/api/jobs", json=dict(SMALL, steps=60)).json()["id"]
        _wait(ann, job_id, status=("running",))
        ben.post("/sdapi/v1/interrupt")
        assert ann.get(f"/studio/api/jobs/{job_id}").json()["status"] == "running"
        assert ann.post("/sdapi/v1/interrupt").json() == {"interrupted": job_id}
        assert _wait(ann, job_id)["status"] == "finished"  # A1111's interrupt: the image as it stood is kept


def test_fair_order_queue_position_and_eta(server):
    engine = server.engine
    order, stop = [], threading.Event()
    poller = record_start_order(engine, stop, order)
    with server.client("ann") as ann, server.client("ben") as ben:
        _wait(ann, ann.post("/studio/api/jobs", json=SMALL).json()["id"])  # a busy server: it has timed a step
        ann_ids = [ann.post("/studio/api/jobs", json=dict(SMALL, seed=i)).json()["id"] for i in range(10)]
        ben_id = ben.post("/studio/api/jobs", json=SMALL).json()["id"]
        queued = ann.get("/studio/api/queue").json()["jobs"]
        waiting = [j for j in queued if j["status"] == "queued"]
        assert waiting and all(j["position"] is not None for j in waiting) and waiting[-1]["eta"] > 0
        progress = ben.get("/sdapi/v1/progress").json()
        assert progress["queue_position"] is not None or progress["state"]["job"] == ben_id
        for job_id in ann_ids:
            _wait(ann, job_id)
        _wait(ben, ben_id)
    stop.set()
    poller.join()
    started = [job_id for _, job_id in order]
    assert started.index(ben_id) < started.index(ann_ids[2]), started


def test_per_user_cap_has_a_clear_message(server):
    queue = server.engine.queue
    old, queue.max_per_owner = queue.max_per_owner, 2
    try:
        with server.client("ann") as ann:
            ids = []
            refused = None
            for i in range(6):
                response = ann.post("/studio/api/jobs", json=dict(SMALL, steps=3, seed=i))
                if response.status_code == 429:
                    refused = response
                    break
                ids.append(response.json()["id"])
            assert refused is not None and "limit is 2" in refused.json()["detail"]
            for job_id in ids:
                _wait(ann, job_id)
    finally:
        queue.max_per_owner = old


def test_model_choice_is_per_user(server):
    with server.client("ann") as ann, server.client("ben") as ben:
        assert ann.post("/sdapi/v1/options", json={"sd_model_checkpoint": "tiny"}).status_code == 200
        assert ann.get("/sdapi/v1/options").json()["sd_model_checkpoint"] == "tiny"
        assert ben.post("/sdapi/v1/options", json={"sd_model_checkpoint": "other/model"}).status_code == 422
        assert ann.get("/sdapi/v1/options").json()["sd_model_checkpoint"] == "tiny"  # B's try changed nothing
        state = server.state
        state.set_model("ben", "some-other-model")  # as if B had picked another available model
        assert ann.get("/sdapi/v1/options").json()["sd_model_checkpoint"] == "tiny"
        assert ben.get("/sdapi/v1/options").json()["sd_model_checkpoint"] == "some-other-model"
        state.set_model("ben", "tiny")


def test_what_a_job_saw_inside_its_sampling_is_its_owners_only(server):
    import base64
    import io

    from PIL import Image

    with server.client("ann") as ann, server.client("ben") as ben:
        refused = ann.post("/studio/api/jobs", json=dict(SMALL, inspect=["everything"]))
        assert refused.status_code == 422 and "inspect must be a list of distinct names from attention, cfg" in refused.json()["detail"]
        job_id = ann.post("/studio/api/jobs", json=dict(SMALL, inspect=["attention", "cfg"])).json()["id"]
        assert _wait(ann, job_id)["status"] == "finished"
        views = ("attention", "cfg?step=1", "schedule", "tokens", "start")
        for view in views:
            assert ann.get(f"/studio/api/jobs/{job_id}/{view}").status_code == 200, view
            assert ben.get(f"/studio/api/jobs/{job_id}/{view}").status_code == 404, view
        buffer = io.BytesIO()
        Image.new("RGB", (64, 64), (200, 30, 30)).save(buffer, format="PNG")
        picture = base64.b64encode(buffer.getvalue()).decode()
        job_id = ann.post("/studio/api/jobs/img2img", json=dict(SMALL, init_images=[picture], denoising_strength=0.5,
                                                                 inspect=["cfg"])).json()["id"]
        assert _wait(ann, job_id)["status"] == "finished"
        start = ann.get(f"/studio/api/jobs/{job_id}/start").json()
        assert start["denoising_strength"] == 0.5 and start["steps"] == SMALL["steps"] // 2
        assert ben.get(f"/studio/api/jobs/{job_id}/start").status_code == 404
