"""The studio driven by A1111's most used client, `webuiapi` (pinned in requirements-dev.txt), over a live server with
logins: every public WebUIApi call that maps to something the studio offers works as it does against A1111, on the
tiny model at 64×64 and 2–4 steps (150 for the job that progress, skip and interrupt act on).

Covered: txt2img (plain, styles + LoRA, hires fix, variation seeds, sampler + scheduler, override_settings, a
script), img2img, img2img with a mask, extra_single_image, extra_batch_images, png_info, interrogate (our clear
422), interrupt, skip, get_progress, get_options / set_options, get_cmd_flags, get_samplers, get_schedulers,
get_sd_vae, get_upscalers, get_latent_upscale_modes, get_loras, get_sd_models, get_hypernetworks,
get_face_restorers, get_realesrgan_models, get_prompt_styles, refresh_checkpoints, get_scripts, get_embeddings,
get_memory (admins), custom_get / custom_post, set_auth and username/password in the constructor, and the util_*
helpers (util_get_model_names, util_get_sampler_names, util_get_scheduler_names, util_set_model,
util_get_current_model, util_wait_for_ready). webuiapi 0.9.17 has no get_script_info: script-info is read with
custom_get.

Not covered, as they map to nothing the studio has:
  - extensions' routes: ControlNet (controlnet_units, ControlNetInterface, controlnet_version/model_list/module_list/
    detect, use_deprecated_controlnet), ADetailer, AnimateDiff, Roop, ReActor, Self Attention Guidance (their
    alwayson_scripts), prompt_gen / list_prompt_gen_models (promptgen), ModelKeywordInterface, InstructPix2PixInterface,
    RemBGInterface, SegmentAnythingInterface, TaggerInterface;
  - get_artist_categories / get_artists: routes A1111 itself removed (a 404 there too);
  - use_async=True: the same routes through aiohttp, an optional dependency of webuiapi that is not installed here;
  - training (embeddings, hypernetworks, Dreambooth): webuiapi has no calls for them, and the studio does not train.
"""

from __future__ import annotations

import json
import threading
import time

import pytest
import torch
from PIL import Image, ImageDraw
from server_support import USERS, live_server

from studio.config import Settings

webuiapi = pytest.importorskip("webuiapi")

SMALL = dict(steps=2, width=64, height=64, sampler_name="Euler", seed=11)


def _tiny(studio_cache):
    from studio.checkpoints import materialize_config
    from studio.tiny import build_tiny_pipeline

    return build_tiny_pipeline(materialize_config("tiny", studio_cache) / "tokenizer")


@pytest.fixture(scope="module")
def folders(tmp_path_factory, studio_cache):
    """The operator's folders: a LoRA, an embedding and a styles file, so that their listings are not empty."""
    from safetensors.torch import save_file

    from tests.support.lora_files import write_kohya_lora

    root = tmp_path_factory.mktemp("webuiapi-folders")
    write_kohya_lora(_tiny(studio_cache), root / "Lora" / "detail.safetensors", rank=4, strength=1.0, seed=1)
    (root / "embeddings").mkdir()
    save_file({"emb_params": torch.randn(2, 32, generator=torch.Generator().manual_seed(3))},
              str(root / "embeddings" / "shiny.safetensors"))
    (root / "styles.csv").write_text('name,prompt,negative_prompt\nwatercolor,"{prompt}, watercolor painting",photo\n')
    return root


@pytest.fixture(scope="module")
def tiny_settings(tmp_path_factory, studio_cache, folders):
    """This module's engine reads the folders above (conftest's engine fixture builds on this)."""
    return Settings(model="tiny", outputs=tmp_path_factory.mktemp("outputs"), cache_dir=studio_cache, warmup=False,
                    lora_dir=folders / "Lora", embeddings_dir=folders / "embeddings",
                    styles_file=folders / "styles.csv", vae_dir=folders / "VAE")


@pytest.fixture(scope="module")
def server(engine):
    with live_server(engine, users=USERS, admins=("root",)) as server:
        yield server


def _client(server, user: str) -> "webuiapi.WebUIApi":
    api = webuiapi.WebUIApi(host="127.0.0.1", port=server.port, sampler="Euler", steps=2)
    api.set_auth(user, USERS[user])  # as the README shows
    return api


@pytest.fixture(scope="module")
def api(server):
    return _client(server, "alice")


def _picture(color=(200, 40, 40)) -> Image.Image:
    return Image.new("RGB", (64, 64), color)


def _mask() -> Image.Image:
    mask = Image.new("L", (64, 64), 0)
    ImageDraw.Draw(mask).rectangle((16, 16, 47, 47), fill=255)
    return mask


# ---- generation


def test_txt2img_plain_with_a_style_and_a_lora(api):
    result = api.txt2img(prompt="a red fox <lora:detail:0.5>", negative_prompt="blur", styles=["watercolor"],
                         batch_size=2, **SMALL)
    assert isinstance(result, webuiapi.WebUIApiResult)
    assert len(result.images) == 2 and result.image.size == (64, 64)
    assert result.info["all_seeds"] == [11, 12] and result.info["sd_model_name"] == "tiny"
    assert result.parameters["prompt"] == "a red fox <lora:detail:0.5>" and result.parameters["styles"] == ["watercolor"]
    text = result.info["infotexts"][0]
    assert "watercolor painting" in text and "Lora hashes" in text and "Negative prompt: blur, photo" in text
    assert result.image.info["parameters"] == text  # the PNG carries the same infotext


def test_txt2img_hires_fix(api):
    result = api.txt2img(prompt="a fox", enable_hr=True, hr_scale=2, hr_upscaler=webuiapi.HiResUpscaler.Lanczos,
                         hr_second_pass_steps=2, denoising_strength=0.5, **SMALL)
    assert result.image.size == (128, 128)
    text = result.info["infotexts"][0]
    assert "Hires upscale: 2" in text and "Hires upscaler: Lanczos" in text and "Denoising strength: 0.5" in text
    latent = api.txt2img(prompt="a fox", enable_hr=True, hr_scale=1.5, **SMALL)  # webuiapi's default: Latent
    assert latent.image.size == (96, 96) and "Hires upscaler: Latent" in latent.info["infotexts"][0]


def test_txt2img_variation_seeds(api):
    result = api.txt2img(prompt="a fox", subseed=9, subseed_strength=0.3, batch_size=2, **SMALL)
    assert "Variation seed: 9, Variation seed strength: 0.3" in result.info["infotexts"][0]
    assert result.info["subseed"] == 9 and result.info["all_subseeds"] == [9, 10]
    assert result.info["subseed_strength"] == 0.3


def test_txt2img_sampler_and_scheduler(api, server):
    result = api.txt2img(prompt="a fox", **{**SMALL, "sampler_name": "DPM++ 2M"}, scheduler="karras")
    assert "Sampler: DPM++ 2M, Schedule type: Karras" in result.info["infotexts"][0]
    assert result.info["sampler_name"] == "DPM++ 2M" and result.info["scheduler"] == "Karras"
    # the client's own defaults (WebUIApi(sampler=..., scheduler=..., steps=...)) when a call names none
    defaults = webuiapi.WebUIApi(port=server.port, sampler="DPM++ 2M", scheduler="exponential", steps=3,
                                 username="alice", password=USERS["alice"])
    result = defaults.txt2img(prompt="a fox", width=64, height=64, seed=3)
    assert "Steps: 3, Sampler: DPM++ 2M, Schedule type: Exponential" in result.info["infotexts"][0]
    with pytest.raises(RuntimeError) as refused:
        api.txt2img(prompt="a fox", **{**SMALL, "sampler_name": "No such sampler"})
    assert refused.value.args[0] == 422 and "Unknown sampler" in json.loads(refused.value.args[1])["detail"]


def test_txt2img_override_settings(api):
    result = api.txt2img(prompt="a fox", override_settings={"sd_model_checkpoint": "tiny", "CLIP_stop_at_last_layers": 2},
                         **SMALL)
    assert "Clip skip: 2" in result.info["infotexts"][0] and result.info["clip_skip"] == 2
    with pytest.raises(RuntimeError) as refused:
        api.txt2img(prompt="a fox", override_settings={"sd_model_checkpoint": "no-such-model"}, **SMALL)
    assert refused.value.args[0] == 422 and "no-such-model" in refused.value.args[1]


def test_txt2img_with_a_script(api):
    xyz = [4, "2, 3", [], 0, "", [], 0, "", [], True, True, False, False, False, False, False, 0, False]
    result = api.txt2img(prompt="a fox", script_name="X/Y/Z plot", script_args=xyz, **SMALL)
    assert len(result.images) == 3 and result.info["index_of_first_image"] == 1  # the grid, then both cells
    assert ["Steps: 2," in t for t in result.info["infotexts"][1:]] == [True, False]


def test_img2img_and_inpainting(api):
    result = api.img2img(images=[_picture()], prompt="a fox", denoising_strength=0.5, **SMALL)
    assert result.image.size == (64, 64) and result.parameters["init_images"] is None
    assert "Denoising strength: 0.5" in result.info["infotexts"][0] and result.info["denoising_strength"] == 0.5
    inpainted = api.img2img(images=[_picture()], mask_image=_mask(), mask_blur=2, prompt="a fox",
                            denoising_strength=0.75, **SMALL)
    assert inpainted.image.size == (64, 64) and inpainted.info["is_using_inpainting_conditioning"]
    assert "Mask blur: 2" in inpainted.info["infotexts"][0]
    corner = inpainted.image.convert("RGB").getpixel((0, 0))  # outside the mask the picture is kept
    assert max(abs(a - b) for a, b in zip(corner, (200, 40, 40))) <= 8


# ---- Extras, PNG info, interrogate


def test_extra_single_image_and_batch(api):
    single = api.extra_single_image(_picture(), upscaler_1="Lanczos", upscaling_resize=2)
    assert len(single.images) == 1 and single.image.size == (128, 128)
    assert isinstance(single.info, str) and "Lanczos" in single.info  # html_info
    batch = api.extra_batch_images([_picture(), _picture((10, 200, 10))], upscaler_1=webuiapi.Upscaler.Nearest,
                                   upscaling_resize=2)
    assert [image.size for image in batch.images] == [(128, 128), (128, 128)]
    assert batch.images[1].convert("RGB").getpixel((5, 5)) == (10, 200, 10)
    with pytest.raises(RuntimeError) as refused:
        api.extra_single_image(_picture(), upscaler_1="No such upscaler")
    assert refused.value.args[0] == 422 and "No such upscaler" in refused.value.args[1]


def test_png_info_reads_a_generated_picture(api):
    image = api.txt2img(prompt="round trip", **SMALL).image
    result = api.png_info(image)
    assert result.info.startswith("round trip") and "Seed: 11" in result.info
    assert result.parameters["Seed"] == "11" and result.parameters["Steps"] == "2"
    assert api.png_info(_picture()).info == ""  # a picture without parameters


def test_interrogate_is_our_clear_422(api, engine, tmp_path, monkeypatch):
    from studio import interrogate

    # no --caption-model here; the engine's captioner is made one whose model cannot be in this machine's cache
    monkeypatch.setattr(engine, "captioner", interrogate.Captioner(str(tmp_path / "no-captioning-model")))
    for model in ("clip", "deepdanbooru"):
        with pytest.raises(RuntimeError) as refused:
            api.interrogate(_picture(), model=model)
        status, text = refused.value.args
        assert status == 422
        assert json.loads(text)["detail"].startswith("Interrogate is not available: no captioning model is installed")


# ---- progress, interrupt, skip


def _wait_for(api, condition, what: str):
    deadline = time.time() + 60
    while time.time() < deadline:
        progress = api.get_progress()
        if condition(progress):
            return progress
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def test_progress_skip_interrupt_and_wait_for_ready(server, api):
    api.util_wait_for_ready(check_interval=0.05)  # idle: returns at once
    idle = api.get_progress()
    assert idle["progress"] == 0 and idle["state"]["job_count"] == 0 and idle["current_image"] is None
    worker, out = _client(server, "alice"), {}  # its own session: the call blocks until the job ends
    thread = threading.Thread(target=lambda: out.update(result=worker.txt2img(
        prompt="long", steps=150, width=64, height=64, seed=3, n_iter=3)))
    thread.start()
    try:
        running = _wait_for(api, lambda p: p["state"]["sampling_step"] >= 2, "the first batch")
        assert running["state"]["job_count"] == 1 and 0 < running["progress"] < 1 and running["eta_relative"] >= 0
        assert running["state"]["sampling_steps"] == 150 and running["state"]["job_no"] == 0
        assert api.skip()["skipped"]  # the first batch ends now; the second runs
        _wait_for(api, lambda p: p["state"]["job_no"] == 1 and p["state"]["sampling_step"] >= 2, "the second batch")
        assert api.interrupt()["interrupted"]  # the job stops: the third batch never runs
    finally:
        thread.join(120)
    result = out["result"]
    assert len(result.images) == 2 and result.info["interrupted"] and result.info["all_seeds"] == [3, 4]
    api.util_wait_for_ready(check_interval=0.05)
    assert api.get_progress()["state"]["job_count"] == 0
    assert api.interrupt() == {"interrupted": None} and api.skip() == {"skipped": None}  # nothing of alice's runs


# ---- options and models


def test_options_round_trip_is_per_user(server, api):
    options = api.get_options()
    assert options["sd_model_checkpoint"] == "tiny" and options["samples_format"] == "png"
    assert options["jpeg_quality"] == 80 and options["CLIP_stop_at_last_layers"] == 1
    assert api.set_options({"jpeg_quality": 91, "sd_vae": "Automatic", "eta_ancestral": 0.5}) is None
    after = api.get_options()
    assert (after["jpeg_quality"], after["eta_ancestral"], after["sd_vae"]) == (91, 0.5, "Automatic")
    assert _client(server, "bob").get_options()["jpeg_quality"] == 80  # alice's values are hers
    refused = api.set_options({"sd_model_checkpoint": "no-such-model", "jpeg_quality": 10})
    assert "no-such-model" in refused["detail"] and api.get_options()["jpeg_quality"] == 91  # nothing stored
    assert api.set_options({"jpeg_quality": 80, "eta_ancestral": 1.0}) is None
    assert api.get_options()["jpeg_quality"] == 80


def test_models_and_the_util_helpers(api):
    models = api.get_sd_models()
    assert [m["title"] for m in models] == ["demo", "tiny"]  # the shipped demo model is always offered
    tiny = models[1]
    assert tiny["model_name"] == "tiny" and tiny["hash"]  # loaded, so hashed
    assert set(tiny) >= {"title", "model_name", "hash", "sha256", "filename", "config"}
    assert api.util_get_model_names() == ["demo", "tiny"]
    assert api.util_get_current_model() == "tiny"
    api.util_set_model("tiny")  # the current model, by its exact name
    api.util_set_model("Tiny")  # find_closest: webuiapi lowercases, then picks the nearest title
    assert api.util_get_current_model() == "tiny" and api.get_options()["sd_model_checkpoint"] == "tiny"
    assert api.refresh_checkpoints() == {"models": ["demo", "tiny"]}  # A1111 answers null; the studio, the names
    names = api.util_get_sampler_names()
    assert names == sorted(names) and {"Euler", "Euler a", "DPM++ 2M"} <= set(names)
    assert api.util_get_scheduler_names() == sorted(["automatic", "uniform", "karras", "exponential", "sgm_uniform", "beta"])


# ---- listings


def test_listings(api):
    samplers = api.get_samplers()
    assert {"name": "Euler a", "aliases": ["k_euler_a"], "options": {}} in samplers
    schedulers = api.get_schedulers()
    assert {"name": "karras", "label": "Karras"}.items() <= schedulers[2].items()
    upscalers = [u["name"] for u in api.get_upscalers()]
    assert upscalers[:3] == ["None", "Lanczos", "Nearest"]
    assert {m["name"] for m in api.get_latent_upscale_modes()} >= {"Latent", "Latent (nearest-exact)"}
    loras = api.get_loras()
    assert [(lora["name"], lora["alias"]) for lora in loras] == [("detail", "detail")]
    assert "/" not in loras[0]["path"]  # names, never server paths
    assert api.get_prompt_styles() == [{"name": "watercolor", "prompt": "{prompt}, watercolor painting", "negative_prompt": "photo"}]
    embeddings = api.get_embeddings()
    assert set(embeddings) == {"loaded", "skipped"} and "shiny" in embeddings["loaded"]
    assert api.get_sd_vae() == [] and api.get_hypernetworks() == [] and api.get_face_restorers() == []
    assert api.get_realesrgan_models() == []
    flags = api.get_cmd_flags()
    assert flags["api"] is True and "port" in flags and not any("auth" in key for key in flags)


def test_scripts_and_script_info(api):
    scripts = api.get_scripts()
    assert "x/y/z plot" in scripts["txt2img"] and "sd upscale" in scripts["img2img"]
    assert not (api.has_controlnet or api.has_adetailer or api.has_animatediff)  # check_extensions read get_scripts
    info = api.custom_get("sdapi/v1/script-info")  # webuiapi 0.9.17 has no get_script_info
    assert {"x/y/z plot", "prompt matrix"} <= {s["name"] for s in info}
    assert all(set(s) >= {"name", "is_alwayson", "is_img2img", "args"} for s in info)


def test_custom_calls_and_logins(server, api):
    assert api.custom_get("sdapi/v1/samplers") == api.custom_get("samplers", baseurl=True) == api.get_samplers()
    result = api.custom_post("sdapi/v1/txt2img", payload=dict(prompt="custom", **SMALL))
    assert result.image.size == (64, 64) and result.info["seed"] == 11
    stranger = webuiapi.WebUIApi(port=server.port)  # no login: A1111's --api-auth answers 401
    with pytest.raises(RuntimeError) as refused:
        stranger.txt2img(prompt="x", **SMALL)
    assert refused.value.args[0] == 401
    assert "detail" in api.get_memory()  # admins only (403 for alice) ...
    memory = _client(server, "root").get_memory()  # ... root is one
    assert memory["ram"]["total"] > 0 and "cuda" in memory
