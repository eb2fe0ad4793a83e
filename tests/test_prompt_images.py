"""Prompts mean what they mean in A1111, seen in the images: for emphasis, long prompts (comma backtrack, BREAK), CLIP
skip, styles, an embedding and a LoRA, the studio's image equals diffusers' own pipeline given A1111's conditioning —
computed here independently (tests/support/a1111_conditioning.py, or diffusers' own loaders) — and prompt editing
and alternation change the picture during sampling."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from studio.config import Settings
from studio.contract import Failed, Finished, GenerationRequest
from tests.helpers import pixels, reference_pipeline
from tests.support import a1111_conditioning as a1111
from tests.support.lora_files import write_kohya_lora

SAMPLER = "Euler"
COMMON = dict(seed=4321, steps=4, cfg_scale=7.0, sampler_name=SAMPLER, width=64, height=64)


def _tiny(studio_cache):
    from studio.checkpoints import materialize_config
    from studio.tiny import build_tiny_pipeline

    return build_tiny_pipeline(materialize_config("tiny", studio_cache) / "tokenizer")


@pytest.fixture(scope="module")
def folders(tmp_path_factory, studio_cache):
    """The operator's folders: a LoRA (kohya format), an embedding of 2 vectors, a styles file, a VAE (A1111's
    single-file LDM format)."""
    from safetensors.torch import save_file

    root = tmp_path_factory.mktemp("prompt-folders")
    write_kohya_lora(_tiny(studio_cache), root / "Lora" / "detail.safetensors", rank=4, strength=3.0, seed=1)
    vectors = torch.randn(2, 32, generator=torch.Generator().manual_seed(3)) * 2
    (root / "embeddings").mkdir()
    save_file({"emb_params": vectors}, str(root / "embeddings" / "shiny.safetensors"))
    (root / "VAE").mkdir()
    save_file(_other_vae_ldm(_tiny(studio_cache).vae), str(root / "VAE" / "other.vae.safetensors"))
    (root / "styles.csv").write_text('name,prompt,negative_prompt\nwatercolor,"{prompt}, watercolor painting",photo\nmoody,dark night,\n')
    return root


@pytest.fixture(scope="module")
def tiny_settings(tmp_path_factory, studio_cache, folders):
    """This module's engine reads the folders above (conftest's engine fixture builds on this)."""
    return Settings(model="tiny", outputs=tmp_path_factory.mktemp("outputs"), cache_dir=studio_cache, warmup=False,
                    lora_dir=folders / "Lora", embeddings_dir=folders / "embeddings", styles_file=folders / "styles.csv",
                    vae_dir=folders / "VAE")


def _other_vae_ldm(vae) -> dict:
    """The tiny model's VAE with a different decoder output layer, keyed as A1111's VAE files are (LDM names)."""
    from tests.support.ldm_checkpoint import _vae_key

    with torch.no_grad():
        vae.decoder.conv_out.weight.add_(torch.randn(vae.decoder.conv_out.weight.shape, generator=torch.Generator().manual_seed(5)) * 0.5)
    return dict(_vae_key(key, value.contiguous()) for key, value in vae.state_dict().items())


def _ours(engine, prompt: str, negative: str = "", **fields) -> tuple[np.ndarray, Finished]:
    result = engine.generate(GenerationRequest(prompt, negative_prompt=negative, **{**COMMON, **fields}))
    assert isinstance(result, Finished), result
    return pixels(result.images[0].path), result


def _theirs(pipe_or_cache, cond=None, uncond=None, **call) -> np.ndarray:
    pipe = reference_pipeline(pipe_or_cache, "txt2img", SAMPLER) if not hasattr(pipe_or_cache, "unet") else pipe_or_cache
    arguments = dict(num_inference_steps=COMMON["steps"], guidance_scale=COMMON["cfg_scale"], width=64, height=64,
                     generator=torch.Generator("cpu").manual_seed(COMMON["seed"]))
    if cond is not None:
        arguments.update(prompt_embeds=cond, negative_prompt_embeds=uncond)
    return pixels(pipe(**{**arguments, **call}).images[0])


def _reference(studio_cache, pieces, negative_pieces=(("", 1.0),), clip_skip: int = 1) -> np.ndarray:
    pipe = reference_pipeline(studio_cache, "txt2img", SAMPLER)
    cond = a1111.conditioning(pipe, list(pieces), clip_skip)
    uncond = a1111.conditioning(pipe, list(negative_pieces), clip_skip)
    cond, uncond = a1111.padded(pipe, cond, uncond, clip_skip)
    return _theirs(pipe, cond, uncond)


def test_emphasis_equals_a1111s_conditioning(engine, studio_cache):
    ours, _ = _ours(engine, "a (red:1.3) fox, [blurry] ((forest))", "(ugly:1.2)")
    theirs = _reference(studio_cache, [("a ", 1.0), ("red", 1.3), (" fox, ", 1.0), ("blurry", 1 / 1.1), (" ", 1.0), ("forest", 1.21)],
                        [("ugly", 1.2)])
    assert np.array_equal(ours, theirs)
    literal = _theirs(studio_cache, prompt="a (red:1.3) fox, [blurry] ((forest))", negative_prompt="(ugly:1.2)")
    assert not np.array_equal(ours, literal), "the brackets went to CLIP as text"


def test_a_long_prompt_is_chunked_with_comma_backtrack_and_break(engine, studio_cache):
    head = " ".join(["red"] * 68) + ", " + " ".join(["blue"] * 10)  # the chunk fills 7 tokens after the comma
    ours, _ = _ours(engine, head + " BREAK green hills")
    pipe = reference_pipeline(studio_cache, "txt2img", SAMPLER)
    frames = a1111.chunks(pipe.tokenizer, [(head, 1.0), "BREAK", ("green hills", 1.0)])
    assert len(frames) == 3 and frames[1][0][1:7] == pipe.tokenizer("blue " * 6, add_special_tokens=False)["input_ids"]
    theirs = _reference(studio_cache, [(head, 1.0), "BREAK", ("green hills", 1.0)])
    assert np.array_equal(ours, theirs)
    cut = _theirs(studio_cache, prompt=head + " BREAK green hills")  # diffusers alone truncates at 77 tokens
    assert not np.array_equal(ours, cut)


def test_clip_skip_2_equals_a1111s(engine, studio_cache):
    ours, result = _ours(engine, "a small house", clip_skip=2)
    assert np.array_equal(ours, _reference(studio_cache, [("a small house", 1.0)], clip_skip=2))
    assert not np.array_equal(ours, _ours(engine, "a small house")[0])
    assert "Clip skip: 2" in result.images[0].infotext


def test_styles_apply_to_both_prompts(engine, studio_cache):
    ours, result = _ours(engine, "a fox", styles=("watercolor", "moody"))
    theirs = _theirs(studio_cache, prompt="a fox, watercolor painting, dark night", negative_prompt="photo")
    assert np.array_equal(ours, theirs)
    assert result.images[0].infotext.startswith("a fox, watercolor painting, dark night\nNegative prompt: photo\n")
    job = engine.submit(GenerationRequest("a fox", styles=("no-such-style",), **COMMON))
    assert isinstance(job.wait(60), Finished) and any("no-such-style" in note for note in job.started.notes)


def test_an_embedding_equals_diffusers_textual_inversion(engine, studio_cache, folders):
    ours, result = _ours(engine, "a shiny fox")
    pipe = _with_components(reference_pipeline(studio_cache, "txt2img", SAMPLER), _tiny(studio_cache))
    pipe.load_textual_inversion(str(folders / "embeddings" / "shiny.safetensors"), token="shiny")
    assert np.array_equal(ours, _theirs(pipe, prompt="a shiny fox"))
    assert "TI hashes: " in result.images[0].infotext and "shiny: " in result.images[0].infotext


def test_a_kohya_lora_equals_diffusers_loader_and_leaves_no_trace(engine, studio_cache, folders):
    plain_before, _ = _ours(engine, "a fox")
    ours, result = _ours(engine, "a fox <lora:detail:0.8>")
    pipe = _with_components(reference_pipeline(studio_cache, "txt2img", SAMPLER), _tiny(studio_cache))
    pipe.load_lora_weights(str(folders / "Lora" / "detail.safetensors"), adapter_name="detail")
    pipe.set_adapters(["detail"], adapter_weights=[0.8])
    theirs = _theirs(pipe, prompt="a fox")
    assert np.abs(ours - theirs).max() <= 1, np.abs(ours - theirs).max()
    assert np.abs(ours - plain_before).mean() > 2, "the LoRA changed nothing"
    assert "Lora hashes: " in result.images[0].infotext and "<lora:detail:0.8>" in result.images[0].infotext
    plain_after, _ = _ours(engine, "a fox")
    assert np.array_equal(plain_after, plain_before)


def test_a_long_prompt_with_a_lora_pads_with_the_loras_encoding(engine, studio_cache, folders):
    """The negative prompt is padded with empty chunks encoded by the text encoder as the LoRA leaves it, not with
    those of the plain model encoded for an earlier job."""
    long = " ".join(["red"] * 70) + " BREAK green hills"
    _ours(engine, long)  # pads with the plain model's empty chunk
    ours, _ = _ours(engine, long + " <lora:detail:0.8>")
    pipe = _with_components(reference_pipeline(studio_cache, "txt2img", SAMPLER), _tiny(studio_cache))
    pipe.load_lora_weights(str(folders / "Lora" / "detail.safetensors"), adapter_name="detail")
    pipe.set_adapters(["detail"], adapter_weights=[0.8])
    cond = a1111.conditioning(pipe, [(" ".join(["red"] * 70), 1.0), "BREAK", ("green hills", 1.0)], 1)
    uncond = a1111.conditioning(pipe, [("", 1.0)], 1)
    cond, uncond = a1111.padded(pipe, cond, uncond, 1)
    assert np.abs(ours - _theirs(pipe, cond, uncond)).max() <= 1


def test_a_missing_lora_is_reported_and_the_job_runs(engine):
    job = engine.submit(GenerationRequest("a fox <lora:nowhere:1>", **COMMON))
    assert isinstance(job.wait(60), Finished)
    assert any("nowhere" in note and "not found" in note for note in job.started.notes)


def test_a_chosen_vae_decodes_and_the_models_own_comes_back(engine, studio_cache):
    plain_before, _ = _ours(engine, "a fox")
    ours, result = _ours(engine, "a fox", vae="other.vae.safetensors")
    pipe = reference_pipeline(studio_cache, "txt2img", SAMPLER)
    other = _tiny(studio_cache).vae
    _other_vae_ldm(other)
    theirs = _theirs(type(pipe)(**{**pipe.components, "vae": other}), prompt="a fox")
    assert np.array_equal(ours, theirs)
    assert not np.array_equal(ours, plain_before), "the VAE changed nothing"
    assert "VAE: other.vae.safetensors" in result.images[0].infotext and "VAE hash: " in result.images[0].infotext
    assert np.array_equal(_ours(engine, "a fox")[0], plain_before)
    job = engine.submit(GenerationRequest("a fox", vae="../../etc/passwd", **COMMON))
    failed = job.wait(60)
    assert isinstance(failed, Failed) and "not in the VAE folder" in failed.message and "other.vae.safetensors" in failed.message


def test_a_prompt_of_too_many_chunks_or_too_deep_a_clip_skip_fails_with_what_to_do(engine):
    job = engine.submit(GenerationRequest("a fox BREAK " * 40, **COMMON))
    failed = job.wait(60)
    assert isinstance(failed, Failed) and "chunks" in failed.message and "BREAK" in failed.message
    deep = engine.submit(GenerationRequest("a fox", clip_skip=3, **COMMON)).wait(60)  # the tiny encoder has 2 layers
    assert isinstance(deep, Failed) and deep.bad_request and "at most 2" in deep.message


def test_prompt_editing_and_alternation_change_the_picture_during_sampling(engine, studio_cache):
    steps = dict(steps=6)
    edited, _ = _ours(engine, "a [red:blue:3] fox", **steps)
    alternated, _ = _ours(engine, "a [cat|dog] in a field", **steps)
    alone = {text: _ours(engine, text, **steps)[0] for text in ("a red fox", "a blue fox", "a cat in a field", "a dog in a field")}
    for text in ("a red fox", "a blue fox"):
        assert not np.array_equal(edited, alone[text]), text
    for text in ("a cat in a field", "a dog in a field"):
        assert not np.array_equal(alternated, alone[text]), text
    literal = _theirs(studio_cache, prompt="a [red:blue:3] fox", num_inference_steps=6)
    assert not np.array_equal(edited, literal)
    # From the switch on, the edited job runs on "blue": a schedule that switches after the last step is "red" alone.
    assert np.array_equal(_ours(engine, "a [red:blue:10] fox", **steps)[0], alone["a red fox"])


def _with_components(pipe, fresh):
    """`pipe` with the modules of a freshly built tiny model, so loading into it leaves the shared reference alone."""
    import diffusers

    components = dict(pipe.components)
    components.update(unet=fresh.unet, text_encoder=fresh.text_encoder, tokenizer=fresh.tokenizer, vae=fresh.vae)
    out = diffusers.StableDiffusionPipeline(**components)
    out.set_progress_bar_config(disable=True)
    return out


# ---- the same through A1111's API


def test_the_api_lists_the_folders_and_honours_styles_clip_skip_and_vae(engine, folders):
    import base64
    import io
    import json

    from PIL import Image
    from server_support import live_server

    with live_server(engine, users=None) as server, server.client() as client:
        loras = client.get("/sdapi/v1/loras").json()
        assert [(l["name"], l["path"]) for l in loras] == [("detail", "detail")]  # a name, never the server's path
        assert client.post("/sdapi/v1/refresh-loras").status_code == 200
        embeddings = client.get("/sdapi/v1/embeddings").json()
        assert set(embeddings) == {"loaded", "skipped"} and embeddings["loaded"]["shiny"]["vectors"] == 2
        assert client.post("/sdapi/v1/refresh-embeddings").status_code == 200
        styles = client.get("/sdapi/v1/prompt-styles").json()
        assert {"name": "watercolor", "prompt": "{prompt}, watercolor painting", "negative_prompt": "photo"} in styles
        assert client.get("/sdapi/v1/sd-vae").json() == [{"model_name": "other.vae.safetensors", "filename": "other.vae.safetensors"}]

        body = dict(prompt="a fox", styles=["watercolor"], seed=COMMON["seed"], steps=COMMON["steps"], width=64, height=64,
                    cfg_scale=COMMON["cfg_scale"], sampler_name=SAMPLER,
                    override_settings={"CLIP_stop_at_last_layers": 2, "sd_vae": "other.vae.safetensors"})
        response = client.post("/sdapi/v1/txt2img", json=body)
        assert response.status_code == 200, response.text
        info = json.loads(response.json()["info"])
        assert info["clip_skip"] == 2 and info["styles"] == ["watercolor"]
        text = info["infotexts"][0]
        assert text.startswith("a fox, watercolor painting\nNegative prompt: photo\n") and "Clip skip: 2" in text
        assert "VAE: other.vae.safetensors" in text
        image = np.asarray(Image.open(io.BytesIO(base64.b64decode(response.json()["images"][0]))).convert("RGB"))
        direct, _ = _ours(engine, "a fox", styles=("watercolor",), clip_skip=2, vae="other.vae.safetensors")
        assert np.array_equal(image, direct)

        refused = client.post("/sdapi/v1/txt2img", json=dict(body, override_settings={"sd_vae": "/etc/passwd"}))
        assert refused.status_code == 422 and "not in the VAE folder" in refused.text and "Traceback" not in refused.text
        assert client.get("/studio/api/loras/detail/preview").status_code == 404  # no picture beside it


def test_jobs_with_the_same_lora_share_a_batch_and_others_wait_their_turn(engine):
    """A LoRA changes the model for the whole call: jobs of different users batch only when their LoRA sets are equal,
    and each image is still what its job makes alone."""
    import threading
    import time

    blocker = engine.submit(GenerationRequest("blocker", **{**COMMON, "steps": 12, "width": 128, "height": 128}), owner="carol")
    alice = engine.submit(GenerationRequest("a fox <lora:detail:0.8>", **COMMON), owner="alice")
    bob = engine.submit(GenerationRequest("<lora:detail:0.8> a boat", **{**COMMON, "seed": 7}), owner="bob")
    dave = engine.submit(GenerationRequest("a fox <lora:detail:0.3>", **COMMON), owner="dave")
    sizes, stop = [], threading.Event()

    def watch():
        while not stop.is_set():
            sizes.append(tuple(job.id for job in engine.running_jobs))
            time.sleep(0.001)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    results = [job.wait(120) for job in (blocker, alice, bob, dave)]
    stop.set()
    watcher.join()
    assert all(isinstance(r, Finished) for r in results), results
    groups = set(sizes)
    assert (alice.id, bob.id) in groups and not any(dave.id in group and len(group) > 1 for group in groups), groups
    for job, prompt, seed in ((alice, "a fox <lora:detail:0.8>", COMMON["seed"]), (bob, "<lora:detail:0.8> a boat", 7),
                              (dave, "a fox <lora:detail:0.3>", COMMON["seed"])):
        alone, _ = _ours(engine, prompt, **{"seed": seed} if seed != COMMON["seed"] else {})
        assert np.abs(pixels(job.result.images[0].path) - alone).max() <= 1, prompt


def test_an_embedding_added_and_refreshed_is_used_without_a_restart(engine, folders):
    from safetensors.torch import save_file

    _ours(engine, "a glowing fox")  # the model's prompt encoder exists before the file does
    added = folders / "embeddings" / "glowing.safetensors"
    save_file({"emb_params": torch.randn(1, 32, generator=torch.Generator().manual_seed(8))}, str(added))
    try:
        engine.prompt_library.embeddings.refresh()  # what POST /sdapi/v1/refresh-embeddings and the UI's Refresh do
        _, result = _ours(engine, "a glowing fox")
        assert 'TI hashes: "glowing: ' in result.images[0].infotext
    finally:
        added.unlink()
        engine.prompt_library.embeddings.refresh()
