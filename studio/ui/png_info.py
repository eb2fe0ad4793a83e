"""PNG info tab: drop a PNG (ours or A1111's), read its parameters, send them to Text to image."""

from __future__ import annotations

from typing import Any, Optional

import gradio as gr
from PIL import Image

from studio.metadata import parse_infotext, read_infotext
from studio.samplers import KARRAS_SUFFIX


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


def build() -> dict:
    with gr.Row():
        with gr.Column():
            image = gr.Image(label="Drop a PNG here", type="filepath", image_mode=None, sources=["upload", "clipboard"],
                             height=360, elem_id="pnginfo-image")
        with gr.Column():
            text = gr.Textbox(label="Parameters", lines=6, interactive=False, buttons=["copy"], elem_id="pnginfo-text")
            table = gr.JSON(label="Parsed", elem_id="pnginfo-json")
            send = gr.Button("→ Send to Text to image", variant="primary", elem_id="pnginfo-send")
    image.change(read_parameters, image, [text, table], api_visibility="private", show_progress="hidden")
    return dict(image=image, text=text, table=table, send=send)
