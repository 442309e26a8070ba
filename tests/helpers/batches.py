"""Batch sources for loop tests: given tensors in place of a dataset."""

from __future__ import annotations

from collections.abc import Iterator

import torch


class Batches:
    """A BatchSource stand-in: the given (x, y) batches, in order, whatever the generator."""

    def __init__(self, batches: list[tuple[torch.Tensor, torch.Tensor]], batch_size: int) -> None:
        self.batches, self.batch_size = batches, batch_size

    def __call__(self, gen: torch.Generator | None = None) -> Iterator:
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)
