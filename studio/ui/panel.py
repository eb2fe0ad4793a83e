"""The layout every generate tab shares: prompts with token counters, styles, the Networks panel (LoRAs, embeddings),
sampling settings, seed tools, model / VAE / clip skip, Generate / Cancel, and the output column (live preview, progress,
results, parameters, PNG files, result actions)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Optional

import gradio as gr

from studio.contract import RequestError
from studio.validation import MAX_PROMPT_CHARS
from studio.demo import NAME as DEMO_NAME
from studio.demo.scenes import EXAMPLE_PROMPTS
from studio.samplers import DEFAULT_SAMPLER, sampler_names

from .networks import AUTOMATIC_VAE, embedding_vectors, listing, networks_html, style_names, vae_names
from .options import (AUTOMATIC_SCHEDULE, DICE, RECYCLE, Hires, Variation, face_restorer_names, hires_accordion,
                      offered_models, restore_faces_info, schedule_types, schedule_update, variation_row, wire_hires, wire_variation)
from .streaming import GENERATE_QUEUE, SILENT, TELLING, Session, cancel_job, skip_job
from .tokens import counter_for, token_counter_html

MAX_CLIP_SKIP = 12
NO_STYLES = "No styles yet: the studio reads them from styles.csv (--styles-file); press Refresh under Networks after editing it."

# No limit of Gradio's: its queue is first come, first served, so every click goes straight to the engine's fair
# (round-robin, per-user capped) queue; the handlers await events on the event loop and hold no thread.
GENERATE_CONCURRENCY = None


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
    skip: gr.Button
    cancel: gr.Button
    preview: gr.HTML
    progress: gr.HTML
    gallery: gr.Gallery
    infotext: gr.Textbox
    downloads: gr.HTML
    reuse_seed: gr.Button
    to_img2img: gr.Button
    to_inpaint: gr.Button
    to_extras: gr.Button
    styles: gr.Dropdown
    clip_skip: gr.Slider
    vae: gr.Dropdown
    networks: gr.Accordion
    networks_list: gr.HTML
    networks_refresh: gr.Button
    extra: dict
    scheduler: gr.Dropdown
    tiling: gr.Checkbox
    restore_faces: gr.Checkbox
    variation: Optional[Variation] = None  # Text to image only
    hires: Optional[Hires] = None  # Text to image only
    scripts: Any = None  # the Script dropdown and its boxes (script_panel.ScriptPanel): Text to image, Image to image

    def parameter_inputs(self) -> list:
        """In the order of the handlers' A1111-named parameters (see txt2img.txt2img_request and common_fields)."""
        return [self.prompt, self.negative_prompt, self.sampler_name, self.steps, self.cfg_scale, self.width,
                self.height, self.seed, self.batch_size, self.batch_count, self.model, self.styles, self.clip_skip, self.vae,
                self.scheduler, self.tiling, self.restore_faces]

    def outputs(self) -> list:
        return [self.preview, self.progress, self.gallery, self.infotext, self.downloads]

    def controls(self) -> dict:
        """Every setting a PNG's parameters can fill, by its A1111 API name (PNG info's send)."""
        found = {name: getattr(self, name) for name in ("prompt", "negative_prompt", "sampler_name", "scheduler", "steps",
                                                         "cfg_scale", "seed", "width", "height", "clip_skip", "vae", "model",
                                                         "tiling", "restore_faces")}
        if self.variation is not None:
            v = self.variation
            found.update(seed_extras=v.extras, subseed=v.subseed, subseed_strength=v.subseed_strength,
                         seed_resize_from_w=v.seed_resize_from_w, seed_resize_from_h=v.seed_resize_from_h)
        if self.hires is not None:
            h = self.hires
            found.update(hires_accordion=h.accordion, **{name: getattr(h, name) for name in HIRES_CONTROLS})
        found.update({name: self.extra[name] for name in IMAGE_CONTROLS if name in self.extra})
        return found


# Image to image's and Inpainting's own settings that a picture's parameters can fill.
IMAGE_CONTROLS = ("denoising_strength", "mask_blur", "inpainting_fill", "inpaint_full_res", "inpaint_full_res_padding")
HIRES_CONTROLS = ("enable_hr", "hr_scale", "hr_upscaler", "hr_second_pass_steps", "hr_resize_x", "hr_resize_y", "hr_sampler_name",
                  "hr_scheduler", "hr_prompt", "hr_negative_prompt", "denoising_strength")


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


def build_panel(job_service, tab: str, session: gr.State, size_label: str, inputs_block: Optional[Callable[[], dict]] = None,
                txt2img_options: bool = False, scripts_block: Optional[Callable[[], Any]] = None,
                model: Optional[gr.Dropdown] = None) -> Panel:
    """job_service: studio.service.JobService (the engine's facts, the models offered, limits; Cancel).
    txt2img_options: the Hires. fix accordion and the variation seed (Seed's "Extra"), which only text to image has.
    scripts_block: builds the Script dropdown and its boxes at the bottom of the settings (A1111's place).
    model: the page's one Model picker (at the top, shared by every tab); without one the panel makes its own."""
    settings = job_service.settings
    counter = counter_for(str(getattr(settings, "cache_dir", "") or ""))
    with gr.Row(equal_height=False):
        with gr.Column(scale=5, min_width=360):
            prompts = _prompt_controls(job_service, tab, counter)
            extra = inputs_block() if inputs_block else {}
            controls = _settings_controls(job_service, tab, size_label, txt2img_options, model)
            scripts = scripts_block() if scripts_block else None
        with gr.Column(scale=4, min_width=320):
            outputs = _output_controls(tab)
    panel = Panel(tab=tab, extra=extra, scripts=scripts, **prompts, **controls, **outputs)
    _wire_local(job_service, panel, session, counter)
    return panel


def _prompt_controls(job_service, tab: str, counter) -> dict:
    prompt = gr.Textbox(label="Prompt", lines=3, max_length=MAX_PROMPT_CHARS, placeholder="What to draw (Ctrl+Enter generates)", elem_id=f"{tab}-prompt", elem_classes=["studio-prompt"])
    prompt_tokens = gr.HTML(token_counter_html(counter, ""), elem_id=f"{tab}-prompt-tokens")
    if tab == "txt2img" and job_service.info().model == DEMO_NAME:
        # The demo model draws only what its grammar says: offer prompts it knows (a click puts one in the box).
        gr.Examples([[text] for text in EXAMPLE_PROMPTS], [prompt], label="Prompts the demo model understands",
                    elem_id=f"{tab}-examples", examples_per_page=len(EXAMPLE_PROMPTS))
    negative_prompt = gr.Textbox("", label="Negative prompt", lines=2, max_length=MAX_PROMPT_CHARS, placeholder="What to avoid", elem_id=f"{tab}-negative", elem_classes=["studio-prompt"])
    negative_tokens = gr.HTML(token_counter_html(counter, ""), elem_id=f"{tab}-negative-tokens")
    styles_offered = style_names(job_service)
    # Styles and VAEs take names outside their lists (an API caller's, a file added since the page was built):
    # the engine checks them and says what it could not apply.
    with gr.Row():
        styles = gr.Dropdown(styles_offered, value=[], multiselect=True, label="Styles", elem_id=f"{tab}-styles", scale=3, allow_custom_value=True,
                             info=None if styles_offered else NO_STYLES)
        clip_skip = gr.Slider(1, MAX_CLIP_SKIP, value=1, step=1, label="Clip skip", elem_id=f"{tab}-clip-skip", scale=2, min_width=200)
    with gr.Accordion("Networks (LoRA, embeddings)", open=False, elem_id=f"{tab}-networks") as networks:
        networks_list = gr.HTML(networks_html(tab, *listing(job_service)), elem_id=f"{tab}-networks-list")
        networks_refresh = gr.Button("Refresh LoRAs, embeddings, styles, VAEs", size="sm", elem_id=f"{tab}-networks-refresh")
    return dict(prompt=prompt, negative_prompt=negative_prompt, prompt_tokens=prompt_tokens, negative_tokens=negative_tokens,
                styles=styles, clip_skip=clip_skip, networks=networks, networks_list=networks_list, networks_refresh=networks_refresh)


ASPECTS = (("1:1", 1, 1), ("3:2", 3, 2), ("2:3", 2, 3), ("16:9", 16, 9), ("9:16", 9, 16))
PRESET_FALLBACK = 512  # the side presets start from when no model is loaded yet


def preset_size(base: int, across: int, down: int, max_size: int) -> tuple[int, int]:
    """width × height in the aspect across:down with about the area of base × base, in multiples of 8."""
    ratio = (across / down) ** 0.5
    width, height = (max(MIN_SIZE, min(max_size, round(base * r / 8) * 8)) for r in (ratio, 1 / ratio))
    return width, height


def model_size_hint(job_service, size_label: str) -> str:
    """The size line, naming the loaded model's real default size."""
    size = job_service.info().default_size
    return size_label if size is None else size_label.replace("the model's default size", f"the model's size ({size}×{size})")


def _size_presets(job_service, tab: str, width: gr.Slider, height: gr.Slider) -> None:
    """Aspect buttons (about the model's own area) and Swap, under Width and Height."""
    max_size = job_service.settings.max_size
    with gr.Row(elem_classes=["studio-size-presets"]):
        for label, across, down in ASPECTS:
            button = gr.Button(label, size="sm", min_width=48, elem_id=f"{tab}-aspect-{across}x{down}")
            button.click(lambda a=across, d=down: preset_size(job_service.info().default_size or PRESET_FALLBACK, a, d, max_size),
                         None, [width, height], **SILENT)
        swap = gr.Button("Swap", size="sm", min_width=60, elem_id=f"{tab}-size-swap")
        swap.click(lambda w, h: (h, w), [width, height], [width, height], **SILENT)


def _settings_controls(job_service, tab: str, size_label: str, txt2img_options: bool, model: Optional[gr.Dropdown]) -> dict:
    """Sampler and Schedule type, steps, size (then Hires. fix), CFG and seed (then its Extra row), batch, model, VAE,
    Tiling, Restore faces: A1111's order (its Restore faces sat beside Tiling)."""
    settings = job_service.settings
    with gr.Row():
        sampler_name = gr.Dropdown(sampler_names(legacy_variants=False), value=DEFAULT_SAMPLER, label="Sampler", allow_custom_value=True,
                                   elem_id=f"{tab}-sampler", min_width=160)
        scheduler = gr.Dropdown(schedule_types(DEFAULT_SAMPLER), value=AUTOMATIC_SCHEDULE, label="Schedule type", allow_custom_value=True,
                                elem_id=f"{tab}-scheduler", min_width=160)
        steps = gr.Slider(1, settings.max_steps, value=20, step=1, label="Steps", elem_id=f"{tab}-steps", min_width=160)
    with gr.Row():
        size_label = model_size_hint(job_service, size_label)
        width = gr.Slider(0, settings.max_size, value=0, step=8, label="Width", info=size_label, elem_id=f"{tab}-width")
        height = gr.Slider(0, settings.max_size, value=0, step=8, label="Height", info=size_label, elem_id=f"{tab}-height")
    _size_presets(job_service, tab, width, height)
    hires = hires_accordion(job_service, tab, settings) if txt2img_options else None
    with gr.Row():
        cfg_scale = gr.Slider(0, 30, value=7.0, step=0.5, label="CFG scale", elem_id=f"{tab}-cfg", min_width=160)
        batch_size = gr.Slider(1, settings.max_batch, value=1, step=1, label="Batch size", elem_id=f"{tab}-batch-size", min_width=160)
        batch_count = gr.Slider(1, min(100, settings.max_batch_count), value=1, step=1, label="Batch count", elem_id=f"{tab}-batch-count",
                                min_width=160)
    with gr.Row(elem_classes=["studio-seed-row"]):
        seed = gr.Number(value=-1, precision=0, label="Seed (-1 = random)", elem_id=f"{tab}-seed", min_width=140, scale=4)
        dice = gr.Button(DICE, min_width=72, scale=0, elem_id=f"{tab}-dice", elem_classes=["studio-tool"])
        recycle = gr.Button(RECYCLE, min_width=72, scale=0, elem_id=f"{tab}-recycle", elem_classes=["studio-tool"])
        extras = (gr.Checkbox(False, label="Extra", elem_id=f"{tab}-seed-extras", min_width=90, scale=0, container=False,
                              elem_classes=["studio-seed-extras"]) if txt2img_options else None)
    variation = variation_row(tab, extras, settings.max_size) if txt2img_options else None
    with gr.Row(equal_height=True):
        if model is None:
            model = model_picker(job_service, f"{tab}-model", scale=3)
        vae = gr.Dropdown(vae_names(job_service), value=AUTOMATIC_VAE, label="VAE", elem_id=f"{tab}-vae", allow_custom_value=True, scale=3)
        # The two checkboxes stacked beside the dropdowns: the row stays one line high and the dropdowns wide.
        with gr.Column(scale=1, min_width=150, elem_classes=["studio-flags"]):
            tiling = gr.Checkbox(False, label="Tiling", info="seamless", elem_id=f"{tab}-tiling", container=False)
            # Its line says which restorer it uses (refreshed on page load: studio.ui._wire_face_hints); the engine
            # refuses the job, naming the folders, when none is installed.
            restore_faces = gr.Checkbox(False, label="Restore faces", info=restore_faces_info(face_restorer_names(job_service)),
                                        elem_id=f"{tab}-restore-faces", container=False)
    return dict(sampler_name=sampler_name, scheduler=scheduler, steps=steps, width=width, height=height, cfg_scale=cfg_scale,
                seed=seed, dice=dice, recycle=recycle, batch_size=batch_size, batch_count=batch_count, model=model, vae=vae,
                tiling=tiling, restore_faces=restore_faces, variation=variation, hires=hires)


def model_picker(job_service, elem_id: str, **layout) -> gr.Dropdown:
    """A Model dropdown of the models this user may pick, on the running one."""
    return gr.Dropdown(offered_models(job_service), value=job_service.info().model or None, label="Model",
                       allow_custom_value=True, elem_id=elem_id, **layout)


def _output_controls(tab: str) -> dict:
    with gr.Row():
        generate = gr.Button("Generate", variant="primary", elem_id=f"{tab}-generate", elem_classes=["studio-generate"])
        skip = gr.Button("Skip", elem_id=f"{tab}-skip", min_width=80, scale=0)
        cancel = gr.Button("Cancel", variant="stop", elem_id=f"{tab}-cancel")
    progress = gr.HTML("", elem_id=f"{tab}-progress", elem_classes=["studio-quiet"])
    # Filled by the browser from the studio's live stream (server-sent events), not by Gradio per step.
    preview = gr.HTML("<div class='studio-live'></div>", label="Live preview", show_label=True, container=True, elem_id=f"{tab}-preview",
                      elem_classes=["studio-live-box"])
    # One result or many: the selected one large (whole, captioned), the others as thumbnails below it.
    gallery = gr.Gallery(label="Results", format="png", columns=4, height=420, object_fit="contain", preview=True, selected_index=0,
                         interactive=False, elem_id=f"{tab}-gallery")
    with gr.Row():  # one row of four: narrower than Gradio's 160 px each, so they fit beside each other
        reuse_seed = gr.Button("Reuse seed", size="sm", min_width=100, elem_id=f"{tab}-reuse-seed")
        to_img2img = gr.Button("→ Image to image", size="sm", min_width=120, elem_id=f"{tab}-to-img2img")
        to_inpaint = gr.Button("→ Inpainting", size="sm", min_width=100, elem_id=f"{tab}-to-inpaint")
        to_extras = gr.Button("→ Extras", size="sm", min_width=80, elem_id=f"{tab}-to-extras")
    infotext = gr.Textbox(label="Parameters", lines=3, interactive=False, buttons=["copy"], elem_id=f"{tab}-infotext")
    downloads = gr.HTML("", label="Download PNG (with parameters)", show_label=True, container=True, elem_id=f"{tab}-files")
    # This user's queued and running jobs, each with Skip and Cancel: drawn by the browser from /studio/api/queue.
    # Last in the column, so that the list growing or emptying moves nothing above it.
    gr.HTML("<div class='studio-jobs'></div>", elem_id=f"{tab}-jobs", elem_classes=["studio-quiet"])
    return dict(generate=generate, skip=skip, cancel=cancel, progress=progress, preview=preview, gallery=gallery, reuse_seed=reuse_seed,
                to_img2img=to_img2img, to_inpaint=to_inpaint, to_extras=to_extras, infotext=infotext, downloads=downloads)


def _wire_local(job_service, p: Panel, session: gr.State, counter) -> None:
    hidden = SILENT

    def count(text, steps):
        return token_counter_html(counter, text if isinstance(text, str) else "", embedding_vectors(job_service), _steps(steps))

    p.prompt.change(count, [p.prompt, p.steps], p.prompt_tokens, trigger_mode="always_last", **hidden)
    # The user's choice only (.input): a send from PNG info sets the sampler and its schedule type together.
    p.sampler_name.input(schedule_update, [p.sampler_name, p.scheduler], p.scheduler, **hidden)
    if p.variation is not None:
        wire_variation(p.variation, p.tab, session)
    if p.hires is not None:
        wire_hires(job_service, p.hires, p.sampler_name, p.width, p.height)
    p.negative_prompt.change(count, [p.negative_prompt, p.steps], p.negative_tokens, trigger_mode="always_last", **hidden)
    _wire_networks(job_service, p)
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
    p.skip.click(lambda s: skip_job(job_service, s, p.tab), session, p.progress, **hidden)


def check_vae(job_service, vae: Optional[str]) -> None:
    """A VAE the folder does not hold is refused before the job is queued, with the names to choose from."""
    if vae is None:
        return
    names = vae_names(job_service)[1:]
    wanted = vae.strip()
    if not any(wanted in (name, name.rsplit("/", 1)[-1], name.rsplit("/", 1)[-1].rsplit(".", 1)[0]) for name in names):
        shown = wanted if len(wanted) <= 80 else wanted[:77] + "…"
        raise RequestError(f"VAE '{shown}' is not in the VAE folder: choose one of {', '.join(names) or '(none installed)'}, "
                           "or Automatic for the model's own.")


def _steps(value) -> int:
    try:
        return int(value)
    except (TypeError, ValueError, OverflowError):
        return 20


def _wire_networks(job_service, p: Panel) -> None:
    """Opening the panel shows the folders as they are now; Refresh rescans them (and the styles and VAEs)."""
    p.networks.expand(lambda: networks_html(p.tab, *listing(job_service)), None, p.networks_list, **SILENT)

    def refresh(chosen_styles, chosen_vae):
        for what, rescan in (("LoRA", job_service.refresh_loras), ("embeddings", job_service.refresh_embeddings)):
            try:
                rescan()
            except Exception:
                raise gr.Error(f"Could not read the {what} folder: check that it exists and is readable, then try again.",
                               print_exception=True) from None
        loras, embeddings = listing(job_service)
        styles, vaes = style_names(job_service), vae_names(job_service)
        found = len((embeddings or {}).get("loaded") or {})
        gr.Info(f"Found {len(loras)} LoRA{'s' if len(loras) != 1 else ''}, {found} embedding{'s' if found != 1 else ''} "
                f"for this model, {len(styles)} style{'s' if len(styles) != 1 else ''}, {len(vaes) - 1} VAE{'s' if len(vaes) != 2 else ''}.")
        kept_styles = [name for name in (chosen_styles or []) if name in styles]
        return (networks_html(p.tab, loras, embeddings),
                gr.Dropdown(choices=styles, value=kept_styles,
                            info=None if styles else NO_STYLES),
                gr.Dropdown(choices=vaes, value=chosen_vae if chosen_vae in vaes else AUTOMATIC_VAE))

    p.networks_refresh.click(refresh, [p.styles, p.vae], [p.networks_list, p.styles, p.vae], **TELLING)


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
        # A click during a job queues another (the job list shows both): Gradio's default would ignore the click.
        **{"trigger_mode": "multiple", **kwargs},
    )

