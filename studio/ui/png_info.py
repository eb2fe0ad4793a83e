"""PNG info tab: drop a PNG (ours or A1111's), read its parameters, send them to Text to image — and say what of
them the studio cannot apply (a LoRA, VAE, upscaler or sampler it does not have, another model, settings it has no
control for). Sampler names from before A1111 1.9 ("DPM++ 2M Karras") become the sampler and its Schedule type."""

from __future__ import annotations

from pathlib import PurePosixPath
from typing import Any, Optional

import gradio as gr
from PIL import Image

from studio.inpainting import MASKED_CONTENT  # PIL and numpy only (no torch)
from studio.metadata import parse_infotext, read_infotext
from studio.prompts.syntax import extract_network_tags
from studio.samplers import AUTOMATIC, KARRAS_SUFFIX, SCHEDULE_TYPES, find_sampler, schedule_key

from .networks import AUTOMATIC_VAE
from .options import AUTOMATIC_SCHEDULE, DEFAULT_UPSCALER, MAX_HIRES_SCALE, SAME_SAMPLER, SAME_SCHEDULER

MAX_CLIP_SKIP = 12
LORA_KINDS = ("lora", "lyco")
SCHEDULE_LABELS = dict(SCHEDULE_TYPES)
# Infotext keys the send applies, or that only describe the picture (hashes, version): never reported as ignored.
HANDLED = frozenset({"Prompt", "Negative prompt", "Steps", "Sampler", "Schedule type", "CFG scale", "Seed", "Size", "Size-1",
                     "Size-2", "Model", "Model hash", "VAE", "VAE hash", "Clip skip", "Lora hashes", "TI hashes", "Version",
                     "Variation seed", "Variation seed strength", "Seed resize from", "Tiling", "Face restoration"})
# The hires fix's fields (with them, "Denoising strength" is the second pass's, as A1111 writes it for text to image).
HIRES_KEYS = ("Hires upscale", "Hires resize", "Hires steps", "Hires upscaler", "Hires sampler", "Hires schedule type",
              "Hires prompt", "Hires negative prompt")


def read_parameters(path: Optional[str]) -> tuple[str, dict]:
    if not path:
        return "", {}
    try:
        with Image.open(path) as image:
            image.load()
            text = read_infotext(image)
    except Exception:
        raise gr.Error("That file is not a readable image.", print_exception=False) from None
    if not text:
        return "(no generation parameters in this image)", {}
    return text, parse_infotext(text)


def to_fields(params: dict) -> dict[str, Any]:
    """Parsed infotext → the basic fields as the text names them (keys missing from the text are left out); the
    sampler as one name, " Karras" included. plan_send makes them values for the Text to image controls."""
    out: dict[str, Any] = {}
    if not params:
        return out
    out["prompt"] = params.get("Prompt", "")
    out["negative_prompt"] = params.get("Negative prompt", "")
    if "Sampler" in params:
        name = params["Sampler"]
        if str(params.get("Schedule type", "")).lower() == "karras" and not name.endswith(KARRAS_SUFFIX):
            name += KARRAS_SUFFIX
        out["sampler_name"] = name
    for key, field, kind in (("Steps", "steps", int), ("CFG scale", "cfg_scale", float), ("Seed", "seed", int),
                             ("Size-1", "width", int), ("Size-2", "height", int)):
        try:
            if key in params:
                out[field] = kind(float(params[key])) if kind is int else kind(params[key])
        except (TypeError, ValueError):
            pass
    return out


def _names(name: str) -> set[str]:
    """A file name as infotexts may write it: as listed, its base name, its stem ("sub/x.safetensors" → x)."""
    path = PurePosixPath(str(name).replace("\\", "/"))
    return {str(name), path.name, path.stem}


def _match_vae(wanted: str, vaes: list[str]) -> Optional[str]:
    wanted = str(wanted).strip()
    for known in vaes:
        if wanted in _names(known) or PurePosixPath(wanted.replace("\\", "/")).name in _names(known):
            return known
    return None


def _match_model(wanted: str, wanted_hash: Optional[str], models: list[str], hashes: dict) -> Optional[str]:
    wanted = str(wanted).strip()
    for known in models:
        if wanted in _names(known) or known.rsplit("/", 1)[-1] == wanted:
            return known
    if wanted_hash:
        for known, short in (hashes or {}).items():
            if short and str(short).lower() == str(wanted_hash).lower() and known in models:
                return known
    return None


def _lora_names(loras: list) -> set[str]:
    names = set()
    for entry in loras or []:
        if isinstance(entry, dict):
            names.update(str(entry[key]) for key in ("name", "alias") if entry.get(key))
    return names


def _quoted(names) -> str:
    return ", ".join(f"“{name}”" for name in names)


def plan_send(params: dict, *, loras: list, embeddings: Optional[dict], vaes: list[str], models: list[str],
              model_hashes: Optional[dict] = None, upscalers: Optional[list[str]] = None,
              face_restorers: Optional[list[str]] = None, target: str = "Text to image",
              image_fields: tuple[str, ...] = ()) -> tuple[dict[str, Any], list[str]]:
    """(values for the `target` tab's controls by their A1111 API names, what cannot be applied — one line each,
    saying what to do). image_fields: the image tab's own settings the target has (IMAGE_FIELDS' names: Denoising
    strength, and Inpainting's mask settings); with them the hires fix is not applied (the tab has none).

    Beyond to_fields: the sampler and its Schedule type, clip skip (A1111 leaves it out at 1), the VAE ("Automatic"
    when the text names none), the model when it is one offered here (by name, or by its hash among the loaded
    models), Tiling, Restore faces ("Face restoration: GFPGAN"), the variation seed and the hires fix — a setting the
    text leaves out is set back to off, as A1111 does. loras: service.loras(); embeddings: service.embeddings(); vaes:
    VAE names; models: the models offered; upscalers: service.hires_upscalers(); face_restorers: the installed ones'
    names, the one Restore faces uses first (None: not checked)."""
    fields = to_fields(params)
    notes: list[str] = []
    if not fields:
        return fields, notes
    _sampler(params, fields, notes)
    _clip_skip_and_vae(params, fields, notes, vaes)
    if "Model" in params:
        match = _match_model(params["Model"], params.get("Model hash"), models, model_hashes or {})
        if match is None:
            notes.append(f"Model “{str(params['Model']):.200}” is not available here: the model chosen in Text to image "
                         "stays. Pick one from the Model list (an admin can add models).")
        else:
            fields["model"] = match
    fields["tiling"] = str(params.get("Tiling", "")).strip().lower() == "true"
    _restore_faces(params, fields, notes, face_restorers)
    _variation(params, fields, notes)
    if image_fields:
        handled = HANDLED | _image_settings(params, fields, notes, image_fields)
    else:
        hires = _hires(params, fields, notes, upscalers)
        handled = HANDLED | (set(HIRES_KEYS) | {"Denoising strength"} if hires else set())
    notes += _network_notes(params, loras, embeddings)
    ignored = [key for key in params if key not in handled]
    if ignored:
        shown = ", ".join(str(key) for key in ignored[:12]) + (" …" if len(ignored) > 12 else "")
        notes.append(f"Not applied ({target} has no such setting): {shown}.")
    return fields, notes


# An image tab's own settings, by their infotext key: (field, kind, lowest, highest). A1111's inpainting text names
# Masked content and Inpaint area by their labels.
IMAGE_FIELDS = {"Denoising strength": ("denoising_strength", float, 0.01, 1.0), "Mask blur": ("mask_blur", int, 0, 64),
                "Masked area padding": ("inpaint_full_res_padding", int, 0, 256)}
INPAINT_AREA_NAMES = ("whole picture", "only masked")  # inpaint_full_res, by index


def _image_settings(params: dict, fields: dict, notes: list[str], wanted: tuple[str, ...]) -> set[str]:
    """Image to image's and Inpainting's own settings from the text, those the target has; the keys applied."""
    applied = set()
    for key, (field, kind, low, high) in IMAGE_FIELDS.items():
        if key in params and field in wanted:
            value = _number(params, key, kind, notes, low, high)
            if value is not None:
                fields[field] = value
            applied.add(key)
    for key, field, names in (("Masked content", "inpainting_fill", MASKED_CONTENT),
                              ("Inpaint area", "inpaint_full_res", INPAINT_AREA_NAMES)):
        if key in params and field in wanted:
            said = str(params[key]).strip().lower()
            if said in names:
                fields[field] = names.index(said)
            else:
                notes.append(f"{key} “{str(params[key]):.40}” is not one the studio knows: left as it was.")
            applied.add(key)
    return applied


def _restore_faces(params: dict, fields: dict, notes: list[str], installed: Optional[list[str]]) -> None:
    """A1111 writes "Face restoration: GFPGAN" (or CodeFormer) when it restored faces: Restore faces is ticked then,
    and off without it. The studio has no restorer choice of its own: it uses the first installed one."""
    fields["restore_faces"] = "Face restoration" in params
    if not fields["restore_faces"] or installed is None:
        return
    wanted = str(params["Face restoration"]).strip()
    if not installed:
        notes.append(f"Face restoration “{wanted:.100}”: Restore faces is ticked, but no face restorer is installed here, "
                     "so generating will say what to install (GFPGAN weights in models/GFPGAN, or CodeFormer's in "
                     "models/Codeformer); untick it to generate without.")
    elif wanted.lower() != installed[0].lower():
        notes.append(f"Face restoration “{wanted:.100}”: Restore faces here uses {installed[0]}, so faces may come out "
                     "differently.")


def _split_sampler(name: Any, schedule: Any) -> Optional[tuple[str, str]]:
    """(base sampler, Schedule type label) for an infotext's sampler, old names ("DPM++ 2M Karras") included."""
    try:
        sampler = find_sampler(str(name), str(schedule) if schedule not in (None, "") else None)
    except ValueError:
        return None
    return sampler.spec.name, sampler.schedule_type


def _sampler(params: dict, fields: dict, notes: list[str]) -> None:
    fields.pop("sampler_name", None)
    if "Sampler" not in params:
        return
    found = _split_sampler(params["Sampler"], params.get("Schedule type"))
    if found is None:
        shown = str(params["Sampler"]) + (f" ({params['Schedule type']})" if params.get("Schedule type") else "")
        notes.append(f"Sampler “{shown:.200}” is not available here: the sampler chosen in Text to image stays.")
        return
    fields["sampler_name"], fields["scheduler"] = found


def _clip_skip_and_vae(params: dict, fields: dict, notes: list[str], vaes: list[str]) -> None:
    try:
        clip_skip = int(float(params.get("Clip skip", 1)))
        if not 1 <= clip_skip <= MAX_CLIP_SKIP:
            raise ValueError
        fields["clip_skip"] = clip_skip
    except (TypeError, ValueError, OverflowError):
        notes.append(f"Clip skip {params.get('Clip skip')!s:.40} is not one the studio can use (1 to {MAX_CLIP_SKIP}): "
                     "left as it was.")
    if "VAE" in params and str(params["VAE"]).strip().lower() not in ("", "automatic", "none"):
        match = _match_vae(params["VAE"], vaes)
        if match is None:
            fields["vae"] = AUTOMATIC_VAE
            notes.append(f"VAE “{str(params['VAE']):.200}” is not in the VAE folder: the model's own VAE (Automatic) is "
                         "chosen instead. Put the file in models/VAE (--vae-dir) and send again to use it.")
        else:
            fields["vae"] = match
    else:
        fields["vae"] = AUTOMATIC_VAE


def _size(text: Any) -> Optional[tuple[int, int]]:
    """"512x768" → (512, 768)."""
    width, _, height = str(text).strip().lower().partition("x")
    try:
        return int(width), int(height)
    except ValueError:
        return None


def _number(params: dict, key: str, kind, notes: list[str], low: float, high: float):
    """params[key] as kind, within [low, high]; None (and a note) when it is not."""
    try:
        value = kind(float(params[key])) if kind is int else kind(params[key])
        if low <= value <= high:
            return value
    except (TypeError, ValueError, OverflowError):
        pass
    notes.append(f"{key} {params[key]!s:.40} is not one the studio can use ({low:g} to {high:g}): left as it was.")
    return None


def _variation(params: dict, fields: dict, notes: list[str]) -> None:
    """Variation seed, its strength and Seed resize from: Seed's Extra is ticked when the text has any of them."""
    fields.update(subseed_strength=0.0, seed_resize_from_w=0, seed_resize_from_h=0)
    if "Variation seed" in params:
        subseed = _number(params, "Variation seed", int, notes, 0, 2**32 - 1)
        if subseed is not None:
            fields["subseed"] = subseed
    if "Variation seed strength" in params:
        strength = _number(params, "Variation seed strength", float, notes, 0, 1)
        if strength is not None:
            fields["subseed_strength"] = strength
    if "Seed resize from" in params:
        size = _size(params["Seed resize from"])
        if size and min(size) > 0:
            fields["seed_resize_from_w"], fields["seed_resize_from_h"] = size
        elif size is None:
            notes.append(f"Seed resize from {params['Seed resize from']!s:.40} is not a size: left off.")
    fields["seed_extras"] = bool(fields["subseed_strength"] or fields["seed_resize_from_w"])


def _hires(params: dict, fields: dict, notes: list[str], upscalers: Optional[list[str]]) -> bool:
    """The hires fix's fields (A1111 writes them with "Denoising strength"); without them, hires fix is turned off."""
    hires = any(key in params for key in HIRES_KEYS)
    fields["enable_hr"] = hires
    if not hires:
        return False
    fields.update(hr_scale=2.0, hr_resize_x=0, hr_resize_y=0, hr_second_pass_steps=0, hr_upscaler=DEFAULT_UPSCALER,
                  hr_sampler_name=SAME_SAMPLER, hr_scheduler=SAME_SCHEDULER, hr_prompt="", hr_negative_prompt="")
    for key, field, kind, low, high in (("Hires upscale", "hr_scale", float, 1, MAX_HIRES_SCALE),
                                        ("Hires steps", "hr_second_pass_steps", int, 0, 10_000),
                                        ("Denoising strength", "denoising_strength", float, 0.01, 1)):
        if key in params:
            value = _number(params, key, kind, notes, low, high)
            if value is not None:
                fields[field] = value
    if "Hires resize" in params:
        size = _size(params["Hires resize"])
        if size is None:
            notes.append(f"Hires resize {params['Hires resize']!s:.40} is not a size: Upscale by is used.")
        else:
            fields["hr_resize_x"], fields["hr_resize_y"] = size
    _hires_upscaler(params, fields, notes, upscalers)
    if "Hires sampler" in params:
        found = _split_sampler(params["Hires sampler"], params.get("Hires schedule type"))
        if found is None:
            notes.append(f"Hires sampler “{str(params['Hires sampler']):.200}” is not available here: the same sampler is used.")
        else:
            fields["hr_sampler_name"] = found[0]
            fields["hr_scheduler"] = found[1] if found[1] != AUTOMATIC_SCHEDULE or "Hires schedule type" in params else SAME_SCHEDULER
    elif "Hires schedule type" in params:
        try:
            fields["hr_scheduler"] = SCHEDULE_LABELS[schedule_key(str(params["Hires schedule type"])) or AUTOMATIC]
        except ValueError:
            notes.append(f"Hires schedule type “{str(params['Hires schedule type']):.100}” is not available here: the same "
                         "schedule type is used.")
    fields["hr_prompt"] = str(params.get("Hires prompt", ""))
    fields["hr_negative_prompt"] = str(params.get("Hires negative prompt", ""))
    return True


def _hires_upscaler(params: dict, fields: dict, notes: list[str], upscalers: Optional[list[str]]) -> None:
    wanted = str(params.get("Hires upscaler", DEFAULT_UPSCALER)).strip()
    if upscalers is None:
        fields["hr_upscaler"] = wanted
        return
    match = next((name for name in upscalers if name.lower() == wanted.lower()), None)
    if match is None:
        notes.append(f"Hires upscaler “{wanted:.200}” is not installed here: {DEFAULT_UPSCALER} is chosen instead. Put its "
                     "model in models/ESRGAN (--upscaler-dir) and send again to use it.")
    fields["hr_upscaler"] = match or DEFAULT_UPSCALER


def _network_notes(params: dict, loras: list, embeddings: Optional[dict]) -> list[str]:
    notes = []
    prompt_tags = extract_network_tags(str(params.get("Prompt", "")))[1]
    known = _lora_names(loras)
    missing = list(dict.fromkeys(tag.name for tag in prompt_tags if tag.kind in LORA_KINDS and tag.name not in known))
    if missing:
        notes.append(f"LoRA not found here: {_quoted(missing)}. Its tag stays in the prompt but is skipped when generating; "
                     "put the file in models/Lora (--lora-dir) and press Refresh in the Networks panel.")
    others = list(dict.fromkeys(tag.text for tag in prompt_tags if tag.kind not in LORA_KINDS))
    if others:
        notes.append(f"Only LoRA networks are supported; these tags are ignored: {', '.join(others)}.")
    loaded = (embeddings or {}).get("loaded") or {}
    used = [part.split(":", 1)[0].strip() for part in str(params.get("TI hashes", "")).split(",") if part.strip()]
    absent = [name for name in dict.fromkeys(used) if name and name not in loaded]
    if absent:
        notes.append(f"Embedding not available for this model: {_quoted(absent)}. Its name stays in the prompt as plain "
                     "words; put the file in embeddings/ (--embeddings-dir) and press Refresh in the Networks panel.")
    return notes


def build() -> dict:
    with gr.Row():
        with gr.Column():
            image = gr.Image(label="Drop a PNG here", type="filepath", image_mode=None, sources=["upload", "clipboard"],
                             height=360, elem_id="pnginfo-image")
        with gr.Column():
            text = gr.Textbox(label="Parameters", lines=6, interactive=False, buttons=["copy"], elem_id="pnginfo-text")
            table = gr.JSON(label="Parsed", elem_id="pnginfo-json")
            send = gr.Button("→ Send to Text to image", variant="primary", elem_id="pnginfo-send")
            note = gr.HTML("", elem_id="pnginfo-note")
    image.change(read_parameters, image, [text, table], api_visibility="private", show_progress="hidden")
    image.change(lambda: "", None, note, api_visibility="private", queue=False, show_progress="hidden")
    return dict(image=image, text=text, table=table, send=send, note=note)
