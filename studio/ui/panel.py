"""The layout every generate tab shares: prompts with token counters, sampling settings, seed tools, model picker,
Generate / Cancel, and the output column (live preview, progress, results, parameters, PNG files, result actions)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Optional

import gradio as gr

from studio.contract import RequestError
from studio.validation import MAX_PROMPT_CHARS
from studio.samplers import DEFAULT_SAMPLER, sampler_names

from .streaming import GENERATE_QUEUE, SILENT, TELLING, Session, cancel_job
from .tokens import counter_for, token_counter_html

# No limit of Gradio's: its queue is first come, first served, so every click goes straight to the engine's fair
# (round-robin, per-user capped) queue; the handlers await events on the event loop and hold no thread.
GENERATE_CONCURRENCY = None
DICE = "🎲"
RECYCLE = "♻️"


@dataclass
class Panel:
    tab: str
    prompt: gr.Textbox
    negative_prompt: gr.Textbox
    prompt_tokens: gr.HTML
    negative_tokens: gr.HTML
    sampler_name: gr.Dropdown
    steps: gr.Slider
    cfg_scale: gr.Slider
    width: gr.Slider
    height: gr.Slider
    seed: gr.Number
    dice: gr.Button
    recycle: gr.Button
    batch_size: gr.Slider
    batch_count: gr.Slider
    model: gr.Dropdown
    generate: gr.Button
    cancel: gr.Button
    preview: gr.HTML
    progress: gr.HTML
    gallery: gr.Gallery
    infotext: gr.Textbox
    downloads: gr.HTML
    reuse_seed: gr.Button
    to_img2img: gr.Button
    to_inpaint: gr.Button
    extra: dict

    def parameter_inputs(self) -> list:
        """In the order of the handlers' A1111-named parameters (see txt2img.txt2img)."""
        return [self.prompt, self.negative_prompt, self.sampler_name, self.steps, self.cfg_scale, self.width,
                self.height, self.seed, self.batch_size, self.batch_count, self.model]

    def outputs(self) -> list:
        return [self.preview, self.progress, self.gallery, self.infotext, self.downloads]


def whole(value: Any, name: str) -> Any:
    """Sliders and numbers arrive as floats: whole floats become ints; anything else goes on to the engine's checks."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if value is None:
        raise RequestError(f"{name} is missing.")
    return value


def size(value: Any, name: str) -> Optional[int]:
    """0 or empty: the model's default size (text to image) or the input image's size."""
    if value in (None, "", 0, 0.0):
        return None
    return whole(value, name)


MIN_SIZE = 64  # the engine's smallest width/height


def snap_size(value: Any) -> Any:
    """Sizes between 0 (default) and MIN_SIZE do not exist: a slider set there snaps to the nearer of the two."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        return value
    if 0 < v < MIN_SIZE:
        return 0 if v < MIN_SIZE / 2 else MIN_SIZE
    return value


def build_panel(job_service, tab: str, session: gr.State, size_label: str, inputs_block: Optional[Callable[[], dict]] = None) -> Panel:
    """job_service: studio.service.JobService (the engine's facts, the models offered, limits; Cancel)."""
    info = job_service.info()
    settings = job_service.settings
    counter = counter_for(str(getattr(settings, "cache_dir", "") or ""))
    models = job_service.models() or [info.model]
    if info.model and info.model not in models:
        models.insert(0, info.model)
    with gr.Row(equal_height=False):
        with gr.Column(scale=5, min_width=360):
            prompt = gr.Textbox(label="Prompt", lines=3, max_length=MAX_PROMPT_CHARS, placeholder="What to draw (Ctrl+Enter generates)", elem_id=f"{tab}-prompt", elem_classes=["studio-prompt"])
            prompt_tokens = gr.HTML(token_counter_html(counter, ""), elem_id=f"{tab}-prompt-tokens")
            negative_prompt = gr.Textbox("", label="Negative prompt", lines=2, max_length=MAX_PROMPT_CHARS, placeholder="What to avoid", elem_id=f"{tab}-negative", elem_classes=["studio-prompt"])
            negative_tokens = gr.HTML(token_counter_html(counter, ""), elem_id=f"{tab}-negative-tokens")
            extra = inputs_block() if inputs_block else {}
            with gr.Row():
                sampler_name = gr.Dropdown(sampler_names(), value=DEFAULT_SAMPLER, label="Sampler", allow_custom_value=True, elem_id=f"{tab}-sampler")
                steps = gr.Slider(1, settings.max_steps, value=20, step=1, label="Steps", elem_id=f"{tab}-steps")
            with gr.Row():
                width = gr.Slider(0, settings.max_size, value=0, step=8, label="Width", info=size_label, elem_id=f"{tab}-width")
                height = gr.Slider(0, settings.max_size, value=0, step=8, label="Height", info=size_label, elem_id=f"{tab}-height")
            with gr.Row():
                cfg_scale = gr.Slider(0, 30, value=7.0, step=0.5, label="CFG scale", elem_id=f"{tab}-cfg")
                with gr.Row():
                    seed = gr.Number(value=-1, precision=0, label="Seed (-1 = random)", elem_id=f"{tab}-seed", min_width=140)
                    dice = gr.Button(DICE, size="sm", min_width=40, elem_id=f"{tab}-dice")
                    recycle = gr.Button(RECYCLE, size="sm", min_width=40, elem_id=f"{tab}-recycle")
            with gr.Row():
                batch_size = gr.Slider(1, settings.max_batch, value=1, step=1, label="Batch size", elem_id=f"{tab}-batch-size")
                batch_count = gr.Slider(1, min(100, settings.max_batch_count), value=1, step=1, label="Batch count", elem_id=f"{tab}-batch-count")
            model = gr.Dropdown(models, value=info.model or None, label="Model", allow_custom_value=True, elem_id=f"{tab}-model")
        with gr.Column(scale=4, min_width=320):
            with gr.Row():
                generate = gr.Button("Generate", variant="primary", elem_id=f"{tab}-generate", elem_classes=["studio-generate"])
                cancel = gr.Button("Cancel", variant="stop", elem_id=f"{tab}-cancel")
            progress = gr.HTML("", elem_id=f"{tab}-progress", elem_classes=["studio-quiet"])
            # Filled by the browser from the studio's live stream (server-sent events), not by Gradio per step.
            preview = gr.HTML("<div class='studio-live'></div>", label="Live preview", show_label=True, container=True, elem_id=f"{tab}-preview",
                              elem_classes=["studio-live-box"])
            # One result or many: the selected one large (whole, captioned), the others as thumbnails below it.
            gallery = gr.Gallery(label="Results", format="png", columns=4, height=420, object_fit="contain", preview=True, selected_index=0,
                                 interactive=False, elem_id=f"{tab}-gallery")
            with gr.Row():
                reuse_seed = gr.Button(f"{RECYCLE} Reuse seed", size="sm", elem_id=f"{tab}-reuse-seed")
                to_img2img = gr.Button("→ Image to image", size="sm", elem_id=f"{tab}-to-img2img")
                to_inpaint = gr.Button("→ Inpainting", size="sm", elem_id=f"{tab}-to-inpaint")
            infotext = gr.Textbox(label="Parameters", lines=3, interactive=False, buttons=["copy"], elem_id=f"{tab}-infotext")
            downloads = gr.HTML("", label="Download PNG (with parameters)", show_label=True, container=True, elem_id=f"{tab}-files")

    panel = Panel(tab, prompt, negative_prompt, prompt_tokens, negative_tokens, sampler_name, steps, cfg_scale, width, height,
                  seed, dice, recycle, batch_size, batch_count, model, generate, cancel, preview, progress, gallery, infotext,
                  downloads, reuse_seed, to_img2img, to_inpaint, extra)
    _wire_local(job_service, panel, session, counter)
    return panel


def _wire_local(job_service, p: Panel, session: gr.State, counter) -> None:
    hidden = SILENT
    p.prompt.change(lambda text: token_counter_html(counter, text), p.prompt, p.prompt_tokens, trigger_mode="always_last", **hidden)
    p.negative_prompt.change(lambda text: token_counter_html(counter, text), p.negative_prompt, p.negative_tokens, trigger_mode="always_last", **hidden)
    p.dice.click(lambda: -1, None, p.seed, **hidden)
    for slider in (p.width, p.height):
        slider.change(lambda v: gr.skip() if snap_size(v) == v else snap_size(v), slider, slider, trigger_mode="always_last", **hidden)

    def last_seed(s: Session):
        if s is None or p.tab not in s.last_seed:
            gr.Info("No seed yet: generate once first.")
            return gr.skip()
        return s.last_seed[p.tab]

    p.recycle.click(last_seed, session, p.seed, **TELLING)

    def select(s: Session, evt: gr.SelectData):
        if s is not None and evt is not None and isinstance(evt.index, int):
            s.selected[p.tab] = evt.index
            image = s.selected_image(p.tab)
            if image is not None:
                return image.infotext
        return gr.skip()

    p.gallery.select(select, session, p.infotext, **hidden)

    def reuse(s: Session):
        image = s.selected_image(p.tab) if s else None
        if image is None:
            gr.Info("No result yet.")
            return gr.skip()
        return image.seed

    p.reuse_seed.click(reuse, session, p.seed, **TELLING)
    p.cancel.click(lambda s: cancel_job(job_service, s, p.tab), session, p.progress, **hidden)


def generate_listener(p: Panel, fn, inputs: list, api_name: str, trigger=None, **kwargs):
    """Generate button (and Ctrl+Enter, which clicks it) → a streaming handler in the shared generate queue.
    The button also clears the progress line at once (in the browser), so no text of the last run stays."""
    if trigger is None:
        trigger = p.generate.click
        trigger(None, None, p.progress, js="() => ''", **SILENT)
    return trigger(
        fn,
        inputs,
        p.outputs(),
        api_name=api_name,
        concurrency_id=GENERATE_QUEUE,
        concurrency_limit=GENERATE_CONCURRENCY,
        show_progress="hidden",
        **kwargs,
    )

