"""Start noise with A1111's variation seeds and seed resize (its modules/rng.py, `ImageRNG.first`).

Torch only. Every draw is on the CPU from a fresh `torch.Generator("cpu").manual_seed(seed)`, one image at a time
with the per-image shape [C, h, w] — the same numbers diffusers' `randn_tensor` draws for that image when it is given
the same CPU generator (so strength 0 is the plain image, bit for bit). The result goes to diffusers as `latents=`;
diffusers multiplies it by the scheduler's `init_noise_sigma` itself.

- variation seed: the start noise is `slerp(subseed_strength, seed_noise, subseed_noise)`;
- seed resize (`seed_resize_from=(w, h)` in pixels): the seed's (and subseed's) noise is drawn at that size and
  pasted centred into the seed's noise at the target size (cropped centred when it is larger), so a seed keeps its
  composition across sizes.

Given latents, diffusers does not draw the start noise from the call's generators, so they would still be at their
start when an ancestral sampler draws its per-step noise (which would then repeat the start noise). Pass
`generators_after_start(...)` with the latents: each seed's generator past one draw of its start noise — the state
diffusers leaves it in after drawing, and the one A1111's ImageRNG continues from — so every later draw is the
plain image's.
"""

from __future__ import annotations

from typing import Optional, Sequence

import torch


def slerp(val, low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
    """A1111's slerp between two per-image noises [C, h, w], quirks included: the norms are over dim 1 (the height
    axis of that 3-D tensor), and for nearly equal noises it returns `low * val + high * (1 - val)`."""
    low_norm = low / torch.norm(low, dim=1, keepdim=True)
    high_norm = high / torch.norm(high, dim=1, keepdim=True)
    dot = (low_norm * high_norm).sum(1)

    if dot.mean() > 0.9995:
        return low * val + high * (1 - val)

    omega = torch.acos(dot)
    so = torch.sin(omega)
    return (torch.sin((1.0 - val) * omega) / so).unsqueeze(1) * low + (torch.sin(val * omega) / so).unsqueeze(1) * high


def _randn(seed: int, shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
    """The first noise of `seed` at `shape`, drawn as diffusers draws it (CPU generator, in `dtype`), as float32."""
    generator = torch.Generator("cpu").manual_seed(int(seed))
    return torch.randn(shape, generator=generator, device="cpu", dtype=dtype).float()


def _resize_shape(shape_chw: tuple[int, int, int], seed_resize_from, vae_scale: int) -> tuple[int, int, int]:
    """The shape the seed's noise is drawn at: `seed_resize_from` (w, h) in pixels; None or a size <= 0 → none."""
    if seed_resize_from is None:
        return shape_chw
    from_w, from_h = (int(v) for v in seed_resize_from)
    if from_w <= 0 or from_h <= 0:
        return shape_chw
    return (shape_chw[0], from_h // vae_scale, from_w // vae_scale)


def start_noise(seed: int, subseed: Optional[int], subseed_strength: float, shape_chw: Sequence[int],
                seed_resize_from: Optional[tuple[int, int]] = None, dtype: torch.dtype = torch.float32,
                vae_scale: int = 8) -> torch.Tensor:
    """One image's start noise [C, h, w] on the CPU, as A1111 makes it.

    `shape_chw` is the latent shape (C, height // vae_scale, width // vae_scale); `seed_resize_from` is (width,
    height) in pixels. Strength 0 (or no subseed) is exactly the seed's noise, strength 1 exactly the subseed's.
    Noises are drawn in `dtype` (what diffusers draws for a model in that dtype), mixed in float32 and returned in
    `dtype`; for float32 that is A1111's arithmetic exactly."""
    shape = tuple(int(v) for v in shape_chw)
    if len(shape) != 3:
        raise ValueError(f"shape_chw must be (channels, height, width), got {shape}.")
    noise_shape = _resize_shape(shape, seed_resize_from, vae_scale)
    if min(noise_shape) <= 0:
        raise ValueError(f"seed_resize_from {seed_resize_from} is too small for a latent of scale {vae_scale}.")

    noise = _randn(seed, noise_shape, dtype)
    if subseed is not None and subseed_strength != 0:
        noise = slerp(float(subseed_strength), noise, _randn(subseed, noise_shape, dtype))

    if noise_shape != shape:
        # A1111: fresh noise of the seed at the target size, the (resized) noise pasted centred into it.
        x = _randn(seed, shape, dtype)
        dx = (shape[2] - noise_shape[2]) // 2
        dy = (shape[1] - noise_shape[1]) // 2
        w = noise_shape[2] if dx >= 0 else noise_shape[2] + 2 * dx
        h = noise_shape[1] if dy >= 0 else noise_shape[1] + 2 * dy
        tx = 0 if dx < 0 else dx
        ty = 0 if dy < 0 else dy
        dx = max(-dx, 0)
        dy = max(-dy, 0)
        x[:, ty:ty + h, tx:tx + w] = noise[:, dy:dy + h, dx:dx + w]
        noise = x

    return noise.to(dtype)


def batch_latents(seeds: Sequence[int], subseeds: Optional[Sequence[int]], subseed_strength: float, width: int, height: int,
                  latent_channels: int = 4, vae_scale: int = 8, seed_resize_from: Optional[tuple[int, int]] = None,
                  dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The start noise [n, C, height // vae_scale, width // vae_scale] of a batch, image i from seeds[i] and
    subseeds[i] (as A1111: subseeds None → no variation; a missing subseed is 0), for diffusers' `latents=`.
    It is on the CPU, in `dtype` (the pipeline's: diffusers moves given latents to its device but does not cast them)."""
    if not seeds:
        raise ValueError("batch_latents needs at least one seed.")
    shape = (int(latent_channels), int(height) // vae_scale, int(width) // vae_scale)
    images = []
    for i, seed in enumerate(seeds):
        subseed = None if subseeds is None else (subseeds[i] if i < len(subseeds) else 0)
        images.append(start_noise(seed, subseed, subseed_strength, shape, seed_resize_from=seed_resize_from,
                                  dtype=dtype, vae_scale=vae_scale))
    return torch.stack(images)


def generators_after_start(seeds: Sequence[int], width: int, height: int, latent_channels: int = 4, vae_scale: int = 8,
                           dtype: torch.dtype = torch.float32) -> list[torch.Generator]:
    """One CPU generator per seed, advanced past the draw of that image's start noise [C, h, w] in `dtype` (how far a
    draw advances a generator depends on the dtype): the `generator=` to pass with `batch_latents(...)`'s latents."""
    shape = (1, int(latent_channels), int(height) // vae_scale, int(width) // vae_scale)
    generators = []
    for seed in seeds:
        generator = torch.Generator("cpu").manual_seed(int(seed))
        torch.randn(shape, generator=generator, device="cpu", dtype=dtype)
        generators.append(generator)
    return generators
