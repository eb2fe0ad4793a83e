"""What a job's inspection captured (studio/inspection.py captures it on the device), on the CPU and without
torch: the prompt's words, attention maps per step, the CFG view's pictures, the noise levels, the start picture;
and the pictures the Step previews tab and /studio/api/jobs/{id}/attention, /cfg, /schedule show of them."""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from typing import Optional

import numpy as np
from PIL import Image


@dataclass
class Word:
    """A word of the prompt as the attention view lists it: its text, emphasis weight and the positions of its
    tokens in the UNet's context (chunk k's tokens sit at 77·k + 1 …); an embedding counts as one word."""

    index: int
    text: str
    weight: float
    positions: list[int]
    embedding: bool = False


@dataclass(frozen=True)
class Token:
    """One CLIP token of the prompt: where the UNet's context holds it, its id and text ("</w>" ends a word), its
    emphasis weight, and the embedding whose vector it is (None for a plain token)."""

    position: int
    id: int
    text: str
    weight: float
    embedding: Optional[str] = None

    @property
    def chunk(self) -> int:
        return self.position // CONTEXT_FRAME


CONTEXT_FRAME = 77  # a chunk's positions in the context: start token, 75 prompt tokens, end token


def words_of(tokens: list[Token]) -> list[Word]:
    """Merge a prompt's tokens into words: a word ends at a token whose text ends in "</w>" (multi-token words
    merged, as DAAM does); an embedding's vectors are one word."""
    words: list[Word] = []
    pending: Optional[Word] = None
    for token in tokens:
        position, text, weight, embedding = token.position, token.text, token.weight, token.embedding
        if embedding is not None:
            if pending is not None:
                words.append(pending)
                pending = None
            if words and words[-1].embedding and words[-1].text == embedding and words[-1].positions[-1] == position - 1:
                words[-1].positions.append(position)  # the embedding's next vector
            else:
                words.append(Word(len(words), embedding, weight, [position], embedding=True))
            continue
        ends = text.endswith("</w>")
        piece = text[: -len("</w>")] if ends else text
        if pending is None:
            pending = Word(len(words), piece, weight, [position])
        else:
            pending.text += piece
            pending.positions.append(position)
        if ends:
            words.append(pending)
            pending = None
    if pending is not None:
        words.append(pending)
    for number, word in enumerate(words):
        word.index = number
    return words


@dataclass
class Inspected:
    """What one job's inspection captured, on the CPU. Pictures are uint8 [h, w, 3] arrays."""

    inspect: tuple[str, ...]
    size: tuple[int, int]  # the image's (width, height)
    guidance: float
    tokens: list[Token] = field(default_factory=list)
    words: list[Word] = field(default_factory=list)
    loras: list[tuple[str, float]] = field(default_factory=list)  # the prompt's LoRA tags (name, weight): not tokens
    attention: Optional[np.ndarray] = None  # float32 [steps, context tokens, grid h, grid w]
    cfg: list[dict] = field(default_factory=list)  # per step: {"uncond": picture or None, "cond", "guided"}
    timesteps: list[float] = field(default_factory=list)
    sigmas: list[float] = field(default_factory=list)
    start: Optional[np.ndarray] = None  # the picture the first step denoised

    @property
    def steps(self) -> int:
        return len(self.timesteps)

    @property
    def nbytes(self) -> int:
        pictures = [p for step in self.cfg for p in step.values() if p is not None]
        return int((self.attention.nbytes if self.attention is not None else 0) + sum(p.nbytes for p in pictures)
                   + (self.start.nbytes if self.start is not None else 0))

    def word_map(self, word: Word, step: Optional[int] = None) -> np.ndarray:
        """A word's attention on the grid (float32 [h, w]): its tokens' maps added, over every step or one (1-based)."""
        if self.attention is None:
            raise LookupError("this job did not capture attention")
        maps = self.attention if step is None else self.attention[step - 1 : step]
        positions = [p for p in word.positions if p < maps.shape[1]]
        return maps[:, positions].sum(axis=(0, 1))

    def difference(self, step: int) -> np.ndarray:
        """What guidance adds at a step (1-based): guided − conditional, in pixels, around mid-gray."""
        frames = self.cfg[step - 1]
        change = frames["guided"].astype(np.int16) - frames["cond"].astype(np.int16)
        return np.clip(128 + change, 0, 255).astype(np.uint8)


def png_bytes(picture: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(picture).save(buffer, format="PNG")
    return buffer.getvalue()


def heatmap(inspected: Inspected, word: Word, step: Optional[int] = None) -> np.ndarray:
    """A word's attention as a grayscale uint8 picture the image's size: the grid map resized (bilinear) and
    stretched from its coolest place (black) to its hottest (white), as DAAM draws its maps."""
    grid = inspected.word_map(word, step).astype(np.float32)
    resized = np.asarray(Image.fromarray(grid, mode="F").resize(inspected.size, Image.BILINEAR))
    low, high = float(resized.min()), float(resized.max())
    if high - low <= 1e-12:
        return np.zeros(resized.shape, np.uint8)
    return ((resized - low) / (high - low) * 255).round().astype(np.uint8)
