"""Writes tiny upscaler model files, offline, with spandrel's own architecture classes and random weights: an ESRGAN
(RRDBNet, the original "model.N" key layout A1111's ESRGAN files use) and a Real-ESRGAN Compact (SRVGGNetCompact).
spandrel recognises them from their keys, as it does the real ones; they are a few hundred kilobytes.

Test support only.
"""

from __future__ import annotations

from pathlib import Path


def _architectures():
    from studio.upscalers import spandrel_module

    spandrel_module()  # spandrel's import, without torchvision
    from spandrel.architectures.Compact import Compact
    from spandrel.architectures.ESRGAN import ESRGAN

    return ESRGAN, Compact


def esrgan_tensors(scale: int = 2, num_filters: int = 8, num_blocks: int = 1, seed: int = 0) -> dict:
    """The state dict of a small ESRGAN (RRDBNet) with random weights."""
    import torch

    ESRGAN, _ = _architectures()
    torch.manual_seed(seed)
    model = ESRGAN(in_nc=3, out_nc=3, num_filters=num_filters, num_blocks=num_blocks, scale=scale)
    return {key: value.detach().contiguous() for key, value in model.state_dict().items()}


def compact_tensors(scale: int = 4, num_feat: int = 8, num_conv: int = 2, seed: int = 0) -> dict:
    """The state dict of a small Real-ESRGAN Compact (SRVGGNetCompact) with random weights."""
    import torch

    _, Compact = _architectures()
    torch.manual_seed(seed)
    model = Compact(num_in_ch=3, num_out_ch=3, num_feat=num_feat, num_conv=num_conv, upscale=scale)
    return {key: value.detach().contiguous() for key, value in model.state_dict().items()}


def write_model(path: Path, tensors: dict) -> Path:
    """`tensors` as a .safetensors file, or as a torch pickle for a .pth / .pt path."""
    import torch
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".safetensors":
        save_file(tensors, str(path))
    else:
        torch.save(tensors, path)
    return path
