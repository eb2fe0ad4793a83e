"""Seamless textures (A1111's "Tiling"): circular padding in the UNet's and the VAE's convolutions for one call.

A1111 (modules/sd_hijack.py, `apply_circular`) sets `padding_mode = "circular"` on every `torch.nn.Conv2d` of the
model (UNet and first-stage VAE) and back to "zeros" when tiling is off. The image then wraps around: its left edge
continues its right edge, its top its bottom.

Here the same is done for the duration of a `with seamless(pipe):` block and undone after it, exceptions included.
Every `nn.Conv2d` found by `named_modules()` is switched — that includes a LoRA-wrapped conv's `base_layer` and
its `lora_A` conv (peft's `lora.Conv2d` is not itself an `nn.Conv2d`), so a LoRA's own delta wraps around too.
Changing `padding_mode` after construction works: `Conv2d._conv_forward` pads with `F.pad(...,
self._reversed_padding_repeated_twice, mode=self.padding_mode)` whenever the mode is not "zeros", and that tuple is
computed in `__init__` whatever the mode.

Not thread-safe: the modules are shared by every job on the model, so the runner wraps one pipeline call only, on
its one worker thread, and no other call may run on those modules meanwhile. CUDA graphs captured with zero padding
replay zero padding: pause graph replay for a tiling call (`studio.fast.graphs_paused`).
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterable, Iterator

import torch

COMPONENTS = ("unet", "vae")


def conv_layers(pipe, components: Iterable[str] = COMPONENTS) -> list[torch.nn.Conv2d]:
    """Every `nn.Conv2d` of the pipeline's `components` that it has (each module once, even when shared)."""
    seen: dict[int, torch.nn.Conv2d] = {}
    for name in components:
        module = getattr(pipe, name, None)
        if not isinstance(module, torch.nn.Module):
            continue
        for _, layer in module.named_modules(remove_duplicate=False):
            if isinstance(layer, torch.nn.Conv2d):
                seen.setdefault(id(layer), layer)
    return list(seen.values())


@contextmanager
def seamless(pipe, components: Iterable[str] = COMPONENTS) -> Iterator[list[torch.nn.Conv2d]]:
    """Circular padding in every Conv2d of `pipe.unet` and `pipe.vae` inside the block; each layer's own padding
    mode is restored after it (also on an exception). Yields the switched layers."""
    layers = conv_layers(pipe, components)
    before = [layer.padding_mode for layer in layers]
    try:
        for layer in layers:
            layer.padding_mode = "circular"
        yield layers
    finally:
        for layer, mode in zip(layers, before):
            layer.padding_mode = mode
