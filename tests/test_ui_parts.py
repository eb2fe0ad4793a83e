"""The UI's pieces without a server: token counter, mask from the editor, PNG info, step-preview animation export,
per-session cancel, and the rule that the UI imports no torch."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from PIL import Image, ImageDraw

from studio.requests import Finished, GenerationRequest
from studio.ui import inpaint, png_info, step_previews
from studio.ui.streaming import Session, cancel_job, stream_job
from studio.ui.tokens import WINDOW, TokenCounter, counter_for, find_merges, token_counter_html


def test_the_ui_imports_no_torch():
    code = "import sys, studio.ui; import studio.ui.panel; sys.exit(1 if 'torch' in sys.modules else 0)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_token_counter_matches_clip_and_warns_past_the_window(engine):
    counter = counter_for(str(engine.settings.cache_dir))
    assert counter.exact, find_merges(engine.settings.cache_dir)
    from transformers import CLIPTokenizer

    tokenizer = CLIPTokenizer.from_pretrained(str(find_merges(engine.settings.cache_dir).parent))
    for text in ("a photo of an astronaut riding a horse on mars, highly detailed, 8k", "lighthouse, dusk, oil painting"):
        assert counter.count(text)[0] == len(tokenizer(text).input_ids) - 2
    short = token_counter_html(counter, "a cat")
    assert f"/{WINDOW}" in short and "⚠" not in short
    long_prompt = " ".join(f"word{i}" for i in range(60))
    total, dropped = counter.count(long_prompt)
    assert total > WINDOW and dropped and dropped.endswith("word59")
    assert "will be cut" in token_counter_html(counter, long_prompt)


def test_token_counter_without_tokenizer_files_is_labelled_approximate():
    counter = TokenCounter(None)
    assert counter.count("a red, shiny car")[0] == 5
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


def test_step_previews_frames_and_animation_export(engine):
    session = Session()
    updates = list(stream_job(engine, session, "txt2img", GenerationRequest("steps", steps=5, seed=3, width=64, height=64), "t"))
    assert updates[-1][2], "no final gallery"
    job = session.last_job
    job.wait()
    deadline = __import__("time").time() + 10
    while len(job.step_frames) < 5 and __import__("time").time() < deadline:
        __import__("time").sleep(0.05)
    main, *channels, caption = step_previews.frame_view(session, 2, step_previews.NOISY)
    assert isinstance(main, Image.Image) and len(channels) == 4 and all(c.mode == "L" for c in channels)
    assert "frame 2/" in caption
    exports = step_previews.AnimationExports()
    for fmt, ext in (("GIF", ".gif"), ("WebP", ".webp")):
        path = step_previews.export_animation(exports, session, step_previews.X0, fmt)
        assert path.endswith(ext)
        with Image.open(path) as animation:
            assert animation.n_frames == len(job.step_frames)
    again = step_previews.export_animation(exports, session, step_previews.X0, "GIF")  # same job, same view: overwritten
    assert os.path.dirname(again) == os.path.dirname(path) == exports.folder()  # one folder, not one per export
    assert len(os.listdir(exports.folder())) >= 2
    empty = step_previews.frame_view(Session(), 1, step_previews.X0)
    assert empty[0] is None and "No step frames" in empty[-1]


def test_cancel_only_touches_this_sessions_job(engine):
    mine, theirs = Session(), Session()
    stream = stream_job(engine, mine, "txt2img", GenerationRequest("long", steps=40, width=64, height=64), "me")
    next(stream)  # submitted
    assert "Nothing to cancel" in cancel_job(engine, theirs, "txt2img")
    assert "Cancelling" in cancel_job(engine, mine, "txt2img")
    rest = list(stream)
    assert "Cancelled" in rest[-1][1]
    assert mine.last_job.status == "cancelled" and "txt2img" not in mine.jobs


def test_a_bad_request_is_a_gradio_error_with_the_engines_message(engine):
    import gradio as gr

    with pytest.raises(gr.Error) as raised:
        next(stream_job(engine, Session(), "txt2img", GenerationRequest("x", width=100), "me"))
    assert "width must be a multiple of 8" in str(raised.value)


def test_progress_line_is_clean_and_the_preview_ends_on_the_result(engine):
    from studio.ui.streaming import queue_text

    assert queue_text(0) == "Starting…"  # a job that is next up does not "wait in queue"
    assert queue_text(2) == "Waiting in queue: 2 jobs ahead"
    updates = list(stream_job(engine, Session(), "txt2img", GenerationRequest("p", steps=3, seed=5, width=64, height=64), "me"))
    texts = [u[1] for u in updates if isinstance(u[1], str)]
    assert "Starting…" in texts[0] and not any("next up" in t for t in texts)
    preview, progress, gallery, _, files = updates[-1]
    assert "Done: 1 image" in progress
    assert preview == files[0] and preview.endswith(".png")  # the final image, not the last latent preview


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
