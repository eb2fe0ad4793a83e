"""The A1111-compatible API: shapes, defaults, images and metadata equal to the engine's (the UI's) for the same
request and seed, and clear 4xx for what is not supported."""

import base64
import io
import json

import pytest
from PIL import Image
from server_support import SMALL, live_server, mask_b64, png_b64

from studio.metadata import read_infotext
from studio.contract import Finished, GenerationRequest


@pytest.fixture(scope="module")
def server(engine):
    with live_server(engine, users=None) as server:  # no logins: the single local user
        yield server


@pytest.fixture(scope="module")
def client(server):
    with server.client() as client:
        yield client


def _image(b64: str) -> Image.Image:
    image = Image.open(io.BytesIO(base64.b64decode(b64)))
    image.load()
    return image


def test_txt2img_shape_and_same_image_as_the_engine(client, engine):
    body = dict(SMALL, prompt="a red fox", negative_prompt="blur", seed=1234, cfg_scale=6.5, batch_size=2)
    response = client.post("/sdapi/v1/txt2img", json=body)
    assert response.status_code == 200, response.text
    data = response.json()
    assert set(data) == {"images", "parameters", "info"} and len(data["images"]) == 2
    assert data["parameters"]["prompt"] == "a red fox" and data["parameters"]["n_iter"] == 1
    info = json.loads(data["info"])
    assert info["all_seeds"] == [1234, 1235] and info["seed"] == 1234 and len(info["infotexts"]) == 2
    assert info["sd_model_name"] == "tiny" and info["width"] == 64
    first = _image(data["images"][0])
    assert read_infotext(first) == info["infotexts"][0]
    assert "Seed: 1234" in info["infotexts"][0] and "Negative prompt: blur" in info["infotexts"][0]
    direct = engine.generate(GenerationRequest("a red fox", "blur", seed=1234, steps=2, cfg_scale=6.5, sampler_name="Euler", width=64, height=64, batch_size=2))
    assert isinstance(direct, Finished)
    reference = Image.open(direct.images[0].path)
    assert reference.tobytes() == first.convert(reference.mode).tobytes()
    assert read_infotext(reference) == info["infotexts"][0]


def test_img2img_and_inpaint(client):
    body = dict(SMALL, prompt="x", seed=5, init_images=["data:image/png;base64," + png_b64()], denoising_strength=0.5)
    data = client.post("/sdapi/v1/img2img", json=body).json()
    assert len(data["images"]) == 1 and data["parameters"]["init_images"] is None
    assert "Denoising strength: 0.5" in json.loads(data["info"])["infotexts"][0]
    body.update(mask=mask_b64(), mask_blur=2, inpainting_mask_invert=0)
    response = client.post("/sdapi/v1/img2img", json=body)
    assert response.status_code == 200, response.text
    assert "Mask blur: 2" in json.loads(response.json()["info"])["infotexts"][0]


def test_png_info_round_trip(client):
    image = client.post("/sdapi/v1/txt2img", json=dict(SMALL, prompt="round trip", seed=9)).json()["images"][0]
    info = client.post("/sdapi/v1/png-info", json={"image": "data:image/png;base64," + image}).json()
    assert info["info"].startswith("round trip") and info["parameters"]["Seed"] == "9"
    assert client.post("/sdapi/v1/png-info", json={"image": "bm90IGFuIGltYWdl"}).status_code == 422


def test_listing_routes(client):
    samplers = client.get("/sdapi/v1/samplers").json()
    assert {"name": "Euler a", "aliases": ["k_euler_a"], "options": {}} in samplers
    assert [s["name"] for s in client.get("/sdapi/v1/schedulers").json()] == ["automatic", "uniform", "karras", "exponential", "sgm_uniform", "beta"]
    models = client.get("/sdapi/v1/sd-models").json()
    assert any(m["title"] == "tiny" and m["hash"] for m in models)
    assert client.post("/sdapi/v1/refresh-checkpoints").status_code == 200
    assert client.get("/sdapi/v1/options").json()["sd_model_checkpoint"] == "tiny"
    memory = client.get("/sdapi/v1/memory").json()
    assert memory["ram"]["total"] > 0 and "cuda" in memory
    idle = client.get("/sdapi/v1/progress").json()
    assert set(idle) >= {"progress", "eta_relative", "state", "current_image", "textinfo"}
    assert set(idle["state"]) >= {"skipped", "interrupted", "job", "job_count", "job_timestamp", "job_no", "sampling_step", "sampling_steps"}


def test_scheduler_and_override_settings(client):
    data = client.post("/sdapi/v1/txt2img", json=dict(SMALL, sampler_name="DPM++ 2M", scheduler="Karras", override_settings={"sd_model_checkpoint": "tiny"})).json()
    assert "Schedule type: Karras" in json.loads(data["info"])["infotexts"][0]


@pytest.mark.parametrize(
    "change, words",
    [
        ({"enable_hr": True, "hr_upscaler": "No such upscaler"}, "No such upscaler"),
        ({"enable_hr": True, "hr_scale": 9}, "hr_scale"),
        ({"subseed_strength": 1.5}, "subseed_strength"),
        ({"restore_faces": True}, "models/GFPGAN"),
        ({"alwayson_scripts": {"ControlNet": {"args": [{"enabled": True}]}}}, "ControlNet"),
        ({"enable_hr": True, "hr_checkpoint_name": "other.safetensors"}, "hr_checkpoint_name"),
        ({"sampler_name": "Nope"}, "Unknown sampler"),
        ({"scheduler": "polynomial"}, "Unknown scheduler"),
        ({"sampler_name": "Euler a", "scheduler": "karras"}, "no Karras schedule"),
        ({"width": 65}, "multiple of 8"),
        ({"steps": 0}, "steps"),
        ({"override_settings": {"CLIP_stop_at_last_layers": 1.5}}, "CLIP_stop_at_last_layers"),
        ({"override_settings": {"sd_vae": 3}}, "sd_vae"),
    ],
)
def test_unsupported_or_bad_fields_are_clear_4xx(client, change, words):
    response = client.post("/sdapi/v1/txt2img", json=dict(SMALL, **change))
    assert response.status_code == 422 and words in response.json()["detail"], response.text


def test_send_images_false_and_unknown_fields_ignored(client):
    data = client.post("/sdapi/v1/txt2img", json=dict(SMALL, send_images=False, some_future_field=1, script_args=[])).json()
    assert data["images"] == [] and json.loads(data["info"])["all_seeds"]
