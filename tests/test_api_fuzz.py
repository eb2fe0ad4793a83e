"""Bad input over HTTP, property-based: whatever the body, the answer is a 4xx with a clear message (or a cheap
success), never a 500 or a traceback, and the server keeps serving."""

import base64
import io
import json
import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from server_support import SMALL, live_server, mask_b64, png_b64

TRIED = {"count": 0, "statuses": {}}


@pytest.fixture(scope="module")
def client(engine):
    with live_server(engine, users=None) as server, server.client(timeout=60) as client:
        yield client
    print(f"\nfuzz: {TRIED['count']} inputs tried over HTTP, answers {dict(sorted(TRIED['statuses'].items()))}")


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _png(size, mode="RGB") -> str:
    buffer = io.BytesIO()
    Image.new(mode, size).save(buffer, format="PNG")
    return _b64(buffer.getvalue())


weird_numbers = st.one_of(
    st.sampled_from([math.nan, math.inf, -math.inf, -1, 0, 1e308, -(2**70), 2**70, 7.5, 9, 4096, 100000]),
    st.integers(-(2**40), 2**40),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=5),
    st.none(),
    st.booleans(),
    st.lists(st.integers(), max_size=2),
)
bad_images = st.one_of(
    st.sampled_from(["", "!!!notbase64!!!", "data:image/png;base64,", _b64(b"not an image at all"), _b64(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)]),
    st.binary(max_size=64).map(_b64),
    st.just(_png((1, 1))),
    st.just(_png((4, 300))),
    st.sampled_from([None, 3, [], {"a": 1}]),
)
# a PNG header that claims to be 100000 × 100000 (a decompression bomb): refused before decoding
_BOMB = bytearray(base64.b64decode(_png((8, 8))))
_BOMB[16:24] = (100000).to_bytes(4, "big") * 2
bad_images = st.one_of(bad_images, st.just(_b64(bytes(_BOMB))))

FIELDS = ["steps", "width", "height", "cfg_scale", "seed", "batch_size", "n_iter", "denoising_strength", "subseed_strength", "mask_blur"]


@st.composite
def bad_bodies(draw):
    body = dict(SMALL, prompt="fuzz")
    kind = draw(st.sampled_from(["number", "sampler", "prompt", "image", "mask", "type", "shape"]))
    img2img = kind in ("image", "mask") or draw(st.booleans())
    if img2img:
        body.update(init_images=[png_b64()], denoising_strength=0.5)
    if kind == "number":
        for field in draw(st.lists(st.sampled_from(FIELDS), min_size=1, max_size=3, unique=True)):
            body[field] = draw(weird_numbers)
    elif kind == "sampler":
        body[draw(st.sampled_from(["sampler_name", "scheduler"]))] = draw(st.one_of(st.text(max_size=30), st.integers(), st.none()))
    elif kind == "prompt":
        body["prompt"] = draw(st.one_of(st.just("x" * 200_001), st.text(max_size=50), st.integers(), st.lists(st.text(max_size=3), max_size=2)))
        body["negative_prompt"] = draw(st.one_of(st.just("y" * 30_000), st.text(max_size=10), st.none()))
    elif kind == "image":
        body["init_images"] = draw(st.one_of(bad_images.map(lambda b: [b]), st.just([]), st.just("notalist")))
    elif kind == "mask":
        body["mask"] = draw(st.one_of(bad_images, st.just(mask_b64((200, 8))), st.just(_png((64, 64), "L"))))  # all black: empty
        body["inpainting_mask_invert"] = draw(st.sampled_from([0, 1, 7, "x"]))
    elif kind == "type":
        body[draw(st.sampled_from(["override_settings", "styles", "send_images", "enable_hr", "resize_mode"]))] = draw(weird_numbers)
    return ("img2img" if img2img else "txt2img"), body


def _check(client, path, content: bytes):
    response = client.post(path, content=content, headers={"content-type": "application/json"})
    TRIED["count"] += 1
    TRIED["statuses"][response.status_code] = TRIED["statuses"].get(response.status_code, 0) + 1
    assert response.status_code < 500, (response.status_code, response.text[:300], content[:300])
    assert "Traceback" not in response.text
    if response.status_code >= 400:
        detail = response.json()["detail"]
        assert isinstance(detail, str) and detail.strip()
    return response


@settings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
@given(bad_bodies())
def test_bad_generation_bodies_get_4xx(client, case):
    route, body = case
    _check(client, f"/sdapi/v1/{route}", json.dumps(body, allow_nan=True).encode())


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
@given(st.one_of(
    st.binary(max_size=200),
    st.just(b"[" * 100_000 + b"]" * 100_000),
    st.just(b'{"prompt": ' + b'{"a": ' * 5000 + b"1" + b"}" * 5001),
    st.just(b"[]"),
    st.just(b"null"),
    st.just(b'"text"'),
    st.just(b'{"steps": NaN, "width": Infinity}'),
), st.sampled_from(["txt2img", "img2img", "png-info", "options"]))
def test_broken_json_gets_4xx(client, raw, route):
    _check(client, f"/sdapi/v1/{route}", raw)


def test_png_info_bad_images(client):
    for image in ["", "@@@", _b64(b"GIF89a"), _b64(bytes(_BOMB)), None, 5]:
        _check(client, "/sdapi/v1/png-info", json.dumps({"image": image}).encode())


def test_server_still_serves_after_fuzzing(client):
    response = client.post("/sdapi/v1/txt2img", json=dict(SMALL, prompt="still alive"))
    assert response.status_code == 200 and len(response.json()["images"]) == 1
