"""A1111's prompt encoding (sd_hijack_clip, sd_emphasis "Original", sgm's SDXL conditioner) for diffusers pipelines.

The result goes to `pipe(prompt_embeds=..., negative_prompt_embeds=...)` (plus the pooled embeds for SDXL).
Per family, as A1111 does it (the facts: studio/families.py, PromptEncoding):
- sd1: last hidden state; CLIP skip N > 1 takes hidden_states[-N] through the final layer norm.
- sd2: last hidden state, CLIP skip ignored (A1111's OpenCLIP path always uses the penultimate layer; diffusers'
  SD2 text encoder already has that last layer removed, so its last hidden state is A1111's output).
- sdxl: penultimate hidden state of each encoder, no final layer norm, CLIP skip ignored (A1111's default);
  emphasis applied per encoder, then the two concatenated on the feature axis; pooled = text_encoder_2's
  projected output for the first chunk.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch

from ..families import Family, PromptEncoding, family as family_named
from ..contract import RequestError
from ..pipelines import execution_device
from .chunks import CHUNK_TOKENS, Chunk, build_chunks, framed_ids, framed_multipliers, token_count, too_many_chunks
from .embeddings import EmbeddingSet
from .syntax import parse_emphasis

FRAME = CHUNK_TOKENS + 2


@dataclass
class Conditioning:
    embeds: "torch.Tensor"  # [1, 77*k, dim]
    pooled: Optional["torch.Tensor"]  # [1, dim2], SDXL only
    chunks: int
    embeddings_used: list[str]


class PromptEncoder:
    def __init__(self, pipe, family: "str | Family", embeddings: Optional[EmbeddingSet] = None, backtrack: int = 20):
        """family: a Family or its name (KeyError names the known ones)."""
        self.facts: PromptEncoding = (family_named(family) if isinstance(family, str) else family).prompt_encoding
        self.backtrack = backtrack
        pairs = [(getattr(pipe, "tokenizer", None), getattr(pipe, "text_encoder", None))]
        if self.facts.second_encoder:
            pairs.append((getattr(pipe, "tokenizer_2", None), getattr(pipe, "text_encoder_2", None)))
        # An SDXL refiner has only the second encoder; each encoder keeps its index into an embedding's tensors.
        self._encoders = [(tok, te) for tok, te in pairs if tok is not None and te is not None]
        if not self._encoders:
            raise ValueError("the pipeline has no tokenizer/text encoder pair")
        self._pooled_from = pipe.text_encoder_2 if self.facts.second_encoder else None
        self._tokenizer = self._encoders[0][0]  # all SD tokenizers share one BPE vocabulary: chunk once
        self._comma = self._tokenizer.get_vocab().get(",</w>", -1)
        self._device = execution_device(pipe)
        self.embeddings = embeddings.bind(self._tokenize) if embeddings is not None else None
        self._empty: dict[int, torch.Tensor] = {}  # clip_skip → the empty chunk's embeds, until forget()

    @property
    def encoder_dims(self) -> tuple[int, ...]:
        """Widths of the token embeddings, for EmbeddingLibrary.for_encoder_dims."""
        return tuple(int(te.get_input_embeddings().weight.shape[-1]) for _, te in self._encoders)

    def _tokenize(self, text: str) -> list[int]:
        # verbose=False: long prompts are expected here, the "longer than 77" warning is noise.
        return self._tokenizer(text, add_special_tokens=False, truncation=False, verbose=False)["input_ids"]

    def chunks(self, text: str) -> list[Chunk]:
        """The prompt's chunks; RequestError for one over MAX_CHUNKS, before any encoding."""
        find = self.embeddings.find_embedding if self.embeddings is not None else None
        chunks = build_chunks(parse_emphasis(text), self._tokenize, self._comma, find, self.backtrack)
        refusal = too_many_chunks(len(chunks))
        if refusal:
            raise RequestError(refusal)
        return chunks

    def token_positions(self, text: str) -> list[tuple[int, int, str, float, Optional[str]]]:
        """Each token of the prompt where the UNet's context holds it: (position, token id, token text with its
        "</w>" word end, emphasis weight, embedding name or None). Chunk k's tokens start at position 77·k + 1."""
        out = []
        for k, chunk in enumerate(self.chunks(text)):
            starts = dict(chunk.embeddings)
            names = self._tokenizer.convert_ids_to_tokens(chunk.tokens)
            embedding = None
            for j, (token, name, weight) in enumerate(zip(chunk.tokens, names, chunk.multipliers)):
                if j in starts:
                    embedding = starts[j]
                elif token != 0:  # an embedding's slots hold token 0
                    embedding = None
                out.append((k * FRAME + 1 + j, int(token), name, float(weight), embedding))
        return out

    def count(self, text: str) -> tuple[int, int]:
        return token_count(self.chunks(text))

    def encode(self, text: str, clip_skip: int = 1, negative: bool = False) -> Conditioning:
        """Encode a prompt (emphasis syntax, BREAK, embedding names; LoRA tags already removed).

        negative=True marks a negative prompt: for SDXL an empty one gives zeros, as A1111 (and diffusers'
        force_zeros_for_empty_prompt) does.
        """
        chunks = self.chunks(text)
        used = list(dict.fromkeys(name for chunk in chunks for _, name in chunk.embeddings))
        if negative and self.facts.zeros_for_empty_negative and text == "":
            embeds, pooled = self._encode_chunks(chunks, clip_skip)
            return Conditioning(torch.zeros_like(embeds), torch.zeros_like(pooled), len(chunks), used)
        embeds, pooled = self._encode_chunks(chunks, clip_skip)
        return Conditioning(embeds, pooled, len(chunks), used)

    def padded(self, cond: Conditioning, chunks: int, clip_skip: int = 1) -> Conditioning:
        """Append empty-chunk encodings up to `chunks`, so cond and uncond have the same length for CFG."""
        if cond.chunks >= chunks:
            return cond
        empty = self._empty_chunk(clip_skip).to(cond.embeds)
        embeds = torch.cat([cond.embeds] + [empty] * (chunks - cond.chunks), dim=1)
        return Conditioning(embeds, cond.pooled, chunks, cond.embeddings_used)

    def encode_pair(self, prompt: str, negative_prompt: str, clip_skip: int = 1) -> tuple[Conditioning, Conditioning]:
        """cond and uncond, padded to the same number of chunks."""
        cond = self.encode(prompt, clip_skip)
        uncond = self.encode(negative_prompt, clip_skip, negative=True)
        k = max(cond.chunks, uncond.chunks)
        return self.padded(cond, k, clip_skip), self.padded(uncond, k, clip_skip)

    # -- internals ---------------------------------------------------------------------------------------------

    def _skip(self, clip_skip: int) -> int:
        clip_skip = int(clip_skip)
        if clip_skip < 1:
            raise ValueError("clip_skip starts at 1 (no skip)")
        return clip_skip if self.facts.honours_clip_skip else 1

    def _empty_chunk(self, clip_skip: int) -> torch.Tensor:
        skip = self._skip(clip_skip)
        if skip not in self._empty:
            self._empty[skip] = self._encode_chunks([Chunk()], skip)[0]
        return self._empty[skip]

    def forget(self) -> None:
        """Drop what was encoded with the text encoders as they were: call it whenever their weights change (a LoRA
        switched on or off)."""
        self._empty.clear()

    def _encode_chunks(self, chunks: list[Chunk], clip_skip: int):
        skip = self._skip(clip_skip)
        multipliers = torch.tensor([framed_multipliers(c) for c in chunks], device=self._device)
        parts, pooled = [], None
        for index, (tokenizer, text_encoder) in enumerate(self._encoders):
            pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
            rows = [framed_ids(c, tokenizer.bos_token_id, tokenizer.eos_token_id, pad) for c in chunks]
            ids = torch.tensor(rows, dtype=torch.long, device=self._device)
            fixes = [
                (row, offset + 1, self.embeddings.vectors(name)[index])  # +1: after [BOS]
                for row, chunk in enumerate(chunks)
                for offset, name in chunk.embeddings
            ]
            with torch.no_grad(), _vectors_in_slots(text_encoder, ids, fixes):
                out = text_encoder(input_ids=ids, output_hidden_states=self.facts.penultimate_layer or skip > 1)
            if self.facts.penultimate_layer:
                z = out.hidden_states[-2]
            elif skip > 1:
                layers = len(out.hidden_states) - 1  # hidden_states: the token embeddings, then one per layer
                if skip > layers:
                    raise RequestError(f"Clip skip {skip} is deeper than this model's text encoder ({layers} layers); "
                                       f"use at most {layers}.")
                z = _final_layer_norm(text_encoder)(out.hidden_states[-skip])
            else:
                z = out.last_hidden_state
            parts.append(_original_emphasis(z, multipliers.to(z.dtype)))
            if text_encoder is self._pooled_from:
                pooled = out.text_embeds[:1]  # A1111 takes the first chunk's pooled output
        z = torch.cat(parts, dim=-1)  # SDXL: CLIP-L and OpenCLIP-G side by side on the feature axis
        return z.reshape(1, len(chunks) * FRAME, z.shape[-1]), pooled


def _original_emphasis(z: torch.Tensor, multipliers: torch.Tensor) -> torch.Tensor:
    """A1111's "Original" emphasis, chunk by chunk: scale each token, then restore the chunk's mean.

    Chunks without weights are returned as they are: the same numbers (z * 1 * m/m), minus A1111's 0/0 = NaN
    should a chunk's mean be exactly zero (a final layer norm without bias, as in random test models)."""
    weighted = (multipliers != 1).any(dim=1)
    if not bool(weighted.any()):
        return z
    with torch.no_grad():
        mean0 = z.mean(dim=(1, 2), keepdim=True)
        scaled = z * multipliers[..., None]
        mean1 = scaled.mean(dim=(1, 2), keepdim=True)
        scaled = scaled * torch.where(mean1 == 0, torch.ones_like(mean1), mean0 / mean1)
        return torch.where(weighted[:, None, None], scaled, z)


def _final_layer_norm(text_encoder):
    # transformers 5 flattened CLIPTextModel (no .text_model); CLIPTextModelWithProjection still nests it.
    return getattr(text_encoder, "text_model", text_encoder).final_layer_norm


class _vectors_in_slots:
    """For one call, writes embedding vectors into their token slots through a forward hook on the text encoder's
    token-embedding module; the model and tokenizer are never changed. The hook only acts on our own ids tensor,
    so another caller's forward pass at the same time is left alone."""

    def __init__(self, text_encoder, ids: torch.Tensor, fixes: list):
        self.module = text_encoder.get_input_embeddings()
        self.ids, self.fixes, self.handle = ids, fixes, None

    def _hook(self, module, args, output):
        if not args or not isinstance(args[0], torch.Tensor) or args[0].data_ptr() != self.ids.data_ptr():
            return None
        output = output.clone()
        for row, start, vec in self.fixes:
            n = min(vec.shape[0], FRAME - 1 - start)  # never over the final [EOS]
            output[row, start : start + n] = vec[:n].to(device=output.device, dtype=output.dtype)
        return output

    def __enter__(self):
        if self.fixes:
            self.handle = self.module.register_forward_hook(self._hook)
        return self

    def __exit__(self, *exc):
        if self.handle is not None:
            self.handle.remove()
