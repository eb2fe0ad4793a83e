"""A1111's chunking of a prompt into 75-token pieces (sd_hijack_clip.tokenize_line), without torch.

The UI's token counter imports this module, so it must stay free of torch. Chunks here are unframed and unpadded:
encode.py adds [BOS] … [EOS] and the padding when it builds the 77 ids of each chunk.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional

CHUNK_TOKENS = 75
# The most chunks a prompt may take (2,400 tokens). A1111 has no cap; on a shared server a prompt of thousands of
# chunks (BREAK BREAK …) would make every step's cross-attention huge. Real prompts take one to four.
MAX_CHUNKS = 32
BREAK = ("BREAK", -1.0)

Tokenize = Callable[[str], list]
FindEmbedding = Callable[[list, int], Optional[tuple]]


@dataclass
class Chunk:
    tokens: list[int] = field(default_factory=list)  # ≤ 75, unframed; an embedding's slots hold token 0
    multipliers: list[float] = field(default_factory=list)
    embeddings: list[tuple[int, str]] = field(default_factory=list)  # (offset of first slot in tokens, name)


def build_chunks(
    pieces,
    tokenize: Tokenize,
    comma_id: int,
    find_embedding: Optional[FindEmbedding] = None,
    backtrack: int = 20,
) -> list[Chunk]:
    """Split parse_emphasis pieces into chunks the way A1111 does (comma backtrack, BREAK, whole embeddings)."""
    chunks: list[Chunk] = []
    chunk = Chunk()
    last_comma = -1

    def close():
        nonlocal chunk, last_comma
        chunks.append(chunk)
        chunk = Chunk()
        last_comma = -1

    for text, weight in pieces:
        if text == BREAK[0] and weight == BREAK[1]:
            close()  # A1111 closes even an empty chunk here, so "BREAK BREAK" gives an all-padding chunk
            continue
        tokens = tokenize(text)
        position = 0
        while position < len(tokens):
            token = tokens[position]
            if token == comma_id:
                last_comma = len(chunk.tokens)
            elif (
                backtrack
                and len(chunk.tokens) == CHUNK_TOKENS
                and last_comma != -1
                and len(chunk.tokens) - last_comma <= backtrack
            ):
                # Full chunk, a comma nearby: what follows the comma moves on, so the phrase stays whole.
                cut = last_comma + 1
                moved = Chunk(
                    chunk.tokens[cut:],
                    chunk.multipliers[cut:],
                    [(offset - cut, name) for offset, name in chunk.embeddings if offset >= cut],
                )
                # (A1111 leaves moved embeddings' fixes in the old chunk, writing them into its padding; we move them.)
                chunk.tokens, chunk.multipliers = chunk.tokens[:cut], chunk.multipliers[:cut]
                chunk.embeddings = [(offset, name) for offset, name in chunk.embeddings if offset < cut]
                close()
                chunk = moved
            if len(chunk.tokens) == CHUNK_TOKENS:
                close()

            found = find_embedding(tokens, position) if find_embedding is not None else None
            if found is None:
                chunk.tokens.append(token)
                chunk.multipliers.append(weight)
                position += 1
                continue
            name, n_vectors, n_name_tokens = found
            slots = min(int(n_vectors), CHUNK_TOKENS)  # more than a chunk can hold is cut, never spilled
            if chunk.tokens and len(chunk.tokens) + slots > CHUNK_TOKENS:
                close()  # an embedding is never split across chunks: it moves whole to the next one
            chunk.embeddings.append((len(chunk.tokens), name))
            chunk.tokens += [0] * slots
            chunk.multipliers += [weight] * slots
            position += max(1, n_name_tokens)

    if chunk.tokens or not chunks:
        chunks.append(chunk)
    return chunks


def too_many_chunks(chunks: int) -> Optional[str]:
    """The message for a prompt over MAX_CHUNKS, or None."""
    if chunks <= MAX_CHUNKS:
        return None
    return (f"The prompt takes {chunks} chunks of {CHUNK_TOKENS} tokens; this server encodes at most {MAX_CHUNKS} "
            f"({MAX_CHUNKS * CHUNK_TOKENS} tokens). Shorten it or use fewer BREAKs.")


def token_count(chunks: list[Chunk]) -> tuple[int, int]:
    """(tokens used, capacity) as A1111's counter shows them: every chunk but the last counts as full."""
    if not chunks:
        return 0, CHUNK_TOKENS
    used = CHUNK_TOKENS * (len(chunks) - 1) + len(chunks[-1].tokens)
    return used, CHUNK_TOKENS * len(chunks)


def framed_ids(chunk: Chunk, bos: int, eos: int, pad: int) -> list[int]:
    """The 77 ids of a chunk: [BOS] + tokens + EOS padding to 75 + [EOS]; positions after the first EOS get `pad`
    (SD1's pad is its EOS; SD2's and SDXL's second tokenizer pad with token 0, as A1111 does for OpenCLIP)."""
    body = chunk.tokens + [eos] * (CHUNK_TOKENS - len(chunk.tokens))
    ids = [bos] + body + [eos]
    first_eos = ids.index(eos, 1)
    return ids[: first_eos + 1] + [pad] * (len(ids) - first_eos - 1)


def framed_multipliers(chunk: Chunk) -> list[float]:
    return [1.0] + chunk.multipliers + [1.0] * (CHUNK_TOKENS - len(chunk.multipliers)) + [1.0]
