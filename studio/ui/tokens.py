"""A live CLIP token counter without torch: CLIP's byte-level BPE from the Hugging Face `tokenizers` library (Rust,
linear in the prompt's length), over the vocab.json + merges.txt the engine writes for its models (every SD tokenizer
shares one vocabulary), set up exactly as transformers' CLIPTokenizer sets it up. Without those files it falls back to
a clearly labelled approximation (one token per word or punctuation mark). Prompts over the studio's one length cap
(MAX_PROMPT_CHARS) are refused before any tokenizing, as the engine would refuse them.

The counter shows what A1111's shows, "82/150": the tokens the prompt uses over 75 × its chunks. It counts the way the
engine encodes (studio/prompts): network tags (<lora:…>) removed, the longest text of the prompt-editing schedule,
emphasis pieces, BREAK starting a new chunk, commas keeping phrases whole at a chunk's end, and each embedding named in
the prompt taking its vectors' slots instead of its name's tokens."""

from __future__ import annotations

import glob
import html
import os
import zlib
from functools import lru_cache
from pathlib import Path
from typing import Optional

from tokenizers import Regex, Tokenizer, normalizers, pre_tokenizers
from tokenizers.models import BPE

from ..contract import RequestError
from ..prompts.chunks import CHUNK_TOKENS, build_chunks, token_count, too_many_chunks
from ..prompts.syntax import extract_network_tags, parse_emphasis, prompt_schedule
from ..validation import check_prompt_length

WINDOW = CHUNK_TOKENS  # CLIP sees 77 positions: start, 75 prompt tokens, end; a longer prompt takes more chunks
DEFAULT_STEPS = 20  # the schedule's steps when the caller gives none (A1111's default)
MAX_SCHEDULED_TEXTS = 16  # distinct texts of a prompt-editing schedule counted (the longest wins); more are not
COMMA = ",</w>"
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
        self._finders: dict[tuple, object] = {}  # embeddings (name, vectors) → their lookup by first token id
        if merges_file is not None:
            merges_file = Path(merges_file)
            self._tokenizer = clip_tokenizer(merges_file.parent / "vocab.json", merges_file)
            comma = self._tokenizer.token_to_id(COMMA)
            self.comma_id = comma if comma is not None else -1
        else:
            self._words = _split_words()
            self.comma_id = -1  # the approximation's ids: a comma is -1, words are non-negative

    def ids(self, text: str) -> list[int]:
        """The prompt's token ids (no start/end tokens), as the engine's tokenizer gives them. The approximation gives
        one id per word or punctuation run (equal words, equal ids), so chunking and embedding names work alike."""
        if self.exact:
            return self._tokenizer.encode(text, add_special_tokens=False).ids
        return [-1 if word == "," else zlib.crc32(word.lower().encode("utf-8", "surrogatepass"))
                for word, _span in self._words.pre_tokenize_str(text)]

    def _finder(self, embeddings: Optional[dict]):
        """find_embedding for build_chunks: (name, vectors, name's tokens) where an embedding's name starts."""
        if not embeddings:
            return None
        key = tuple(sorted((str(name), int(vectors)) for name, vectors in embeddings.items()))
        found = self._finders.get(key)
        if found is None:
            lookup: dict[int, list] = {}
            for name, vectors in key:
                ids = self.ids(name)
                if ids:
                    lookup.setdefault(ids[0], []).append((ids, name, max(1, vectors)))
            for matches in lookup.values():
                matches.sort(key=lambda match: len(match[0]), reverse=True)  # the longest name wins, as in A1111

            def found(tokens: list, i: int):
                for ids, name, vectors in lookup.get(tokens[i], ()):
                    if tokens[i : i + len(ids)] == ids:
                        return name, vectors, len(ids)
                return None

            if len(self._finders) >= 8:
                self._finders.clear()
            self._finders[key] = found
        return found

    def chunk_count(self, text: str, embeddings: Optional[dict] = None, steps: int = DEFAULT_STEPS) -> tuple[int, int]:
        """(tokens used, 75 × chunks), A1111's "82/150", for the longest text of the prompt's schedule.
        embeddings: name → vector count of the embeddings the current model can use. Raises RequestError past
        MAX_PROMPT_CHARS, before any work."""
        text = text or ""
        check_prompt_length(text)
        plain, _tags, _warnings = extract_network_tags(text)
        try:
            steps = max(1, min(int(steps), 1000))
        except (TypeError, ValueError):
            steps = DEFAULT_STEPS
        texts = list(dict.fromkeys(scheduled for _end, scheduled in prompt_schedule(plain, steps)))[:MAX_SCHEDULED_TEXTS]
        find = self._finder(embeddings)
        best = (0, WINDOW)
        for each in texts:
            counted = token_count(build_chunks(parse_emphasis(each), self.ids, self.comma_id, find))
            if counted[0] > best[0] or (counted[0] == best[0] and counted[1] > best[1]):
                best = counted
        return best


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


def token_counter_html(counter: TokenCounter, text: str, embeddings: Optional[dict] = None, steps: int = DEFAULT_STEPS) -> str:
    """The counter line under a prompt: "82/150 tokens" (A1111's chunks; see TokenCounter.chunk_count)."""
    try:
        used, capacity = counter.chunk_count(text, embeddings, steps)
    except RequestError as exc:  # over MAX_PROMPT_CHARS: refused, not tokenized
        return f"<span class='token-counter token-over'>⚠ {html.escape(str(exc))} The studio will refuse it.</span>"
    unit = "tokens" if counter.exact else "tokens (≈ approximate: words and punctuation)"
    chunks = capacity // WINDOW
    refusal = too_many_chunks(chunks)
    if refusal:
        return f"<span class='token-counter token-over'>⚠ {used}/{capacity} {unit}: {html.escape(refusal)}</span>"
    title = (f"{chunks} chunks of {WINDOW} tokens, each encoded on its own (BREAK starts a new one)" if chunks > 1
             else f"One chunk of {WINDOW} tokens; a longer prompt takes another (BREAK starts a new one)")
    return f"<span class='token-counter' title='{html.escape(title)}'>{used}/{capacity} {unit}</span>"
