"""Decoding images of any mode into RGB, with errors that name the file.

PIL's own message for a damaged file ("image file is truncated") does not say which of
8,189 files it was; every decode goes through here so the path is in the error (through
`path_text`, so a name whose bytes are not UTF-8 is still written out).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from flowers_sweep.errors import ImageDecodeError
from flowers_sweep.paths import path_text


def as_rgb(img: Image.Image) -> Image.Image:
    """Any PIL mode as 8-bit RGB: greyscale, palette, RGBA (alpha dropped, as
    torchvision's `ImageFolder` loader does), CMYK, and 16-bit or float greyscale, whose
    values PIL's own conversion would clip at 255 rather than scale."""
    if img.mode.startswith("I") or img.mode == "F":
        values = np.asarray(img, dtype=np.float64)
        if img.mode.startswith("I;16"):  # a 16-bit file: its scale, whatever it holds
            top = 65535.0
        elif img.mode == "I":  # 32-bit integers: 16-bit data when it exceeds 8 bits
            top = 65535.0 if values.max(initial=0) > 255 else 255.0
        else:  # float: 0-1 when it fits there
            top = 1.0 if values.max(initial=0) <= 1.0 else 255.0
        grey = np.clip(np.rint(values * (255.0 / top)), 0, 255).astype(np.uint8)
        img = Image.fromarray(grey, mode="L")
    return img.convert("RGB")


def load_rgb(path: str | Path) -> Image.Image:
    """Open, fully decode and convert to RGB (greyscale and CMYK JPEGs exist in the wild).

    Raises:
        ImageDecodeError: the file is missing, truncated or not an image (names it).
    """
    try:
        with Image.open(path) as img:
            img.load()
            return as_rgb(img)
    except (OSError, ValueError, SyntaxError) as exc:
        raise ImageDecodeError(
            f"cannot decode image {path_text(path)}: {path_text(str(exc))}"
        ) from exc


def to_square(image: Any, size: int) -> tuple[np.ndarray, tuple[int, int]]:
    """(3, size, size) uint8, channels first, and the image's own (width, height).

    `image` is a PIL image of any mode, or a (C, H, W) tensor (uint8 0-255, or float
    0-1) with 1 or 3 channels, as torchvision-style datasets return them. An
    antialiased bilinear resize, as the report's pipeline ends.

    Raises:
        ValueError: a tensor that is not (C, H, W) with 1 or 3 channels.
    """
    if isinstance(image, torch.Tensor):
        t = image.detach().cpu()
        if t.dim() not in (2, 3) or (t.dim() == 3 and t.shape[0] not in (1, 3)):
            raise ValueError(
                f"an image tensor of shape {tuple(t.shape)}: expected (C, H, W) with 1 or "
                f"3 channels (a (H, W, C) array needs .permute(2, 0, 1))"
            )
        if t.is_floating_point():
            t = (t.clamp(0, 1) * 255).round()
        t = t.to(torch.uint8)
        if t.dim() == 2:
            t = t[None]
        if t.shape[0] == 1:
            t = t.expand(3, -1, -1)
        image = Image.fromarray(t[:3].permute(1, 2, 0).contiguous().numpy(), mode="RGB")
    img = as_rgb(image)
    small = (
        img if img.size == (size, size) else img.resize((size, size), Image.Resampling.BILINEAR)
    )
    return np.asarray(small, dtype=np.uint8).transpose(2, 0, 1), img.size


def load_resized(path: str | Path, size: int) -> tuple[np.ndarray, tuple[int, int]]:
    """(3, size, size) uint8, channels first, and the photo's own (width, height).

    A full decode, then an antialiased resize, as the report's pipeline ends. (Decoding
    at a reduced DCT scale, libjpeg's draft mode, is twice as fast but its pixels differ
    from the report's by about 1 on the 0-255 scale: more than all the rest.)

    Raises:
        ImageDecodeError: the file cannot be decoded (names it).
    """
    img = load_rgb(path)
    small = img.resize((size, size), Image.Resampling.BILINEAR)
    return np.asarray(small, dtype=np.uint8).transpose(2, 0, 1), img.size
