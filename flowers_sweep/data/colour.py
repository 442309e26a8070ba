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

Each takes a batch of the images that drew it, with per-image strengths.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

LEVELS = 256
TOP = 255.0  # the uint8 bound


def grayscale(x: torch.Tensor) -> torch.Tensor:
    """(N, 1, H, W): torchvision's rgb_to_grayscale of uint8 RGB (ITU-R 601-2 weights
    0.2989, 0.587, 0.114 in float32, truncated to a whole level); grey input as it is."""
    if x.shape[1] != 3:
        return x[:, :1]
    r, g, b = x.unbind(1)
    return (0.2989 * r + 0.587 * g + 0.114 * b).floor_().unsqueeze(1)


def blurred(x: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W): torchvision's sharpness `degenerate`: the 3x3 kernel [[1, 1, 1],
    [1, 5, 1], [1, 1, 1]] / 13 (PIL's SMOOTH filter), rounded to a level, on the
    interior; the one-pixel border keeps the image's own pixels.

    As whole numbers: S = the 3x3 sum + 4 x the centre is exact in float32, and S / 13 is
    never within 1/26 of a half, so round(S / 13) is torchvision's rounded float32
    convolution exactly, at a fraction of a depthwise conv2d's cost on the CPU.
    """
    rows = x[..., :-2, :] + x[..., 1:-1, :] + x[..., 2:, :]
    box = rows[..., :-2] + rows[..., 1:-1] + rows[..., 2:]
    out = x.clone()
    out[..., 1:-1, 1:-1] = ((box + 4 * x[..., 1:-1, 1:-1]) / 13).round_()
    return out


def blend(x: torch.Tensor, degenerate: torch.Tensor | float, factor: torch.Tensor) -> torch.Tensor:
    """torchvision's `_blend` for uint8: floor(clamp(f * x + (1 - f) * degenerate, 0, 255)).

    factor: (N, 2) float32 on x's device, columns f and 1 - f (the latter computed in
    float64 as Python computes `1.0 - ratio`, then float32 as torch stores it).
    """
    f, g = factor[:, 0].view(-1, 1, 1, 1), factor[:, 1].view(-1, 1, 1, 1)
    return (f * x + g * degenerate).clamp_(0, TOP).floor_()


def posterize(x: torch.Tensor, bits: torch.Tensor) -> torch.Tensor:
    """x & -(2 ** (8 - bits)) (torchvision's posterize): each level keeps its top `bits`
    bits. bits: (N,) float32 whole numbers 0..8."""
    step = torch.pow(2.0, 8 - bits).view(-1, 1, 1, 1)
    return (x / step).floor_() * step


def solarize(x: torch.Tensor, threshold: torch.Tensor) -> torch.Tensor:
    """Levels >= threshold inverted (255 - x), as torchvision's solarize. threshold: (N,)."""
    return torch.where(x >= threshold.view(-1, 1, 1, 1), TOP - x, x)


def autocontrast(x: torch.Tensor) -> torch.Tensor:
    """Each channel stretched from its own [min, max] to [0, 255], truncated; a flat
    channel (max == min) unchanged (torchvision's autocontrast, its float32 arithmetic)."""
    low, high = x.amin((2, 3), keepdim=True), x.amax((2, 3), keepdim=True)
    scale = TOP / (high - low)
    flat = ~torch.isfinite(scale)
    low = torch.where(flat, 0.0, low)
    scale = torch.where(flat, 1.0, scale)
    return ((x - low) * scale).clamp_(0, TOP).floor_()


def equalize(x: torch.Tensor) -> torch.Tensor:
    """torchvision's equalize (`_scale_channel`) per channel: with the channel's histogram
    h and step = floor((pixels - h[top level present]) / 255), level v maps to
    floor((sum of h below v + floor(step / 2)) / step), clamped to 255; step 0 (one
    level carries all but < 255 pixels) leaves the channel as it is."""
    n, c = x.shape[:2]
    flat = x.reshape(n * c, -1).long()
    hist = torch.zeros(n * c, LEVELS, dtype=torch.int64, device=x.device)
    hist.scatter_add_(1, flat, torch.ones_like(flat))
    top = hist.gather(1, flat.amax(1, keepdim=True))
    step = torch.div(flat.shape[1] - top, 255, rounding_mode="floor")
    below = F.pad(hist.cumsum(1), [1, 0])[:, :-1]
    safe = step.clamp(min=1)
    half = torch.div(safe, 2, rounding_mode="floor")
    table = torch.div(below + half, safe, rounding_mode="floor").clamp_(0, 255)
    same = torch.arange(LEVELS, device=x.device).expand_as(table)
    table = torch.where(step == 0, same, table).float()
    return table.gather(1, flat).view_as(x)
