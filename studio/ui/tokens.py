"""A live CLIP token counter without torch: CLIP's byte-level BPE from the Hugging Face `tokenizers` library (Rust,
linear in the prompt's length), over the vocab.json + merges.txt the engine writes for its models (every SD tokenizer
shares one vocabulary), set up exactly as transformers' CLIPTokenizer sets it up. Without those files it falls back to
a clearly labelled approximation (one token per word or punctuation mark). Prompts over the studio's one length cap
(MAX_PROMPT_CHARS) are refused before any tokenizing, as the engine would refuse them."""

from __future__ import annotations

import glob
import html
import os
from functools import lru_cache
from pathlib import Path
from typing import Optional

from tokenizers import Regex, Tokenizer, normalizers, pre_tokenizers
from tokenizers.models import BPE

from ..contract import RequestError
from ..validation import check_prompt_length

WINDOW = 75  # CLIP sees 77 positions: start, 75 prompt tokens, end
SPECIAL = ("<|startoftext|>", "<|endoftext|>")
# transformers' CLIPTokenizer pre-tokenizer pattern: specials, contractions, letter runs, single digits, punctuation runs.
_WORDS = Regex(r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+""")


def _split_words() -> pre_tokenizers.Split:
    return pre_tokenizers.Split(_WORDS, behavior="removed", invert=True)


def clip_tokenizer(vocab_file: Path, merges_file: Path) -> Tokenizer:
    """CLIP's BPE as transformers builds it (NFC, whitespace runs → one space, lower case; CLIP's word split; byte-level
    BPE with `</w>` word ends), without the special tokens around the prompt: only the prompt's own tokens count."""
    tokenizer = Tokenizer(
        BPE.from_file(
            str(vocab_file),
            str(merges_file),
            continuing_subword_prefix="",
            end_of_word_suffix="</w>",
            fuse_unk=False,
            unk_token="<|endoftext|>",
        )
    )
    tokenizer.normalizer = normalizers.Sequence([normalizers.NFC(), normalizers.Replace(Regex(r"\s+"), " "), normalizers.Lowercase()])
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence([_split_words(), pre_tokenizers.ByteLevel(add_prefix_space=False)])
    tokenizer.add_special_tokens(list(SPECIAL))
    return tokenizer


class TokenCounter:
    def __init__(self, merges_file: Optional[Path]):
        self.exact = merges_file is not None
        if merges_file is not None:
            merges_file = Path(merges_file)
            self._tokenizer = clip_tokenizer(merges_file.parent / "vocab.json", merges_file)
        else:
            self._words = _split_words()

    def pieces(self, text: str) -> list[tuple[str, int, int]]:
        """(word, start offset, tokens) for every pre-tokenized word of the prompt, offsets into `text` as given.
        Raises RequestError for a prompt over MAX_PROMPT_CHARS, before any work."""
        text = text or ""
        check_prompt_length(text)
        if not self.exact:
            return [(word, start, 1) for word, (start, _end) in self._words.pre_tokenize_str(text)]
        encoding = self._tokenizer.encode(text, add_special_tokens=False)
        words: dict[int, list[int]] = {}  # word index → [start, end, tokens], in order
        for index, (word_id, (start, end)) in enumerate(zip(encoding.word_ids, encoding.offsets)):
            key = index if word_id is None else word_id  # a special token stands alone
            if key in words:
                words[key][1] = end
                words[key][2] += 1
            else:
                words[key] = [start, end, 1]
        return [(text[start:end], start, n) for start, end, n in words.values()]

    def count(self, text: str) -> tuple[int, Optional[str]]:
        """The token count and, past the window, the part of the prompt the model will not see (whole words: one cut
        in the middle of a word is shown from the word's start). Raises RequestError past MAX_PROMPT_CHARS."""
        total, cut_at = 0, None
        for _word, start, n in self.pieces(text):
            if cut_at is None and total + n > WINDOW:
                cut_at = start
            total += n
        dropped = (text or "")[cut_at:].strip() if cut_at is not None else None
        return total, dropped


def find_merges(cache_dir: Optional[Path]) -> Optional[Path]:
    """The CLIP merges file (with its vocab.json beside it) the engine wrote into its cache, or one in the Hugging Face
    cache."""
    candidates = []
    if cache_dir is not None:
        candidates += sorted(glob.glob(os.path.join(str(cache_dir), "configs", "*", "tokenizer", "merges.txt")))
    hf_home = os.environ.get("HF_HOME") or os.path.join(os.path.expanduser("~"), ".cache", "huggingface")
    candidates += sorted(glob.glob(os.path.join(hf_home, "hub", "models--*", "snapshots", "*", "tokenizer", "merges.txt")))[:1]
    for path in candidates:
        if os.path.getsize(path) > 100_000 and os.path.exists(os.path.join(os.path.dirname(path), "vocab.json")):
            return Path(path)
    return None


@lru_cache(maxsize=4)
def counter_for(cache_dir: Optional[str]) -> TokenCounter:
    return TokenCounter(find_merges(Path(cache_dir) if cache_dir else None))


def token_counter_html(counter: TokenCounter, text: str) -> str:
    try:
        total, dropped = counter.count(text)
    except RequestError as exc:  # over MAX_PROMPT_CHARS: refused, not tokenized
        return f"<span class='token-counter token-over'>⚠ {html.escape(str(exc))} The studio will refuse it.</span>"
    unit = "tokens" if counter.exact else "tokens (≈ approximate: words and punctuation)"
    if dropped:
        shown = dropped if len(dropped) <= 80 else dropped[:77] + "…"
        return (
            f"<span class='token-counter token-over'>⚠ {total}/{WINDOW} {unit} — the model sees only the first "
            f"{WINDOW}; this part will be cut: <i>{html.escape(shown)}</i></span>"
        )
    return f"<span class='token-counter'>{total}/{WINDOW} {unit}</span>"
