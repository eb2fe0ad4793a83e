"""A job's prompts as its pipeline call gets them, the A1111 way: styles applied, LoRA tags taken out (and their
LoRAs activated by the runner), the prompt-editing schedule, each of its prompts encoded with chunks, emphasis,
embeddings and CLIP skip (studio/prompts) — and the step hook that swaps the conditioning when the schedule says.

The pipeline gets `prompt_embeds` (and SDXL's pooled embeds) instead of text: diffusers' own loop runs unchanged.
Scheduled prompts change through `callback_on_step_end` (diffusers lets a callback return new prompt_embeds).
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Optional

import torch

from .contract import GenerationRequest
from .hooks import StepHook, StepState
from .prompts.encode import Conditioning, PromptEncoder
from .prompts.styles import StyleLibrary
from .prompts.syntax import NetworkTag, extract_network_tags, prompt_schedule, schedule_index


@dataclass(frozen=True)
class PromptPlan:
    """What a request's prompts become before any encoding (plain Python: the dispatcher and infotext use it)."""

    prompt: str  # with styles applied, LoRA tags kept (as A1111 writes it in the infotext)
    negative: str
    text: str  # the prompt without network tags: what is scheduled and encoded
    negative_text: str
    loras: tuple[NetworkTag, ...]
    notes: tuple[str, ...] = ()  # for the user: missing styles, unreadable tags


LORA_KINDS = ("lora", "lyco")


def plan_prompts(request: GenerationRequest, styles: Optional[StyleLibrary]) -> PromptPlan:
    prompt, negative, notes = request.prompt, request.negative_prompt, []
    if request.styles:
        if styles is None:
            missing = list(request.styles)
        else:
            prompt, negative, missing = styles.apply(prompt, negative, list(request.styles))
        if missing:
            notes.append(f"Styles not found (not applied): {', '.join(missing)}.")
    text, tags, warnings = extract_network_tags(prompt)
    negative_text, negative_tags, negative_warnings = extract_network_tags(negative)
    notes += warnings + negative_warnings
    if negative_tags:
        notes.append("Network tags in the negative prompt are ignored (as in A1111): " + ", ".join(t.text for t in negative_tags) + ".")
    loras = tuple(tag for tag in tags if tag.kind in LORA_KINDS)
    others = [tag.text for tag in tags if tag.kind not in LORA_KINDS]
    if others:
        notes.append("Only LoRA networks are supported; ignored: " + ", ".join(others) + ".")
    return PromptPlan(prompt, negative, text, negative_text, loras, tuple(notes))


def lora_set(plan: PromptPlan) -> tuple:
    """The LoRAs and weights a job needs, in a form that compares equal for jobs that may share a batch."""
    merged: dict[str, tuple[float, float]] = {}
    for tag in plan.loras:  # the same LoRA twice: A1111 applies both; weights add up
        te, unet = merged.get(tag.name, (0.0, 0.0))
        merged[tag.name] = (te + tag.te_multiplier, unet + tag.unet_multiplier)
    return tuple(sorted((name, te, unet) for name, (te, unet) in merged.items()))


@dataclass
class JobConditioning:
    """One job's encoded prompts over its steps: (end_at_step, Conditioning) entries for each of cond and uncond."""

    cond: list[tuple[int, Conditioning]]
    uncond: list[tuple[int, Conditioning]]
    embeddings_used: list[str] = field(default_factory=list)

    @property
    def scheduled(self) -> bool:
        return len(self.cond) > 1 or len(self.uncond) > 1

    @property
    def chunks(self) -> int:
        return max(c.chunks for _, c in self.cond + self.uncond)

    def indices(self, step_index: int) -> tuple[int, int]:
        return schedule_index(self.cond, step_index), schedule_index(self.uncond, step_index)


def encode_job(encoder: PromptEncoder, plan: PromptPlan, steps: int, clip_skip: int) -> JobConditioning:
    """Every distinct prompt of the job's schedule, encoded once."""
    cache: dict[tuple[str, bool], Conditioning] = {}

    def encoded(schedule: list[tuple[int, str]], negative: bool) -> list[tuple[int, Conditioning]]:
        out = []
        for end, text in schedule:
            if (text, negative) not in cache:  # SDXL encodes an empty negative prompt as zeros (as A1111)
                cache[text, negative] = encoder.encode(text, clip_skip, negative=negative)
            out.append((end, cache[text, negative]))
        return out

    cond = encoded(prompt_schedule(plan.text, steps), False)
    uncond = encoded(prompt_schedule(plan.negative_text, steps), True)
    used = sorted({name for c in cache.values() for name in c.embeddings_used})
    return JobConditioning(cond, uncond, used)


def equal_length(encoder: PromptEncoder, cond: Conditioning, uncond: Conditioning, clip_skip: int) -> tuple[Conditioning, Conditioning]:
    """cond and uncond padded with empty chunks to the same length (A1111's "pad prompt/negative prompt")."""
    chunks = max(cond.chunks, uncond.chunks)
    return encoder.padded(cond, chunks, clip_skip), encoder.padded(uncond, chunks, clip_skip)


class PromptConditioning:
    """The conditioning of one pipeline call: the embeds it starts with, and (when a job's prompt is scheduled) the
    step hook that replaces them. jobs: job → (JobConditioning, number of its images in this call), in batch order."""

    def __init__(self, encoder: PromptEncoder, jobs: dict, clip_skip: int):
        self.encoder = encoder
        self.jobs = jobs
        self.clip_skip = clip_skip
        self.pooled = encoder.facts.second_encoder

    def at(self, step_index: int) -> tuple[torch.Tensor, torch.Tensor, Optional[torch.Tensor], Optional[torch.Tensor]]:
        """(cond, uncond, pooled cond, pooled uncond) for the whole batch at this step, one row per image."""
        rows = []
        for conditioning, images in self.jobs.values():
            i, j = conditioning.indices(step_index)
            cond, uncond = equal_length(self.encoder, conditioning.cond[i][1], conditioning.uncond[j][1], self.clip_skip)
            rows.append((cond, uncond, images))
        cond = torch.cat([c.embeds.expand(n, -1, -1) for c, _, n in rows])
        uncond = torch.cat([u.embeds.expand(n, -1, -1) for _, u, n in rows])
        if not self.pooled:
            return cond, uncond, None, None
        return cond, uncond, torch.cat([c.pooled.expand(n, -1) for c, _, n in rows]), torch.cat([u.pooled.expand(n, -1) for _, u, n in rows])

    def arguments(self) -> dict:
        """The pipeline's prompt arguments for the first step (instead of prompt / negative_prompt)."""
        cond, uncond, pooled, negative_pooled = self.at(0)
        arguments = dict(prompt=None, negative_prompt=None, prompt_embeds=cond, negative_prompt_embeds=uncond, num_images_per_prompt=1)
        if self.pooled:
            arguments.update(pooled_prompt_embeds=pooled, negative_pooled_prompt_embeds=negative_pooled)
        return arguments

    @property
    def scheduled(self) -> bool:
        return any(conditioning.scheduled for conditioning, _ in self.jobs.values())

    def hook(self) -> Optional["ScheduleHook"]:
        return ScheduleHook(self) if self.scheduled else None


class ScheduleHook(StepHook):
    """Prompt editing and alternation: after step i, if any job's schedule picks other prompts for step i + 1,
    hand diffusers the new embeds (the pipeline keeps [uncond; cond] in one tensor under classifier-free guidance)."""

    graph_safe = True  # it changes an input tensor between steps; the UNet runs as usual
    tensor_inputs = ("prompt_embeds", "add_text_embeds")

    def __init__(self, conditioning: PromptConditioning):
        self.conditioning = conditioning
        self._current = self._key(0)

    def _key(self, step_index: int) -> tuple:
        return tuple(c.indices(step_index) for c, _ in self.conditioning.jobs.values())

    def __call__(self, state: StepState) -> Optional[dict]:
        key = self._key(state.index + 1)
        if key == self._current or state.index + 1 >= state.per_batch:
            return None
        self._current = key
        cond, uncond, pooled, negative_pooled = self.conditioning.at(state.index + 1)
        guided = getattr(state.pipe, "do_classifier_free_guidance", True)
        out = {"prompt_embeds": torch.cat([uncond, cond]) if guided else cond}
        if pooled is not None:
            out["add_text_embeds"] = torch.cat([negative_pooled, pooled]) if guided else pooled
        old = state.tensors.get("prompt_embeds")
        if old is not None:
            out = {k: v.to(device=old.device, dtype=old.dtype) for k, v in out.items()}
        return out


# ---- the libraries a job's prompts draw on, and their use per model


@dataclass
class PromptLibrary:
    """The operator's folders (settings): styles, LoRAs, embeddings, VAEs. Read on demand; refreshed by the API."""

    styles: Optional[StyleLibrary]
    loras: object  # loras.LoraLibrary
    embeddings: object  # prompts.embeddings.EmbeddingLibrary
    vaes: object  # vaes.VaeLibrary

    @classmethod
    def from_settings(cls, settings, hashes=None) -> "PromptLibrary":
        from .loras import LoraLibrary
        from .prompts.embeddings import EmbeddingLibrary
        from .vaes import VaeLibrary

        return cls(
            StyleLibrary(settings.styles_file),
            LoraLibrary(settings.lora_dir),
            EmbeddingLibrary(settings.embeddings_dir, allow_pickle=settings.allow_pickle),
            VaeLibrary(settings.vae_dir, settings.cache_dir, settings.allow_pickle, hashes),
        )


def encoder_dims(pipe) -> tuple[int, ...]:
    """The text encoders' widths, which decide which embeddings fit (768 SD1, 1024 SD2, 768 + 1280 SDXL)."""
    encoders = [getattr(pipe, name, None) for name in ("text_encoder", "text_encoder_2")]
    return tuple(int(e.config.hidden_size) for e in encoders if e is not None)


@dataclass
class Applied:
    """What a group runs with beyond its model: LoRAs active now, the VAE chosen; notes for its users."""

    notes: list[str] = field(default_factory=list)
    lora_hashes: dict = field(default_factory=dict)  # name → short hash (infotext "Lora hashes")
    vae: object = None  # AutoencoderKL, or None for the model's own
    vae_name: Optional[str] = None
    vae_hash: Optional[str] = None

    def vae_on(self, pipe):
        from .vaes import vae_on

        return vae_on(pipe, self.vae)


class PromptTools:
    """One loaded model's prompt machinery: its encoder (with the embeddings that fit it) and its LoRA applier."""

    def __init__(self, model, library: PromptLibrary, device, dtype):
        from .loras import LoraApplier

        self.model = model
        self.library = library
        self.device, self.dtype = device, dtype
        self.loras = LoraApplier(library.loras)
        self._encoder: Optional[PromptEncoder] = None
        self._generation = -1  # the embeddings folder's scan the encoder was made with

    @property
    def encoder(self) -> PromptEncoder:
        """The model's prompt encoder with the embeddings that fit it, made anew after the folder is rescanned."""
        generation = self.library.embeddings.generation
        if self._encoder is None or generation != self._generation:
            embeddings = self.library.embeddings.for_encoder_dims(encoder_dims(self.model.pipe))
            self._encoder, self._generation = PromptEncoder(self.model.pipe, self.model.family, embeddings), generation
        return self._encoder

    @contextmanager
    def applied(self, loras: tuple, vae: Optional[str]):
        """The group's LoRAs active on the model and its VAE loaded during the block; the plain model after."""
        from .vaes import is_automatic

        applied = Applied()
        if not is_automatic(vae):
            applied.vae, path = self.library.vaes.load(vae, self.model.pipe.vae, self.device, self.dtype)
            applied.vae_name, applied.vae_hash = path.name, self.library.vaes.short_hash(path)
        if not loras:
            yield applied
            return
        try:
            names, missing = self.loras.activate(self.model.pipe, list(loras))
            self.encoder.forget()  # the text encoder's weights changed
            if missing:
                applied.notes.append(f"LoRA not found (the image was made without it): {', '.join(missing)}.")
            applied.lora_hashes = {name: self.library.loras.short_hash(name) for name in names}
            yield applied
        finally:
            self.loras.deactivate(self.model.pipe)
            self.encoder.forget()


def shared_calls(jobs: list, conditioning: dict) -> list[list]:
    """The group's jobs split into pipeline calls: jobs share a call only when their conditioning has the same
    length and is not scheduled, so each image is exactly what its job would make alone."""
    calls: dict = {}
    for job in jobs:
        c = conditioning[job]
        key = ("alone", job.id) if c.scheduled else ("chunks", c.chunks)
        calls.setdefault(key, []).append(job)
    return list(calls.values())
