"""The UI's pieces without a server: token counter, mask from the editor, PNG info, step-preview animation export,
per-session cancel, and the rule that the UI imports no torch."""

from __future__ import annotations

import asyncio
import re

import subprocess
import sys

import pytest
from PIL import Image, ImageDraw
from server_support import job_service

from studio.contract import Finished, GenerationRequest
from studio.ui import inpaint, png_info
from studio.ui.streaming import Session, cancel_job, stream_job
from studio.ui.tokens import WINDOW, TokenCounter, counter_for, find_merges, token_counter_html


def test_the_ui_imports_no_torch():
    code = "import sys, studio.ui; import studio.ui.panel; sys.exit(1 if 'torch' in sys.modules else 0)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_token_counter_matches_clip_and_counts_chunks_past_the_window(engine):
    counter = counter_for(str(engine.settings.cache_dir))
    assert counter.exact, find_merges(engine.settings.cache_dir)
    from transformers import CLIPTokenizer

    tokenizer = CLIPTokenizer.from_pretrained(str(find_merges(engine.settings.cache_dir).parent))
    for text in ("a photo of an astronaut riding a horse on mars, highly detailed, 8k", "lighthouse, dusk, oil painting"):
        assert counter.ids(text) == tokenizer(text).input_ids[1:-1]
    short = token_counter_html(counter, "a cat")
    assert f"/{WINDOW}" in short and "⚠" not in short
    long_prompt = " ".join(f"word{i}" for i in range(60))
    total = len(tokenizer(long_prompt).input_ids) - 2
    assert total > WINDOW
    used, capacity = counter.chunk_count(long_prompt)
    assert used == total and capacity == WINDOW * -(-total // WINDOW)  # A1111's "170/225": nothing is cut
    assert f"{used}/{capacity} tokens" in token_counter_html(counter, long_prompt)


def test_token_counter_without_tokenizer_files_is_labelled_approximate():
    counter = TokenCounter(None)
    assert counter.chunk_count("a red, shiny car") == (5, WINDOW)
    assert "approximate" in token_counter_html(counter, "a red car")


def test_mask_from_editor_is_every_painted_pixel_of_every_layer():
    background = Image.new("RGBA", (64, 48), (10, 20, 30, 255))
    layer = Image.new("RGBA", (64, 48), (0, 0, 0, 0))
    ImageDraw.Draw(layer).rectangle([10, 10, 20, 20], fill=(255, 255, 255, 128))
    init, mask = inpaint.mask_from_editor({"background": background, "layers": [layer], "composite": None})
    assert init.mode == "RGB" and init.size == (64, 48)
    assert mask.mode == "L" and mask.getbbox() == (10, 10, 21, 21)
    assert set(mask.getdata()) == {0, 255}
    assert inpaint.mask_from_editor(None) == (None, None)


def test_png_info_reads_our_parameters_and_maps_them_to_text_to_image(engine, tmp_path):
    result = engine.generate(GenerationRequest("a cat", negative_prompt="dog", steps=2, seed=7, width=64, height=64,
                                               sampler_name="DPM++ 2M Karras", cfg_scale=5.5))
    assert isinstance(result, Finished)
    text, params = png_info.read_parameters(result.images[0].path)
    assert text == result.images[0].infotext
    fields = png_info.to_fields(params)
    assert fields == dict(prompt="a cat", negative_prompt="dog", sampler_name="DPM++ 2M Karras", steps=2, cfg_scale=5.5,
                          seed=7, width=64, height=64)
    plain = tmp_path / "plain.png"
    Image.new("RGB", (8, 8)).save(plain)
    assert png_info.read_parameters(str(plain))[1] == {}


def _updates(engine, session, request, take=None) -> list:
    """Run the UI's streaming handler (an async generator) to its end, or for its first `take` updates."""
    from studio.ui.streaming import Services

    async def run():
        out = []
        stream = stream_job(Services(job_service(engine)), session, "txt2img", request, None)
        async for update in stream:
            out.append(update)
            if take is not None and len(out) >= take:
                await stream.aclose()
                break
        return out

    return asyncio.run(run())


def test_cancel_only_touches_this_sessions_job(engine):
    mine, theirs = Session(), Session()
    from studio.ui.streaming import Services

    async def run():
        service = job_service(engine)
        stream = stream_job(Services(service), mine, "txt2img", GenerationRequest("long", steps=40, width=64, height=64), None)
        await stream.__anext__()  # submitted
        assert "Nothing to cancel" in cancel_job(service, theirs, "txt2img")
        assert "Cancelling" in cancel_job(service, mine, "txt2img")
        return [update async for update in stream]

    rest = asyncio.run(run())
    assert "Cancelled" in rest[-1][1]
    assert mine.last_job.status == "cancelled" and "txt2img" not in mine.jobs


def test_a_cancelled_job_says_where_it_stopped_and_clears_the_results_before_it(engine):
    from studio.ui.streaming import Services

    session = Session()
    first = _updates(engine, session, GenerationRequest("first", steps=2, width=64, height=64))
    assert first[-1][2] and session.results["txt2img"]  # the first job's results are on screen

    async def run():
        service = job_service(engine)
        stream = stream_job(Services(service), session, "txt2img", GenerationRequest("long", steps=80, width=64, height=64), None)
        out = [await stream.__anext__()]
        job = session.last_job
        while job.last_step is None or job.last_step.step < 3:
            await asyncio.sleep(0.02)
        cancel_job(service, session, "txt2img")
        out += [update async for update in stream]
        return out

    updates = asyncio.run(run())
    _, progress, gallery, infotext, downloads = updates[-1]
    stopped = re.search(r"Cancelled at step (\d+)/80 in [\d.]+ s: nothing saved", progress)
    assert stopped and int(stopped.group(1)) >= 3, progress
    assert (gallery, infotext, downloads) == ([], "", "") and session.results["txt2img"] == []


def test_a_job_queued_behind_one_of_its_tab_leaves_the_live_preview_to_it(engine):
    from studio.ui.streaming import Services

    session = Session()

    async def run():
        services = Services(job_service(engine))
        request = GenerationRequest("a", steps=30, width=64, height=64)
        first = stream_job(services, session, "txt2img", request, None)
        running = (await first.__anext__())[0]
        second = stream_job(services, session, "txt2img", request, None)
        second_updates = [update async for update in _drain_until_started(second, first)]
        return running, second_updates

    running, second = asyncio.run(run())
    job_ids = re.findall(r"/studio/api/jobs/([^/]+)/stream", running)
    assert job_ids  # the first job's live box at once
    drawn = [u for u in second if isinstance(u[0], str)]  # updates that redraw the live box
    assert len(drawn) == 1 and "Starting on" in drawn[0][1]  # only once it starts, never while it waits
    assert job_ids[0] not in drawn[0][0]


async def _drain_until_started(second, first):
    """The second job's updates up to its Started (the first is drained meanwhile, so it finishes)."""
    drain = asyncio.ensure_future(_consume(first))
    async for update in second:
        yield update
        if isinstance(update[1], str) and "Starting on" in update[1]:
            break
    await drain
    await second.aclose()


async def _consume(stream):
    async for _ in stream:
        pass


def test_a_bad_request_is_a_gradio_error_with_the_engines_message(engine):
    import gradio as gr

    with pytest.raises(gr.Error) as raised:
        _updates(engine, Session(), GenerationRequest("x", width=100), take=1)
    assert "width must be a multiple of 8" in str(raised.value)


def test_progress_line_is_clean_and_the_preview_ends_on_the_result(engine):
    from studio.ui.streaming import queue_text

    assert queue_text(0) == "Starting…"  # a job that is next up does not "wait in queue"
    assert queue_text(2) == "Waiting in queue: 2 jobs ahead"
    session = Session()
    updates = _updates(engine, session, GenerationRequest("p", steps=3, seed=5, width=64, height=64))
    texts = [u[1] for u in updates if isinstance(u[1], str)]
    assert "Starting…" in texts[0] and not any("next up" in t for t in texts)
    assert f"data-stream='/studio/api/jobs/{session.last_job.id}/stream'" in updates[0][0]  # the live preview's stream
    preview, progress, gallery, _, downloads = updates[-1]
    assert "Done: 1 image" in progress
    url = gallery[0][0]
    assert url.startswith("http") and "/studio/files/" in url and url.endswith(".png")
    assert f"src='{url}'" in preview  # the live preview ends on the result, not the last latent preview
    assert url in downloads and "/gradio_api/file" not in downloads


def test_impossible_sizes_snap_to_default_or_the_minimum():
    from studio.ui.panel import MIN_SIZE, snap_size

    assert MIN_SIZE == 64
    assert [snap_size(v) for v in (0, 8, 24, 32, 56, 64, 512)] == [0, 0, 0, 64, 64, 64, 512]


def test_clear_mask_keeps_the_image():
    import gradio as gr

    image = Image.new("RGBA", (32, 32), (10, 20, 30, 255))
    stroke = Image.new("RGBA", (32, 32), (0, 0, 0, 0))
    ImageDraw.Draw(stroke).rectangle([4, 4, 12, 12], fill=(255, 255, 255, 255))
    cleared = inpaint.without_mask({"background": image, "layers": [stroke], "composite": image})
    assert cleared["background"] is image and cleared["layers"] == []
    init, mask = inpaint.mask_from_editor(cleared)
    assert init is not None and mask.getbbox() is None
    assert isinstance(inpaint.without_mask(None), type(gr.skip()))


def test_aspect_presets_keep_about_the_models_area_in_multiples_of_8():
    from studio.ui.panel import preset_size

    assert preset_size(512, 1, 1, 2048) == (512, 512)
    assert preset_size(512, 3, 2, 2048) == (624, 416)
    assert preset_size(512, 2, 3, 2048) == (416, 624)
    assert preset_size(1024, 16, 9, 2048) == (1368, 768)
    assert preset_size(1024, 9, 16, 1024) == (768, 1024)  # within the server's largest side
    for across, down in ((3, 2), (16, 9)):
        width, height = preset_size(768, across, down, 4096)
        assert width % 8 == height % 8 == 0 and abs(width * height / 768**2 - 1) < 0.03
