"""Batch augmentation and normalisation of uint8 image batches.

The report augments one PIL image at a time (vertical flip, then rotation within
+-10 degrees, nearest neighbour, black fill). We do the same per-sample random draws on
a whole batch: flips as an indexed reversal, rotations as one integer gather, both on
uint8 pixels, so the CPU path stays cheap; floats appear only at normalisation.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch


def vertical_flip(batch: torch.Tensor, p: float, gen: torch.Generator) -> torch.Tensor:
    """Flip each image upside down with probability p."""
    if p <= 0:
        return batch
    flip = torch.rand(len(batch), generator=gen) < p
    if not flip.any():
        return batch
    out = batch.clone()
    idx = flip.nonzero().squeeze(1).to(batch.device)
    out[idx] = batch[idx].flip(-2)
    return out


def rotate(batch: torch.Tensor, degrees: float, gen: torch.Generator) -> torch.Tensor:
    """Rotate each image by its own angle in [-degrees, degrees] about the centre.

    Nearest-neighbour with zero fill, like torchvision's RandomRotation defaults.
    """
    if degrees <= 0:
        return batch
    angles = (torch.rand(len(batch), generator=gen) * 2 - 1) * degrees
    return rotate_by(batch, angles)


def rotate_by(batch: torch.Tensor, degrees: torch.Tensor) -> torch.Tensor:
    """Rotate image i counter-clockwise by degrees[i] (torchvision's convention)."""
    n, c, h, w = batch.shape
    angles = degrees.float() * (math.pi / 180)
    cos, sin = angles.cos().to(batch.device), angles.sin().to(batch.device)
    ys = torch.arange(h, device=batch.device, dtype=torch.float32) - (h - 1) / 2
    xs = torch.arange(w, device=batch.device, dtype=torch.float32) - (w - 1) / 2
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    # Inverse map: each output pixel takes the input pixel it came from, or black
    # when that lies outside the image.
    sx = cos[:, None, None] * gx - sin[:, None, None] * gy + (w - 1) / 2
    sy = sin[:, None, None] * gx + cos[:, None, None] * gy + (h - 1) / 2
    sx, sy = sx.round().long(), sy.round().long()
    inside = (sx >= 0) & (sx < w) & (sy >= 0) & (sy < h)
    src = (sy.clamp(0, h - 1) * w + sx.clamp(0, w - 1)).view(n, 1, h * w)
    out = batch.reshape(n, c, h * w).gather(2, src.expand(n, c, h * w))
    return (out * inside.view(n, 1, h * w)).view(n, c, h, w)


def normalize(
    batch: torch.Tensor, mean: Sequence[float], std: Sequence[float], dtype=torch.float32
) -> torch.Tensor:
    """uint8 (0..255) to float, then per-channel (x - mean) / std as ToTensor+Normalize."""
    mean_t = torch.tensor(mean, device=batch.device, dtype=dtype).view(1, -1, 1, 1) * 255
    std_t = torch.tensor(std, device=batch.device, dtype=dtype).view(1, -1, 1, 1) * 255
    return (batch.to(dtype) - mean_t) / std_t


def to_grayscale(batch: torch.Tensor) -> torch.Tensor:
    """ITU-R 601-2 luma (PIL's "L"), repeated into three identical channels."""
    weights = torch.tensor([299, 587, 114], device=batch.device, dtype=torch.int32)
    luma = (batch.to(torch.int32) * weights.view(1, 3, 1, 1)).sum(1, keepdim=True)
    return ((luma + 500) // 1000).to(torch.uint8).expand_as(batch).contiguous()


class BatchAugment:
    """The `augment` config group as batch functions: train and eval views of uint8 data.

    Greyscale is a property of the input, not an augmentation: it applies to every
    split, so a greyscale-trained model is also evaluated on greyscale images.
    """

    def __init__(
        self,
        mean: Sequence[float],
        std: Sequence[float],
        vflip_p: float = 0.0,
        rotation: float = 0.0,
        grayscale: bool = False,
    ) -> None:
        self.mean, self.std = list(mean), list(std)
        self.vflip_p, self.rotation, self.grayscale = vflip_p, rotation, grayscale

    def train_view(self, batch: torch.Tensor, gen: torch.Generator | None) -> torch.Tensor:
        if gen is not None:
            batch = rotate(vertical_flip(batch, self.vflip_p, gen), self.rotation, gen)
        return self.eval_view(batch, None)

    def eval_view(self, batch: torch.Tensor, gen: torch.Generator | None = None) -> torch.Tensor:
        if self.grayscale:
            batch = to_grayscale(batch)
        return normalize(batch, self.mean, self.std)
