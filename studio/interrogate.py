"""Captions for A1111's interrogate ("clip"): a BLIP captioning model (transformers' BlipProcessor and
BlipForConditionalGeneration), read from local files only — the folder or hub id of --caption-model, else
DEFAULT_CAPTION_MODEL from the local Hugging Face cache. Nothing is ever downloaded.

A Captioner loads on first use and stays loaded; a failed load is logged once with its reason and leaves the
captioner unavailable (the caller tells the user so, without paths). A lock lets one caption run at a time per
captioner. The engine owns the server's Captioner (Engine.captioner). Plain: no web, no UI."""

from __future__ import annotations

import logging
import threading
from typing import Any, Optional

from PIL import Image

log = logging.getLogger(__name__)

DEFAULT_CAPTION_MODEL = "Salesforce/blip-image-captioning-base"
MAX_NEW_TOKENS = 30


class Captioner:
    """One BLIP captioning model from `source` (a folder or a hub id in the local cache), on `device` in `dtype`
    (torch's; fp32 on the CPU whatever is asked, as half precision there is slow or unsupported)."""

    def __init__(self, source: Optional[str], device: Any = "cpu", dtype: Any = None):
        self.source = str(source or DEFAULT_CAPTION_MODEL)
        self.device = device
        self.dtype = dtype
        self._lock = threading.Lock()
        self._loaded: Optional[tuple] = None  # (processor, model)
        self._failed = False

    def available(self) -> bool:
        """Whether the model can be had: loads it on the first call (False, logged, when it cannot)."""
        with self._lock:
            return self._load() is not None

    def caption(self, image: Image.Image) -> Optional[str]:
        """The picture's caption, or None when the model cannot be had."""
        with self._lock:
            loaded = self._load()
            if loaded is None:
                return None
            processor, model = loaded
            return self._generate(processor, model, image)

    def _load(self) -> Optional[tuple]:
        if self._loaded is not None or self._failed:
            return self._loaded
        try:
            import torch
            from transformers import BlipForConditionalGeneration, BlipProcessor

            device = torch.device(self.device)
            dtype = self.dtype if self.dtype is not None and device.type != "cpu" else torch.float32
            processor = BlipProcessor.from_pretrained(self.source, local_files_only=True)
            model = BlipForConditionalGeneration.from_pretrained(self.source, local_files_only=True, torch_dtype=dtype)
            model.to(device).eval()
        except Exception as exc:  # noqa: BLE001 - any failure leaves interrogate unavailable, with the reason logged
            self._failed = True
            log.warning("Captioning model %s is not available: %s: %s", self.source, type(exc).__name__, exc)
            return None
        log.info("Loaded captioning model %s on %s in %s", self.source, device, dtype)
        self._loaded = (processor, model)
        return self._loaded

    def _generate(self, processor, model, image: Image.Image) -> str:
        import torch

        inputs = processor(images=image.convert("RGB"), return_tensors="pt")
        pixels = inputs["pixel_values"].to(device=model.device, dtype=model.dtype)
        with torch.inference_mode():
            tokens = model.generate(pixel_values=pixels, max_new_tokens=MAX_NEW_TOKENS)
        return processor.decode(tokens[0], skip_special_tokens=True).strip()
