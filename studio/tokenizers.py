"""The CLIP BPE tokenizer files, built offline from the vocabulary the open_clip_torch wheel ships.

Stable Diffusion's tokenizers (SD1 CLIP-L, SD2 OpenCLIP-H, SDXL's two) all use the same 49,408-entry BPE vocabulary.
Real checkpoints from the hub carry their own tokenizer files; this module serves the tiny model and single-file
checkpoints, which carry none.
"""

from __future__ import annotations

import gzip
import json
import os
import importlib.util
from pathlib import Path

VOCAB_SIZE = 49408
_MERGE_COUNT = 49152 - 256 - 2


def bytes_to_unicode() -> dict[int, str]:
    # The byte ↔ printable-character table of GPT-2/CLIP BPE.
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, (chr(c) for c in cs)))


def _bpe_source() -> bytes:
    # Found without importing open_clip: its import pulls in torchvision, which we do not install.
    spec = importlib.util.find_spec("open_clip")
    try:
        if spec is None or not spec.submodule_search_locations:
            raise FileNotFoundError("open_clip")
        return (Path(list(spec.submodule_search_locations)[0]) / "bpe_simple_vocab_16e6.txt.gz").read_bytes()
    except FileNotFoundError as exc:
        raise RuntimeError(
            "The CLIP vocabulary for offline models comes from the open_clip_torch wheel: "
            "pip install --no-deps -r requirements-nodeps.txt"
        ) from exc


def write_clip_tokenizer(folder: Path, pad_token: str = "<|endoftext|>") -> Path:
    """Write vocab.json, merges.txt and the tokenizer config into `folder` (idempotent)."""
    folder.mkdir(parents=True, exist_ok=True)
    if (folder / "vocab.json").exists() and (folder / "tokenizer_config.json").exists():
        return folder
    lines = gzip.decompress(_bpe_source()).decode("utf-8").split("\n")
    merges = lines[1 : _MERGE_COUNT + 1]
    alphabet = list(bytes_to_unicode().values())
    vocab_list = alphabet + [a + "</w>" for a in alphabet] + ["".join(m.split()) for m in merges]
    vocab_list += ["<|startoftext|>", "<|endoftext|>"]
    assert len(vocab_list) == VOCAB_SIZE, len(vocab_list)
    vocab = {token: index for index, token in enumerate(vocab_list)}
    config = {
        "tokenizer_class": "CLIPTokenizer",
        "model_max_length": 77,
        "bos_token": "<|startoftext|>",
        "eos_token": "<|endoftext|>",
        "unk_token": "<|endoftext|>",
        "pad_token": pad_token,
        "do_lower_case": True,
    }
    # Written beside and renamed, so a crash never leaves half a tokenizer that later looks complete.
    for name, text in (
        ("vocab.json", json.dumps(vocab, ensure_ascii=False)),
        ("merges.txt", "#version: 0.2\n" + "\n".join(merges) + "\n"),
        ("special_tokens_map.json", json.dumps({k: config[k] for k in ("bos_token", "eos_token", "unk_token", "pad_token")})),
        ("tokenizer_config.json", json.dumps(config)),
    ):
        tmp = folder / (name + ".tmp")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, folder / name)
    return folder


def load_clip_tokenizer(folder: Path):
    from transformers import CLIPTokenizer

    write_clip_tokenizer(folder)
    return CLIPTokenizer.from_pretrained(str(folder), model_max_length=77)
