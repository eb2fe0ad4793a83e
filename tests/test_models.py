"""Where weights come from: single files (offline), pickles refused, the default falling back to tiny, listing."""

from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from studio.checkpoints import ModelError, detect_family, list_checkpoints, resolve_model
from studio.config import Settings
from studio.contract import Failed, Finished, GenerationRequest
from tests.helpers import pixels


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory, studio_cache):
    from studio.checkpoints import materialize_config
    from studio.tiny import build_tiny_pipeline
    from tests.support.ldm_checkpoint import save_ldm_checkpoint

    folder = tmp_path_factory.mktemp("Stable-diffusion")
    pipe = build_tiny_pipeline(materialize_config("tiny", studio_cache) / "tokenizer")
    save_ldm_checkpoint(pipe, folder / "tiny-sd1.safetensors")
    return folder / "tiny-sd1.safetensors"


def test_single_file_checkpoint_loads_offline_and_draws_the_same_image(engine, tiny_checkpoint):
    assert os.environ["HF_HUB_OFFLINE"] == "1"
    request = GenerationRequest("same weights", seed=11, steps=3, width=64, height=64)
    from_file = engine.generate(replace(request, model=str(tiny_checkpoint)), may_name_any_model=True)
    assert isinstance(from_file, Finished), from_file
    from_recipe = engine.generate(replace(request, model="tiny"))
    assert np.array_equal(pixels(from_file.images[0].path), pixels(from_recipe.images[0].path))
    import hashlib

    expected_hash = hashlib.sha256(tiny_checkpoint.read_bytes()).hexdigest()[:10]
    assert f"Model hash: {expected_hash}, Model: tiny-sd1," in from_file.images[0].infotext
    # --max-models 1: loading the file model evicted tiny, and loading tiny again evicted the file model.
    assert engine.models.loaded_names() == ["tiny"]


def test_a_model_given_by_path_is_found_again_by_its_name(engine, tiny_checkpoint):
    loaded = engine.models.get(str(tiny_checkpoint))
    assert loaded.name == "tiny-sd1.safetensors"
    engine.models.get("tiny")  # evicts it (--max-models 1)
    assert engine.models.get("tiny-sd1.safetensors").source.location == str(tiny_checkpoint)
    engine.models.get("tiny")


def test_models_dir_lists_checkpoints_like_a1111(tiny_checkpoint, tmp_path):
    root = tiny_checkpoint.parent
    (root / "sub").mkdir(exist_ok=True)
    (root / "sub" / "old.ckpt").write_bytes(b"not really")
    (root / "diffusers-model" / "unet").mkdir(parents=True, exist_ok=True)
    (root / "diffusers-model" / "model_index.json").write_text("{}")
    (root / "diffusers-model" / "unet" / "diffusion_pytorch_model.safetensors").write_bytes(b"")
    names = [source.name for source in list_checkpoints(root)]
    assert names == ["diffusers-model", "sub/old.ckpt", "tiny-sd1.safetensors"]
    settings = Settings(models_dir=root)
    assert resolve_model("tiny-sd1", settings).location == str(tiny_checkpoint)
    assert resolve_model("sub/old.ckpt", settings).is_pickle


def test_pickle_checkpoints_are_refused(engine, tmp_path):
    ckpt = tmp_path / "model.ckpt"
    torch.save({"state_dict": {}}, ckpt)
    result = engine.generate(GenerationRequest("x", steps=2, width=64, height=64, model=str(ckpt)), may_name_any_model=True)
    assert isinstance(result, Failed)
    assert "pickle" in result.message and "--allow-pickle" in result.message
    assert engine.models.loaded_names() == ["tiny"], "a refused model must not evict the loaded one"


def test_broken_checkpoint_file_fails_alone(engine, tmp_path):
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json")
    result = engine.generate(GenerationRequest("x", steps=2, width=64, height=64, model=str(broken)), may_name_any_model=True)
    assert isinstance(result, Failed) and "not a readable .safetensors checkpoint" in result.message
    assert engine.models.loaded_names() == ["tiny"]


def test_a_model_that_fails_to_load_keeps_the_loaded_one(engine, tmp_path):
    """Past the cheap checks (a diffusers folder whose parts are broken): the loaded model comes back."""
    folder = tmp_path / "broken-folder"
    folder.mkdir()
    (folder / "model_index.json").write_text('{"_class_name": "StableDiffusionPipeline", "unet": ["diffusers", "UNet2DConditionModel"]}')
    result = engine.generate(GenerationRequest("x", steps=2, width=64, height=64, model=str(folder)), may_name_any_model=True)
    assert isinstance(result, Failed) and str(tmp_path) not in result.message
    assert engine.models.loaded_names() == ["tiny"]
    after = engine.generate(GenerationRequest("x", steps=1, width=64, height=64, seed=1))
    assert not isinstance(after, Failed)


def test_unknown_model_is_one_clear_line(tmp_path):
    with pytest.raises(ModelError) as caught:
        resolve_model("nothing-here.safetensors", Settings(models_dir=tmp_path))
    assert "not found" in str(caught.value) and "\n" not in str(caught.value)


def test_hub_model_not_in_cache_offline_is_an_error(tmp_path, monkeypatch):
    from studio.checkpoints import HashCache, load_model

    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    source = resolve_model("someone/some-model", Settings())
    assert source.kind == "hub"
    with pytest.raises(ModelError) as caught:
        load_model(source, Settings(cache_dir=tmp_path), torch.device("cpu"), torch.float32, HashCache(tmp_path / "h.json"))
    assert "someone/some-model" in str(caught.value) and "HF_HUB_OFFLINE" in str(caught.value)


def test_default_model_falls_back_to_demo_and_says_so(tmp_path, monkeypatch, studio_cache):
    from studio.engine import Engine
    from studio.outputs import OutputStore

    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty-hf-home"))
    engine = Engine(Settings(model=None, outputs=tmp_path / "out", cache_dir=studio_cache, warmup=False), OutputStore(tmp_path / "out")).start()
    try:
        assert engine.current_model == "demo"
        notice = engine.info().notice
        assert "stable-diffusion-v1-5/stable-diffusion-v1-5" in notice
        assert "'demo' model, which draws simple coloured shapes" in notice and "a red circle on a white background" in notice
    finally:
        engine.stop()


def test_without_the_demo_model_the_fallback_is_tiny(tmp_path, monkeypatch, studio_cache):
    import studio.engine
    from studio.engine import Engine
    from studio.outputs import OutputStore

    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty-hf-home"))
    monkeypatch.setattr(studio.engine, "demo_available", lambda: False)  # a copy of the studio without models/demo
    engine = Engine(Settings(model=None, outputs=tmp_path / "out", cache_dir=studio_cache, warmup=False), OutputStore(tmp_path / "out")).start()
    try:
        assert engine.current_model == "tiny" and "random-weight 'tiny'" in engine.info().notice
        assert "demo" not in engine.available_models()
    finally:
        engine.stop()


def test_explicit_model_that_cannot_be_had_is_an_error(tmp_path, monkeypatch, studio_cache):
    from studio.engine import Engine
    from studio.outputs import OutputStore

    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty-hf-home"))
    engine = Engine(Settings(model="someone/missing", outputs=tmp_path, cache_dir=studio_cache, warmup=False), OutputStore(tmp_path))
    with pytest.raises(ModelError, match="someone/missing"):
        engine.start()


def _shapes(**keys):
    return {key: SimpleNamespace(shape=shape) for key, shape in keys.items()}


@pytest.mark.parametrize(
    "name, shapes, family, config, prediction",
    [
        ("v1-5.safetensors", _shapes(**{"model.diffusion_model.input_blocks.0.0.weight": (320, 4, 3, 3), "model.diffusion_model.output_blocks.11.0.skip_connection.weight": (320, 640, 1, 1)}), "sd1", "sd15", None),
        ("v1-5-inpainting.safetensors", _shapes(**{"model.diffusion_model.input_blocks.0.0.weight": (320, 9, 3, 3)}), "sd1", "sd15-inpainting", None),
        ("v2-1_768-ema.safetensors", _shapes(**{"model.diffusion_model.input_blocks.0.0.weight": (320, 4, 3, 3), "model.diffusion_model.input_blocks.2.1.transformer_blocks.0.attn2.to_k.weight": (320, 1024)}), "sd2", "sd21", None),
        ("v2-1_512-base.safetensors", _shapes(**{"model.diffusion_model.input_blocks.0.0.weight": (320, 4, 3, 3), "model.diffusion_model.input_blocks.2.1.transformer_blocks.0.attn2.to_k.weight": (320, 1024)}), "sd2", "sd21", "epsilon"),
        ("sd_xl_base_1.0.safetensors", _shapes(**{"model.diffusion_model.input_blocks.0.0.weight": (320, 4, 3, 3), "conditioner.embedders.1.model.transformer.resblocks.9.mlp.c_proj.bias": (1280,)}), "sdxl", "sdxl", None),
    ],
)
def test_family_detection_from_checkpoint_keys(name, shapes, family, config, prediction):
    found = detect_family(Path(name), shapes)
    assert (found.family, found.config, found.prediction_type) == (family, config, prediction)


@pytest.mark.parametrize("config", ["sd15", "sd15-inpainting", "sd21", "sdxl"])
def test_shipped_configs_are_complete_offline(config, studio_cache):
    from studio.checkpoints import materialize_config

    folder = materialize_config(config, studio_cache)
    index = json.loads((folder / "model_index.json").read_text())
    for component, spec in index.items():
        if isinstance(spec, list) and spec[0]:
            assert (folder / component).is_dir(), component
            assert any((folder / component).glob("*.json")), component
    from transformers import CLIPTokenizer

    tokenizer = CLIPTokenizer.from_pretrained(str(folder / "tokenizer"))
    assert tokenizer("a photo of a cat").input_ids == [49406, 320, 1125, 539, 320, 2368, 49407]


def test_attention_falls_back_to_sdpa_without_crashing():
    from studio.pipelines import choose_attention

    auto = choose_attention("auto", torch.device("cpu"), torch.float32)
    assert auto.backend == "sdpa" and "xformers" in auto.reason
    forced = choose_attention("xformers", torch.device("cpu"), torch.float32)
    assert forced.backend == "sdpa" and "asked for" in forced.reason
