"""Pictures in A1111's JSON bodies: base64 in (a data: URI prefix allowed), checked from the header before any pixel
is decoded (studio.validation.decode_image); base64 PNG out."""

from __future__ import annotations

import base64
import binascii
import re
from typing import Any

from PIL import Image

from ..contract import RequestError
from ..validation import decode_image

_DATA_URI = re.compile(r"^data:[\w/+.\-]*(;[\w=\-]+)*;base64,", re.IGNORECASE)


def decode_base64_image(data: Any, name: str, settings) -> Image.Image:
    if not isinstance(data, str) or not data.strip():
        raise RequestError(f"{name} must be a base64-encoded image (a data: URI prefix is allowed).")
    text = _DATA_URI.sub("", data.strip(), count=1)
    try:
        raw = base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise RequestError(f"{name} is not valid base64.") from None
    if not raw:
        raise RequestError(f"{name} is empty.")
    return decode_image(raw, name, settings)
