"""Text to image's A1111 options in the UI: Schedule type beside the sampler, Tiling, Restore faces, the variation
seed (Seed's Extra) and Hires. fix — the request the controls make (no server), PNG info's send of an A1111 infotext
with all of them, and /txt2img through gradio_client (hires fix at 64×64 → 128×128; Restore faces with no restorer
installed: the engine's message naming the folders)."""

from __future__ import annotations

import pytest
from PIL import Image

from studio.contract import GenerationRequest, RequestError
from studio.metadata import parse_infotext, read_infotext
from studio.ui import options, png_info
from studio.ui.txt2img import common_fields, txt2img_request

@pytest.fixture(scope="module")
def tiny_settings(tmp_path_factory, studio_cache):
    """This module's engine has no face restorer, whatever the working tree's models/ holds (conftest's engine fixture
    builds on this)."""
    from studio.config import Settings

    empty = tmp_path_factory.mktemp("no-faces")
    return Settings(model="tiny", outputs=tmp_path_factory.mktemp("outputs"), cache_dir=studio_cache, warmup=False,
                    gfpgan_dir=empty / "GFPGAN", codeformer_dir=empty / "Codeformer")


# ---- the request the controls make


CONTROLS = dict(prompt="a lighthouse", negative_prompt="blurry", sampler_name="DPM++ 2M", steps=12, cfg_scale=6.0,
                width=512, height=768, seed=42.0, batch_size=1, batch_count=1, model="tiny", styles=[], clip_skip=1,
                vae="Automatic", scheduler="Karras", tiling=True, restore_faces=True, subseed=7.0, subseed_strength=0.25,
                seed_resize_from_w=448, seed_resize_from_h=640, enable_hr=True, hr_scale=1.5, hr_upscaler="Latent (bicubic)",
                hr_second_pass_steps=8.0, hr_resize_x=0, hr_resize_y=0, hr_sampler_name="Euler", hr_scheduler="Use same scheduler",
                hr_prompt="", hr_negative_prompt="", denoising_strength=0.55)


def test_the_controls_make_the_request():
    req = txt2img_request(**CONTROLS)
    assert req == GenerationRequest(
        prompt="a lighthouse", negative_prompt="blurry", sampler_name="DPM++ 2M", scheduler="Karras", steps=12, cfg_scale=6.0,
        width=512, height=768, seed=42, model="tiny", tiling=True, restore_faces=True, subseed=7, subseed_strength=0.25,
        seed_resize_from=(448, 640),
        enable_hr=True, hr_scale=1.5, hr_upscaler="Latent (bicubic)", hr_second_pass_steps=8, hr_sampler_name="Euler",
        hr_scheduler=None, hr_prompt=None, hr_negative_prompt=None, hr_denoising_strength=0.55)
    assert req.task.value == "hires_fix"


def test_the_default_controls_make_a_plain_request():
    req = txt2img_request("a cat", width=0, height=0, scheduler="Automatic", hr_sampler_name=options.SAME_SAMPLER,
                          hr_scheduler=options.SAME_SCHEDULER)
    assert req == GenerationRequest(prompt="a cat")
    assert req.task.value == "txt2img"
    # hires controls left set but the checkbox off: no hires fix
    off = txt2img_request(**dict(CONTROLS, enable_hr=False))
    assert not off.enable_hr and off.hr_scale == 2.0 and off.hr_sampler_name is None and off.task.value == "txt2img"


def test_hires_options_map_as_in_a1111():
    hires = dict(CONTROLS, hr_sampler_name="DPM++ 2M SDE", hr_scheduler="Exponential", hr_prompt="sharp", hr_negative_prompt="soft",
                 hr_resize_x=1024, hr_resize_y=0)
    req = txt2img_request(**hires)
    assert req.hr_resize == (1024, 1536)  # one side given: the other keeps the first pass's aspect ratio
    assert (req.hr_sampler_name, req.hr_scheduler, req.hr_prompt, req.hr_negative_prompt) == ("DPM++ 2M SDE", "Exponential", "sharp", "soft")
    assert txt2img_request(**dict(hires, hr_resize_x=640, hr_resize_y=800)).hr_resize == (640, 800)
    # the model's default size is square
    assert txt2img_request(**dict(hires, width=0, height=0, hr_resize_x=0, hr_resize_y=1024)).hr_resize == (1024, 1024)
    # hires "Automatic" is its own choice (the main sampler may be Karras): only "Use same scheduler" means the same
    assert txt2img_request(**dict(hires, hr_scheduler="Automatic")).hr_scheduler == "Automatic"
    with pytest.raises(RequestError, match="Resize width/height to"):
        txt2img_request(**dict(hires, width=512, height=0))
    with pytest.raises(RequestError, match="Resize seed from"):
        txt2img_request(**dict(CONTROLS, seed_resize_from_h=0))
    with pytest.raises(RequestError, match="hr_prompt must be text"):
        txt2img_request(**dict(CONTROLS, hr_prompt={"path": "/etc/passwd"}))


def test_every_tab_takes_schedule_type_tiling_and_restore_faces():
    base = ("a cat", "", "DPM++ 2M", 20, 7.0, 0, 0, -1, 1, 1, "tiny", [], 1, None)
    fields = common_fields(*base, "Karras", True, True)  # Image to image and Inpainting build their requests from these
    assert fields["scheduler"] == "Karras" and fields["tiling"] is True and fields["restore_faces"] is True
    assert common_fields(*base, "Automatic", False)["scheduler"] is None
    assert common_fields(*base, "Automatic", True, False)["restore_faces"] is False
    assert common_fields(*base)["scheduler"] is None and common_fields(*base)["tiling"] is False  # old callers
    assert common_fields(*base)["restore_faces"] is False and common_fields(*base, None, False, None)["restore_faces"] is False
    with pytest.raises(RequestError):
        common_fields(*base, {"not": "a name"}, False)
    with pytest.raises(RequestError):
        common_fields(*base, None, "yes")
    with pytest.raises(RequestError, match="restore_faces must be true or false"):
        common_fields(*base, None, False, "GFPGAN")


def test_schedule_types_follow_the_sampler():
    assert options.schedule_types("DPM++ 2M")[0] == "Automatic" and "Karras" in options.schedule_types("DPM++ 2M")
    assert options.schedule_types("Euler a") == ["Automatic", "Uniform", "SGM Uniform"]  # no sigma schedules
    assert options.schedule_types("LCM") == ["Automatic"]
    assert len(options.schedule_types("Nope")) == 6  # an unknown sampler: every type (the engine names the problem)
    kept = options.schedule_update("DPM++ 2M", "Karras")
    assert kept.value == "Karras" and [c[0] for c in kept.choices] == options.schedule_types("DPM++ 2M")  # (label, value)
    assert options.schedule_update("Euler a", "Karras").value == "Automatic"
    hires = options.schedule_update("DDIM", "Karras", first=options.SAME_SCHEDULER)
    assert hires.value == options.SAME_SCHEDULER and [c[0] for c in hires.choices][:2] == [options.SAME_SCHEDULER, "Automatic"]


def test_the_hires_line_says_the_final_size():
    assert options.hires_text(512, 512, 2, 0, 0) == "Upscaling 512×512 → 1024×1024"
    assert options.hires_text(512, 768, 1.5, 0, 0) == "Upscaling 512×768 → 768×1152"
    assert options.hires_text(64, 64, 2, 0, 0) == "Upscaling 64×64 → 128×128"
    assert options.hires_text(512, 768, 2, 1024, 0) == "Upscaling 512×768 → 1024×1536"
    assert options.hires_text(0, 0, 2, 0, 0) == "Upscaling the model's default size × 2"
    assert options.hires_text(0, 0, 2, 1024, 1024) == "Upscaling the model's default size → 1024×1024"


def test_the_variation_seeds_recycle_takes_the_selected_results():
    from studio.contract import SavedImage
    from studio.ui.streaming import Session

    session = Session()
    assert options.last_variation_seed(session, "txt2img") is None  # nothing generated yet
    session.results["txt2img"] = [SavedImage("a.png", 1, "a cat\nSteps: 2, Seed: 1, Variation seed: 77, Variation seed strength: 0.5"),
                                  SavedImage("b.png", 2, "a cat\nSteps: 2, Seed: 2, Size: 64x64")]
    assert options.last_variation_seed(session, "txt2img") == 77
    session.selected["txt2img"] = 1
    assert options.last_variation_seed(session, "txt2img") is None  # made without a variation seed


# ---- PNG info → Text to image


A1111_TEXT = """a castle on a hill, <lora:add_detail:0.6>
Negative prompt: lowres
Steps: 24, Sampler: DPM++ 2M Karras, CFG scale: 6.5, Seed: 1234, Size: 512x640, Model hash: 755f4d1900, Model: tiny, \
Variation seed: 99, Variation seed strength: 0.35, Seed resize from: 448x576, Denoising strength: 0.45, \
Hires upscale: 1.75, Hires steps: 10, Hires upscaler: Latent (bicubic antialiased), Hires sampler: Euler, \
Hires schedule type: Uniform, Hires prompt: "a castle, fine detail", Hires negative prompt: "lowres, blur", Tiling: True, \
Version: v1.10.1"""
A1111_TEXT = A1111_TEXT.replace("Seed: 1234, ", "Seed: 1234, Face restoration: GFPGAN, ")  # where A1111 writes it

UPSCALERS = ["Latent", "Latent (antialiased)", "Latent (bicubic)", "Latent (bicubic antialiased)", "None", "Lanczos", "Nearest"]


def _plan(params, **overrides):
    kwargs = dict(loras=[{"name": "add_detail", "alias": "add_detail"}], embeddings={}, vaes=[], models=["tiny"],
                  model_hashes={}, upscalers=UPSCALERS)
    kwargs.update(overrides)
    return png_info.plan_send(params, **kwargs)


def test_png_info_sends_schedule_type_variation_tiling_and_hires():
    fields, notes = _plan(parse_infotext(A1111_TEXT))
    assert notes == []
    assert fields == dict(
        prompt="a castle on a hill, <lora:add_detail:0.6>", negative_prompt="lowres", sampler_name="DPM++ 2M", scheduler="Karras",
        steps=24, cfg_scale=6.5, seed=1234, width=512, height=640, clip_skip=1, vae="Automatic", model="tiny", tiling=True,
        restore_faces=True, seed_extras=True, subseed=99, subseed_strength=0.35, seed_resize_from_w=448, seed_resize_from_h=576,
        enable_hr=True, hr_scale=1.75, hr_resize_x=0, hr_resize_y=0, hr_second_pass_steps=10,
        hr_upscaler="Latent (bicubic antialiased)", hr_sampler_name="Euler", hr_scheduler="Uniform",
        hr_prompt="a castle, fine detail", hr_negative_prompt="lowres, blur", denoising_strength=0.45)


def test_sending_to_inpainting_applies_its_mask_settings_and_names_the_tab():
    text = ("a red door\nSteps: 12, Sampler: Euler a, CFG scale: 7, Seed: 5, Size: 128x128, Denoising strength: 0.6, "
            "Mask blur: 8, Inpaint area: Only masked, Masked area padding: 48, Masked content: latent noise, Model: tiny")
    inpainting = ("denoising_strength", "mask_blur", "inpainting_fill", "inpaint_full_res", "inpaint_full_res_padding")
    fields, notes = _plan(parse_infotext(text), target="Inpainting", image_fields=inpainting)
    assert notes == []
    assert (fields["denoising_strength"], fields["mask_blur"], fields["inpainting_fill"], fields["inpaint_full_res"],
            fields["inpaint_full_res_padding"]) == (0.6, 8, 2, 1, 48)
    assert "enable_hr" not in fields  # the tab has no hires fix
    fields, notes = _plan(parse_infotext(text), target="Image to image", image_fields=("denoising_strength",))
    assert fields["denoising_strength"] == 0.6 and "mask_blur" not in fields
    assert notes == ["Not applied (Image to image has no such setting): Mask blur, Inpaint area, Masked area padding, "
                     "Masked content."]
    fields, notes = _plan(parse_infotext(text.replace("latent noise", "sparkles")), target="Inpainting", image_fields=inpainting)
    assert "inpainting_fill" not in fields and any("Masked content “sparkles”" in n for n in notes)


def test_png_info_sets_back_what_the_text_leaves_out():
    params = parse_infotext("a cat\nSteps: 20, Sampler: DPM++ 2M, Schedule type: Exponential, CFG scale: 7, Seed: 1, Size: 64x64")
    fields, notes = _plan(params)
    assert notes == []
    assert (fields["sampler_name"], fields["scheduler"]) == ("DPM++ 2M", "Exponential")
    assert fields["tiling"] is False and fields["enable_hr"] is False and fields["seed_extras"] is False
    assert fields["restore_faces"] is False  # no "Face restoration": the box is unticked, as A1111 does
    assert fields["subseed_strength"] == 0 and fields["seed_resize_from_w"] == 0 and "subseed" not in fields
    fields, _ = _plan(parse_infotext("a cat\nSteps: 20, Sampler: Euler a, CFG scale: 7, Seed: 1, Size: 64x64"))
    assert (fields["sampler_name"], fields["scheduler"]) == ("Euler a", "Automatic")


def test_png_info_says_what_of_hires_and_samplers_it_cannot_apply():
    params = parse_infotext("a cat\nSteps: 20, Sampler: DPM adaptive, CFG scale: 7, Seed: 1, Size: 512x512, "
                            "Denoising strength: 0.5, Hires resize: 1024x768, Hires upscaler: R-ESRGAN 4x+, "
                            "Hires sampler: Restart, Hires CFG Scale: 5")
    fields, notes = _plan(params)
    text = "\n".join(notes)
    assert "DPM adaptive" in text and "sampler_name" not in fields and "scheduler" not in fields
    assert "R-ESRGAN 4x+" in text and "--upscaler-dir" in text and fields["hr_upscaler"] == "Latent"
    assert "Restart" in text and fields["hr_sampler_name"] == options.SAME_SAMPLER
    assert "Hires CFG Scale" in text  # no such control here
    assert (fields["enable_hr"], fields["hr_resize_x"], fields["hr_resize_y"], fields["denoising_strength"]) == (True, 1024, 768, 0.5)
    # an img2img picture's denoising strength is not a hires setting
    fields, notes = _plan(parse_infotext("a cat\nSteps: 20, Sampler: Euler, CFG scale: 7, Seed: 1, Size: 64x64, Denoising strength: 0.6"))
    assert fields["enable_hr"] is False and any("Denoising strength" in note for note in notes)


def test_every_field_sent_has_a_control(engine):
    import gradio as gr

    from studio.service import JobService
    from studio.ui import txt2img
    from studio.ui.streaming import Services, Session

    with gr.Blocks():
        panel = txt2img.build(Services(JobService.for_operator(engine)), gr.State(Session()))
    controls = panel.controls()
    fields, _ = _plan(parse_infotext(A1111_TEXT))
    assert set(fields) <= set(controls), set(fields) - set(controls)
    assert {"scheduler", "tiling", "hr_upscaler", "subseed", "seed_extras", "hires_accordion"} <= set(controls)
    # the hires upscaler list is the service's, Latent first
    assert panel.hires.hr_upscaler.value == "Latent" and panel.hires.hr_upscaler.choices[0][0] == "Latent"
    assert panel.hires.accordion.open is False and panel.variation.row.visible is False


def test_png_info_says_when_restore_faces_will_not_restore_as_the_picture_did():
    params = parse_infotext("a face\nSteps: 20, Sampler: Euler, CFG scale: 7, Seed: 1, Face restoration: CodeFormer, Size: 64x64")
    fields, notes = _plan(params, face_restorers=["CodeFormer", "GFPGAN"])
    assert fields["restore_faces"] is True and notes == []  # the first installed one is the picture's
    fields, notes = _plan(params, face_restorers=["GFPGAN"])
    assert fields["restore_faces"] is True and len(notes) == 1 and "uses GFPGAN" in notes[0] and "CodeFormer" in notes[0]
    fields, notes = _plan(params, face_restorers=[])
    assert fields["restore_faces"] is True  # ticked as the picture was; Generate says what to install
    assert len(notes) == 1 and "no face restorer is installed" in notes[0]
    assert "models/GFPGAN" in notes[0] and "models/Codeformer" in notes[0]


def test_every_generate_tab_has_a_restore_faces_checkbox_beside_tiling(engine):
    import gradio as gr

    from studio.service import JobService
    from studio.ui import img2img, inpaint, txt2img
    from studio.ui.streaming import Services, Session

    services = Services(JobService.for_operator(engine))
    with gr.Blocks():
        session = gr.State(Session())
        panels = [module.build(services, session) for module in (txt2img, img2img, inpaint)]
    for panel in panels:
        box = panel.restore_faces
        assert isinstance(box, gr.Checkbox) and box.label == "Restore faces" and box.value is False
        assert box.elem_id == f"{panel.tab}-restore-faces"
        assert box.info == "none installed"  # this module's engine has no restorer
        inputs = panel.parameter_inputs()  # the handlers take it right after Tiling
        assert inputs.index(box) == inputs.index(panel.tiling) + 1
        assert panel.controls()["restore_faces"] is box  # PNG info's send reaches it
    assert options.restore_faces_info(["CodeFormer", "GFPGAN"]) == "with CodeFormer"


# ---- through the UI's API (the whole studio, the tiny model)


@pytest.fixture(scope="module")
def client(engine):
    gradio_client = pytest.importorskip("gradio_client")
    from tests.ui_support import launch_studio

    with launch_studio(engine) as server:
        yield gradio_client.Client(server.url + "/", verbose=False)


A1111_NAMES = {"scheduler", "subseed", "subseed_strength", "seed_resize_from_w", "seed_resize_from_h", "tiling", "enable_hr", "hr_scale",
               "hr_upscaler", "hr_second_pass_steps", "hr_resize_x", "hr_resize_y", "hr_sampler_name", "hr_scheduler", "hr_prompt",
               "hr_negative_prompt", "denoising_strength", "restore_faces"}


def test_the_txt2img_endpoint_has_a1111s_names_with_defaults(client):
    api = client.view_api(print_info=False, return_format="dict")["named_endpoints"]
    params = {p["parameter_name"]: p for p in api["/txt2img"]["parameters"]}
    assert A1111_NAMES <= set(params)
    assert all(params[name]["parameter_has_default"] for name in A1111_NAMES)
    assert params["enable_hr"]["parameter_default"] is False and params["hr_upscaler"]["parameter_default"] == "Latent"
    assert params["restore_faces"]["parameter_default"] is False and params["restore_faces"]["label"] == "Restore faces"
    for endpoint in ("/img2img", "/inpaint"):
        params = {p["parameter_name"]: p for p in api[endpoint]["parameters"]}
        assert {"scheduler", "tiling", "restore_faces"} <= set(params) and "enable_hr" not in params and "subseed" not in params
        assert params["restore_faces"]["parameter_default"] is False and params["restore_faces"]["label"] == "Restore faces"


def _final_image(result) -> tuple[Image.Image, str]:
    gallery, infotext = result[2], result[3]
    with Image.open(gallery[0]["image"]) as image:
        image.load()
        assert read_infotext(image) == infotext
        return image.copy(), infotext


def test_txt2img_hires_fix_through_the_api(client):
    result = client.predict(api_name="/txt2img", prompt="a lighthouse", steps=2, width=64, height=64, seed=5,
                            enable_hr=True, hr_scale=2)
    image, infotext = _final_image(result)
    assert image.size == (128, 128)
    assert "Hires upscale: 2" in infotext and "Size: 64x64" in infotext and "Hires upscaler: Latent" in infotext
    assert "Denoising strength: 0.7" in infotext


def test_txt2img_schedule_type_variation_and_tiling_through_the_api(client):
    result = client.predict(api_name="/txt2img", prompt="a lighthouse", steps=2, width=64, height=64, seed=5,
                            sampler_name="DPM++ 2M", scheduler="Karras", subseed=11, subseed_strength=0.5, tiling=True)
    _, infotext = _final_image(result)
    parsed = parse_infotext(infotext)
    assert (parsed["Sampler"], parsed["Schedule type"]) == ("DPM++ 2M", "Karras")
    assert parsed["Variation seed"] == "11" and float(parsed["Variation seed strength"]) == 0.5
    assert parsed["Tiling"] == "True"
    with pytest.raises(Exception) as raised:
        client.predict(api_name="/txt2img", prompt="x", steps=2, width=64, height=64, sampler_name="Euler a", scheduler="Karras")
    assert "Karras" in str(raised.value) and "Traceback" not in str(raised.value)


@pytest.mark.parametrize("endpoint", ["/txt2img", "/img2img"])
def test_restore_faces_without_a_restorer_says_what_to_install(client, endpoint, tmp_path):
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    from tests.ui_support import make_input_png

    image = dict(init_image=handle_file(str(make_input_png(tmp_path / "in.png")))) if endpoint == "/img2img" else {}
    with pytest.raises(AppError) as raised:
        client.predict(api_name=endpoint, prompt="a portrait", steps=2, width=64, height=64, restore_faces=True, **image)
    message = str(raised.value)
    assert "Restore faces is not available" in message
    assert "models/GFPGAN" in message and "models/Codeformer" in message
    assert "Traceback" not in message and str(tmp_path) not in message
    # unticked, the same request runs
    result = client.predict(api_name=endpoint, prompt="a portrait", steps=2, width=64, height=64, restore_faces=False, **image)
    assert "Face restoration" not in result[3]
