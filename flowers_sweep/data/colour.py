"""torchvision's uint8 colour operations on a batch, each image its own strength.

Images are float32 (N, C, H, W) holding whole numbers 0..255, as a uint8 tensor would,
and every result is cut back to whole numbers the way torchvision's uint8 tensor ops
do (`.to(torch.uint8)` truncates; the sharpness blur rounds), with the same float32
arithmetic in the same order (transforms/_functional_tensor.py: `_blend`,
`rgb_to_grayscale`, `_blurred_degenerate_image`, `autocontrast`, `_scale_channel`).
Two shapes of op cover them all, with no host sync on a GPU:

- blends, out = f * x + (1 - f) * degenerate with a per-image factor f: brightness
  (degenerate 0), saturation (the grey image), contrast (the grey image's mean) and
  sharpness (the image blurred); f = 1 leaves an image exactly as it is;
- level maps: posterize, solarize, autocontrast (per channel, from its min and max)
  and equalize (per channel, a table from its histogram).

Each takes a batch of the images that drew it, overwritten in place, and its strength:
a number for them all, or one per image as an (N, 1, 1, 1) tensor on their device.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

LEVELS = 256
TOP = 255.0  # the uint8 bound


def grayscale(x: torch.Tensor) -> torch.Tensor:
    """(N, 1, H, W), new: torchvision's rgb_to_grayscale of uint8 RGB (ITU-R 601-2 weights
    0.2989, 0.587, 0.114 in float32, each product and sum rounded in that order, then
    truncated to a whole level); grey input copied as it is."""
    if x.shape[1] != 3:
        return x[:, :1].clone()
    gray = x[:, 0:1] * 0.2989
    term = x[:, 1:2] * 0.587
    gray += term
    torch.mul(x[:, 2:3], 0.114, out=term)
    return gray.add_(term).floor_()


def blurred(x: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W), new: torchvision's sharpness `degenerate`: the 3x3 kernel [[1, 1, 1],
    [1, 5, 1], [1, 1, 1]] / 13 (PIL's SMOOTH filter), rounded to a level, on the
    interior; the one-pixel border keeps the image's own pixels.

    As whole numbers: S = the 3x3 sum + 4 x the centre is exact in float32, and S / 13 is
    never within 1/26 of a half, so round(S / 13) is torchvision's rounded float32
    convolution exactly, at a fraction of a depthwise conv2d's cost on the CPU.
    """
    rows = x[..., :-2, :] + x[..., 1:-1, :]
    rows += x[..., 2:, :]
    box = rows[..., :-2] + rows[..., 1:-1]
    box += rows[..., 2:]
    box.add_(x[..., 1:-1, 1:-1], alpha=4)  # whole numbers below 2**24: exact in any order
    out = x.clone()
    out[..., 1:-1, 1:-1] = box.div_(13).round_()
    return out


def blend(
    x: torch.Tensor,
    degenerate: torch.Tensor | None,
    f: torch.Tensor | float,
    g: torch.Tensor | float,
) -> torch.Tensor:
    """torchvision's `_blend` for uint8, floor(clamp(f * x + (1 - f) * degenerate, 0,
    255)), each product rounded to float32 before the sum as there; x and degenerate
    (broadcastable to x, or None for 0) overwritten, x returned. f: the factor; g: 1 - f
    as Python computes `1.0 - ratio` (in float64; float32 as torch applies it)."""
    x.mul_(f)
    if degenerate is not None:  # (1 - f) * 0 adds a signed zero: nothing
        x.add_(degenerate.mul_(g))
    return x.clamp_(0, TOP).floor_()


def posterize(x: torch.Tensor, bits: torch.Tensor | float) -> torch.Tensor:
    """x & -(2 ** (8 - bits)) (torchvision's posterize), in place: each level keeps its
    top `bits` bits, a whole number 0..8."""
    step = 2.0 ** (8 - bits)
    return x.div_(step).floor_().mul_(step)  # powers of two: exact


def solarize(x: torch.Tensor, threshold: torch.Tensor | float) -> torch.Tensor:
    """Levels >= threshold inverted, in place, as torchvision's solarize: 255 - x there,
    computed as |x - 255| (whole levels 0..255: exact)."""
    return x.add_(x.ge(threshold), alpha=-TOP).abs_()  # a select: 2x slower on the CPU


def autocontrast(x: torch.Tensor) -> torch.Tensor:
    """Each channel stretched from its own [min, max] to [0, 255], truncated, in place; a
    flat channel (max == min) unchanged (torchvision's autocontrast, its float32
    arithmetic)."""
    low, high = x.amin((2, 3), keepdim=True), x.amax((2, 3), keepdim=True)
    scale = TOP / (high - low)
    flat = ~torch.isfinite(scale)
    low = torch.where(flat, 0.0, low)
    scale = torch.where(flat, 1.0, scale)
    # torchvision clamps to [0, 255]; between its channel's min and max a level cannot
    # leave it but by a rounding of 255 upwards, which the floor takes back (checked for
    # every min, max and level)
    return x.sub_(low).mul_(scale).floor_()


def equalize(x: torch.Tensor) -> torch.Tensor:
    """torchvision's equalize (`_scale_channel`) per channel, in place: with the channel's
    histogram h and step = floor((pixels - h[top level present]) / 255), level v maps to
    floor((sum of h below v + floor(step / 2)) / step), clamped to 255; step 0 (one
    level carries all but < 255 pixels) leaves the channel as it is. x contiguous.

    Each pixel's key, its level + 256 x its channel's row, indexes both the histograms
    (one bincount) and the tables (one index_select): int32, as counts below 2**31 are.
    """
    n, c = x.shape[:2]
    rows = torch.arange(0, n * c * LEVELS, LEVELS, device=x.device, dtype=torch.int32)
    keys = x.reshape(n * c, -1).int().add_(rows[:, None])  # exact: whole levels
    hist = torch.bincount(keys.view(-1), minlength=n * c * LEVELS).view(n * c, LEVELS)
    levels = torch.arange(LEVELS, device=x.device).expand_as(hist)
    present = torch.where(hist > 0, levels, 0).amax(1, keepdim=True)  # the top level
    step = torch.div(keys.shape[1] - hist.gather(1, present), 255, rounding_mode="floor")
    below = F.pad(hist.cumsum(1), [1, 0])[:, :-1]
    safe = step.clamp(min=1)
    half = torch.div(safe, 2, rounding_mode="floor")
    table = torch.div(below + half, safe, rounding_mode="floor").clamp_(0, 255)
    table = torch.where(step == 0, levels, table).to(x.dtype)
    return torch.index_select(table.view(-1), 0, keys.view(-1), out=x.view(-1)).view_as(x)
