"""Interrogate with a BLIP captioning model, offline: a tiny random BLIP (transformers' BlipConfig with tiny text and
vision configs, a tiny BertTokenizer from a vocab file written here, a small BlipImageProcessor) saved to a folder and
named by --caption-model. POST /sdapi/v1/interrogate answers A1111's {"caption": text} with it; deepdanbooru stays
a clear 422; a folder that holds no model is a 422 that names no path."""

from __future__ import annotations

import argparse
import base64
import io

import numpy as np
import pytest
from PIL import Image
from server_support import live_server

from studio import interrogate
from studio.config import Settings, add_engine_arguments, settings_from_args

INTERROGATE = "/sdapi/v1/interrogate"
WORDS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "picture", "of", "cat", "dog", "red", "blue", "the", "on"]


def write_tiny_blip(folder):
    """A tiny random BLIP captioning model with its processor, saved into `folder` (a second or so on the CPU)."""
    import torch
    from transformers import BertTokenizer, BlipConfig, BlipForConditionalGeneration, BlipImageProcessor, BlipProcessor

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.txt").write_text("\n".join(WORDS) + "\n")
    tokenizer = BertTokenizer(str(folder / "vocab.txt"), model_max_length=32)
    tokenizer.add_special_tokens({"bos_token": "[DEC]"})
    processor = BlipProcessor(image_processor=BlipImageProcessor(size={"height": 32, "width": 32}), tokenizer=tokenizer)
    tokens = dict(bos_token_id=tokenizer.bos_token_id, pad_token_id=tokenizer.pad_token_id,
                  sep_token_id=tokenizer.sep_token_id, eos_token_id=tokenizer.sep_token_id)
    config = BlipConfig(
        text_config=dict(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=37, num_hidden_layers=2,
                         num_attention_heads=4, max_position_embeddings=64, **tokens),
        vision_config=dict(hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4,
                           image_size=32, patch_size=8, projection_dim=32),
        projection_dim=32)
    torch.manual_seed(0)
    BlipForConditionalGeneration(config).eval().save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def blip_folder(tmp_path_factory):
    return write_tiny_blip(tmp_path_factory.mktemp("captioning") / "tiny-blip")


@pytest.fixture(scope="module")
def tiny_settings(tmp_path_factory, studio_cache, blip_folder):
    """This module's engine captions with the tiny BLIP above (--caption-model)."""
    parser = argparse.ArgumentParser()
    add_engine_arguments(parser)
    args = parser.parse_args(["--model", "tiny", "--no-warmup", "--caption-model", str(blip_folder),
                              "--outputs", str(tmp_path_factory.mktemp("outputs")), "--cache-dir", str(studio_cache)])
    settings = settings_from_args(args)
    assert settings.caption_model == str(blip_folder)
    return settings


@pytest.fixture(scope="module")
def client(engine):
    with live_server(engine) as server, server.client("alice") as client:
        yield client


def _b64(width: int = 64, height: int = 48) -> str:
    picture = Image.fromarray(np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8))
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def test_clip_answers_a_caption_from_the_blip_model(client):
    response = client.post(INTERROGATE, json={"image": _b64(), "model": "clip"})
    assert response.status_code == 200, response.text
    assert set(response.json()) == {"caption"} and isinstance(response.json()["caption"], str)
    again = client.post(INTERROGATE, json={"image": _b64()})  # clip is the default; the model stays loaded
    assert again.status_code == 200 and again.json() == response.json()


def test_deepdanbooru_and_bad_pictures_stay_clear_422s(client):
    response = client.post(INTERROGATE, json={"image": _b64(), "model": "deepdanbooru"})
    assert response.status_code == 422 and "no captioning model is installed" in response.json()["detail"]
    assert "DeepDanbooru" in response.json()["detail"]
    response = client.post(INTERROGATE, json={"image": "not base64 at all!", "model": "clip"})
    assert response.status_code == 422, response.text
    response = client.post(INTERROGATE, json={"image": "", "model": "clip"})
    assert response.status_code == 422 and "image must be" in response.json()["detail"]


def test_a_folder_without_a_model_is_a_422_that_names_no_path(tmp_path, caplog):
    from studio.extras import NotInstalledError
    from studio.extras import interrogate as run_interrogate

    empty = tmp_path / "no-model-here"
    empty.mkdir()
    picture = Image.new("RGB", (16, 16), (10, 20, 30))
    captioner = interrogate.Captioner(str(empty))
    assert captioner.caption(picture) is None and not captioner.available()
    assert "not available" in caplog.text  # the reason is logged
    with pytest.raises(NotInstalledError) as refused:
        run_interrogate(picture, "clip", Settings(caption_model=str(empty)))
    assert str(empty) not in str(refused.value) and "no captioning model is installed" in str(refused.value)


def test_the_engine_keeps_one_captioner_for_its_source(engine, blip_folder):
    first = engine.captioner  # the server's, built with the engine, loaded on first use and kept
    assert engine.captioner is first and first.source == str(blip_folder)
    assert interrogate.Captioner(None).source == interrogate.DEFAULT_CAPTION_MODEL
    caption = first.caption(Image.new("RGB", (40, 40), (200, 40, 40)))
    assert isinstance(caption, str) and first.available()
