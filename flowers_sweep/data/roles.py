"""One thing per role of a dataset (train, val, test), plus the dataset's class names.

The uint8 splits (`Splits`) and the batches the training loop iterates (`Loaders`) are
the same idea at two stages of the pipeline: both are a `ByRole` of things that know
how many samples they hold.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

ROLES = ("train", "val", "test")


class Counted(Protocol):
    @property
    def num_samples(self) -> int: ...


T = TypeVar("T", bound=Counted)


@dataclass
class ByRole(Generic[T]):
    train: T
    val: T
    test: T
    class_names: list[str]

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def items(self) -> Iterator[tuple[str, T]]:
        """(role, thing) in the order train, val, test."""
        for role in ROLES:
            yield role, getattr(self, role)

    def counts(self) -> dict[str, int]:
        """Samples per role: {"train": n, "val": n, "test": n}."""
        return {role: part.num_samples for role, part in self.items()}
