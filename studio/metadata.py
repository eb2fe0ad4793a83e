"""A1111-compatible image metadata ("infotext"): the `parameters` PNG text chunk, written and read."""

from __future__ import annotations

import json
import re
from typing import Any

from PIL import Image

# A1111's own regex for the `Key: value, ...` line (modules/infotext_utils.py).
_PARAM_RE = re.compile(r"\s*(\w[\w \-/]+):\s*(\"(?:\\.|[^\\\"])+\"|[^,]*)(?:,|$)")
_SIZE_RE = re.compile(r"^(\d+)x(\d+)$")


def _quote(value: Any) -> str:
    text = str(value)
    if "," in text or "\n" in text or ":" in text:
        return json.dumps(text, ensure_ascii=False)
    return text


def _number(value: float) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def build_infotext(prompt: str, negative_prompt: str, params: dict[str, Any]) -> str:
    """prompt, optional "Negative prompt:" line, then `Key: value` pairs joined by ", " (None values left out)."""
    lines = [prompt]
    if negative_prompt:
        lines.append(f"Negative prompt: {negative_prompt}")
    pairs = [f"{key}: {_quote(_number(value))}" for key, value in params.items() if value is not None]
    lines.append(", ".join(pairs))
    return "\n".join(lines)


def parse_infotext(text: str) -> dict[str, Any]:
    """Parse infotext as A1111 does: returns {"Prompt", "Negative prompt", key: value..., "Size-1", "Size-2"}."""
    lines = text.strip().split("\n")
    last = lines[-1] if lines else ""
    if len(_PARAM_RE.findall(last)) < 3:
        last = ""
        body = lines
    else:
        body = lines[:-1]
    prompt_lines, negative_lines, in_negative = [], [], False
    for line in body:
        if line.startswith("Negative prompt:"):
            in_negative = True
            line = line[len("Negative prompt:") :].strip()
        (negative_lines if in_negative else prompt_lines).append(line)
    result: dict[str, Any] = {"Prompt": "\n".join(prompt_lines), "Negative prompt": "\n".join(negative_lines)}
    for key, value in _PARAM_RE.findall(last):
        value = value.strip()
        if value.startswith('"') and value.endswith('"'):
            try:
                value = json.loads(value)
            except json.JSONDecodeError:
                pass
        size = _SIZE_RE.match(value) if key == "Size" else None
        if size:
            result["Size-1"], result["Size-2"] = size.group(1), size.group(2)
        result[key] = value
    return result


def read_infotext(image: Image.Image) -> str | None:
    """The parameters text of a PNG (ours or A1111's), or None."""
    text = image.info.get("parameters")
    if text is None and hasattr(image, "text"):
        text = image.text.get("parameters")  # type: ignore[attr-defined]
    return text if isinstance(text, str) else None


def variation_seeds(infotexts: list[str], subseed: int) -> list[int]:
    """A1111's all_subseeds: each image's variation seed as its infotext says (the engine draws a random one), else
    the asked subseed + i as A1111 counts them (-1 when none was asked)."""
    seeds = []
    for index, text in enumerate(infotexts):
        value = parse_infotext(text).get("Variation seed") if text else None
        try:
            seeds.append(int(value))
        except (TypeError, ValueError):
            seeds.append(subseed + index if subseed >= 0 else -1)
    return seeds
