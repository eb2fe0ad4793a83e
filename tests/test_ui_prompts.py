"""The UI's prompt tools without a server: the A1111-style token counter ("82/150": chunks, BREAK, LoRA tags left
out, embeddings' vectors counted), the Networks panel's cards, the new generate inputs (styles, clip skip, VAE), PNG
info's send (what it carries, what it says it cannot apply), and the LoRA preview route's rules."""

from __future__ import annotations

import struct
import subprocess
import sys
import zlib

import pytest

from studio.contract import RequestError
from studio.prompts.chunks import MAX_CHUNKS
from studio.tokenizers import write_clip_tokenizer
from studio.ui import png_info
from studio.ui.networks import NO_EMBEDDINGS, NO_LORAS, lora_preview_url, networks_html
from studio.ui.tokens import TokenCounter, counter_for, token_counter_html
from studio.ui.txt2img import common_fields
from studio.validation import MAX_PROMPT_CHARS


@pytest.fixture(scope="module")
def counter(tmp_path_factory) -> TokenCounter:
    cache = tmp_path_factory.mktemp("prompt-tokens")
    write_clip_tokenizer(cache / "configs" / "clip" / "tokenizer")
    counter = counter_for(str(cache))
    assert counter.exact
    return counter


# ---- the token counter


def test_a_long_prompt_counts_in_chunks_of_75(counter):
    assert counter.chunk_count("cat " * 82) == (82, 150)
    assert counter.chunk_count("a cat") == (2, 75)
    assert counter.chunk_count("") == (0, 75)
    assert counter.chunk_count("cat " * 75) == (75, 75)
    assert counter.chunk_count("cat " * 76) == (76, 150)
    shown = token_counter_html(counter, "cat " * 82)
    assert "82/150 tokens" in shown and "⚠" not in shown


def test_break_starts_a_new_chunk(counter):
    # every chunk but the last counts as full, as A1111's counter shows it
    assert counter.chunk_count("a cat BREAK a dog") == (77, 150)
    assert counter.chunk_count("a cat BREAK BREAK a dog") == (152, 225)
    assert counter.chunk_count("a BREAKfast") == counter.chunk_count("a breakfast")  # only the word BREAK


def test_lora_tags_are_not_counted(counter):
    assert counter.chunk_count("a cat <lora:add_detail:0.7>") == counter.chunk_count("a cat")
    assert counter.chunk_count("<lora:x:1> <hypernet:y:0.5> a cat") == counter.chunk_count(" a cat")


def test_an_embedding_counts_its_vectors_and_is_never_split(counter):
    assert counter.chunk_count("a cat, myemb") == (5, 75)  # unknown: "myemb" is just words
    assert counter.chunk_count("a cat, myemb", {"myemb": 8}) == (11, 75)
    assert counter.chunk_count("(myemb:1.2) cat", {"myemb": 3}) == (4, 75)  # emphasis around it
    # 70 tokens, then 8 vectors that do not fit: they move whole to the next chunk
    assert counter.chunk_count("cat " * 70 + "myemb", {"myemb": 8}) == (83, 150)
    shown = token_counter_html(counter, "a cat, myemb", {"myemb": 8})
    assert "11/75" in shown


def test_emphasis_and_prompt_editing_count_as_the_engine_encodes(counter):
    assert counter.chunk_count("(a cat:1.3), [dog]") == counter.chunk_count("a cat, dog")
    # prompt editing: the longer of the texts the schedule gives
    assert counter.chunk_count("a [cat:dog with a very long tail:0.5]") == counter.chunk_count("a dog with a very long tail")


def test_commas_keep_a_phrase_whole_at_a_chunk_end(counter):
    text = "cat " * 70 + ", big red dog, " + "cat " * 10
    used, capacity = counter.chunk_count(text)
    assert capacity == 150 and used > 75


def test_a_prompt_over_the_cap_is_refused_not_counted(counter):
    too_long = "x" * (MAX_PROMPT_CHARS + 1)
    with pytest.raises(RequestError, match="too long"):
        counter.chunk_count(too_long)
    assert "too long" in token_counter_html(counter, too_long)


def test_a_prompt_of_more_chunks_than_the_server_encodes_is_flagged(counter):
    within = "a cat BREAK " * (MAX_CHUNKS - 1) + "a cat"
    assert counter.chunk_count(within)[1] == MAX_CHUNKS * 75 and "⚠" not in token_counter_html(counter, within)
    over = within + " BREAK a dog"
    shown = token_counter_html(counter, over)
    assert "⚠" in shown and f"{MAX_CHUNKS + 1} chunks" in shown and "BREAK" in shown


def test_the_approximate_counter_chunks_too():
    approximate = TokenCounter(None)
    assert approximate.chunk_count("a cat BREAK dog") == (76, 150)
    assert approximate.chunk_count("a cat <lora:x:1>") == (2, 75)
    assert approximate.chunk_count("a cat, Myemb", {"myemb": 4}) == (7, 75)
    assert "approximate" in token_counter_html(approximate, "a cat")


def test_the_counter_stays_torch_free():
    code = ("import sys, studio.ui.tokens, studio.ui.networks, studio.ui.png_info; "
            "sys.exit(1 if 'torch' in sys.modules else 0)")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


# ---- the Networks panel


def test_networks_cards_insert_tags_and_escape_names():
    shown = networks_html("txt2img", [{"name": "add_detail", "alias": "Detailer"}, {"name": "<b>'x'", "alias": "<b>'x'"}],
                          {"loaded": {"myemb": {"vectors": 8}}, "skipped": {"xl_only": {"vectors": 2}}})
    assert "data-insert='&lt;lora:add_detail:1&gt;'" in shown
    assert "<b>'x'" not in shown and "&lt;b&gt;&#x27;x&#x27;" in shown
    assert lora_preview_url("add_detail") == "/studio/api/loras/add_detail/preview"
    assert "/studio/api/loras/%3Cb%3E%27x%27/preview" in shown  # quoted in the URL
    assert "Detailer" in shown and "data-insert='myemb'" in shown and "8 vectors" in shown
    assert "xl_only" in shown and "Not for the current model" in shown


def test_empty_networks_say_where_to_put_files():
    shown = networks_html("img2img", [], {"loaded": {}, "skipped": {}})
    assert NO_LORAS in shown and NO_EMBEDDINGS in shown
    assert "models/Lora" in shown and "embeddings" in shown and "Refresh" in shown


# ---- the generate inputs


BASE = ("a cat", "", "Euler a", 20, 7.0, 0, 0, -1, 1, 1, "tiny")


def test_common_fields_carry_styles_clip_skip_and_vae():
    fields = common_fields(*BASE, ["Cinematic", "Sharp"], 2.0, "Automatic")
    assert fields["styles"] == ("Cinematic", "Sharp") and fields["clip_skip"] == 2 and fields["vae"] is None
    fields = common_fields(*BASE, "One", 1, "vae-ft-mse.safetensors")
    assert fields["styles"] == ("One",) and fields["vae"] == "vae-ft-mse.safetensors"
    assert common_fields(*BASE)["styles"] == () and common_fields(*BASE)["clip_skip"] == 1
    with pytest.raises(RequestError):
        common_fields(*BASE, [{"not": "a name"}], 1, None)
    with pytest.raises(RequestError):
        common_fields(*BASE, [], 1, {"path": "/etc/passwd"})


# ---- PNG info → Text to image


LORAS = [{"name": "add_detail", "alias": "add_detail"}, {"name": "film_grain", "alias": "FilmGrain"}]


def _plan(params, **overrides):
    kwargs = dict(loras=LORAS, embeddings={"loaded": {"goodemb": {"vectors": 2}}}, vaes=["vae-ft-mse.safetensors"],
                  models=["tiny", "sd15"], model_hashes={"tiny": "755f4d1900"})
    kwargs.update(overrides)
    return png_info.plan_send(params, **kwargs)


def _params(**extra):
    params = {"Prompt": "a cat <lora:add_detail:0.7> <lora:FilmGrain:1>", "Negative prompt": "dog", "Steps": "12",
              "Sampler": "Euler a", "CFG scale": "6.5", "Seed": "7", "Size-1": "64", "Size-2": "96", "Model": "tiny",
              "Model hash": "755f4d1900"}
    params.update(extra)
    return params


def test_png_info_send_carries_clip_skip_vae_model_and_lora_tags():
    fields, notes = _plan(_params(**{"Clip skip": "2", "VAE": "vae-ft-mse.safetensors", "VAE hash": "abc"}))
    assert notes == []
    assert fields["prompt"] == "a cat <lora:add_detail:0.7> <lora:FilmGrain:1>"  # the tags ride along in the prompt
    assert fields["clip_skip"] == 2 and fields["vae"] == "vae-ft-mse.safetensors" and fields["model"] == "tiny"
    assert (fields["steps"], fields["cfg_scale"], fields["seed"], fields["width"], fields["height"]) == (12, 6.5, 7, 64, 96)
    # A1111 leaves out Clip skip 1 and an automatic VAE: sending sets them back
    fields, notes = _plan(_params())
    assert fields["clip_skip"] == 1 and fields["vae"] == "Automatic" and notes == []
    # a VAE named by its stem, a model known only by its hash
    fields, notes = _plan(_params(VAE="vae-ft-mse", Model="renamed"))
    assert fields["vae"] == "vae-ft-mse.safetensors" and fields["model"] == "tiny" and notes == []


def test_png_info_send_reports_what_it_cannot_apply():
    params = _params(Prompt="a cat <lora:missing_one:0.8> <lora:add_detail:1> <hypernet:old:1>", VAE="nope.pt",
                     Model="dreamshaper_8", **{"Model hash": "0123456789", "Hires upscale": "2", "Hires steps": "10",
                                               "Denoising strength": "0.5", "TI hashes": "goodemb: 1, bademb: 2"})
    fields, notes = _plan(params)
    text = "\n".join(notes)
    assert "missing_one" in text and "add_detail" not in text  # only the LoRA that is not here
    assert "models/Lora" in text
    assert "nope.pt" in text and fields["vae"] == "Automatic"
    assert "dreamshaper_8" in text and "model" not in fields
    assert "Hires" not in text and "Denoising strength" not in text  # hires fix is applied now
    assert (fields["enable_hr"], fields["hr_scale"], fields["hr_second_pass_steps"], fields["denoising_strength"]) == (True, 2.0, 10, 0.5)
    assert "<hypernet:old:1>" in text
    assert "bademb" in text and "goodemb" not in text
    assert fields["prompt"] == params["Prompt"]  # the prompt itself is sent as written


def test_png_info_send_without_parameters_sends_nothing():
    assert _plan({}) == ({}, [])
    fields, notes = _plan(_params(**{"Clip skip": "99"}))
    assert "clip_skip" not in fields and any("Clip skip" in note for note in notes)


# ---- the LoRA preview pictures (GET /studio/api/loras/{name}/preview serves them)


def _png_bytes() -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    raw = zlib.compress(b"\x00\xff\x00\x00")
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)) + chunk(b"IDAT", raw) + chunk(b"IEND", b"")


def _safetensors(path):
    header = b'{"__metadata__":{"ss_output_name":"Pretty"}}'
    path.write_bytes(struct.pack("<Q", len(header)) + header)


def test_lora_preview_is_found_by_name_and_only_pictures_are_served(tmp_path):
    from studio.loras import MAX_PREVIEW_BYTES, LoraLibrary

    folder = tmp_path / "Lora"
    folder.mkdir()
    for name in ("withpic", "fakepic", "nopic", "hugepic"):
        _safetensors(folder / f"{name}.safetensors")
    (folder / "withpic.png").write_bytes(_png_bytes())
    (folder / "fakepic.png").write_bytes(b"<html><script>alert(1)</script></html>")
    (folder / "hugepic.webp").write_bytes(b"RIFF\x00\x00\x00\x00WEBP" + b"\x00" * (MAX_PREVIEW_BYTES + 1))
    (tmp_path / "secret.png").write_bytes(_png_bytes())
    library = LoraLibrary(folder)

    data, media_type = library.preview_picture("withpic")
    assert media_type == "image/png" and data == _png_bytes()
    assert library.preview_picture("Pretty") is None  # by file name only, as the cards ask
    for name in ("fakepic", "nopic", "hugepic", "../secret", "..%2Fsecret", "secret", "", "withpic.png"):
        assert library.preview_picture(name) is None, name


# ---- through the UI's API (the whole studio, the tiny model)


def test_the_txt2img_api_takes_clip_skip_and_refuses_an_unknown_vae(engine):
    gradio_client = pytest.importorskip("gradio_client")
    from tests.ui_support import launch_studio

    with launch_studio(engine) as server:
        client = gradio_client.Client(server.url + "/", verbose=False)
        common = dict(prompt="a lighthouse <lora:not_here:1>", steps=2, width=64, height=64, seed=3)
        result = client.predict(api_name="/txt2img", clip_skip=2, **common)
        assert "Clip skip: 2" in result[3]
        with pytest.raises(Exception) as raised:
            client.predict(api_name="/txt2img", vae="no-such-vae.safetensors", **common)
        assert "no-such-vae" in str(raised.value) and "Traceback" not in str(raised.value)
