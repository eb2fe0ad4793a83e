"""A1111's Extras (extra-single-image, extra-batch-images) and interrogate through the live server, with logins:
the picture back untouched when nothing is asked, Lanczos and a tiny ESRGAN model (tests/support/esrgan_files.py)
blended with a second upscaler, exact sizes when scaling to a size, and clear 422s (or 429) before any work."""

from __future__ import annotations

import base64
import io
import threading
import time

import numpy as np
import pytest
from PIL import Image, PngImagePlugin
from server_support import live_server

from studio import extras
from studio.config import Settings
from studio.extras import ExtrasBusyError, ExtrasGate, ExtrasRequest, run_extras
from tests.support.esrgan_files import esrgan_tensors, write_model

SINGLE, BATCH, INTERROGATE = "/sdapi/v1/extra-single-image", "/sdapi/v1/extra-batch-images", "/sdapi/v1/interrogate"


@pytest.fixture(scope="module")
def upscaler_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("models") / "ESRGAN"
    write_model(folder / "2x_tiny.safetensors", esrgan_tensors(scale=2))
    return folder


@pytest.fixture(scope="module")
def tiny_settings(tmp_path_factory, studio_cache, upscaler_dir):
    """This module's engine reads the upscaler folder above (conftest's engine fixture builds on this)."""
    return Settings(model="tiny", outputs=tmp_path_factory.mktemp("outputs"), cache_dir=studio_cache, warmup=False,
                    upscaler_dir=upscaler_dir, max_size=1024)


@pytest.fixture(scope="module")
def server(engine):
    with live_server(engine) as server:  # with logins
        yield server


@pytest.fixture(scope="module")
def client(server):
    with server.client("alice") as client:
        yield client


def _picture(width: int = 64, height: int = 48, seed: int = 0) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8))


def _b64(image: Image.Image, parameters: str | None = None) -> str:
    buffer = io.BytesIO()
    info = PngImagePlugin.PngInfo()
    if parameters:
        info.add_text("parameters", parameters)
    image.save(buffer, format="PNG", pnginfo=info)
    return base64.b64encode(buffer.getvalue()).decode()


def _image(b64: str) -> Image.Image:
    image = Image.open(io.BytesIO(base64.b64decode(b64)))
    image.load()
    return image


def _pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB")).astype(int)


def _single(client, picture: Image.Image, **fields):
    return client.post(SINGLE, json=dict(image=_b64(picture), **fields))


def test_only_an_image_comes_back_unchanged(client):
    picture = _picture()
    response = _single(client, picture)
    assert response.status_code == 200, response.text
    data = response.json()
    out = _image(data["image"])
    assert out.size == picture.size and np.array_equal(_pixels(out), _pixels(picture))
    assert data["html_info"] == "<p></p>" and "parameters" not in out.info


def test_lanczos_scale_by_2_doubles_the_size_and_says_so(client, engine):
    picture = _picture()
    data = _single(client, picture, upscaler_1="Lanczos", upscaling_resize=2).json()
    out = _image(data["image"])
    assert out.size == (128, 96)
    assert np.array_equal(_pixels(out), _pixels(picture.resize((128, 96), Image.Resampling.LANCZOS)))
    text = "Postprocess upscale by: 2, Postprocess upscaler: Lanczos"
    assert data["html_info"] == f"<p>{text}</p>"
    assert out.info["parameters"] == text and out.info["postprocessing"] == text


def test_the_inputs_own_parameters_are_kept(client):
    data = client.post(SINGLE, json={"image": _b64(_picture(), "a cat\nSteps: 20, Seed: 1, Size: 64x48"),
                                     "upscaler_1": "Nearest", "upscaling_resize": 1.5}).json()
    out = _image(data["image"])
    assert out.info["parameters"].startswith("a cat") and out.info["postprocessing"].endswith("Postprocess upscaler: Nearest")
    assert out.size == (96, 72)


@pytest.mark.parametrize("crop", [True, False])
def test_scale_to_a_size_gives_it_exactly(client, engine, crop):
    picture = _picture()
    data = _single(client, picture, resize_mode=1, upscaling_resize_w=100, upscaling_resize_h=60, upscaling_crop=crop,
                   upscaler_1="Lanczos").json()
    out = _image(data["image"])
    assert out.size == (100, 60)
    if crop:  # scaled by max(100/64, 60/48) to cover 100×75 (as A1111's resize_image), then the centre cut out
        expected = engine.upscalers.upscale(picture, None, 100, 75, "Lanczos").crop((0, 7, 100, 67))
        assert np.array_equal(_pixels(out), _pixels(expected))
        assert data["html_info"] == "<p>Postprocess upscale to: 100x60, Postprocess crop to: 100x60, Postprocess upscaler: Lanczos</p>"
    else:
        assert data["html_info"] == "<p>Postprocess upscale to: 100x60, Postprocess upscaler: Lanczos</p>"


def test_an_esrgan_model_blended_with_lanczos(client, engine):
    picture = _picture(32, 32, seed=2)
    data = _single(client, picture, upscaler_1="2x_tiny", upscaler_2="Lanczos", extras_upscaler_2_visibility=0.5).json()
    out = _image(data["image"])
    assert out.size == (64, 64)
    model = engine.upscalers.upscale(picture, 2, name="2x_tiny")
    expected = Image.blend(model, picture.resize((64, 64), Image.Resampling.LANCZOS), 0.5)
    assert np.abs(_pixels(out) - _pixels(expected)).max() <= 1
    assert data["html_info"] == "<p>Postprocess upscale by: 2, Postprocess upscaler: 2x_tiny, Postprocess upscaler 2: Lanczos</p>"


def test_a_batch_of_two(client):
    body = {"imageList": [{"data": _b64(_picture(seed=1)), "name": "a.png"}, {"data": _b64(_picture(32, 32, seed=3)), "name": "b.png"}],
            "upscaler_1": "Lanczos", "upscaling_resize": 2}
    data = client.post(BATCH, json=body).json()
    assert [_image(b64).size for b64 in data["images"]] == [(128, 96), (64, 64)]
    assert "Postprocess upscaler: Lanczos" in data["html_info"]


@pytest.mark.parametrize("route, body, words", [
    (SINGLE, {"upscaler_1": "4x-Nothing"}, "'4x-Nothing' is not there"),
    (SINGLE, {"upscaler_1": "Lanczos", "upscaler_2": "2x_nope", "extras_upscaler_2_visibility": 0.3}, "'2x_nope'"),
    (SINGLE, {"upscaler_1": "Latent (bicubic)"}, "hires fix only"),
    (SINGLE, {"upscaler_1": "Lanczos", "gfpgan_visibility": 1}, "models/GFPGAN"),
    (SINGLE, {"upscaler_1": "Lanczos", "codeformer_visibility": 0.5}, "models/Codeformer"),
    (SINGLE, {"upscaler_1": "Lanczos", "extras_upscaler_2_visibility": 1.5}, "extras_upscaler_2_visibility"),
    (SINGLE, {"upscaler_1": "Lanczos", "resize_mode": 2}, "resize_mode"),
    (SINGLE, {"upscaler_1": "Lanczos", "upscaling_resize": 0}, "upscaling_resize"),
    (SINGLE, {"upscaler_1": "Lanczos", "upscaling_resize": 1e300}, "at most 64"),
    (SINGLE, {"upscaler_1": "Lanczos", "resize_mode": 1, "upscaling_resize_w": 10**40}, "upscaling_resize_w"),
    (SINGLE, {"image": "bm90IGFuIGltYWdl"}, "is not an image"),
    (SINGLE, {"image": ""}, "base64"),
    (BATCH, {"imageList": []}, "at least one"),
])
def test_bad_requests_are_clear_422s(client, route, body, words):
    if route == SINGLE:
        body = {"image": _b64(_picture()), **body}
    response = client.post(route, json=body)
    assert response.status_code == 422 and words in response.json()["detail"], response.text


def test_interrogate_says_no_captioning_model_is_installed(client, engine, tmp_path, monkeypatch):
    from studio import interrogate

    # no --caption-model here; the engine's captioner is made one whose model cannot be in this machine's cache
    monkeypatch.setattr(engine, "captioner", interrogate.Captioner(str(tmp_path / "no-captioning-model")))
    for model in ("clip", "deepdanbooru"):
        response = client.post(INTERROGATE, json={"image": _b64(_picture()), "model": model})
        assert response.status_code == 422 and "no captioning model is installed" in response.json()["detail"]
    response = client.post(INTERROGATE, json={"image": _b64(_picture()), "model": "blip2"})
    assert response.status_code == 422 and "'blip2'" in response.json()["detail"]


def test_too_big_is_refused_before_any_work(client, engine, monkeypatch):
    calls = []
    monkeypatch.setattr(engine.upscalers, "upscale", lambda *args, **kwargs: calls.append(args))
    for upscaler, fields, words in (
        ("2x_tiny", {"upscaling_resize": 20}, "1280×960, over this server's limit of 1024 pixels a side"),
        ("Lanczos", {"upscaling_resize": 17}, "1088×816"),
        ("2x_tiny", {"resize_mode": 1, "upscaling_resize_w": 2048, "upscaling_resize_h": 64, "upscaling_crop": False}, "2048×64"),
        ("Lanczos", {"resize_mode": 1, "upscaling_resize_w": 4, "upscaling_resize_h": 64}, "upscaling_resize_w must be at least 8"),
    ):
        response = _single(client, _picture(), upscaler_1=upscaler, **fields)
        assert response.status_code == 422 and words in response.json()["detail"], response.text
    assert calls == []


def test_the_pixel_limits_hold_for_the_result_and_the_crop(engine):
    settings = Settings(max_size=100_000, max_image_pixels=200 * 200)
    library = engine.upscalers
    with pytest.raises(extras.ExtrasError, match="40,000 pixels"):
        run_extras(library, ExtrasRequest(_picture(), upscaler_1="Lanczos", upscaling_resize=4), settings=settings)
    with pytest.raises(extras.ExtrasError, match="Cropping to 100×100 needs"):  # a wide picture cropped square
        run_extras(library, ExtrasRequest(_picture(640, 8), resize_mode=1, upscaling_resize_w=100, upscaling_resize_h=100,
                                          upscaler_1="Lanczos"), settings=settings)


def test_a_batch_over_the_cap_is_refused(client):
    item = {"data": _b64(_picture(8, 8)), "name": "x.png"}
    response = client.post(BATCH, json={"imageList": [item] * (extras.MAX_BATCH_IMAGES + 1), "upscaler_1": "Lanczos"})
    assert response.status_code == 422 and f"at most {extras.MAX_BATCH_IMAGES}" in response.json()["detail"]


def test_a_busy_slot_is_a_429_with_retry_after(client, engine, monkeypatch):
    monkeypatch.setattr(engine.extras_gate, "wait_seconds", 0.1)
    with engine.extras_gate.hold():
        response = _single(client, _picture(), upscaler_1="Lanczos")
    assert response.status_code == 429 and response.headers["Retry-After"] and "Extras" in response.json()["detail"]
    assert _single(client, _picture(), upscaler_1="Lanczos").status_code == 200


def test_the_gate_runs_one_job_and_lets_few_wait():
    gate = ExtrasGate(wait_seconds=5, max_waiting=1)
    inside, release, outcomes = threading.Event(), threading.Event(), []

    def first():
        with gate.hold():
            inside.set()
            release.wait(5)

    def second():
        try:
            with gate.hold():
                outcomes.append("ran")
        except ExtrasBusyError:
            outcomes.append("busy")

    holder = threading.Thread(target=first)
    holder.start()
    inside.wait(5)
    waiter = threading.Thread(target=second)
    waiter.start()
    while gate.waiting == 0:  # the waiter is in line
        time.sleep(0.001)
    with pytest.raises(ExtrasBusyError, match="busy"):  # a third caller: nobody else may wait
        with gate.hold():
            pass
    release.set()
    holder.join(5)
    waiter.join(5)
    assert outcomes == ["ran"]
    quick = ExtrasGate(wait_seconds=0.05)
    with quick.hold():
        with pytest.raises(ExtrasBusyError, match="0.05 s"):
            with quick.hold():
                pass


def test_a_stranger_is_refused(server):
    with server.client() as stranger:
        assert stranger.post(SINGLE, json={"image": _b64(_picture())}).status_code == 401
        assert stranger.post(INTERROGATE, json={"image": _b64(_picture())}).status_code == 401
