"""Batches ready for the model: what the training loop iterates, whatever the pipeline.

`TensorBatches` serves a uint8 split held in memory (the cached pipeline): index a
batch, augment it as a whole, normalise. `ReferenceBatches` wraps torchvision's
per-image pipeline in a DataLoader, as the report ran it.
"""

from __future__ import annotations

import multiprocessing
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, RandomSampler

from flowers_sweep.data.roles import ByRole
from flowers_sweep.data.splits import Split
from flowers_sweep.errors import ConfigError
from flowers_sweep.trainer.hardware import to_device

Batch = tuple[torch.Tensor, torch.Tensor]


def take(images: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """Rows of a uint8 tensor; on the CPU numpy's take is several times faster."""
    if images.device.type == "cpu":
        return torch.from_numpy(images.numpy().take(idx.numpy(), axis=0))
    return images[idx.to(images.device)]


class BatchSource:
    """What both pipelines share: a batch size over a number of samples."""

    batch_size: int

    @property
    def num_samples(self) -> int:
        raise NotImplementedError

    def __len__(self) -> int:
        """Batches per pass."""
        return (self.num_samples + self.batch_size - 1) // self.batch_size


class TensorBatches(BatchSource):
    """Batches of an in-memory split, shuffled by the caller's generator."""

    def __init__(
        self,
        split: Split,
        batch_size: int,
        device: torch.device,
        prepare: Callable[
            [torch.Tensor, torch.Generator | None, torch.Tensor | None], torch.Tensor
        ],
    ) -> None:
        self.split, self.batch_size, self.device, self.prepare = split, batch_size, device, prepare

    @property
    def num_samples(self) -> int:
        return len(self.split)

    def __call__(self, gen: torch.Generator | None = None) -> Iterator[Batch]:
        """One pass; shuffled and augmented when a generator is given, in order otherwise."""
        n, image_sizes = len(self.split), self.split.image_sizes
        order = host_order = None
        if gen is not None:  # drawn on the host (one generator, any device), queued once
            host_order = torch.randperm(n, generator=gen)
            order = to_device(host_order, self.split.images.device)
        for lo in range(0, n, self.batch_size):
            hi = lo + self.batch_size
            if order is None:
                images, labels = self.split.images[lo:hi], self.split.labels[lo:hi]
                batch_sizes = None if image_sizes is None else image_sizes[lo:hi]
            else:
                idx = order[lo:hi]
                images, labels = take(self.split.images, idx), self.split.labels[idx]
                batch_sizes = None if image_sizes is None else image_sizes[host_order[lo:hi]]
            x = self.prepare(images.to(self.device, non_blocking=True), gen, batch_sizes)
            yield x, labels.to(self.device, non_blocking=True)


def worker_start_method() -> Any:
    """How DataLoader workers start: None (torch's default) except inside a joblib job.

    Hydra's joblib launcher runs jobs in loky worker processes, where multiprocessing's
    default start method is loky's own; DataLoader workers started with it fail
    ("'Process' object has no attribute 'env'"). There the platform's fork is used,
    which is what the DataLoader picks by default on Linux anyway.

    Raises:
        ConfigError: inside a joblib job on a platform without a safe fork (macOS,
            Windows), where no start method works: use num_workers=0 or another launcher.
    """
    if multiprocessing.get_start_method(allow_none=True) != "loky":
        return None
    if sys.platform.startswith("linux"):
        return multiprocessing.get_context("fork")
    raise ConfigError(
        f"dataset.pipeline=reference with trainer.num_workers > 0 cannot start DataLoader "
        f"workers inside a joblib job on {sys.platform}: add trainer.num_workers=0, or use "
        f"hydra/launcher=submitit_local"
    )


class ReferenceBatches(BatchSource):
    """torchvision's per-image transforms in a DataLoader: the report's own pipeline."""

    def __init__(
        self, dataset: Dataset, batch_size: int, device: torch.device, num_workers: int
    ) -> None:
        self.dataset, self.batch_size, self.device = dataset, batch_size, device
        self.num_workers = num_workers

    @property
    def num_samples(self) -> int:
        return len(self.dataset)

    def __call__(self, gen: torch.Generator | None = None) -> Iterator[Batch]:
        sampler = RandomSampler(self.dataset, generator=gen) if gen is not None else None
        loader = DataLoader(
            self.dataset,
            batch_size=self.batch_size,
            sampler=sampler,
            num_workers=self.num_workers,
            pin_memory=self.device.type == "cuda",
            multiprocessing_context=worker_start_method() if self.num_workers else None,
        )
        for x, y in loader:
            yield x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)


@dataclass
class Loaders(ByRole[BatchSource]):
    """Train, val and test batches, whichever pipeline serves them, with the class names
    and the per-channel normalisation applied (`dataset.mean`/`std`, `auto` resolved)."""

    mean: list[float] | None = None
    std: list[float] | None = None
