"""Decoding JPEGs into RGB, with errors that name the file.

PIL's own message for a damaged file ("image file is truncated") does not say which of
8,189 files it was; every decode goes through here so the path is in the error.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from flowers_sweep.errors import ImageDecodeError


def load_rgb(path: str | Path, draft_size: int | None = None) -> Image.Image:
    """Open, fully decode and convert to RGB (greyscale and CMYK JPEGs exist in the wild).

    With draft_size, libjpeg decodes at the smallest 1/2, 1/4 or 1/8 scale that is still
    at least that size: the same pixels a later downscale keeps, at a fraction of the cost.
    """
    try:
        with Image.open(path) as img:
            if draft_size is not None:
                img.draft("RGB", (draft_size, draft_size))
            return img.convert("RGB")
    except (OSError, ValueError, SyntaxError) as exc:
        raise ImageDecodeError(f"cannot decode image {path}: {exc}") from exc


def load_resized(path: str | Path, size: int) -> np.ndarray:
    """(3, size, size) uint8: decode once, resize with antialiasing, channels first."""
    img = load_rgb(path, draft_size=size)
    img = img.resize((size, size), Image.Resampling.BILINEAR)
    return np.asarray(img, dtype=np.uint8).transpose(2, 0, 1)
