"""The web UI's API endpoints through gradio_client against the whole studio app: /txt2img, /img2img and /inpaint
start a job whose live stream (the studio's own route) carries previews before the end, deliver the saved PNG
files losslessly (pixel-equal to the engine's own result for the same request) from the studio's file route, and
bad input comes back as the engine's message."""

from __future__ import annotations

import json
import re
import threading

import httpx
import numpy as np
import pytest
from PIL import Image

from studio.metadata import read_infotext
from studio.contract import Finished, GenerationRequest

from tests.ui_support import launch_studio, make_input_png, make_mask_png

gradio_client = pytest.importorskip("gradio_client")

COMMON = dict(prompt="a lighthouse at dusk", negative_prompt="blurry", steps=6, cfg_scale=7.0, seed=1234,
              sampler_name="Euler a", batch_size=1)


@pytest.fixture(scope="module")
def server(engine):
    with launch_studio(engine) as server:
        yield server


@pytest.fixture(scope="module")
def client(server):
    return gradio_client.Client(server.url + "/", verbose=False)


def _is_update(value) -> bool:
    return isinstance(value, dict) and value.get("__type__") == "update"


def read_stream(base_url: str, stream_path: str, events: list, headers=None) -> None:
    """Every (event, data) of a job's live stream until its end."""
    with httpx.Client(base_url=base_url, headers=headers or {}, timeout=60) as http:
        with http.stream("GET", stream_path) as response:
            assert response.status_code == 200, response.status_code
            kind = None
            for line in response.iter_lines():
                if line.startswith("event: "):
                    kind = line[7:]
                elif line.startswith("data: "):
                    events.append((kind, json.loads(line[6:])))
                    if kind in ("finished", "failed", "cancelled"):
                        return


def _stream(server, client, api_name: str, **kwargs):
    """(the job's live-stream events, the final output tuple of the Gradio endpoint)."""
    job = client.submit(api_name=api_name, **kwargs)
    events, reader = [], None
    outputs = []
    for out in job:  # every streamed update, in order
        outputs.append(out)
        live = out[0] if isinstance(out[0], str) else ""
        match = re.search(r"data-stream='([^']+)'", live)
        if match and reader is None:
            reader = threading.Thread(target=read_stream, args=(server.url, match.group(1), events))
            reader.start()
    job.result()
    assert reader is not None, "the endpoint never named its live stream"
    reader.join(60)
    final = next(out for out in outputs if out[2] and not _is_update(out[2]))
    return events, final


def _previews_before_the_end(events) -> int:
    kinds = [kind for kind, _ in events]
    assert kinds[-1] == "finished", kinds
    return kinds.count("preview")


def _final_png(final) -> str:
    gallery, infotext, downloads = final[2], final[3], final[4]
    assert len(gallery) == 1
    path = gallery[0]["image"]  # gradio_client fetched it from the studio's file route
    assert path.endswith(".png")
    assert "/studio/files/" in downloads and "/gradio_api/file" not in downloads
    with Image.open(path) as image:
        assert read_infotext(image) == infotext
    return path


def _engine_png(engine, request: GenerationRequest) -> str:
    result = engine.generate(request)
    assert isinstance(result, Finished), result
    return result.images[0].path


def _assert_same_pixels(a: str, b: str) -> None:
    with Image.open(a) as x, Image.open(b) as y:
        assert x.size == y.size
        assert np.array_equal(np.asarray(x.convert("RGB")), np.asarray(y.convert("RGB")))


def test_api_lists_the_three_endpoints_with_a1111_names(client):
    api = client.view_api(print_info=False, return_format="dict")["named_endpoints"]
    names = {endpoint: [p["parameter_name"] for p in api[endpoint]["parameters"]] for endpoint in ("/txt2img", "/img2img", "/inpaint")}
    common = ["prompt", "negative_prompt", "sampler_name", "steps", "cfg_scale", "width", "height", "seed", "batch_size"]
    for endpoint, params in names.items():
        assert set(common) <= set(params), endpoint
    assert {"init_image", "denoising_strength"} <= set(names["/img2img"])
    assert {"init_image", "mask", "denoising_strength", "mask_blur"} <= set(names["/inpaint"])


def test_txt2img_streams_previews_then_the_engines_png(server, client, engine):
    events, final = _stream(server, client, "/txt2img", width=64, height=64, **COMMON)
    assert _previews_before_the_end(events) >= 1, "no preview streamed before the final image"
    path = _final_png(final)
    request = GenerationRequest(width=64, height=64, **COMMON)
    _assert_same_pixels(path, _engine_png(engine, request))


def test_img2img_streams_previews_then_the_engines_png(server, client, engine, tmp_path):
    init = make_input_png(tmp_path / "init.png")
    events, final = _stream(server, client, "/img2img", init_image=gradio_client.handle_file(str(init)), denoising_strength=0.7,
                              width=0, height=0, **COMMON)
    assert _previews_before_the_end(events) >= 1
    path = _final_png(final)
    request = GenerationRequest(init_image=Image.open(init).convert("RGB"), denoising_strength=0.7, **COMMON)
    _assert_same_pixels(path, _engine_png(engine, request))


def test_inpaint_streams_previews_then_the_engines_png(server, client, engine, tmp_path):
    init = make_input_png(tmp_path / "init.png")
    mask = make_mask_png(tmp_path / "mask.png")
    events, final = _stream(server, client, "/inpaint", init_image=gradio_client.handle_file(str(init)),
                              mask=gradio_client.handle_file(str(mask)), denoising_strength=0.8, mask_blur=2,
                              width=0, height=0, **COMMON)
    assert _previews_before_the_end(events) >= 1
    path = _final_png(final)
    request = GenerationRequest(init_image=Image.open(init).convert("RGB"), mask=Image.open(mask).convert("L"),
                                denoising_strength=0.8, mask_blur=2, **COMMON)
    _assert_same_pixels(path, _engine_png(engine, request))
    # the engine pasted the untouched pixels back: far from the mask, the input survives
    with Image.open(path) as out, Image.open(init) as original:
        assert out.convert("RGB").getpixel((2, 2)) == original.convert("RGB").getpixel((2, 2))


@pytest.mark.parametrize(
    "overrides, message",
    [
        (dict(width=100), "width must be a multiple of 8, got 100."),
        (dict(sampler_name="Nope"), "Unknown sampler 'Nope'."),
        (dict(seed=-5), "seed must be -1 (random)"),
    ],
)
def test_bad_input_returns_the_engines_message(client, overrides, message):
    kwargs = dict(COMMON, width=64, height=64)
    kwargs.update(overrides)
    with pytest.raises(Exception) as raised:
        client.predict(api_name="/txt2img", **kwargs)
    assert message in str(raised.value)
    assert "Traceback" not in str(raised.value)


def test_img2img_without_an_image_says_so(client):
    with pytest.raises(Exception) as raised:
        client.predict(api_name="/img2img", init_image=None, **dict(COMMON, width=64, height=64))
    assert "input image" in str(raised.value)


def test_inpaint_with_an_empty_mask_returns_the_engines_message(client, tmp_path):
    init = make_input_png(tmp_path / "init.png")
    empty = tmp_path / "empty.png"
    Image.new("L", (64, 64), 0).save(empty)
    with pytest.raises(Exception) as raised:
        client.predict(api_name="/inpaint", init_image=gradio_client.handle_file(str(init)),
                       mask=gradio_client.handle_file(str(empty)), **COMMON)
    assert "The mask is empty" in str(raised.value)
