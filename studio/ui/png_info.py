"""PNG info tab: drop a PNG (ours or A1111's), read its parameters, send them to Text to image — and say what of
them the studio cannot apply (a LoRA or VAE it does not have, another model, settings it has no control for)."""

from __future__ import annotations

from pathlib import PurePosixPath
from typing import Any, Optional

import gradio as gr
from PIL import Image

from studio.metadata import parse_infotext, read_infotext
from studio.prompts.syntax import extract_network_tags
from studio.samplers import KARRAS_SUFFIX

from .networks import AUTOMATIC_VAE

MAX_CLIP_SKIP = 12
LORA_KINDS = ("lora", "lyco")
# Infotext keys the send applies, or that only describe the picture (hashes, version): never reported as ignored.
HANDLED = frozenset({"Prompt", "Negative prompt", "Steps", "Sampler", "Schedule type", "CFG scale", "Seed", "Size", "Size-1",
                     "Size-2", "Model", "Model hash", "VAE", "VAE hash", "Clip skip", "Lora hashes", "TI hashes", "Version"})


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
    """Parsed infotext → values for the Text to image controls (keys missing from the text are left out)."""
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
              model_hashes: Optional[dict] = None) -> tuple[dict[str, Any], list[str]]:
    """(values for the Text to image controls, what cannot be applied — one line each, saying what to do).

    Beyond to_fields: clip skip (A1111 leaves it out at 1), the VAE ("Automatic" when the text names none), the model
    when it is one offered here (by name, or by its hash among the loaded models). loras: service.loras();
    embeddings: service.embeddings(); vaes: VAE names; models: the models offered."""
    fields = to_fields(params)
    notes: list[str] = []
    if not fields:
        return fields, notes

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

    if "Model" in params:
        match = _match_model(params["Model"], params.get("Model hash"), models, model_hashes or {})
        if match is None:
            notes.append(f"Model “{str(params['Model']):.200}” is not available here: the model chosen in Text to image "
                         "stays. Pick one from the Model list (an admin can add models).")
        else:
            fields["model"] = match

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

    ignored = [key for key in params if key not in HANDLED]
    if ignored:
        shown = ", ".join(str(key) for key in ignored[:12]) + (" …" if len(ignored) > 12 else "")
        notes.append(f"Not applied (Text to image has no such setting): {shown}.")
    return fields, notes


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
