"""Decoding JPEGs into RGB, with errors that name the file.

PIL's own message for a damaged file ("image file is truncated") does not say which of
8,189 files it was; every decode goes through here so the path is in the error.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from flowers_sweep.errors import ImageDecodeError


def load_rgb(path: str | Path) -> Image.Image:
    """Open, fully decode and convert to RGB (greyscale and CMYK JPEGs exist in the wild)."""
    try:
        with Image.open(path) as img:
            return img.convert("RGB")
    except (OSError, ValueError, SyntaxError) as exc:
        raise ImageDecodeError(f"cannot decode image {path}: {exc}") from exc


def load_resized(path: str | Path, size: int) -> tuple[np.ndarray, tuple[int, int]]:
    """(3, size, size) uint8, channels first, and the photo's own (width, height).

    A full decode, then an antialiased resize, as the report's pipeline ends. (Decoding
    at a reduced DCT scale, libjpeg's draft mode, is twice as fast but its pixels differ
    from the report's by about 1 on the 0-255 scale: more than all the rest.)
    """
    img = load_rgb(path)
    small = img.resize((size, size), Image.Resampling.BILINEAR)
    return np.asarray(small, dtype=np.uint8).transpose(2, 0, 1), img.size
