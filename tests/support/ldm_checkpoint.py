"""Writes a diffusers SD1-layout pipeline as an original (LDM) single-file checkpoint, as A1111 users keep them.

Test support only: it lets the tests make a real `.safetensors` checkpoint offline (from the tiny model) and check
that the studio loads it through diffusers' own single-file loader.
"""

from __future__ import annotations

import re


def _unet_key(key: str) -> str:
    fixed = {
        "time_embedding.linear_1": "time_embed.0",
        "time_embedding.linear_2": "time_embed.2",
        "conv_in": "input_blocks.0.0",
        "conv_norm_out": "out.0",
        "conv_out": "out.2",
    }
    for ours, theirs in fixed.items():
        if key.startswith(ours + "."):
            return theirs + key[len(ours) :]
    resnet_parts = {"norm1": "in_layers.0", "conv1": "in_layers.2", "norm2": "out_layers.0", "conv2": "out_layers.3",
                    "time_emb_proj": "emb_layers.1", "conv_shortcut": "skip_connection"}
    m = re.match(r"down_blocks\.(\d)\.(resnets|attentions)\.(\d)\.(.*)", key)
    if m:
        i, kind, j, rest = int(m[1]), m[2], int(m[3]), m[4]
        return f"input_blocks.{3 * i + j + 1}.{0 if kind == 'resnets' else 1}.{_resnet(rest, resnet_parts) if kind == 'resnets' else rest}"
    m = re.match(r"down_blocks\.(\d)\.downsamplers\.0\.conv\.(.*)", key)
    if m:
        return f"input_blocks.{3 * (int(m[1]) + 1)}.0.op.{m[2]}"
    m = re.match(r"up_blocks\.(\d)\.(resnets|attentions)\.(\d)\.(.*)", key)
    if m:
        i, kind, j, rest = int(m[1]), m[2], int(m[3]), m[4]
        return f"output_blocks.{3 * i + j}.{0 if kind == 'resnets' else 1}.{_resnet(rest, resnet_parts) if kind == 'resnets' else rest}"
    m = re.match(r"up_blocks\.(\d)\.upsamplers\.0\.(.*)", key)
    if m:
        i = int(m[1])
        return f"output_blocks.{3 * i + 2}.{1 if i == 0 else 2}.{m[2]}"
    m = re.match(r"mid_block\.resnets\.(\d)\.(.*)", key)
    if m:
        return f"middle_block.{2 * int(m[1])}.{_resnet(m[2], resnet_parts)}"
    if key.startswith("mid_block.attentions.0."):
        return "middle_block.1." + key[len("mid_block.attentions.0.") :]
    raise KeyError(key)


def _resnet(rest: str, parts: dict) -> str:
    name, _, tail = rest.partition(".")
    return f"{parts.get(name, name)}.{tail}"


def _vae_key(key: str, value):
    key = key.replace("conv_norm_out", "norm_out").replace("conv_shortcut", "nin_shortcut")
    m = re.match(r"(encoder|decoder)\.(down|up)_blocks\.(\d)\.resnets\.(\d)\.(.*)", key)
    if m:
        side, kind, i, j, rest = m[1], m[2], int(m[3]), int(m[4]), m[5]
        level = i if kind == "down" else 3 - i
        return f"{side}.{kind}.{level}.block.{j}.{rest}", value
    m = re.match(r"encoder\.down_blocks\.(\d)\.downsamplers\.0\.(.*)", key)
    if m:
        return f"encoder.down.{m[1]}.downsample.{m[2]}", value
    m = re.match(r"decoder\.up_blocks\.(\d)\.upsamplers\.0\.(.*)", key)
    if m:
        return f"decoder.up.{3 - int(m[1])}.upsample.{m[2]}", value
    m = re.match(r"(encoder|decoder)\.mid_block\.resnets\.(\d)\.(.*)", key)
    if m:
        return f"{m[1]}.mid.block_{int(m[2]) + 1}.{m[3]}", value
    m = re.match(r"(encoder|decoder)\.mid_block\.attentions\.0\.(\w+)(?:\.0)?\.(weight|bias)", key)
    if m:
        names = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out": "proj_out"}
        if m[3] == "weight" and m[2] != "group_norm":
            value = value.reshape(*value.shape, 1, 1)  # LDM uses 1×1 convolutions here
        return f"{m[1]}.mid.attn_1.{names[m[2]]}.{m[3]}", value
    return key, value


def ldm_state_dict(pipe) -> dict:
    state = {}
    for key, value in pipe.unet.state_dict().items():
        state["model.diffusion_model." + _unet_key(key)] = value.contiguous()
    for key, value in pipe.vae.state_dict().items():
        new_key, new_value = _vae_key(key, value)
        state["first_stage_model." + new_key] = new_value.contiguous()
    for key, value in pipe.text_encoder.state_dict().items():
        # transformers ≥ 5.6 flattened CLIPTextModel; checkpoints keep the `text_model.` level.
        key = key if key.startswith("text_model.") else "text_model." + key
        state["cond_stage_model.transformer." + key] = value.contiguous()
    return state


def save_ldm_checkpoint(pipe, path) -> None:
    from safetensors.torch import save_file

    save_file(ldm_state_dict(pipe), str(path))
