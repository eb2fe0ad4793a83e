"""Writes kohya/A1111-format LoRA files (`lora_unet_…` / `lora_te_…` keys with lora_down, lora_up and alpha) for a
given SD1-layout pipeline, offline: random matrices on the UNet attention projections (to_q/to_k/to_v/to_out.0) and
the text encoder's q_proj/k_proj/v_proj/out_proj.

Test and benchmark support only. `style="ldm"` names UNet modules the original (LDM) way kohya uses for SDXL and some
SD1 trainers use (input_blocks_1_1_…); `style="diffusers"` the way kohya's sd-scripts names SD1 LoRAs
(down_blocks_0_attentions_0_…).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Optional

_UNET_ATTN = re.compile(r".*\.attn[12]\.(to_q|to_k|to_v|to_out\.0)$")
_TE_ATTN = re.compile(r"(text_model\.)?encoder\.layers\.\d+\.self_attn\.(q_proj|k_proj|v_proj|out_proj)$")


def ldm_unet_path(path: str, layers_per_block: int) -> str:
    """diffusers UNet module path -> the original (LDM) one, for attention blocks."""
    step = layers_per_block + 1
    m = re.match(r"down_blocks\.(\d+)\.attentions\.(\d+)\.(.*)", path)
    if m:
        return f"input_blocks.{step * int(m[1]) + int(m[2]) + 1}.1.{m[3]}"
    m = re.match(r"mid_block\.attentions\.0\.(.*)", path)
    if m:
        return f"middle_block.1.{m[1]}"
    m = re.match(r"up_blocks\.(\d+)\.attentions\.(\d+)\.(.*)", path)
    if m:
        return f"output_blocks.{step * int(m[1]) + int(m[2])}.1.{m[3]}"
    raise ValueError(f"not an attention module path: {path}")


def lora_tensors(
    pipe,
    *,
    rank: int = 4,
    alpha: Optional[float] = None,
    strength: float = 1.0,
    seed: int = 0,
    style: str = "diffusers",
    unet: bool = True,
    text_encoder: bool = True,
    te_prefixes: tuple[str, ...] = ("lora_te_",),
) -> dict:
    """The kohya state dict. `strength` scales the delta relative to a unit-variance random weight (1.0 changes
    pictures clearly); alpha defaults to rank / 2 so alpha/rank scaling is exercised."""
    import torch

    alpha = rank / 2 if alpha is None else alpha
    gen = torch.Generator().manual_seed(seed)
    out: dict = {}

    def add(prefix: str, name: str, module) -> None:
        out_f, in_f = module.weight.shape
        key = prefix + name.replace(".", "_")
        out[f"{key}.lora_down.weight"] = torch.randn(rank, in_f, generator=gen) / in_f**0.5
        out[f"{key}.lora_up.weight"] = torch.randn(out_f, rank, generator=gen) * strength / rank**0.5
        out[f"{key}.alpha"] = torch.tensor(float(alpha))

    if unet:
        lpb = pipe.unet.config.layers_per_block
        for name, module in pipe.unet.named_modules():
            if _UNET_ATTN.match(name):
                add("lora_unet_", ldm_unet_path(name, lpb) if style == "ldm" else name, module)
    if text_encoder:
        for prefix in te_prefixes:
            for name, module in pipe.text_encoder.named_modules():
                if _TE_ATTN.match(name):
                    # kohya names carry CLIP's `text_model.` level, which transformers 5 no longer has
                    add(prefix, name if name.startswith("text_model.") else "text_model." + name, module)
    return out


def write_kohya_lora(pipe, path: Path, *, metadata: Optional[dict] = None, **kwargs) -> Path:
    """Writes `lora_tensors(pipe, **kwargs)` as a .safetensors file with string metadata (as kohya writes it)."""
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.contiguous() for k, v in lora_tensors(pipe, **kwargs).items()}
    save_file(tensors, str(path), metadata={k: str(v) for k, v in (metadata or {}).items()})
    return path
