"""Cheap refusal of hostile input: a prompt that would make the token counter work for seconds, an image whose header
declares more pixels than the studio allows, and a request body that streams on past the cap (chunked included)."""

from __future__ import annotations

import asyncio
import io
import random
import struct
import time
import tracemalloc
import warnings
import zlib
from pathlib import Path

import httpx
import pytest
from PIL import Image, ImageFile

from studio.config import Settings
from studio.contract import RequestError
from studio.tokenizers import write_clip_tokenizer
from studio.ui.tokens import TokenCounter, counter_for, token_counter_html
from studio.validation import MAX_PROMPT_CHARS, decode_image, image_header, limit_decoder
from studio.web.limits import BodyLimit
from server_support import LiveServer, free_port

SETTINGS = Settings(max_image_pixels=4096 * 4096)
LONG_PROMPT = ("a lighthouse at dusk on a rocky shore, oil painting by an old master, dramatic clouds, 8k, "
               "highly detailed, (golden hour:1.2), masterpiece, trending on artstation, ") * 200


# ---- the token counter


@pytest.fixture(scope="module")
def clip_folder(tmp_path_factory) -> Path:
    cache = tmp_path_factory.mktemp("tokens-cache")
    write_clip_tokenizer(cache / "configs" / "clip" / "tokenizer")
    return cache


@pytest.fixture(scope="module")
def counter(clip_folder) -> TokenCounter:
    counter = counter_for(str(clip_folder))
    assert counter.exact
    return counter


@pytest.fixture(scope="module")
def clip_tokenizer(clip_folder):
    from transformers import CLIPTokenizer

    return CLIPTokenizer.from_pretrained(str(clip_folder / "configs" / "clip" / "tokenizer"))


def hostile_word(n: int) -> str:
    """One word of n random letters: few merges apply at once, the case that made the hand-written BPE quadratic
    (16,000 letters took ~28 s); the same letters every run."""
    rng = random.Random(n)
    return "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(n))


def clip_count(tokenizer, text: str) -> int:
    return len(tokenizer(text, add_special_tokens=False).input_ids)


def test_a_16000_letter_word_and_a_20000_character_prompt_are_counted_right(counter, clip_tokenizer):
    prompt = LONG_PROMPT[:MAX_PROMPT_CHARS]
    assert len(prompt) == MAX_PROMPT_CHARS  # the cap itself is still counted
    for text in (hostile_word(16_000), "x" * 16_000, "supercalifragilistic" * 800):
        assert counter.chunk_count(text)[0] == clip_count(clip_tokenizer, text)  # no commas, no syntax: every token
    assert len(counter.ids(prompt)) == clip_count(clip_tokenizer, prompt)
    used, capacity = counter.chunk_count(prompt)
    assert capacity // 75 > 50 and used <= capacity


def test_counting_is_linear_in_the_prompt_length(counter):
    """One 20,000-letter word costs about what eight 2,500-letter words cost (the hand-written BPE it replaced was
    quadratic: eight times as much, 5 s for 8,000 random letters); so do A1111's syntax (emphasis, prompt editing,
    alternation, whose schedule is counted step by step). Best of alternated runs, so a busy machine shows as noise
    on both sides rather than as a ratio."""

    def seconds(texts: list[str]) -> float:
        start = time.perf_counter()
        for text in texts:
            counter.chunk_count(text)
        return time.perf_counter() - start

    makers = (hostile_word, lambda n: LONG_PROMPT[-n:], lambda n: ("[a|b] (c:1.1) [d:e:5] " * n)[:n], lambda n: "(" * n)
    for make in makers:
        shorts = [make(2_500 + i) for i in range(8)]  # different texts: no cache helps them
        long = [make(20_000)]
        short_best = long_best = float("inf")
        for _ in range(5):
            short_best = min(short_best, seconds(shorts))
            long_best = min(long_best, seconds(long))
        assert long_best / short_best < 3, (make(12), short_best, long_best)


def test_counter_matches_clip_on_unicode_numbers_and_special_tokens(counter, clip_tokenizer):
    for text in (
        "Café   Crème\u0301, naïve ÆSTHETIC 日本語 😀 it's 1234 &amp; don't",
        "a photo of <|endoftext|> a cat, (masterpiece:1.3), [[bokeh]]",
        "\tmulti\nline   prompt\r\n",
    ):
        assert len(counter.ids(text)) == clip_count(clip_tokenizer, text), text


def test_a_prompt_over_the_cap_is_refused_without_being_tokenized(counter, monkeypatch):
    class NoTokenizing:
        def encode(self, *args, **kwargs):
            raise AssertionError("tokenized a prompt over the cap")

    monkeypatch.setattr(counter, "_tokenizer", NoTokenizing())
    too_long = "x" * (MAX_PROMPT_CHARS + 1)
    for each in (counter, TokenCounter(None)):
        with pytest.raises(RequestError, match="too long"):
            each.chunk_count(too_long)
        shown = token_counter_html(each, too_long)
        assert "too long" in shown and f"{MAX_PROMPT_CHARS}" in shown and "⚠" in shown


def test_the_approximate_counter_counts_words_and_punctuation_in_chunks():
    counter = TokenCounter(None)
    assert counter.chunk_count("A red, car") == (4, 75)
    used, capacity = counter.chunk_count(" ".join(f"w{i}" for i in range(40)))  # "w" and the digits: 3 pieces or 2
    assert used == 10 * 2 + 30 * 3 and capacity == 150


# ---- images: refused from the header, before any pixel is decoded


def declared_png(width: int, height: int) -> bytes:
    """A valid 1-bit grayscale PNG of width×height black pixels, built row by row: 12000×12000 is ~17 KB of file
    for 144 MB of pixels once PIL decodes it (one byte per pixel)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    compressor = zlib.compressobj(9)
    row = b"\x00" * (1 + (width + 7) // 8)
    pixels = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")


def encoded(image: Image.Image, fmt: str) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


@pytest.fixture
def no_pixel_decoding(monkeypatch):
    """Records every ImageFile.load(): the call that decodes pixels."""
    calls = []
    load = ImageFile.ImageFile.load

    def spy(self):
        calls.append(self.size)
        return load(self)

    monkeypatch.setattr(ImageFile.ImageFile, "load", spy)
    return calls


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")  # PIL's default limit, before limit_decoder
@pytest.mark.parametrize("pil_limit", [False, True], ids=["own-check", "with-limit_decoder"])
def test_a_png_declaring_12000x12000_pixels_is_refused_without_decoding(pil_limit, no_pixel_decoding, monkeypatch):
    bomb = declared_png(12_000, 12_000)
    assert 10_000 < len(bomb) < 30_000
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", Image.MAX_IMAGE_PIXELS)
    with warnings.catch_warnings():
        if pil_limit:
            limit_decoder(SETTINGS)
            assert Image.MAX_IMAGE_PIXELS == SETTINGS.max_image_pixels
        tracemalloc.start()
        try:
            with pytest.raises(RequestError, match="init_image is too large"):
                decode_image(bomb, "init_image", SETTINGS)
            with pytest.raises(RequestError, match="init_image is too large"):
                image_header(bomb, "init_image", SETTINGS)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert peak < 4 * 2**20, peak
    assert no_pixel_decoding == []
    # the spy does see decoding, where decoding is due
    assert decode_image(encoded(Image.new("RGB", (64, 48)), "PNG"), "init_image", SETTINGS).size == (64, 48)
    assert no_pixel_decoding == [(64, 48)]


def test_image_header_reads_the_size_and_format_of_bytes_and_files(no_pixel_decoding):
    picture = Image.new("RGB", (40, 24), (200, 10, 10))
    for fmt in ("PNG", "JPEG", "WEBP"):
        data = encoded(picture, fmt)
        assert image_header(data, "init_image", SETTINGS) == (fmt, 40, 24)
        upload = io.BytesIO(data)
        upload.seek(0, io.SEEK_END)  # as a route leaves it after spooling the upload
        assert image_header(upload, "init_image", SETTINGS) == (fmt, 40, 24)
        assert upload.tell() == len(data)  # left where it was
    assert no_pixel_decoding == []


@pytest.mark.parametrize("fmt", ["GIF", "BMP", "TIFF", "ICO"])
def test_only_png_jpeg_and_webp_are_accepted(fmt, no_pixel_decoding):
    data = encoded(Image.new("RGB", (32, 32)), fmt)
    for check in (decode_image, image_header):
        with pytest.raises(RequestError, match=f"init_image is a {fmt} image: it must be a PNG, JPEG or WebP image"):
            check(data, "init_image", SETTINGS)
    assert no_pixel_decoding == []


@pytest.mark.parametrize("data", [b"", b"<svg xmlns='http://www.w3.org/2000/svg'/>", b"P6\n4096 4096\n255\n"])
def test_what_is_not_an_image_of_those_formats_is_refused(data):
    for check in (decode_image, image_header):
        with pytest.raises(RequestError, match="is not an image: it must be a PNG, JPEG or WebP image"):
            check(data, "mask", SETTINGS)


def test_an_image_too_small_is_refused_from_its_header():
    with pytest.raises(RequestError, match="too small \\(4×64\\)"):
        image_header(encoded(Image.new("L", (4, 64)), "PNG"), "mask", SETTINGS)


def test_limit_decoder_bounds_pils_own_decoding_at_the_setting(monkeypatch):
    """What Gradio decodes itself (Image.open on an upload) stops at --max-image-pixels too."""
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", Image.MAX_IMAGE_PIXELS)
    with warnings.catch_warnings():
        limit_decoder(Settings(max_image_pixels=64 * 64))
        Image.open(io.BytesIO(encoded(Image.new("L", (64, 64)), "PNG"))).load()  # at the cap: fine
        with pytest.raises(Image.DecompressionBombWarning):  # 1× to 2× the cap: PIL only warns, made an error
            Image.open(io.BytesIO(encoded(Image.new("L", (80, 80)), "PNG")))
        with pytest.raises(Image.DecompressionBombError):
            Image.open(io.BytesIO(declared_png(12_000, 12_000)))


# ---- request bodies: capped while they stream


CAP = 1024 * 1024
CHUNK = 64 * 1024


def counting_app():
    """A tiny Starlette app that reads the whole body and says how much it read (and records it)."""
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    seen = {"read": 0, "calls": 0}

    async def upload(request):
        seen["calls"] += 1
        async for chunk in request.stream():
            seen["read"] += len(chunk)
        return JSONResponse({"read": seen["read"]})

    return Starlette(routes=[Route("/upload", upload, methods=["POST"])]), seen


@pytest.fixture
def limited_server():
    app, seen = counting_app()
    server = LiveServer(BodyLimit(app, CAP), free_port()).start()
    try:
        yield server, seen
    finally:
        server.stop()


def test_a_chunked_body_over_the_cap_is_refused_while_it_streams(limited_server):
    server, seen = limited_server
    total = 150 * 1024 * 1024
    sent = {"bytes": 0}

    def body():
        block = b"x" * CHUNK
        while sent["bytes"] < total:
            sent["bytes"] += CHUNK
            yield block

    with httpx.Client(base_url=server.url, timeout=60) as client:
        response = client.post("/upload", content=body())  # a generator: chunked transfer, no Content-Length
    assert response.status_code == 413
    assert response.json() == {"error": "TooLarge", "detail": "The request is too large (limit 1 MB)."}
    assert seen["calls"] == 1 and seen["read"] <= CAP + CHUNK, seen
    assert sent["bytes"] < 16 * CAP, sent  # the connection was closed: the client stopped sending (socket buffers aside)


def test_a_declared_length_over_the_cap_is_refused_before_the_app_runs(limited_server):
    server, seen = limited_server
    with httpx.Client(base_url=server.url, timeout=60) as client:
        response = client.post("/upload", content=b"x" * (CAP + 1))
    assert response.status_code == 413 and response.json()["error"] == "TooLarge"
    assert seen["calls"] == 0


def test_a_body_under_the_cap_goes_through_chunked_or_not(limited_server):
    server, seen = limited_server
    with httpx.Client(base_url=server.url, timeout=60) as client:
        chunked = client.post("/upload", content=iter([b"y" * CHUNK] * 8))
        assert chunked.status_code == 200 and chunked.json() == {"read": 8 * CHUNK}
        plain = client.post("/upload", content=b"z" * CAP)  # exactly the cap
        assert plain.status_code == 200 and plain.json() == {"read": 8 * CHUNK + CAP}


def drive(middleware, chunks: list[bytes]):
    """Run one HTTP request through a pure-ASGI app by hand: what it was sent, and how many body messages it pulled."""
    pulled, sent = [], []

    async def receive():
        pulled.append(len(chunks[len(pulled)]))
        return {"type": "http.request", "body": chunks[len(pulled) - 1], "more_body": len(pulled) < len(chunks)}

    async def send(message):
        sent.append(message)

    asyncio.run(middleware({"type": "http", "method": "POST", "path": "/", "headers": []}, receive, send))
    return pulled, sent


def test_past_the_cap_the_app_gets_a_disconnect_and_nothing_more_is_read():
    got = []

    async def greedy(scope, receive, send):  # keeps asking, whatever it is told
        for _ in range(20):
            got.append((await receive())["type"])
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    pulled, sent = drive(BodyLimit(greedy, 100), [b"a" * 60] * 20)
    assert pulled == [60, 60]  # the second chunk passed the cap; the third was never read
    assert got == ["http.request"] + ["http.disconnect"] * 19
    assert [m.get("status") for m in sent if m["type"] == "http.response.start"] == [413]  # the app's 200 went nowhere


def test_a_response_already_started_is_not_answered_twice():
    async def streams_first(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": []})
        while (await receive())["type"] != "http.disconnect":
            pass
        raise RuntimeError("client went away")  # what a framework may do with the disconnect

    pulled, sent = drive(BodyLimit(streams_first, 100), [b"a" * 60] * 5)
    assert pulled == [60, 60]
    assert [m["type"] for m in sent] == ["http.response.start"] and sent[0]["status"] == 200
