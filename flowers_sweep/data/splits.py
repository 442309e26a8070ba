"""The in-memory form every dataset is brought into: uint8 images plus labels.

Keeping splits as uint8 tensors (a quarter of float32) is what lets a whole split sit
in memory, or on the GPU, and be augmented a batch at a time.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class Split:
    images: torch.Tensor  # (N, 3, H, W) uint8
    labels: torch.Tensor  # (N,) int64
    # (N, 2) int64 on the host: each image's size (width, height) before the cache
    # squashed it to H x W; None when the images are at their own size
    sizes: torch.Tensor | None = None

    def __len__(self) -> int:
        return len(self.labels)


@dataclass
class Splits:
    train: Split
    val: Split
    test: Split
    class_names: list[str]

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def sizes(self) -> dict[str, int]:
        return {"train": len(self.train), "val": len(self.val), "test": len(self.test)}
