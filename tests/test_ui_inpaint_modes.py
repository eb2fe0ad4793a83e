"""The Inpainting tab's A1111 options and outpainting, without a server: "Masked content", "Inpaint area" and "Only
masked padding" reach the request; "Extend canvas" puts the picture on a larger canvas with the editor's mask over the
new area (and says clearly what is wrong with a side that is not a multiple of 8); the translucent brush's strokes,
however faint, are read as mask; the new inputs come last in the handlers' inputs."""

from __future__ import annotations

import subprocess
import sys

import pytest
from PIL import Image

from studio.contract import GenerationRequest, RequestError
from studio.ui import inpaint

FIELDS = ("a red door", "", "Euler a", 12, 7.0, 0, 0, 5, 1, 1, "tiny", [], 1, "Automatic", "Automatic", False, False)


def picture(size=(64, 48), colour=(200, 40, 40)) -> Image.Image:
    return Image.new("RGB", size, colour)


def painted(size=(64, 48), box=(8, 8, 24, 24), alpha=128) -> Image.Image:
    """A paint layer as the editor sends it: the brush's translucent white over `box`, transparent elsewhere."""
    layer = Image.new("RGBA", size, (0, 0, 0, 0))
    layer.paste((255, 255, 255, alpha), box)
    return layer


def request(**options) -> GenerationRequest:
    mask = Image.new("L", (64, 48), 0)
    mask.paste(255, (8, 8, 24, 24))
    return inpaint.inpaint_request(FIELDS, picture(), mask, 0.75, 4, False, **options)


# ---- A1111's inpainting options


def test_the_default_controls_are_a1111s_ui_defaults():
    req = request()
    assert (req.inpainting_fill, req.inpaint_full_res, req.inpaint_full_res_padding) == (1, False, 32)


@pytest.mark.parametrize("value, expected", [(0, 0), (1, 1), (2, 2), (3, 3), (2.0, 2), ("fill", 0), ("latent noise", 2),
                                             ("latent nothing", 3)])
def test_masked_content_reaches_the_request_as_a1111s_index(value, expected):
    assert request(inpainting_fill=value).inpainting_fill == expected


@pytest.mark.parametrize("value, expected", [(0, False), (1, True), ("Whole picture", False), ("Only masked", True),
                                             (True, True)])
def test_inpaint_area_reaches_the_request_as_a_bool(value, expected):
    req = request(inpaint_full_res=value)
    assert req.inpaint_full_res is expected


def test_only_masked_padding_reaches_the_request_as_whole_pixels():
    req = request(inpaint_full_res=1, inpaint_full_res_padding=96.0)
    assert req.inpaint_full_res_padding == 96 and isinstance(req.inpaint_full_res_padding, int)
    assert request(inpaint_full_res_padding=0).inpaint_full_res_padding == 0


@pytest.mark.parametrize("options, words", [(dict(inpainting_fill=4), ("Masked content", "1 (original)")),
                                            (dict(inpainting_fill="smudge"), ("Masked content", "3 (latent nothing)")),
                                            (dict(inpaint_full_res="Somewhere"), ("Inpaint area", "1 (Only masked)"))])
def test_a_bad_choice_is_refused_with_the_choices(options, words):
    with pytest.raises(RequestError) as caught:
        request(**options)
    assert all(word in str(caught.value) for word in words), str(caught.value)


def test_the_radios_offer_a1111s_names_with_its_api_values():
    assert inpaint.MASKED_CONTENT_CHOICES == [("fill", 0), ("original", 1), ("latent noise", 2), ("latent nothing", 3)]
    assert inpaint.INPAINT_AREA_CHOICES == [("Whole picture", 0), ("Only masked", 1)]


# ---- the mask the brush paints


def test_a_translucent_stroke_is_read_as_mask():
    value = {"background": picture(), "layers": [painted(alpha=127)], "composite": None}
    init, mask = inpaint.mask_from_editor(value)
    assert init.size == (64, 48) and init.mode == "RGB"
    assert mask.getpixel((10, 10)) == 255 and mask.getpixel((23, 23)) == 255  # the stroke, half transparent
    assert mask.getpixel((30, 30)) == 0 and mask.getpixel((7, 7)) == 0  # nothing painted there
    assert mask.getbbox() == (8, 8, 24, 24)


def test_a_faint_stroke_edge_is_mask_too():
    init, mask = inpaint.mask_from_editor({"background": picture(), "layers": [painted(alpha=3)]})
    assert mask.getbbox() == (8, 8, 24, 24) and mask.getpixel((8, 8)) == 255


def test_the_brush_is_translucent_white_and_fixed():
    brush = inpaint.MASK_COLOUR, inpaint.MASK_OPACITY
    assert brush == ("#ffffff", 0.5)
    layer = inpaint.mask_layer(Image.new("L", (4, 4), 0).point(lambda v: 255))
    assert layer.getpixel((0, 0)) == (255, 255, 255, 128)


# ---- outpainting: Extend canvas


def test_extend_canvas_gives_the_larger_picture_and_masks_the_new_area():
    value = {"background": picture(), "layers": [painted()], "composite": None}
    out = inpaint.extend_canvas(value, 16.0, 0, 8, None, "edge", max_size=1024)
    canvas, (layer,) = out["background"], out["layers"]
    assert canvas.size == (64 + 16, 48 + 8) and layer.size == canvas.size
    assert canvas.getpixel((16 + 32, 8 + 24)) == (200, 40, 40)  # the picture, moved right and down
    _, mask = inpaint.mask_from_editor(out)  # what Generate reads from the editor
    assert mask.getpixel((0, 30)) == 255 and mask.getpixel((40, 0)) == 255  # the new strips
    assert mask.getpixel((16 + 4, 30)) == 255  # the seam, 8 pixels into the picture
    assert mask.getpixel((16 + 32, 8 + 24)) == 0 and mask.getpixel((16 + 60, 8 + 40)) == 0  # the picture away from it
    assert mask.getpixel((16 + 10, 8 + 10)) == 0  # the old painted mask is gone
    assert out["composite"].size == canvas.size


def test_extend_canvas_keeps_the_hand_over():
    seen = []
    out = inpaint.extend_canvas({"background": picture(), "layers": []}, 0, 8, 0, 0, "black", max_size=1024,
                                hand_over=lambda p: seen.append(p.size) or "stored.png")
    assert out == {"background": "stored.png", "layers": ["stored.png"], "composite": "stored.png"}
    assert seen == [(72, 48)] * 3


@pytest.mark.parametrize("sides, words", [((12, 0, 0, 0), "left must be a whole number of pixels, a multiple of 8"),
                                          ((0, 0, 0, 8.5), "down must be"),
                                          ((0, 0, 0, 0), "at least one side"),
                                          ((0, 2048, 0, 0), "over the server's limit")])
def test_extend_canvas_says_what_is_wrong(sides, words):
    with pytest.raises(RequestError) as caught:
        inpaint.extend_canvas({"background": picture(), "layers": []}, *sides, "edge", max_size=1024)
    assert words in str(caught.value)


def test_extend_canvas_without_a_picture_says_so():
    with pytest.raises(RequestError, match="Add an image"):
        inpaint.extend_canvas(None, 8, 0, 0, 0, "edge", max_size=1024)


# ---- the tab: controls, the handlers' inputs, no torch


def test_the_tab_has_the_controls_and_passes_them_last(engine):
    import gradio as gr

    from studio.service import JobService
    from studio.ui.streaming import Services, Session

    with gr.Blocks() as blocks:
        session = gr.State(Session())
        panel = inpaint.build(Services(JobService.for_operator(engine)), session)
    x = panel.extra
    assert x["inpainting_fill"].value == 1 and x["inpainting_fill"].label == "Masked content"
    assert x["inpaint_full_res"].value == 0 and x["inpaint_full_res"].label == "Inpaint area"
    pad = x["inpaint_full_res_padding"]
    assert (pad.minimum, pad.maximum, pad.value, pad.label) == (0, 256, 32, "Only masked padding, pixels")
    assert [(n.minimum, n.maximum, n.step, n.value) for n in x["outpaint_sides"]] == [(0, 1024, 8, 0)] * 4
    brush = x["editor"].brush
    assert brush.color_mode == "fixed" and brush.colors == [("#ffffff", 0.5)]
    new = [x["inpainting_fill"]._id, x["inpaint_full_res"]._id, x["inpaint_full_res_padding"]._id]
    for name in ("inpaint", "inpaint_editor"):
        (dep,) = [d for d in blocks.fns.values() if d.api_name == name]
        ids = [block._id for block in dep.inputs if not isinstance(block, gr.State)]
        assert ids[-3:] == new, name  # after every older input
        assert ids[:len(panel.parameter_inputs())] == [b._id for b in panel.parameter_inputs()]
    (dep,) = [d for d in blocks.fns.values() if d.outputs and d.outputs[0] is x["editor"] and x["outpaint_fill"] in d.inputs]
    assert dep.inputs == [x["editor"], *x["outpaint_sides"], x["outpaint_fill"]]


def test_the_inpaint_ui_does_not_import_torch():
    code = "import sys, studio.ui.inpaint; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)
