"""The activation choice: the single knob the report's experiment turns."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "relu": lambda: nn.ReLU(inplace=True),
    "leaky_relu": lambda: nn.LeakyReLU(negative_slope=0.01, inplace=True),
    "sigmoid": nn.Sigmoid,
}


def make_activation(name: str) -> nn.Module:
    """A fresh module per use, so that swapping one never aliases another layer's."""
    try:
        return ACTIVATIONS[name]()
    except KeyError:
        allowed = ", ".join(ACTIVATIONS)
        raise ValueError(f"activation={name!r} is not one of: {allowed}") from None
