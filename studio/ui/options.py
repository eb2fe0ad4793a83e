"""The generate tabs' A1111 options beyond the basics: the Schedule type beside the sampler, Tiling, Restore faces,
the variation seed (Seed's "Extra") and the Hires. fix accordion (Text to image only) — their controls, their
wiring, and the request fields they become (plain functions: tests call them without a server)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Optional

import gradio as gr

from studio.contract import RequestError
from studio.metadata import parse_infotext
from studio.samplers import AUTOMATIC, DEFAULT_SAMPLER, SCHEDULE_TYPES, sampler_names, schedule_types_for

from .streaming import SILENT, TELLING, Session

log = logging.getLogger(__name__)

AUTOMATIC_SCHEDULE = dict(SCHEDULE_TYPES)[AUTOMATIC]  # "Automatic"
SAME_SAMPLER = "Use same sampler"  # A1111's hires choices
SAME_SCHEDULER = "Use same scheduler"
DEFAULT_UPSCALER = "Latent"
MAX_HIRES_SCALE = 4.0  # studio.validation's limit
DICE = "Random"  # a seed's random (-1); words, not emoji (no emoji font on many machines)
RECYCLE = "Last"  # a seed's last value


# ---- request fields from control values (raise RequestError with a message for the user)


def _number(value: Any, name: str, default: float) -> float:
    if value is None or value == "":
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise RequestError(f"{name} must be a number, got {value!r}.")
    return value


def _whole(value: Any, name: str, default: int = 0) -> int:
    value = _number(value, name, default)
    if isinstance(value, float):
        if not value.is_integer():
            raise RequestError(f"{name} must be a whole number, got {value!r}.")
        value = int(value)
    return value


def schedule_choice(value: Any, same: str = AUTOMATIC) -> Optional[str]:
    """The Schedule type dropdown's value: `same` ("Automatic": the sampler's own schedule; "Use same scheduler" for
    the hires pass) or nothing is None; anything else goes to the engine, which knows labels ("Karras") and A1111's
    keys ("karras") and says which a sampler accepts."""
    if value is None or (isinstance(value, str) and value.strip().lower() in ("", same.lower())):
        return None
    if not isinstance(value, str):
        raise RequestError("scheduler must be a schedule type's name, such as Karras (or Automatic).")
    return value.strip()


def flag_choice(value: Any, name: str) -> bool:
    """A checkbox's value: nothing is off; anything but true or false is refused."""
    if value is None or value == "":
        return False
    if not isinstance(value, bool):
        raise RequestError(f"{name} must be true or false.")
    return value


def tiling_choice(value: Any) -> bool:
    return flag_choice(value, "tiling")


def restore_faces_choice(value: Any) -> bool:
    return flag_choice(value, "restore_faces")


def face_restorer_names(job_service) -> list[str]:
    """The face restorers installed now (A1111's /sdapi/v1/face-restorers names, in its order: the first is the one
    Restore faces uses); [] when none is, or when the listing fails (the engine still says what is missing)."""
    try:
        entries = job_service.face_restorers()
        return [entry["name"] for entry in entries if isinstance(entry, dict) and isinstance(entry.get("name"), str)]
    except Exception:  # a tab must not go down with the weights folders
        log.exception("Listing the face restorers failed")
        return []


def restore_faces_info(names: list[str]) -> str:
    """The line under Restore faces: the restorer it uses, or that none is installed."""
    return f"with {names[0]}" if names else "none installed"


def variation_fields(subseed: Any = -1, subseed_strength: Any = 0.0, seed_resize_from_w: Any = 0,
                     seed_resize_from_h: Any = 0) -> dict:
    """A1111's variation seed controls as request fields. Resize seed from: both sides above 0, or off."""
    resize_w = _whole(seed_resize_from_w, "seed_resize_from_w")
    resize_h = _whole(seed_resize_from_h, "seed_resize_from_h")
    if (resize_w > 0) != (resize_h > 0):
        raise RequestError("Resize seed from: set both the width and the height (or both 0 to leave it off).")
    return dict(subseed=_whole(subseed, "subseed", -1), subseed_strength=_number(subseed_strength, "subseed_strength", 0.0),
                seed_resize_from=(resize_w, resize_h) if resize_w > 0 else None)


def hires_resize(width: Optional[int], height: Optional[int], resize_x: Any, resize_y: Any) -> Optional[tuple[int, int]]:
    """Resize width/height to, as A1111 takes them: both 0 → None (use Upscale by); one of them 0 → that side keeps
    the first pass's aspect ratio (a multiple of 8). width/height None: the model's default size, which is square."""
    x, y = _whole(resize_x, "hr_resize_x"), _whole(resize_y, "hr_resize_y")
    if x <= 0 and y <= 0:
        return None
    if x > 0 and y > 0:
        return x, y
    if (width is None) != (height is None):
        raise RequestError("Resize width/height to: give both, or set the first pass's Width and Height "
                           "(with one of them 0 the aspect ratio is not known).")
    width, height = (width, height) if width else (1, 1)  # the model's default size is square
    if x > 0:
        return x, max(8, round(x * height / width / 8) * 8)
    return max(8, round(y * width / height / 8) * 8), y


def hires_fields(enable_hr: Any, hr_scale: Any = 2.0, hr_upscaler: Any = DEFAULT_UPSCALER, hr_second_pass_steps: Any = 0,
                 hr_resize_x: Any = 0, hr_resize_y: Any = 0, hr_sampler_name: Any = None, hr_scheduler: Any = None,
                 hr_prompt: Any = "", hr_negative_prompt: Any = "", denoising_strength: Any = 0.7, *,
                 width: Optional[int] = None, height: Optional[int] = None) -> dict:
    """The Hires. fix controls (A1111's API names) as request fields; nothing unless enable_hr. width/height: the
    first pass's size (None: the model's default)."""
    if not enable_hr:
        return {}
    for name, text in (("hr_prompt", hr_prompt), ("hr_negative_prompt", hr_negative_prompt)):
        if text is not None and not isinstance(text, str):
            raise RequestError(f"{name} must be text.")
    sampler = hr_sampler_name if isinstance(hr_sampler_name, str) and hr_sampler_name.strip() not in ("", SAME_SAMPLER) else None
    return dict(
        enable_hr=True,
        hr_scale=_number(hr_scale, "hr_scale", 2.0),
        hr_resize=hires_resize(width, height, hr_resize_x, hr_resize_y),
        hr_upscaler=hr_upscaler if isinstance(hr_upscaler, str) and hr_upscaler.strip() else DEFAULT_UPSCALER,
        hr_second_pass_steps=_whole(hr_second_pass_steps, "hr_second_pass_steps"),
        hr_sampler_name=sampler,
        hr_scheduler=schedule_choice(hr_scheduler, same=SAME_SCHEDULER),
        hr_prompt=hr_prompt or None,  # empty: the prompt
        hr_negative_prompt=hr_negative_prompt or None,
        hr_denoising_strength=_number(denoising_strength, "denoising_strength", 0.7),
    )


def hires_text(width: Any, height: Any, hr_scale: Any, resize_x: Any, resize_y: Any) -> str:
    """The line under Hires. fix, as A1111 shows it: "Upscaling 512×512 → 1024×1024"."""
    try:
        width, height = int(width or 0) or None, int(height or 0) or None
        resize = hires_resize(width, height, resize_x, resize_y)
        scale = float(hr_scale or 2.0)
    except (RequestError, TypeError, ValueError):
        return "Resize width/height to: give both, or set Width and Height first."
    if resize is not None:
        start = f"{width}×{height}" if width and height else "the model's default size"
        return f"Upscaling {start} → {resize[0]}×{resize[1]}"
    if not (width and height):
        return f"Upscaling the model's default size × {scale:g}"
    return f"Upscaling {width}×{height} → {int(width * scale) // 8 * 8}×{int(height * scale) // 8 * 8}"


def schedule_types(sampler: Any) -> list[str]:
    """The Schedule type choices for a sampler (Automatic first); every type for a name the studio does not know."""
    try:
        return schedule_types_for(str(sampler or ""))
    except ValueError:
        return [label for _, label in SCHEDULE_TYPES]


def schedule_update(sampler: Any, current: Any, first: str = AUTOMATIC_SCHEDULE):
    """The Schedule type dropdown after the sampler changed: its choices, the value kept where the sampler has it."""
    choices = schedule_types(sampler)
    if first != AUTOMATIC_SCHEDULE:
        choices = [first] + choices
    return gr.Dropdown(choices=choices, value=current if current in choices else first)


def hires_upscaler_names(job_service) -> list[str]:
    try:
        names = list(job_service.hires_upscalers())
    except Exception:  # the accordion must not take the tab down with it
        log.exception("Listing the hires upscalers failed")
        names = []
    return names or [DEFAULT_UPSCALER]


# ---- controls


@dataclass
class Variation:
    """Seed's "Extra": a checkbox next to Seed, and the row it shows."""

    extras: gr.Checkbox
    row: gr.Column
    subseed: gr.Number
    dice: gr.Button
    recycle: gr.Button
    subseed_strength: gr.Slider
    seed_resize_from_w: gr.Slider
    seed_resize_from_h: gr.Slider

    def inputs(self) -> list:
        return [self.subseed, self.subseed_strength, self.seed_resize_from_w, self.seed_resize_from_h]


def variation_row(tab: str, extras: gr.Checkbox, max_size: int) -> Variation:
    with gr.Column(visible=False, elem_id=f"{tab}-variation", elem_classes=["studio-variation"]) as row:
        with gr.Row(elem_classes=["studio-seed-row"]):
            subseed = gr.Number(value=-1, precision=0, label="Variation seed (-1 = random)", elem_id=f"{tab}-subseed", min_width=140, scale=3)
            dice = gr.Button(DICE, min_width=72, scale=0, elem_id=f"{tab}-subseed-dice", elem_classes=["studio-tool"])
            recycle = gr.Button(RECYCLE, min_width=72, scale=0, elem_id=f"{tab}-subseed-recycle", elem_classes=["studio-tool"])
            strength = gr.Slider(0, 1, value=0, step=0.01, label="Variation strength", elem_id=f"{tab}-subseed-strength", scale=4, min_width=200)
        with gr.Row():
            resize_w = gr.Slider(0, max_size, value=0, step=8, label="Resize seed from width", info="0 = off",
                                 elem_id=f"{tab}-seed-resize-w", min_width=200)
            resize_h = gr.Slider(0, max_size, value=0, step=8, label="Resize seed from height", info="0 = off",
                                 elem_id=f"{tab}-seed-resize-h", min_width=200)
    return Variation(extras, row, subseed, dice, recycle, strength, resize_w, resize_h)


def last_variation_seed(session: Optional[Session], tab: str) -> Optional[int]:
    """The variation seed of the selected result (from its parameters), if it had one."""
    image = session.selected_image(tab) if session is not None else None
    if image is None:
        return None
    try:
        return int(parse_infotext(image.infotext).get("Variation seed"))
    except (TypeError, ValueError):
        return None


def wire_variation(v: Variation, tab: str, session: gr.State) -> None:
    def toggle(on):
        # Hidden means off: what the row shows is what the next job uses (A1111 gates these on the checkbox too).
        if on:
            return gr.Column(visible=True), gr.skip(), gr.skip(), gr.skip()
        return gr.Column(visible=False), 0, 0, 0

    v.extras.change(toggle, v.extras, [v.row, v.subseed_strength, v.seed_resize_from_w, v.seed_resize_from_h], **SILENT)
    v.dice.click(lambda: -1, None, v.subseed, **SILENT)

    def recycle(s: Session):
        seed = last_variation_seed(s, tab)
        if seed is None:
            gr.Info("No variation seed yet: generate with a variation strength above 0 first.")
            return gr.skip()
        return seed

    v.recycle.click(recycle, session, v.subseed, **TELLING)


@dataclass
class Hires:
    """The Hires. fix accordion of Text to image."""

    accordion: gr.Accordion
    enable_hr: gr.Checkbox
    summary: gr.HTML
    hr_upscaler: gr.Dropdown
    hr_second_pass_steps: gr.Slider
    denoising_strength: gr.Slider
    hr_scale: gr.Slider
    hr_resize_x: gr.Slider
    hr_resize_y: gr.Slider
    hr_sampler_name: gr.Dropdown
    hr_scheduler: gr.Dropdown
    hr_prompt: gr.Textbox
    hr_negative_prompt: gr.Textbox

    def inputs(self) -> list:
        """In the order of the handler's A1111-named parameters (see txt2img.txt2img_request)."""
        return [self.enable_hr, self.hr_scale, self.hr_upscaler, self.hr_second_pass_steps, self.hr_resize_x, self.hr_resize_y,
                self.hr_sampler_name, self.hr_scheduler, self.hr_prompt, self.hr_negative_prompt, self.denoising_strength]


def hires_accordion(job_service, tab: str, settings) -> Hires:
    with gr.Accordion("Hires. fix", open=False, elem_id=f"{tab}-hires") as accordion:
        with gr.Row(equal_height=True):
            enable = gr.Checkbox(False, label="Enable hires. fix", elem_id=f"{tab}-enable-hr", scale=1, min_width=180, container=False)
            summary = gr.HTML(f"<div class='studio-hires-size'>{hires_text(0, 0, 2.0, 0, 0)}</div>",
                              elem_id=f"{tab}-hires-size", scale=3)
        with gr.Row():
            upscaler = gr.Dropdown(hires_upscaler_names(job_service), value=DEFAULT_UPSCALER, label="Upscaler",
                                   allow_custom_value=True, elem_id=f"{tab}-hr-upscaler", min_width=200)
            scale = gr.Slider(1.0, MAX_HIRES_SCALE, value=2.0, step=0.05, label="Upscale by", elem_id=f"{tab}-hr-scale", min_width=200)
        with gr.Row():
            steps = gr.Slider(0, settings.max_steps, value=0, step=1, label="Hires steps", info="0 = the same as Steps",
                              elem_id=f"{tab}-hr-steps", min_width=200)
            strength = gr.Slider(0.01, 1.0, value=0.7, step=0.01, label="Denoising strength", elem_id=f"{tab}-hr-denoising", min_width=200)
        with gr.Row():
            resize_x = gr.Slider(0, settings.max_size, value=0, step=8, label="Resize width to", info="0 = use Upscale by",
                                 elem_id=f"{tab}-hr-resize-x", min_width=200)
            resize_y = gr.Slider(0, settings.max_size, value=0, step=8, label="Resize height to", info="0 = use Upscale by",
                                 elem_id=f"{tab}-hr-resize-y", min_width=200)
        with gr.Row():
            sampler = gr.Dropdown([SAME_SAMPLER] + sampler_names(legacy_variants=False), value=SAME_SAMPLER, label="Hires sampler",
                                  allow_custom_value=True, elem_id=f"{tab}-hr-sampler")
            scheduler = gr.Dropdown([SAME_SCHEDULER] + schedule_types(DEFAULT_SAMPLER), value=SAME_SCHEDULER, label="Hires schedule type",
                                    allow_custom_value=True, elem_id=f"{tab}-hr-scheduler")
        with gr.Row():
            prompt = gr.Textbox("", label="Hires prompt", lines=2, placeholder="Empty: the same prompt", elem_id=f"{tab}-hr-prompt")
            negative = gr.Textbox("", label="Hires negative prompt", lines=2, placeholder="Empty: the same negative prompt",
                                  elem_id=f"{tab}-hr-negative")
    return Hires(accordion, enable, summary, upscaler, steps, strength, scale, resize_x, resize_y, sampler, scheduler, prompt, negative)


def wire_hires(job_service, h: Hires, sampler: gr.Dropdown, width: gr.Slider, height: gr.Slider) -> None:
    sizes = [width, height, h.hr_scale, h.hr_resize_x, h.hr_resize_y]

    def summary(*values):
        return f"<div class='studio-hires-size'>{hires_text(*values)}</div>"

    for control in sizes:
        control.change(summary, sizes, h.summary, trigger_mode="always_last", **SILENT)

    def label(on, *values):
        return gr.Accordion(label=f"Hires. fix — on: {hires_text(*values)}" if on else "Hires. fix")

    for control in [h.enable_hr] + sizes:
        control.change(label, [h.enable_hr] + sizes, h.accordion, trigger_mode="always_last", **SILENT)

    def hires_schedules(hr_sampler, main_sampler, current):
        chosen = main_sampler if hr_sampler in (None, "", SAME_SAMPLER) else hr_sampler
        return schedule_update(chosen, current, first=SAME_SCHEDULER)

    for control in (h.hr_sampler_name, sampler):
        control.input(hires_schedules, [h.hr_sampler_name, sampler, h.hr_scheduler], h.hr_scheduler, **SILENT)
    # Opening the accordion lists the upscalers installed now.
    h.accordion.expand(lambda current: gr.Dropdown(choices=hires_upscaler_names(job_service), value=current),
                       h.hr_upscaler, h.hr_upscaler, **SILENT)


CSS = """
.studio-hires-size { color: var(--body-text-color-subdued); font-variant-numeric: tabular-nums; padding: 6px 2px; }
/* Seed rows, as A1111's: the number, then Random / Last buttons level with its box, then Extra. */
.studio-seed-row { align-items: flex-end; }
.studio-seed-row > .studio-tool { flex: 0 0 72px !important; height: 42px; margin-bottom: 2px; padding: 0 6px; font-size: 0.9em; font-weight: 500; }
.studio-seed-row > .studio-seed-extras { flex: 0 0 96px !important; width: 96px; align-self: flex-end; margin-bottom: 10px; }
/* Tiling and Restore faces stacked in one box beside Model and VAE, each with its line under its label. */
.studio-flags { gap: 6px !important; justify-content: center; padding: 8px 12px !important;
                background: var(--block-background-fill); border: var(--block-border-width) solid var(--block-border-color);
                border-radius: var(--block-radius); box-shadow: var(--block-shadow); }
.studio-flags > .block { padding: 0 !important; border: none !important; background: none !important; box-shadow: none !important; }
.studio-flags > .block .info-text { margin: 0; padding-left: 24px; line-height: 1.2; }
/* Inpainting: the mask brush has one fixed colour (translucent white), so the editor's Color tool is a blank button
   with one white swatch: hidden */
#inpaint-editor button[aria-label="Color"] { display: none !important; }
"""


def offered_models(job_service) -> list[str]:
    """The models a user may pick, the running one first when the list lacks it (it is read anew on each call: a
    Refresh finds models dropped into the folder since)."""
    models = list(job_service.models() or [])
    current = job_service.info().model
    return models if not current or current in models else [current] + models
