"""A live CLIP token counter without torch: CLIP's byte-level BPE in plain Python, over the merges file the
engine writes for its models (every SD tokenizer shares one vocabulary). Without that file it falls back to a
clearly labelled approximation (one token per word or punctuation mark)."""

from __future__ import annotations

import glob
import html
import os
from functools import lru_cache
from pathlib import Path
from typing import Optional

from ..tokenizers import bytes_to_unicode  # plain Python: no torch

try:
    import regex as _re

    _PATTERN = _re.compile(
        r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+""", _re.IGNORECASE
    )
except ImportError:  # pragma: no cover - `regex` comes with transformers
    import re as _re

    _PATTERN = _re.compile(r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[^\W\d_]+|\d|[^\s\w]+""", _re.IGNORECASE)

WINDOW = 75  # CLIP sees 77 positions: start, 75 prompt tokens, end


class TokenCounter:
    def __init__(self, merges_file: Optional[Path]):
        self.exact = merges_file is not None
        self._ranks: dict[tuple[str, str], int] = {}
        if merges_file is not None:
            lines = Path(merges_file).read_text(encoding="utf-8").split("\n")
            merges = [tuple(line.split()) for line in lines if line and not line.startswith("#version")]
            self._ranks = {pair: i for i, pair in enumerate(merges) if len(pair) == 2}
        self._byte_encoder = bytes_to_unicode()
        self._cache: dict[str, int] = {}

    def _bpe_length(self, word: str) -> int:
        if word in self._cache:
            return self._cache[word]
        parts = list(word[:-1]) + [word[-1] + "</w>"]
        while len(parts) > 1:
            pairs = {(parts[i], parts[i + 1]) for i in range(len(parts) - 1)}
            best = min(pairs, key=lambda p: self._ranks.get(p, float("inf")))
            if best not in self._ranks:
                break
            merged, i = [], 0
            while i < len(parts):
                if i < len(parts) - 1 and (parts[i], parts[i + 1]) == best:
                    merged.append(parts[i] + parts[i + 1])
                    i += 2
                else:
                    merged.append(parts[i])
                    i += 1
            parts = merged
        if len(self._cache) < 50_000:
            self._cache[word] = len(parts)
        return len(parts)

    def pieces(self, text: str) -> list[tuple[str, int, int]]:
        """(word, start offset, tokens) for every pre-tokenized word of the prompt."""
        text = html.unescape(html.unescape(text or ""))
        out = []
        for match in _PATTERN.finditer(text.lower()):
            word = match.group(0)
            if self.exact:
                encoded = "".join(self._byte_encoder[b] for b in word.encode("utf-8"))
                n = self._bpe_length(encoded)
            else:
                n = 1
            out.append((word, match.start(), n))
        return out

    def count(self, text: str) -> tuple[int, Optional[str]]:
        """The token count and, past the window, the part of the prompt the model will not see."""
        total, cut_at = 0, None
        for _word, start, n in self.pieces(text):
            if cut_at is None and total + n > WINDOW:
                cut_at = start
            total += n
        dropped = None
        if cut_at is not None:
            dropped = html.unescape(html.unescape(text or ""))[cut_at:].strip()
        return total, dropped


def find_merges(cache_dir: Optional[Path]) -> Optional[Path]:
    """The CLIP merges file the engine wrote into its cache (or one in the Hugging Face cache)."""
    candidates = []
    if cache_dir is not None:
        candidates += sorted(glob.glob(os.path.join(str(cache_dir), "configs", "*", "tokenizer", "merges.txt")))
    hf_home = os.environ.get("HF_HOME") or os.path.join(os.path.expanduser("~"), ".cache", "huggingface")
    candidates += sorted(glob.glob(os.path.join(hf_home, "hub", "models--*", "snapshots", "*", "tokenizer", "merges.txt")))[:1]
    for path in candidates:
        if os.path.getsize(path) > 100_000:
            return Path(path)
    return None


@lru_cache(maxsize=4)
def counter_for(cache_dir: Optional[str]) -> TokenCounter:
    return TokenCounter(find_merges(Path(cache_dir) if cache_dir else None))


def token_counter_html(counter: TokenCounter, text: str) -> str:
    total, dropped = counter.count(text)
    unit = "tokens" if counter.exact else "tokens (≈ approximate: words and punctuation)"
    if dropped:
        shown = dropped if len(dropped) <= 80 else dropped[:77] + "…"
        return (
            f"<span class='token-counter token-over'>⚠ {total}/{WINDOW} {unit} — the model sees only the first "
            f"{WINDOW}; this part will be cut: <i>{html.escape(shown)}</i></span>"
        )
    return f"<span class='token-counter'>{total}/{WINDOW} {unit}</span>"
