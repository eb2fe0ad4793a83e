"""A1111 prompt encoding (studio/prompts/chunks.py, encode.py, embeddings.py) against references computed here
independently, from plain tokenizer / text-encoder calls and the facts of A1111's sd_hijack_clip and sd_emphasis."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from studio import tiny
from studio.checkpoints import materialize_config
from studio.prompts.chunks import build_chunks, token_count
from studio.prompts.embeddings import EmbeddingLibrary
from studio.prompts.encode import PromptEncoder

BOS, EOS, COMMA = 49406, 49407, 267


@pytest.fixture(scope="module")
def tokenizer_folder(studio_cache):
    return materialize_config("tiny", studio_cache) / "tokenizer"


def build_pipe(tokenizer_folder):
    """The tiny pipe, with a bias on its text encoder's final layer norm: without one (random init) every token's
    features average exactly 0, which makes A1111's mean restoration 0/0. Real CLIP models have such a bias."""
    pipe = tiny.build_tiny_pipeline(tokenizer_folder)
    norm = pipe.text_encoder.final_layer_norm
    with torch.no_grad():
        norm.bias.copy_(0.3 + 0.2 * torch.randn(norm.bias.shape, generator=torch.Generator().manual_seed(11)))
    return pipe


@pytest.fixture(scope="module")
def pipe(tokenizer_folder):
    return build_pipe(tokenizer_folder)


@pytest.fixture(scope="module")
def encoder(pipe):
    return PromptEncoder(pipe, "sd1")


# -- the reference, written plainly ------------------------------------------------------------------------------

def ids_of(pipe, text):
    return pipe.tokenizer(text, add_special_tokens=False)["input_ids"]


def weighted(pipe, pieces):
    """[(text, weight)] → (body ids, body multipliers) of one chunk."""
    ids, mults = [], []
    for text, weight in pieces:
        t = ids_of(pipe, text)
        ids += t
        mults += [weight] * len(t)
    return ids, mults


def reference(pipe, chunks, clip_skip=1):
    """chunks: [(body ids ≤ 75, body multipliers)] → [1, 77k, dim], each chunk encoded on its own as A1111 does."""
    out = []
    for body, mults in chunks:
        assert len(body) <= 75
        ids = torch.tensor([[BOS] + body + [EOS] * (76 - len(body))])
        m = torch.tensor([1.0] + mults + [1.0] * (76 - len(mults)))
        with torch.no_grad():
            o = pipe.text_encoder(ids, output_hidden_states=True)
            if clip_skip > 1:
                z = pipe.text_encoder.final_layer_norm(o.hidden_states[-clip_skip])  # transformers 5: no .text_model
            else:
                z = o.last_hidden_state
            mean0 = z.mean()
            z = z * m[None, :, None]
            z = z * (mean0 / z.mean())
        out.append(z)
    return torch.cat(out, dim=1)


def close(a, b):
    return a.shape == b.shape and torch.allclose(a, b, rtol=1e-5, atol=1e-6)


# -- chunking (no model) -----------------------------------------------------------------------------------------

def test_chunks_module_does_not_import_torch():
    code = "import sys; import studio.prompts.chunks; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=os.path.dirname(os.path.dirname(__file__)))


def fake_tokenize(text):
    return [COMMA if w == "," else 1000 + len(w) for w in text.split()]


def test_chunk_counts_and_break():
    assert [c.tokens for c in build_chunks([("", 1.0)], fake_tokenize, COMMA)] == [[]]
    assert token_count(build_chunks([("", 1.0)], fake_tokenize, COMMA)) == (0, 75)
    chunks = build_chunks([("a b", 1.0), ("BREAK", -1.0), ("c", 1.0)], fake_tokenize, COMMA)
    assert [len(c.tokens) for c in chunks] == [2, 1]
    assert token_count(chunks) == (76, 150)
    # A trailing BREAK closes the chunk and adds nothing; two BREAKs make an all-padding chunk between.
    assert len(build_chunks([("a", 1.0), ("BREAK", -1.0)], fake_tokenize, COMMA)) == 1
    assert [c.tokens for c in build_chunks([("a", 1.0), ("BREAK", -1.0), ("BREAK", -1.0), ("b", 1.0)], fake_tokenize, COMMA)][1] == []
    chunks = build_chunks([("w " * 80, 1.3)], fake_tokenize, COMMA)
    assert [len(c.tokens) for c in chunks] == [75, 5] and chunks[1].multipliers == [1.3] * 5
    assert token_count(chunks) == (80, 150)


def test_chunk_embedding_moves_whole_and_follows_backtrack():
    def find(tokens, i):  # the word "emb" (token 1003) is a 3-vector embedding
        return ("emb", 3, 1) if tokens[i] == 1003 else None

    chunks = build_chunks([("w " * 73 + "emb x", 1.0)], fake_tokenize, COMMA, find)
    assert len(chunks[0].tokens) == 73 and chunks[1].embeddings == [(0, "emb")] and chunks[1].tokens == [0, 0, 0, 1001]
    # Comma backtrack moves an embedding after the comma together with its fix.
    chunks = build_chunks([("w " * 65 + ", w w emb w w w w x", 1.0)], fake_tokenize, COMMA, find)
    assert len(chunks[0].tokens) == 66 and chunks[0].embeddings == []
    assert chunks[1].embeddings == [(2, "emb")] and chunks[1].tokens[:5] == [1001, 1001, 0, 0, 0]


# -- encoding on the tiny SD1 model --------------------------------------------------------------------------------

def test_plain_prompt_equals_diffusers_encode_prompt(pipe, encoder):
    ours = encoder.encode("a red fox in the snow").embeds
    theirs = pipe.encode_prompt("a red fox in the snow", "cpu", 1, False)[0]
    assert torch.equal(ours, theirs)


@pytest.mark.parametrize(
    "prompt, pieces",
    [
        ("a (red:1.5) cat", [("a ", 1.0), ("red", 1.5), (" cat", 1.0)]),
        ("a ((big)) [blue] (eyes:0.7)", [("a ", 1.0), ("big", 1.21), (" ", 1.0), ("blue", 1 / 1.1), (" ", 1.0), ("eyes", 0.7)]),
        ("(dark (forest:1.5) path), [[fog]]", [("dark ", 1.1), ("forest", 1.65), (" path", 1.1), (", ", 1.0), ("fog", 1 / 1.21)]),
    ],
)
def test_emphasis(pipe, encoder, prompt, pieces):
    cond = encoder.encode(prompt)
    assert cond.chunks == 1
    assert close(cond.embeds, reference(pipe, [weighted(pipe, pieces)]))
    assert not close(cond.embeds, reference(pipe, [weighted(pipe, [(prompt.replace("(", "").replace(")", ""), 1.0)])]))


def single_token_words(pipe, words, n):
    out = (words * n)[:n]
    assert all(len(ids_of(pipe, w)) == 1 for w in words)
    return out


def test_long_prompt_comma_backtrack(pipe, encoder):
    first = single_token_words(pipe, ["cat", "dog", "tree", "red"], 70)
    rest = single_token_words(pipe, ["blue", "sky", "sun"], 10)
    prompt = " ".join(first) + ", " + " ".join(rest)
    tokens = ids_of(pipe, prompt)
    assert len(tokens) == 81 and tokens[70] == COMMA
    chunks = encoder.chunks(prompt)
    # Without backtrack the first chunk would take 75 tokens; the 4 words after the comma moved to chunk 2.
    assert [len(c.tokens) for c in chunks] == [71, 10]
    expected = reference(pipe, [(tokens[:71], [1.0] * 71), (tokens[71:], [1.0] * 10)])
    cond = encoder.encode(prompt)
    assert cond.chunks == 2 and cond.embeds.shape == (1, 154, 32) and close(cond.embeds, expected)
    assert encoder.count(prompt) == (85, 150)

    # A comma more than 20 tokens back does not move anything: a plain cut at 75.
    far = " ".join(first[:50]) + ", " + " ".join(single_token_words(pipe, ["blue", "sky", "sun"], 30))
    tokens = ids_of(pipe, far)
    assert [len(c.tokens) for c in encoder.chunks(far)] == [75, 6]
    assert close(encoder.encode(far).embeds, reference(pipe, [(tokens[:75], [1.0] * 75), (tokens[75:], [1.0] * 6)]))
    # backtrack=0 turns it off.
    assert [len(c.tokens) for c in PromptEncoder(pipe, "sd1", backtrack=0).chunks(prompt)] == [75, 6]


def test_break(pipe, encoder):
    cond = encoder.encode("a red cat BREAK a (blue:1.4) dog")
    expected = reference(pipe, [weighted(pipe, [("a red cat", 1.0)]), weighted(pipe, [("a ", 1.0), ("blue", 1.4), (" dog", 1.0)])])
    assert cond.chunks == 2 and close(cond.embeds, expected)


def test_clip_skip_2(pipe, encoder):
    cond = encoder.encode("a (red:1.2) fox", clip_skip=2)
    expected = reference(pipe, [weighted(pipe, [("a ", 1.0), ("red", 1.2), (" fox", 1.0)])], clip_skip=2)
    assert close(cond.embeds, expected)
    assert not close(cond.embeds, encoder.encode("a (red:1.2) fox").embeds)
    with pytest.raises(ValueError):
        encoder.encode("a fox", clip_skip=0)


def test_empty_prompt(pipe, encoder):
    cond = encoder.encode("")
    assert cond.chunks == 1 and close(cond.embeds, reference(pipe, [([], [])]))
    assert encoder.count("") == (0, 75)


def test_cond_uncond_padding(pipe, encoder):
    long_prompt = ", ".join(single_token_words(pipe, ["cat", "dog", "tree", "red"], 50))  # 99 tokens: 2 chunks
    cond, uncond = encoder.encode_pair(long_prompt, "blurry", clip_skip=2)
    assert cond.chunks == uncond.chunks == 2 and cond.embeds.shape == uncond.embeds.shape == (1, 154, 32)
    expected = reference(pipe, [(ids_of(pipe, "blurry"), [1.0]), ([], [])], clip_skip=2)
    assert close(uncond.embeds, expected)
    # padded() is the same thing, and leaves a long enough conditioning alone.
    assert close(encoder.padded(encoder.encode("blurry", clip_skip=2), 2, clip_skip=2).embeds, expected)
    assert encoder.padded(cond, 1) is cond


def test_same_image_as_diffusers_prompt(pipe, encoder):
    cond, uncond = encoder.encode_pair("a lighthouse at dusk", "blurry, low quality")
    kwargs = dict(num_inference_steps=2, guidance_scale=6.0, width=64, height=64, output_type="np")
    ours = pipe(prompt_embeds=cond.embeds, negative_prompt_embeds=uncond.embeds, generator=torch.Generator("cpu").manual_seed(3), **kwargs).images
    theirs = pipe(prompt="a lighthouse at dusk", negative_prompt="blurry, low quality", generator=torch.Generator("cpu").manual_seed(3), **kwargs).images
    assert np.array_equal(ours, theirs)


def test_encode_time(pipe, encoder):
    """Prints encode time on the tiny model next to one bare text-encoder forward (the floor), for the report."""
    def ms(fn, runs=20):
        fn()
        start = time.perf_counter()
        for _ in range(runs):
            fn()
        return (time.perf_counter() - start) / runs * 1000

    ids = torch.tensor([[BOS] + [EOS] * 76])
    with torch.no_grad():
        bare = ms(lambda: pipe.text_encoder(ids))
    for text in ("a red fox", "a (castle:1.2) on a hill, " * 16):
        print(f"\nencode {encoder.count(text)} tokens on the tiny model: {ms(lambda: encoder.encode(text)):.1f} ms "
              f"(one bare 77-token text-encoder forward: {bare:.1f} ms)")


# -- textual inversion ---------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def embedding_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("embeddings")
    g = torch.Generator().manual_seed(7)
    save_file({"emb_params": torch.randn(2, 32, generator=g)}, str(folder / "mytok.safetensors"))
    save_file({"emb_params": torch.randn(1, 48, generator=g)}, str(folder / "wide.safetensors"))  # wrong width
    torch.save({"string_to_param": {"*": torch.randn(1, 32, generator=g)}, "name": "pickled", "step": 5}, folder / "pickled.pt")
    return folder


@pytest.fixture(scope="module")
def ti_pipe(tokenizer_folder, embedding_folder):
    """A separate copy of the tiny pipe with the embedding loaded by diffusers itself (tokenizer and model changed)."""
    ref = build_pipe(tokenizer_folder)
    ref.load_textual_inversion(str(embedding_folder / "mytok.safetensors"), token="mytok")
    return ref


def ti_reference(ti_pipe, chunk_pieces):
    """Like reference(), with diffusers' prompt conversion ("mytok" → "mytok mytok_1") and its enlarged tokenizer."""
    chunks = []
    for pieces in chunk_pieces:
        converted = [(ti_pipe.maybe_convert_prompt(text, ti_pipe.tokenizer), w) for text, w in pieces]
        chunks.append(weighted(ti_pipe, converted))
    return reference(ti_pipe, chunks)


def test_embedding_two_vectors(pipe, embedding_folder, ti_pipe):
    library = EmbeddingLibrary(embedding_folder)
    vocab_before, weight_before = len(pipe.tokenizer), pipe.text_encoder.get_input_embeddings().weight.clone()
    encoder = PromptEncoder(pipe, "sd1", library.for_encoder_dims((32,)))
    assert encoder.encoder_dims == (32,)

    cond = encoder.encode("a photo of mytok, (mytok:1.3) style")
    expected = ti_reference(ti_pipe, [[("a photo of mytok, ", 1.0), ("mytok", 1.3), (" style", 1.0)]])
    assert cond.embeddings_used == ["mytok"] and close(cond.embeds, expected)
    assert encoder.count("a photo of mytok") == (5, 75)
    # The same as diffusers' own encode_prompt of its converted prompt, for the plain case.
    assert torch.allclose(encoder.encode("a photo of mytok").embeds, ti_pipe.encode_prompt("a photo of mytok", "cpu", 1, False)[0], atol=1e-6)

    # An embedding that does not fit at the end of a chunk moves whole to the next one.
    words = " ".join(single_token_words(pipe, ["cat", "dog", "tree", "red"], 74))
    cond = encoder.encode(words + " mytok")
    assert [len(c.tokens) for c in encoder.chunks(words + " mytok")] == [74, 2]
    assert close(cond.embeds, ti_reference(ti_pipe, [[(words, 1.0)], [("mytok", 1.0)]]))

    # Our model and tokenizer are untouched, and no hook stays behind.
    assert len(pipe.tokenizer) == vocab_before and torch.equal(pipe.text_encoder.get_input_embeddings().weight, weight_before)
    assert not pipe.text_encoder.get_input_embeddings()._forward_hooks

    digest = hashlib.sha256((embedding_folder / "mytok.safetensors").read_bytes()).hexdigest()
    assert library.short_hash("mytok") == digest[:12]
    assert library.ti_hashes(["mytok", "mytok"]) == f"mytok: {digest[:12]}"


def test_pickle_refused_and_wrong_width_skipped(pipe, embedding_folder):
    library = EmbeddingLibrary(embedding_folder)
    listing = library.listing((32,))
    assert list(listing["loaded"]) == ["mytok"]
    assert listing["loaded"]["mytok"] == {"step": None, "sd_checkpoint": None, "sd_checkpoint_name": None, "shape": 32, "vectors": 2}
    assert listing["skipped"] == {"wide": {"step": None, "sd_checkpoint": None, "sd_checkpoint_name": None, "shape": 48, "vectors": 1}}
    assert "pickled.pt" in library.errors and "pickled" not in library
    embeddings = library.for_encoder_dims((32,))
    assert "wide" not in embeddings and "mytok" in embeddings
    encoder = PromptEncoder(pipe, "sd1", embeddings)
    cond = encoder.encode("wide pickled view")  # plain words, no embedding
    assert cond.embeddings_used == [] and close(cond.embeds, reference(pipe, [(ids_of(pipe, "wide pickled view"), [1.0] * 3)]))

    allowed = EmbeddingLibrary(embedding_folder, allow_pickle=True)
    assert allowed.listing((32,))["loaded"]["pickled"]["step"] == 5
    assert PromptEncoder(pipe, "sd1", allowed.for_encoder_dims((32,))).encode("pickled").embeddings_used == ["pickled"]


# -- SDXL: a tiny random StableDiffusionXLPipeline (two text encoders, pooled output) ------------------------------

@pytest.fixture(scope="module")
def sdxl(tokenizer_folder, tmp_path_factory):
    from diffusers import AutoencoderKL, EulerDiscreteScheduler, StableDiffusionXLPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

    from studio.tokenizers import write_clip_tokenizer

    folder2 = write_clip_tokenizer(tmp_path_factory.mktemp("sdxl") / "tokenizer_2", pad_token="!")  # OpenCLIP pads with "!"
    config = dict(vocab_size=49408, hidden_size=32, intermediate_size=37, num_attention_heads=4, num_hidden_layers=3,
                  projection_dim=32, bos_token_id=BOS, eos_token_id=EOS, pad_token_id=1, hidden_act="gelu")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        unet = UNet2DConditionModel(
            block_out_channels=(32, 64), layers_per_block=1, sample_size=8, in_channels=4, out_channels=4,
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
            attention_head_dim=(2, 4), use_linear_projection=True, addition_embed_type="text_time", addition_time_embed_dim=8,
            transformer_layers_per_block=(1, 1), projection_class_embeddings_input_dim=6 * 8 + 32, cross_attention_dim=64,
            norm_num_groups=1,
        )
        vae = AutoencoderKL(block_out_channels=(32, 32), in_channels=3, out_channels=3, latent_channels=4, norm_num_groups=32,
                            down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2)
        text_encoder = CLIPTextModel(CLIPTextConfig(**config))
        text_encoder_2 = CLIPTextModelWithProjection(CLIPTextConfig(**config))
    pipe = StableDiffusionXLPipeline(
        vae=vae, text_encoder=text_encoder, text_encoder_2=text_encoder_2,
        tokenizer=CLIPTokenizer.from_pretrained(str(tokenizer_folder)), tokenizer_2=CLIPTokenizer.from_pretrained(str(folder2)),
        unet=unet, scheduler=EulerDiscreteScheduler(), add_watermarker=False,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def sdxl_reference(pipe, chunks):
    """A1111/sgm: per encoder, penultimate hidden state (no final norm) and emphasis with its own mean; features
    side by side; pooled = text_encoder_2's projected output of the first chunk."""
    out, pooled = [], None
    for body, mults in chunks:
        m = torch.tensor([1.0] + mults + [1.0] * (76 - len(mults)))
        parts = []
        for tokenizer, te in ((pipe.tokenizer, pipe.text_encoder), (pipe.tokenizer_2, pipe.text_encoder_2)):
            ids = [BOS] + body + [EOS] + [tokenizer.pad_token_id] * (75 - len(body))
            with torch.no_grad():
                o = te(torch.tensor([ids]), output_hidden_states=True)
            z = o.hidden_states[-2]
            mean0 = z.mean()
            z = z * m[None, :, None]
            parts.append(z * (mean0 / z.mean()))
            if pooled is None and te is pipe.text_encoder_2:
                pooled = o.text_embeds
        out.append(torch.cat(parts, dim=-1))
    return torch.cat(out, dim=1), pooled


def test_sdxl_plain_prompt_equals_diffusers(sdxl):
    assert sdxl.tokenizer_2.pad_token_id == 0 and sdxl.tokenizer.pad_token_id == EOS
    encoder = PromptEncoder(sdxl, "sdxl")
    assert encoder.encoder_dims == (32, 32)
    embeds, negative, pooled, negative_pooled = sdxl.encode_prompt("a red fox", device="cpu", do_classifier_free_guidance=True)
    cond, uncond = encoder.encode_pair("a red fox", "")
    assert torch.equal(cond.embeds, embeds) and torch.equal(cond.pooled, pooled) and cond.embeds.shape == (1, 77, 64)
    # An empty SDXL negative prompt is zeros (A1111's force_zero_negative_prompt, diffusers' force_zeros_for_empty_prompt).
    assert torch.equal(uncond.embeds, negative) and torch.equal(uncond.pooled, negative_pooled)
    # Clip skip does not apply to SDXL in A1111 (penultimate layer always).
    assert torch.equal(encoder.encode("a red fox", clip_skip=2).embeds, cond.embeds)

    kwargs = dict(num_inference_steps=2, guidance_scale=5.0, width=64, height=64, output_type="np")
    ours = sdxl(prompt_embeds=cond.embeds, pooled_prompt_embeds=cond.pooled, negative_prompt_embeds=uncond.embeds,
                negative_pooled_prompt_embeds=uncond.pooled, generator=torch.Generator("cpu").manual_seed(2), **kwargs).images
    theirs = sdxl(prompt="a red fox", generator=torch.Generator("cpu").manual_seed(2), **kwargs).images
    assert np.array_equal(ours, theirs)


def test_sdxl_emphasis_break_and_padding(sdxl):
    encoder = PromptEncoder(sdxl, "sdxl")
    cond, uncond = encoder.encode_pair("a (red:1.3) fox, [snow] BREAK a dog", "blurry")
    expected, pooled = sdxl_reference(sdxl, [
        weighted(sdxl, [("a ", 1.0), ("red", 1.3), (" fox, ", 1.0), ("snow", 1 / 1.1)]), weighted(sdxl, [("a dog", 1.0)])])
    assert cond.chunks == 2 and close(cond.embeds, expected) and close(cond.pooled, pooled)
    expected, pooled = sdxl_reference(sdxl, [(ids_of(sdxl, "blurry"), [1.0]), ([], [])])
    assert uncond.chunks == 2 and close(uncond.embeds, expected) and close(uncond.pooled, pooled)


def test_sdxl_embedding(sdxl, tmp_path):
    import copy

    g = torch.Generator().manual_seed(5)
    vectors = {"clip_l": torch.randn(2, 32, generator=g), "clip_g": torch.randn(2, 32, generator=g)}
    save_file(vectors, str(tmp_path / "xltok.safetensors"))
    save_file({"emb_params": torch.randn(1, 32, generator=g)}, str(tmp_path / "sd1tok.safetensors"))
    library = EmbeddingLibrary(tmp_path)
    listing = library.listing((32, 32))
    assert listing["loaded"]["xltok"]["shape"] == 64 and listing["loaded"]["xltok"]["vectors"] == 2
    assert list(listing["skipped"]) == ["sd1tok"]

    encoder = PromptEncoder(sdxl, "sdxl", library.for_encoder_dims((32, 32)))
    cond = encoder.encode("a photo of xltok")
    assert cond.embeddings_used == ["xltok"]

    ref = copy.deepcopy(sdxl)
    ref.load_textual_inversion(vectors["clip_l"], token="xltok", text_encoder=ref.text_encoder, tokenizer=ref.tokenizer)
    ref.load_textual_inversion(vectors["clip_g"], token="xltok", text_encoder=ref.text_encoder_2, tokenizer=ref.tokenizer_2)
    embeds, _, pooled, _ = ref.encode_prompt("a photo of xltok", device="cpu", do_classifier_free_guidance=False)
    assert torch.allclose(cond.embeds, embeds, atol=1e-6) and torch.allclose(cond.pooled, pooled, atol=1e-6)
    assert not sdxl.text_encoder.get_input_embeddings()._forward_hooks and len(sdxl.tokenizer_2) == 49408
