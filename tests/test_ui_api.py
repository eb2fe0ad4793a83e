"""The web UI's API endpoints through gradio_client against a launched app: /txt2img, /img2img and /inpaint stream
previews before the final images, deliver the saved PNG files losslessly (pixel-equal to the engine's own result for
the same request), and bad input comes back as the engine's message."""

from __future__ import annotations


import numpy as np
import pytest
from PIL import Image

from studio.metadata import read_infotext
from studio.requests import Finished, GenerationRequest

from tests.ui_support import launch_ui, make_input_png, make_mask_png

gradio_client = pytest.importorskip("gradio_client")

COMMON = dict(prompt="a lighthouse at dusk", negative_prompt="blurry", steps=6, cfg_scale=7.0, seed=1234,
              sampler_name="Euler a", batch_size=1)


@pytest.fixture(scope="module")
def client(engine):
    blocks, url = launch_ui(engine)
    try:
        yield gradio_client.Client(url, verbose=False)
    finally:
        blocks.close()


def _is_update(value) -> bool:
    return isinstance(value, dict) and value.get("__type__") == "update"


def _stream(client, api_name: str, **kwargs):
    """(previews seen before the final result, the final output tuple)."""
    job = client.submit(api_name=api_name, **kwargs)
    outputs = list(job)  # every streamed update, in order
    job.result()
    assert outputs, "no streamed output"
    final_index = next(i for i, out in enumerate(outputs) if out[2] and not _is_update(out[2]))
    previews = [out[0] for out in outputs[:final_index] if out[0] and not _is_update(out[0])]
    return previews, outputs[final_index]


def _final_png(final) -> str:
    gallery, infotext, files = final[2], final[3], final[4]
    assert len(gallery) == 1 and len(files) == 1
    path = gallery[0]["image"]
    assert path.endswith(".png") and files[0].endswith(".png")
    with open(path, "rb") as a, open(files[0], "rb") as b:
        assert a.read() == b.read()  # the gallery and the download are the same file
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


def test_txt2img_streams_previews_then_the_engines_png(client, engine):
    previews, final = _stream(client, "/txt2img", width=64, height=64, **COMMON)
    assert len(previews) >= 1, "no preview streamed before the final image"
    path = _final_png(final)
    request = GenerationRequest(width=64, height=64, **COMMON)
    _assert_same_pixels(path, _engine_png(engine, request))


def test_img2img_streams_previews_then_the_engines_png(client, engine, tmp_path):
    init = make_input_png(tmp_path / "init.png")
    previews, final = _stream(client, "/img2img", init_image=gradio_client.handle_file(str(init)), denoising_strength=0.7,
                              width=0, height=0, **COMMON)
    assert len(previews) >= 1
    path = _final_png(final)
    request = GenerationRequest(init_image=Image.open(init).convert("RGB"), denoising_strength=0.7, **COMMON)
    _assert_same_pixels(path, _engine_png(engine, request))


def test_inpaint_streams_previews_then_the_engines_png(client, engine, tmp_path):
    init = make_input_png(tmp_path / "init.png")
    mask = make_mask_png(tmp_path / "mask.png")
    previews, final = _stream(client, "/inpaint", init_image=gradio_client.handle_file(str(init)),
                              mask=gradio_client.handle_file(str(mask)), denoising_strength=0.8, mask_blur=2,
                              width=0, height=0, **COMMON)
    assert len(previews) >= 1
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
