"""A1111's prompt conditioning for SD1, written plainly from the facts (A1111's sd_hijack_clip and sd_emphasis, as
re-stated in our reference notes) and nothing of the studio's code: tests compare the studio's images against
diffusers' own pipeline given these tensors.

The caller writes the emphasis pieces by hand — [(text, weight)], with BREAK as the string "BREAK" — so the parser is
not the thing checked here (tests/test_prompt_syntax.py checks it against A1111's own examples)."""

from __future__ import annotations

import torch

CHUNK = 75
BACKTRACK = 20


def chunks(tokenizer, pieces: list) -> list[tuple[list[int], list[float]]]:
    """A1111's chunking: 75 tokens a chunk, the comma backtrack, BREAK; each framed [BOS] + 75 + [EOS]."""
    bos, eos = tokenizer.bos_token_id, tokenizer.eos_token_id
    comma = tokenizer.convert_tokens_to_ids(",</w>")
    done: list = []
    tokens: list[int] = []
    weights: list[float] = []
    last_comma = -1

    def close():
        nonlocal tokens, weights, last_comma
        pad = CHUNK - len(tokens)
        done.append(([bos] + tokens + [eos] * pad + [eos], [1.0] + weights + [1.0] * pad + [1.0]))
        tokens, weights, last_comma = [], [], -1

    for piece in pieces:
        if piece == "BREAK":
            close()
            continue
        text, weight = piece
        for token in tokenizer(text, add_special_tokens=False)["input_ids"]:
            if token == comma:
                last_comma = len(tokens)
            elif len(tokens) == CHUNK and last_comma != -1 and len(tokens) - last_comma <= BACKTRACK:
                moved, moved_weights = tokens[last_comma + 1 :], weights[last_comma + 1 :]
                tokens, weights = tokens[: last_comma + 1], weights[: last_comma + 1]
                close()
                tokens, weights = moved, moved_weights
            if len(tokens) == CHUNK:
                close()
            tokens.append(token)
            weights.append(weight)
    if tokens or not done:
        close()
    return done


@torch.no_grad()
def conditioning(pipe, pieces: list, clip_skip: int = 1) -> torch.Tensor:
    """[1, 77·k, dim]: each chunk through the text encoder (CLIP skip: hidden_states[-N] then the final layer
    norm), "Original" emphasis (multiply, then restore the chunk's mean), chunks joined along the tokens."""
    encoder = pipe.text_encoder
    final_norm = encoder.final_layer_norm if hasattr(encoder, "final_layer_norm") else encoder.text_model.final_layer_norm
    out = []
    for ids, weights in chunks(pipe.tokenizer, pieces):
        result = encoder(torch.tensor([ids]), output_hidden_states=clip_skip > 1)
        z = result.last_hidden_state if clip_skip <= 1 else final_norm(result.hidden_states[-clip_skip])
        mean_before = z.mean()
        z = z * torch.tensor(weights).reshape(1, -1, 1)
        z = z * (mean_before / z.mean())
        out.append(z)
    return torch.cat(out, dim=1)


def padded(pipe, cond: torch.Tensor, uncond: torch.Tensor, clip_skip: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """cond and uncond to the same length with empty chunks (A1111's "pad prompt/negative prompt")."""
    empty = conditioning(pipe, [("", 1.0)], clip_skip)
    while cond.shape[1] < uncond.shape[1]:
        cond = torch.cat([cond, empty], dim=1)
    while uncond.shape[1] < cond.shape[1]:
        uncond = torch.cat([uncond, empty], dim=1)
    return cond, uncond
