"""The in-memory form every dataset is brought into: uint8 images plus labels.

Keeping splits as uint8 tensors (a quarter of float32) is what lets a whole split sit
in memory, or on the GPU, and be augmented a batch at a time.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from flowers_sweep.data.roles import ByRole


@dataclass
class Split:
    images: torch.Tensor  # (N, 3, H, W) uint8
    labels: torch.Tensor  # (N,) int64
    # (N, 2) int64 on the host: each image's size (width, height) before the cache
    # squashed it to H x W; None when the images are at their own size
    image_sizes: torch.Tensor | None = None

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def num_samples(self) -> int:
        return len(self.labels)


class Splits(ByRole[Split]):
    """The three splits of a dataset as uint8 tensors, with its class names."""
